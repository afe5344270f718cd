#!/usr/bin/env bash
# Benchmark runner: starts a throwaway Spacecast server on loopback and drives
# it with the `loadtest` binary.
#
#   scripts/bench.sh [sends|fanout|cql-raw|all|compare]        (default: all)
#
# Each scenario gets a fresh server (own temp data dir, random JWT secret) so
# results do not depend on what ran before.
#
# Store: BENCH_STORE=embedded (default) or BENCH_STORE=cql. With cql the server
# uses the Cassandra of `scripts/cassandra.sh` (it must be up: run
# `scripts/cassandra.sh up`), each scenario in a fresh keyspace
# bench_<scenario>_<random> that `spacecast migrate` creates and that is
# dropped afterwards.
#
# cql-raw: no server; `loadtest cql-raw` writes what the engine's group commit
# writes straight to that Cassandra (own keyspace, dropped afterwards), once
# per mode in CQL_RAW_MODES (`batch`: one unlogged batch per partition, as the
# engine; `concurrent`: one execute per row): the database's capacity to
# compare the cql sends figure with. Needs Cassandra up whatever BENCH_STORE
# is. `all` runs sends and fanout, and cql-raw too when BENCH_STORE=cql.
#
# compare: Spacecast against Centrifugo v6.9.1 (memory engine; installed and configured by
# scripts/centrifugo.sh), the same `loadtest fanout` against each, interleaved step by step
# (Spacecast, Centrifugo, Spacecast, …), each run on a fresh server (fresh data dir / config)
# pinned like the other modes. Then an `idle` step: COMPARE_IDLE connections to each (RSS per
# connection), and COMPARE_IDLE_MAX to Spacecast alone. Prints the side-by-side markdown table
# (absolutes and Spacecast / Centrifugo ratios) of `loadtest compare`, and appends it to
# BENCHMARKS.md under a dated heading when BENCH_WRITE=1. Not a like-for-like durability
# comparison: Spacecast acknowledges a publish only after its fsync'd group commit, Centrifugo's
# memory engine keeps nothing durable. Spacecast runs with --max-connections 19000
# --max-http-connections 512 here so the idle steps fit in the 20,000 descriptors per process.
#   COMPARE_STEPS="1000:100 1000:300 1000:1000 5000:50 5000:200"  (subscribers:msg/s, one space)
#   COMPARE_DURATION=15  COMPARE_IDLE=10000  COMPARE_IDLE_MAX=18000 (0 = skip)  COMPARE_IDLE_HOLD=5
#   COMPARE_PROCESSES=2  COMPARE_SOURCE_ADDRS=4   loadtest processes and loopback source addresses
#   BENCH_WRITE=1        append the table to BENCHMARKS.md
#
# Defaults can be overridden through the environment:
#   SENDS_SPACES=8 SENDS_CONCURRENCY=64 SENDS_DURATION=20 SENDS_WARMUP=2
#   FANOUT_SUBSCRIBERS=1000 FANOUT_RATE=100 FANOUT_DURATION=20
#   CQL_RAW_SPACES, CQL_RAW_CONCURRENCY, CQL_RAW_DURATION, CQL_RAW_WARMUP
#                        (default: the SENDS_* values)   CQL_RAW_BATCH=16
#   CQL_RAW_MODES="batch concurrent"
#   SPACECAST_CASSANDRA_PORT=9042   CQL port (as scripts/cassandra.sh)
#   SPACECAST_BIN=path   use this server binary instead of building spacecast-api
#   SPACECAST_ARGS="..." extra `spacecast serve` flags (e.g. "--ws-write-delay 2ms"), every mode
#   SERVER_CPUS=0 LOADGEN_CPUS=1   pin the server and the load generator to these CPUs
#                        (taskset -c), so a figure says what one core of the server does;
#                        set both empty to run unpinned (rows before 2026-12-02 were unpinned)
#   BENCH_OUT=file       also append each scenario's JSON result line to file
#                        (with "store" added)
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

mode=${1:-all}
case "$mode" in
sends | fanout | cql-raw | all | compare) ;;
-h | --help)
    usage
    exit 0
    ;;
*)
    usage >&2
    exit 2
    ;;
esac

SENDS_SPACES=${SENDS_SPACES:-8}
SENDS_CONCURRENCY=${SENDS_CONCURRENCY:-64}
SENDS_DURATION=${SENDS_DURATION:-20}
SENDS_WARMUP=${SENDS_WARMUP:-2}
FANOUT_SUBSCRIBERS=${FANOUT_SUBSCRIBERS:-1000}
FANOUT_RATE=${FANOUT_RATE:-100}
FANOUT_DURATION=${FANOUT_DURATION:-20}
CQL_RAW_SPACES=${CQL_RAW_SPACES:-$SENDS_SPACES}
CQL_RAW_CONCURRENCY=${CQL_RAW_CONCURRENCY:-$SENDS_CONCURRENCY}
CQL_RAW_BATCH=${CQL_RAW_BATCH:-16}
CQL_RAW_DURATION=${CQL_RAW_DURATION:-$SENDS_DURATION}
CQL_RAW_WARMUP=${CQL_RAW_WARMUP:-$SENDS_WARMUP}
CQL_RAW_MODES=${CQL_RAW_MODES:-batch concurrent}
COMPARE_STEPS=${COMPARE_STEPS:-1000:100 1000:300 1000:1000 5000:50 5000:200}
COMPARE_DURATION=${COMPARE_DURATION:-15}
COMPARE_IDLE=${COMPARE_IDLE:-10000}
COMPARE_IDLE_MAX=${COMPARE_IDLE_MAX:-18000}
COMPARE_IDLE_HOLD=${COMPARE_IDLE_HOLD:-5}
COMPARE_PROCESSES=${COMPARE_PROCESSES:-2}
COMPARE_SOURCE_ADDRS=${COMPARE_SOURCE_ADDRS:-4}
BENCH_STORE=${BENCH_STORE:-embedded}
if [[ $mode == compare && $BENCH_STORE != embedded ]]; then
    echo "bench: compare runs on the embedded store only" >&2
    exit 2
fi
case "$BENCH_STORE" in
embedded | cql) ;;
*)
    echo "bench: BENCH_STORE=$BENCH_STORE: use embedded or cql" >&2
    exit 2
    ;;
esac
read -ra spacecast_args <<<"${SPACECAST_ARGS:-}"
SERVER_CPUS=${SERVER_CPUS-0}
LOADGEN_CPUS=${LOADGEN_CPUS-1}
server_pin=()
loadgen_pin=()
if [[ -n $SERVER_CPUS ]]; then server_pin=(taskset -c "$SERVER_CPUS"); fi
if [[ -n $LOADGEN_CPUS ]]; then loadgen_pin=(taskset -c "$LOADGEN_CPUS"); fi
READY_TIMEOUT_S=30
STOP_TIMEOUT_S=10

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}

command -v curl >/dev/null || {
    echo "bench: curl is required" >&2
    exit 1
}

run_cql_raw=false
if [[ $mode == cql-raw || ($mode == all && $BENCH_STORE == cql) ]]; then
    run_cql_raw=true
fi
run_server=true
[[ $mode == cql-raw ]] && run_server=false

# ---------------------------------------------------------------- cassandra
cassandra=$root/scripts/cassandra.sh
cql_nodes=127.0.0.1:${SPACECAST_CASSANDRA_PORT:-9042}
if [[ $BENCH_STORE == cql ]] || $run_cql_raw; then
    cassandra_status=$("$cassandra" status 2>/dev/null || true)
    if [[ $cassandra_status != up ]]; then
        echo "bench: Cassandra on $cql_nodes is not up (scripts/cassandra.sh status: ${cassandra_status:-no answer});" \
            "start it with: scripts/cassandra.sh up" >&2
        exit 1
    fi
fi

# A keyspace name not used before: bench_<scenario>_<8 random hex digits>.
new_keyspace() {
    echo "bench_${1//[^a-z0-9]/_}_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
}

cql_keyspace=
drop_keyspace() {
    [[ -n $cql_keyspace ]] || return 0
    local ks=$cql_keyspace
    cql_keyspace=
    echo "\$ scripts/cassandra.sh cql --timeout 120 -e \"DROP KEYSPACE IF EXISTS $ks\""
    # A failed drop is reported, not fatal: the results are already printed.
    "$cassandra" cql --quiet --timeout 120 -e "DROP KEYSPACE IF EXISTS $ks" ||
        echo "bench: could not drop keyspace $ks; drop it by hand" >&2
}

# ---------------------------------------------------------------- build
if ! $run_server; then
    build_cmd=(cargo build --release -p spacecast-loadtest)
    server_bin=
elif [[ -n ${SPACECAST_BIN:-} ]]; then
    build_cmd=(cargo build --release -p spacecast-loadtest)
    server_bin=$SPACECAST_BIN
else
    build_cmd=(cargo build --release -p spacecast-api -p spacecast-loadtest)
    server_bin=$target_dir/release/spacecast
fi
loadtest_bin=$target_dir/release/loadtest
echo "\$ ${build_cmd[*]}"
"${build_cmd[@]}"
centrifugo_bin=
if [[ $mode == compare ]]; then
    "$root/scripts/centrifugo.sh" install
    centrifugo_bin=$("$root/scripts/centrifugo.sh" bin)
fi
if $run_server && [[ ! -x $server_bin ]]; then
    echo "bench: server binary $server_bin not found" >&2
    exit 1
fi

# Both the server and the loadtest inherit this limit (1000+ sockets each).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- server
workdir=$(mktemp -d "${TMPDIR:-/tmp}/spacecast-bench.XXXXXX")
server_pid=
server_log=
script=bench
# shellcheck source=scripts/lib/server.sh
. "$root/scripts/lib/server.sh"


cleanup() {
    local rc=$?
    trap - EXIT
    if ((rc != 0)) && [[ -n $server_log && -s $server_log ]]; then
        echo "---- last lines of the server log ($server_log) ----" >&2
        tail -n 40 "$server_log" >&2 || true
    fi
    stop_server || true
    drop_keyspace || true
    rm -rf "$workdir"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_server NAME: starts a fresh server, sets $url once /readyz is 200.
# With BENCH_STORE=cql, first creates the fresh keyspace $cql_keyspace.
start_server() {
    local name=$1 port data_dir store_args=()
    shift
    local extra=("$@")
    port=$(free_port)
    data_dir="$workdir/$name-data"
    mkdir -p "$data_dir"
    server_log="$workdir/$name-server.log"
    url="http://127.0.0.1:$port"
    if [[ $BENCH_STORE == cql ]]; then
        store_args=(--store cql --cql-nodes "$cql_nodes" --cql-keyspace "$cql_keyspace")
        echo "\$ $server_bin migrate ${store_args[*]}"
        "$server_bin" migrate "${store_args[@]}"
    fi
    echo "\$ $server_bin serve --listen 127.0.0.1:$port --data-dir $data_dir --jwt-secret \"\$SPACECAST_JWT_SECRET\" ${store_args[*]} ${extra[*]}"
    "${server_pin[@]}" "$server_bin" serve --listen "127.0.0.1:$port" --data-dir "$data_dir" \
        --jwt-secret "$SPACECAST_JWT_SECRET" "${store_args[@]}" "${extra[@]}" >"$server_log" 2>&1 &
    server_pid=$!

    wait_ready "$url/readyz" server
    local banner
    banner=$(grep -m1 'spacecast listening on' "$server_log" || true)
    echo "server ready: ${banner:-"(no 'spacecast listening on' line in its output)"}"
}

# start_centrifugo NAME: a fresh Centrifugo (config from scripts/centrifugo.sh, memory engine),
# pinned like the server; sets $url and $server_pid once /health answers.
start_centrifugo() {
    local name=$1 port dir
    port=$(free_port)
    dir="$workdir/$name-centrifugo"
    server_log="$dir/centrifugo.log"
    url="http://127.0.0.1:$port"
    "$root/scripts/centrifugo.sh" config "$dir" "$port" "$SPACECAST_JWT_SECRET" "$CENTRIFUGO_API_KEY"
    echo "\$ $centrifugo_bin --config $dir/config.json"
    "${server_pin[@]}" "$centrifugo_bin" --config "$dir/config.json" >"$server_log" 2>&1 &
    server_pid=$!
    wait_ready "$url/health" centrifugo
    echo "centrifugo ready on $url (pid $server_pid)"
}

# compare_run TARGET LABEL SCENARIO ARGS...: fresh server of TARGET, `loadtest SCENARIO` against
# it; the JSON line goes to $compare_out.
compare_run() {
    local target=$1 label=$2 scenario=$3
    shift 3
    SPACECAST_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    CENTRIFUGO_API_KEY=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    export SPACECAST_JWT_SECRET CENTRIFUGO_API_KEY
    echo
    echo "================ compare: $label on $target ================"
    if [[ $target == spacecast ]]; then
        start_server "compare-$target" --max-connections 19000 --max-http-connections 512 \
            "${spacecast_args[@]}"
    else
        start_centrifugo "compare-$target"
    fi
    local cmd=("${loadgen_pin[@]}" "$loadtest_bin" "$scenario" --target "$target" --url "$url"
        --server-pid "$server_pid" --label "$label" "$@" --json)
    echo "\$ SPACECAST_JWT_SECRET=<random> CENTRIFUGO_API_KEY=<random> ${cmd[*]@Q}"
    local out="$workdir/compare.out"
    "${cmd[@]}" | tee "$out"
    tail -n 1 "$out" >>"$compare_out"
    if [[ -n ${BENCH_OUT:-} ]]; then
        tail -n 1 "$out" | sed "s/^{/{\"store\":\"$target\",/" >>"$BENCH_OUT"
    fi
    stop_server
}

# record OUT STORE: appends OUT's last line (the JSON result) to $BENCH_OUT,
# with "store" added.
record() {
    [[ -n ${BENCH_OUT:-} ]] || return 0
    tail -n 1 "$1" | sed "s/^{/{\"store\":\"$2\",/" >>"$BENCH_OUT"
}

# run_scenario NAME ARGS...: fresh server (and keyspace), then the loadtest with ARGS.
run_scenario() {
    local name=$1 store=$BENCH_STORE
    shift
    SPACECAST_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    export SPACECAST_JWT_SECRET
    if [[ $BENCH_STORE == cql ]]; then
        cql_keyspace=$(new_keyspace "$name")
        store="cql, keyspace $cql_keyspace on $cql_nodes"
    fi
    echo
    echo "================ $name (store: $store) ================"
    start_server "$name" "${spacecast_args[@]}"
    local cmd=("${loadgen_pin[@]}" "$loadtest_bin" "$name" --url "$url" "$@" --json)
    # The load scenarios also read the server's CPU and RSS from /proc.
    [[ $name == fanout ]] && cmd+=(--server-pid "$server_pid")
    echo "\$ SPACECAST_JWT_SECRET=<per-run random> ${cmd[*]}"
    local out="$workdir/$name.out"
    "${cmd[@]}" | tee "$out"
    record "$out" "$BENCH_STORE"
    # The server's memory after the run and at its peak (bounded memory is part of the result).
    if [[ -r /proc/$server_pid/status ]]; then
        awk '/^VmRSS:/ {rss = $2} /^VmHWM:/ {hwm = $2}
             END {printf "server rss: %.0f MiB at the end, %.0f MiB at the peak\n", rss / 1024, hwm / 1024}' \
            "/proc/$server_pid/status"
    fi
    stop_server
    drop_keyspace
}

# run_cql_raw MODE: `loadtest cql-raw` against Cassandra in a fresh keyspace.
run_cql_raw() {
    local mode=$1
    cql_keyspace=$(new_keyspace "cql_raw_$mode")
    echo
    echo "================ cql-raw $mode (store: cql, keyspace $cql_keyspace on $cql_nodes, no server) ================"
    local cmd=("$loadtest_bin" cql-raw --nodes "$cql_nodes" --keyspace "$cql_keyspace"
        --mode "$mode" --spaces "$CQL_RAW_SPACES" --concurrency "$CQL_RAW_CONCURRENCY"
        --batch "$CQL_RAW_BATCH" --duration "$CQL_RAW_DURATION" --warmup "$CQL_RAW_WARMUP" --json)
    echo "\$ ${cmd[*]}"
    local out="$workdir/cql-raw-$mode.out"
    "${cmd[@]}" | tee "$out"
    record "$out" cql
    drop_keyspace
}

# ---------------------------------------------------------------- report
cpu_model=$(grep -m1 -E '^(model name|Hardware|cpu model|Model)[[:space:]]*:' /proc/cpuinfo 2>/dev/null |
    cut -d: -f2- | sed 's/^[[:space:]]*//' || true)
if [[ -z $cpu_model ]] && command -v lscpu >/dev/null; then
    cpu_model=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
fi
if command -v free >/dev/null; then
    mem_total="$(free -g | awk '/^Mem:/ {print $2}') GiB"
else
    mem_total="$(awk '/^MemTotal:/ {printf "%d", $2 / 1048576}' /proc/meminfo) GiB"
fi
commit=$(git rev-parse --short HEAD 2>/dev/null || echo "no commit")
if [[ -n $(git status --porcelain 2>/dev/null) ]]; then
    commit="$commit (dirty tree)"
fi

echo
echo "================ machine ================"
echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "cpus:      $(nproc) (nproc)"
echo "cpu model: ${cpu_model:-unknown}"
echo "memory:    $mem_total total"
echo "kernel:    $(uname -r)"
echo "rustc:     $(rustc -V 2>/dev/null || echo unknown)"
echo "commit:    $commit"
echo "ulimit -n: $(ulimit -n)"
if $run_server; then
    echo "store:     $BENCH_STORE"
fi
if [[ $BENCH_STORE == cql ]] || $run_cql_raw; then
    cassandra_version=$("$cassandra" cql 2>/dev/null | head -n 1 || true)
    echo "cassandra: ${cassandra_version:-unknown version} on $cql_nodes (scripts/cassandra.sh, single node)"
    if $run_server; then
        echo "note:      server, loadtest and Cassandra share this machine"
    else
        echo "note:      loadtest and Cassandra share this machine"
    fi
else
    echo "note:      server and loadtest share this machine"
fi
echo "pinning:   server on CPUs ${SERVER_CPUS:-any}, loadtest on CPUs ${LOADGEN_CPUS:-any} (taskset)"
if [[ -n ${SPACECAST_BIN:-} ]]; then
    echo "server:    $SPACECAST_BIN"
fi

if [[ $mode == sends || $mode == all ]]; then
    run_scenario sends --spaces "$SENDS_SPACES" --concurrency "$SENDS_CONCURRENCY" \
        --duration "$SENDS_DURATION" --warmup "$SENDS_WARMUP"
fi
if [[ $mode == fanout || $mode == all ]]; then
    run_scenario fanout --subscribers "$FANOUT_SUBSCRIBERS" --rate "$FANOUT_RATE" \
        --duration "$FANOUT_DURATION"
fi
if $run_cql_raw; then
    for raw_mode in $CQL_RAW_MODES; do
        run_cql_raw "$raw_mode"
    done
fi
if [[ $mode == compare ]]; then
    compare_out="$workdir/compare.jsonl"
    : >"$compare_out"
    echo "centrifugo: $("$centrifugo_bin" version 2>/dev/null | head -n 1) built from github.com/centrifugal/centrifugo/v6@v6.9.1 (memory engine)"
    for step in $COMPARE_STEPS; do
        subs=${step%%:*}
        rate=${step##*:}
        for target in spacecast centrifugo; do
            compare_run "$target" "$subs subs @ $rate msg/s" fanout --subscribers "$subs" \
                --rate "$rate" --duration "$COMPARE_DURATION" --processes "$COMPARE_PROCESSES" \
                --source-addrs "$COMPARE_SOURCE_ADDRS" --quiet
        done
    done
    idle_args=(--duration "$COMPARE_IDLE_HOLD" --processes "$COMPARE_PROCESSES"
        --source-addrs "$COMPARE_SOURCE_ADDRS" --no-rest-join --quiet)
    if ((COMPARE_IDLE > 0)); then
        for target in spacecast centrifugo; do
            compare_run "$target" "idle $COMPARE_IDLE" idle --subscribers "$COMPARE_IDLE" "${idle_args[@]}"
        done
    fi
    if ((COMPARE_IDLE_MAX > 0)); then
        compare_run spacecast "idle $COMPARE_IDLE_MAX" idle --subscribers "$COMPARE_IDLE_MAX" "${idle_args[@]}"
    fi
    table=$("$loadtest_bin" compare "$compare_out")
    echo
    echo "================ Spacecast / Centrifugo ================"
    echo "$table"
    if [[ ${BENCH_WRITE:-0} == 1 ]]; then
        {
            echo
            echo "### $(date -u +%Y-%m-%d) — commit $commit, \`scripts/bench.sh compare\`"
            echo
            echo "$(nproc) vCPU ${cpu_model:-unknown CPU}; server on CPUs ${SERVER_CPUS:-any}, loadtest on CPUs ${LOADGEN_CPUS:-any}; ${COMPARE_DURATION} s per step, one space; Centrifugo v6.9.1, memory engine. Spacecast acknowledges after an fsync'd group commit, Centrifugo's memory engine keeps nothing durable."
            echo
            echo "$table"
        } >>"$root/BENCHMARKS.md"
        echo "bench: table appended to BENCHMARKS.md"
    fi
fi
