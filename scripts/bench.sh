#!/usr/bin/env bash
# Benchmark runner: starts a throwaway Spacecast server on loopback and drives
# it with the `loadtest` binary.
#
#   scripts/bench.sh [sends|fanout|cql-raw|all|compare|socketio|cluster|failover|native|unread|search|presence|presence-cluster]   (default: all)
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
# socketio: the cost of the second protocol (issue 9): the same `loadtest fanout` (the same
# publisher: REST sends into one space, open loop at the same rate) to Spacecast's native stream
# and to its Socket.IO (`--target socketio`, the Space7 app's /socket.io/), interleaved step by
# step (native, Socket.IO, native, …; SOCKETIO_ROUNDS rounds), each on a fresh server pinned like
# the other modes. Prints the side-by-side table of `loadtest compare` (absolutes and the ratio
# Socket.IO / native; with several rounds the last run of each step counts, the others are in
# the log above it) and appends it to BENCHMARKS.md under a dated heading when BENCH_WRITE=1.
#   SOCKETIO_STEPS="1000:100 1000:1000"  (subscribers:msg/s, one space)  SOCKETIO_DURATION=15
#   SOCKETIO_ROUNDS=1    (COMPARE_PROCESSES and COMPARE_SOURCE_ADDRS apply)
#
# cluster: the cluster of issue 8 (docs/cluster.md) on this machine: `spacecast serve --store cql
# --nats-url … --node-id benchN` nodes sharing one fresh keyspace of the Cassandra of
# scripts/cassandra.sh and the NATS of scripts/nats.sh (both must be up; neither is pinned).
# Every node is pinned to SERVER_CPUS, so three nodes share the cores one node had: the figures
# measure what clustering costs, not how it scales. Each step starts fresh nodes in a fresh
# keyspace. The spaces are created and joined through node 0, which so takes their leases and
# owns them (the reports name each space's owner at the start and end of the window, read from
# NATS monitoring, CLUSTER_NATS_MONITOR). Steps (CLUSTER_PARTS="sends fanout failover"):
#   sends   at SENDS_CONCURRENCY and at concurrency 1: 1 node without NATS (the baseline), 1 node
#           in cluster mode, 3 nodes with the senders on the owner, on a non-owner, and (at
#           SENDS_CONCURRENCY) spread over all three;
#   fanout  FANOUT_SUBSCRIBERS subscribers of one space, FANOUT_RATE msg/s published through the
#           owner: 1 node without NATS, 1 node in cluster mode, 3 nodes with every subscriber on
#           the owner, spread over the three, all on a non-owner;
#   failover  3 nodes, `loadtest failover`: steady sends into FAILOVER_SPACES spaces through
#           every node at FAILOVER_RATE per (space, node) per second; FAILOVER_KILLS times the
#           owner of a space is killed with SIGKILL (this script is the driver: it kills and
#           restarts nodes when the loadtest asks) and the time from the kill to the first
#           acknowledged send in that space is measured.
# The sends and fanout steps run CLUSTER_ROUNDS times, interleaved (every step of a round, then
# the next round), after a CLUSTER_WARMUP-second throwaway sends run that warms Cassandra's JIT;
# the tables show per step the median over the rounds, with its ratio to the group's first row.
# Around each loadtest run the script reads the CPU seconds of the nodes, NATS, Cassandra, the
# loadtest and the whole machine: "other load" is the rest, work from outside the benchmark
# (other users of the machine, of the shared Cassandra or NATS), in % of all CPUs. Needs jq.
#   CLUSTER_PARTS="sends fanout failover"   CLUSTER_NODES=3   CLUSTER_NATS_MONITOR=http://127.0.0.1:18222
#   CLUSTER_ROUNDS=3  CLUSTER_WARMUP=20  CLUSTER_SENDS_DURATION=10  CLUSTER_FANOUT_DURATION=15
#   (SENDS_SPACES, SENDS_CONCURRENCY, SENDS_WARMUP, FANOUT_SUBSCRIBERS, FANOUT_RATE apply too)
#   FAILOVER_KILLS=10 FAILOVER_SPACES=4 FAILOVER_RATE=20 FAILOVER_SETTLE=3
#   SPACECAST_NATS_URL=nats://127.0.0.1:14222 (scripts/nats.sh url)
#   CLUSTER_OUT=file   keep the steps' JSON lines there (appended: runs accumulate, and the tables
#                      printed at the end cover the whole file)
# failover: the failover part alone.
#
# native: the /v1 surface of issue 10, each run on a fresh server pinned like the other modes:
#   1. closed-loop sends of each kind (`loadtest sends --kind`: space7, v1, v1-rich), interleaved
#      over NATIVE_ROUNDS rounds, and v1 once more with the per-user rate limit ON at a limit
#      never reached (NATIVE_HIGH_LIMIT per minute): what a send's validation, rich fields and
#      rate-limit check cost;
#   2. reaction toggles on one hot message (`sends --kind react --spaces 1`, every worker its own
#      user), NATIVE_ROUNDS rounds;
#   3. one space filled with NATIVE_FILL messages (`sends --kind v1 --max-sends`), then `loadtest
#      reads` at concurrency 1: cursor pages (limit 50) at the newest end, the middle and the
#      oldest end, each plain, filtered by a sender who wrote 1 in NATIVE_USERS messages, and by a
#      msgtype nobody used (the scan's worst case: 1,000 rows per page); and the space's stats.
#   NATIVE_ROUNDS=2 NATIVE_DURATION=10 NATIVE_FILL=1000000 NATIVE_USERS=64 NATIVE_READ_DURATION=10
#   NATIVE_HIGH_LIMIT=100000000   NATIVE_OUT=file (the JSON lines; default: in the temp dir)
#
# unread: read markers and the inbox (issue 12) on a fresh server pinned like the other modes
#   (rate limits off for the setup): `loadtest unread`, a user in UNREAD_SPACES spaces (one
#   unread message in every other one), then `GET /v1/me/unread` and `GET /v1/me/spaces?limit=50`
#   closed-loop, UNREAD_CONCURRENCY workers, UNREAD_DURATION s after a 2 s warm-up.
#   UNREAD_SPACES=1000 UNREAD_CONCURRENCY=1 UNREAD_DURATION=10
#
# search: message search (issue 12) on a fresh server pinned like the other modes (rate limits
#   off): `loadtest search`, SEARCH_MESSAGES messages over REST into SEARCH_SPACES spaces
#   (SEARCH_CONCURRENCY sends in flight), each 1,000th a probe timed from its ack until a search
#   finds it (freshness at the ingest's rate), then search queries closed-loop
#   (SEARCH_QUERY_CONCURRENCY workers, SEARCH_DURATION s after a 2 s warm-up).
#   SEARCH_MESSAGES=1000000 SEARCH_SPACES=1000 SEARCH_CONCURRENCY=64 SEARCH_QUERY_CONCURRENCY=1
#   SEARCH_DURATION=10
#
# presence: what a presence change and the count broadcast cost (issue 12), a fresh server per
#   step, pinned like the other modes: `loadtest presence`, PRESENCE_SUBSCRIBERS sessions in one
#   space and a changer alternating busy/online PRESENCE_CHANGES times, 20 ms apart, with the
#   server's CPU time. Steps: `below` (default threshold, 1,000, above the sessions: one frame per
#   session per change), `above` (--presence-max-subscribers 10, no counts: a change sends
#   nothing), `counts` (--presence-max-subscribers 10, a count every second over the
#   PRESENCE_WINDOW s quiet window). Each step stays under the server's 60 s --presence-timeout.
#   PRESENCE_SUBSCRIBERS=900 PRESENCE_CHANGES=200 PRESENCE_WINDOW=10
#
# presence-cluster: the same on a three-node cluster (as `cluster`: CQL store, NATS, every node
#   pinned to SERVER_CPUS), the subscribers split evenly over the nodes (`loadtest presence`
#   with every node's URL: one load process per node, as one holds at most 20,000 descriptors
#   here), every node's CPU time. Steps: `below` (PRESENCE_CLUSTER_BELOW sessions, under the
#   default threshold: every change reaches every node's sessions through NATS) and `above`
#   (PRESENCE_CLUSTER_SUBSCRIBERS sessions, default threshold and count interval: a change is one
#   NATS message, a count every 10 s from each node; the quiet window also holds the nodes'
#   15 s snapshots). Nodes run with --presence-timeout 600s --max-connections 19000.
#   PRESENCE_CLUSTER_BELOW=900 PRESENCE_CLUSTER_SUBSCRIBERS=50000 PRESENCE_CLUSTER_WINDOW=30
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
#   SPACECAST_SEND_RATE_LIMIT=0   the servers' per-user send limit (default here: 0, unlimited:
#                        a benchmark measures the engine, and its few publishers would otherwise
#                        be held to 60 messages a minute each)
#   SPACECAST_WRITE_RATE_LIMIT=0  the per-user limit of the other writes (reactions…), likewise
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
sends | fanout | cql-raw | all | compare | socketio | cluster | failover | native | unread | search | presence | presence-cluster) ;;
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
SOCKETIO_STEPS=${SOCKETIO_STEPS:-1000:100 1000:1000}
SOCKETIO_DURATION=${SOCKETIO_DURATION:-15}
SOCKETIO_ROUNDS=${SOCKETIO_ROUNDS:-1}
CLUSTER_PARTS=${CLUSTER_PARTS:-sends fanout failover}
[[ $mode == failover ]] && CLUSTER_PARTS=failover
CLUSTER_NODES=${CLUSTER_NODES:-3}
CLUSTER_NATS_MONITOR=${CLUSTER_NATS_MONITOR:-http://127.0.0.1:${SPACECAST_NATS_MONITOR_PORT:-18222}}
CLUSTER_ROUNDS=${CLUSTER_ROUNDS:-3}
CLUSTER_WARMUP=${CLUSTER_WARMUP:-20}
CLUSTER_SENDS_DURATION=${CLUSTER_SENDS_DURATION:-10}
CLUSTER_FANOUT_DURATION=${CLUSTER_FANOUT_DURATION:-15}
FAILOVER_KILLS=${FAILOVER_KILLS:-10}
FAILOVER_SPACES=${FAILOVER_SPACES:-4}
FAILOVER_RATE=${FAILOVER_RATE:-20}
FAILOVER_SETTLE=${FAILOVER_SETTLE:-3}
NATIVE_ROUNDS=${NATIVE_ROUNDS:-2}
UNREAD_SPACES=${UNREAD_SPACES:-1000}
SEARCH_MESSAGES=${SEARCH_MESSAGES:-1000000}
SEARCH_SPACES=${SEARCH_SPACES:-1000}
SEARCH_CONCURRENCY=${SEARCH_CONCURRENCY:-64}
SEARCH_QUERY_CONCURRENCY=${SEARCH_QUERY_CONCURRENCY:-1}
SEARCH_DURATION=${SEARCH_DURATION:-10}
UNREAD_CONCURRENCY=${UNREAD_CONCURRENCY:-1}
UNREAD_DURATION=${UNREAD_DURATION:-10}
PRESENCE_SUBSCRIBERS=${PRESENCE_SUBSCRIBERS:-900}
PRESENCE_CHANGES=${PRESENCE_CHANGES:-200}
PRESENCE_WINDOW=${PRESENCE_WINDOW:-10}
PRESENCE_CLUSTER_BELOW=${PRESENCE_CLUSTER_BELOW:-900}
PRESENCE_CLUSTER_SUBSCRIBERS=${PRESENCE_CLUSTER_SUBSCRIBERS:-50000}
PRESENCE_CLUSTER_WINDOW=${PRESENCE_CLUSTER_WINDOW:-30}
NATIVE_DURATION=${NATIVE_DURATION:-10}
NATIVE_FILL=${NATIVE_FILL:-1000000}
NATIVE_USERS=${NATIVE_USERS:-64}
NATIVE_READ_DURATION=${NATIVE_READ_DURATION:-10}
NATIVE_HIGH_LIMIT=${NATIVE_HIGH_LIMIT:-100000000}
cluster_mode=false
[[ $mode == cluster || $mode == failover || $mode == presence-cluster ]] && cluster_mode=true
if $cluster_mode; then
    BENCH_STORE=cql
fi
BENCH_STORE=${BENCH_STORE:-embedded}
if [[ ($mode == compare || $mode == socketio) && $BENCH_STORE != embedded ]]; then
    echo "bench: $mode runs on the embedded store only" >&2
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
export SPACECAST_SEND_RATE_LIMIT=${SPACECAST_SEND_RATE_LIMIT:-0}
export SPACECAST_WRITE_RATE_LIMIT=${SPACECAST_WRITE_RATE_LIMIT:-0}
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
if $cluster_mode; then
    command -v jq >/dev/null || {
        echo "bench: $mode needs jq" >&2
        exit 1
    }
    if [[ $("$root/scripts/nats.sh" status 2>/dev/null || true) != up ]]; then
        echo "bench: NATS is not up; start it with: scripts/nats.sh up" >&2
        exit 1
    fi
    nats_url=${SPACECAST_NATS_URL:-$("$root/scripts/nats.sh" url)}
fi

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
    cluster_down || true
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
    if [[ $target == spacecast || $target == socketio ]]; then
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

# ---------------------------------------------------------------- cluster (issue 8)
# Nodes of the current step: index i → pid, id, listen address, URL, data dir, log.
node_pids=()
node_ids=()
node_listen=()
node_urls=()
node_dirs=()
node_logs=()
node_args=()
cluster_nats=false

# cluster_up NAME N nats|plain: a fresh keyspace, then N nodes (node i: --node-id bench<i>), each
# pinned to SERVER_CPUS and ready (/readyz 200) before the next starts.
cluster_up() {
    local name=$1 n=$2 kind=$3 i port
    SPACECAST_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    export SPACECAST_JWT_SECRET
    cql_keyspace=$(new_keyspace "$name")
    local store_args=(--store cql --cql-nodes "$cql_nodes" --cql-keyspace "$cql_keyspace")
    echo "\$ $server_bin migrate ${store_args[*]}"
    "$server_bin" migrate "${store_args[@]}"
    # The secret comes from the environment (SPACECAST_JWT_SECRET), not the command line.
    node_args=("${store_args[@]}")
    cluster_nats=false
    if [[ $kind == nats ]]; then
        cluster_nats=true
        node_args+=(--nats-url "$nats_url")
    fi
    node_args+=("${spacecast_args[@]}")
    node_pids=() node_ids=() node_listen=() node_urls=() node_dirs=() node_logs=()
    for ((i = 0; i < n; i++)); do
        port=$(free_port)
        node_ids[i]=bench$i
        node_listen[i]=127.0.0.1:$port
        node_urls[i]=http://127.0.0.1:$port
        node_dirs[i]=$workdir/$name-node$i
        node_logs[i]=$workdir/$name-node$i.log
        mkdir -p "${node_dirs[i]}"
        node_start "$i"
    done
}

# node_start I: starts node I (again, on its address and data dir) and waits until it is ready.
node_start() {
    local i=$1 id_args=()
    $cluster_nats && id_args=(--node-id "${node_ids[i]}")
    echo "\$ SPACECAST_JWT_SECRET=<per-run random> ${server_pin[*]} $server_bin serve --listen ${node_listen[i]} --data-dir ${node_dirs[i]} ${node_args[*]} ${id_args[*]}"
    "${server_pin[@]}" "$server_bin" serve --listen "${node_listen[i]}" --data-dir "${node_dirs[i]}" \
        "${node_args[@]}" "${id_args[@]}" >>"${node_logs[i]}" 2>&1 &
    node_pids[i]=$!
    server_log=${node_logs[i]}
    server_pid=${node_pids[i]}
    wait_ready "${node_urls[i]}/readyz" "node ${node_ids[i]}"
    server_pid=
}

# node_index ID: the index of the node with that id.
node_index() {
    local i
    for i in "${!node_ids[@]}"; do
        [[ ${node_ids[i]} == "$1" ]] && echo "$i" && return 0
    done
    echo "bench: no node $1 in this step" >&2
    return 1
}

# Stops every node of the step (SIGTERM, then SIGKILL after STOP_TIMEOUT_S) and drops the keyspace.
cluster_down() {
    local i
    for i in "${!node_pids[@]}"; do
        [[ -n ${node_pids[i]} ]] || continue
        server_pid=${node_pids[i]}
        node_pids[i]=
        stop_server
    done
    drop_keyspace
}

# The pid listening on loopback TCP port PORT (empty if none is visible).
listener_pid() {
    ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1
}

# CPU seconds (utime + stime) of the given pids, summed; a missing pid counts 0.
cpu_seconds() {
    local pid total=0 ticks
    for pid in "$@"; do
        [[ -r /proc/$pid/stat ]] || continue
        ticks=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
        total=$((total + ticks))
    done
    awk -v t="$total" -v hz="$clk_tck" 'BEGIN {printf "%.3f", t / hz}'
}

# CPU seconds of this script and of its reaped children (the loadtest, once it has exited).
script_cpu() {
    sed 's/.*) //' "/proc/$$/stat" | awk -v hz="$clk_tck" '{printf "%.3f", ($12 + $13 + $14 + $15) / hz}'
}

# CPU seconds of every live process and of the children each has reaped (utime + stime +
# cutime + cstime), summed: between two readings, the growth is what the whole machine ran,
# short-lived processes included once their parent reaped them.
all_cpu() {
    awk -v hz="$clk_tck" '
        FNR == 1 {
            i = index($0, ") ")
            if (i == 0) next
            split(substr($0, i + 2), f, " ")
            t += f[12] + f[13] + f[14] + f[15]
        }
        END { printf "%.3f", t / hz }' /proc/[0-9]*/stat 2>/dev/null
}

sub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a - b}'; }

clk_tck=$(getconf CLK_TCK)
cluster_out=${CLUSTER_OUT:-$workdir/cluster.jsonl}

# cluster_step GROUP ROUND LABEL N nats|plain SCENARIO ARGS…: fresh nodes, `loadtest SCENARIO`
# with --url every node and ARGS (which may use the placeholders @0 @1 @2 for node URLs and @ALL
# for all of them, comma-separated), then the JSON report with the step's facts added to
# $cluster_out. Around the loadtest run it reads the CPU seconds of the nodes, NATS, Cassandra,
# this script with the loadtest, and every process: what is left ("other") is load from outside
# the benchmark.
cluster_step() {
    local group=$1 round=$2 label=$3 n=$4 kind=$5 scenario=$6 i
    shift 6
    echo
    echo "================ cluster, round $round: $label ($n node(s), $kind, $scenario) ================"
    cluster_up "cl_${scenario}" "$n" "$kind"
    local all arg args=() pids
    all=$(IFS=,; echo "${node_urls[*]}")
    pids=$(IFS=,; echo "${node_pids[*]}")
    for arg in "$@"; do
        arg=${arg//@ALL/$all}
        for i in "${!node_urls[@]}"; do arg=${arg//@$i/${node_urls[i]}}; done
        args+=("$arg")
    done
    local cmd=("${loadgen_pin[@]}" "$loadtest_bin" "$scenario" --url "$all" "${args[@]}" --json)
    $cluster_nats && cmd+=(--nats-monitor "$CLUSTER_NATS_MONITOR")
    [[ $scenario == fanout ]] && cmd+=(--server-pid "$pids" --quiet)
    local nats_pid cass_pid c0_nodes c0_nats c0_cass c0_lt c0_all w0 load0
    nats_pid=$(listener_pid "${nats_url##*:}")
    cass_pid=$(listener_pid "${cql_nodes##*:}")
    load0=$(cut -d' ' -f1 /proc/loadavg)
    echo "\$ SPACECAST_JWT_SECRET=<per-run random> ${cmd[*]}"
    local out="$workdir/cluster-step.out"
    c0_nodes=$(cpu_seconds "${node_pids[@]}")
    c0_nats=$(cpu_seconds "$nats_pid")
    c0_cass=$(cpu_seconds "$cass_pid")
    c0_lt=$(script_cpu)
    c0_all=$(all_cpu)
    w0=$EPOCHREALTIME
    "${cmd[@]}" | tee "$out"
    local wall nodes_cpu nats_cpu cass_cpu lt_cpu total_cpu other_cpu nats_now
    wall=$(sub "${EPOCHREALTIME/,/.}" "${w0/,/.}")
    total_cpu=$(sub "$(all_cpu)" "$c0_all")
    nodes_cpu=$(sub "$(cpu_seconds "${node_pids[@]}")" "$c0_nodes")
    nats_cpu=$(sub "$(cpu_seconds "$nats_pid")" "$c0_nats")
    cass_cpu=$(sub "$(cpu_seconds "$cass_pid")" "$c0_cass")
    lt_cpu=$(sub "$(script_cpu)" "$c0_lt")
    other_cpu=$(awk -v a="$total_cpu" -v b="$nodes_cpu" -v c="$nats_cpu" -v d="$cass_cpu" -v e="$lt_cpu" \
        'BEGIN {o = a - b - c - d - e; printf "%.3f", (o < 0 ? 0 : o)}')
    nats_now=$(listener_pid "${nats_url##*:}")
    local warning=""
    if [[ $nats_now != "$nats_pid" ]]; then
        warning="NATS was restarted during the step (pid $nats_pid → $nats_now): discard it"
        echo "bench: WARNING: $warning" >&2
    fi
    echo "cpu s over the loadtest's ${wall} s: nodes ${nodes_cpu} (pids $pids), nats ${nats_cpu} (pid ${nats_pid:-?}), cassandra ${cass_cpu} (pid ${cass_pid:-?}), loadtest ${lt_cpu}, anything else ${other_cpu} (of ${total_cpu} on $(nproc) CPUs); load average $load0 → $(cut -d' ' -f1 /proc/loadavg)"
    tail -n 1 "$out" | jq -c --arg group "$group" --argjson round "$round" --arg step "$label" \
        --argjson nodes "$n" --arg kind "$kind" --argjson wall "$wall" \
        --argjson cpu_nodes "$nodes_cpu" --argjson cpu_nats "$nats_cpu" --argjson cpu_cass "$cass_cpu" \
        --argjson cpu_lt "$lt_cpu" --argjson cpu_other "$other_cpu" --argjson cpus "$(nproc)" \
        --arg load "$load0" --arg warning "$warning" \
        '. + {group: $group, round: $round, step: $step, nodes: $nodes, kind: $kind, wall_s: $wall,
              cpu_nodes_s: $cpu_nodes, cpu_nats_s: $cpu_nats, cpu_cassandra_s: $cpu_cass,
              cpu_loadtest_s: $cpu_lt, cpu_other_s: $cpu_other,
              other_pct: ($cpu_other / ($wall * $cpus) * 100), loadavg_before: $load,
              warning: $warning}' >>"$cluster_out"
    record "$out" "cql-cluster"
    cluster_down
}

# Warms Cassandra (a fresh JVM compiles its hot paths during the first minute of load) with a
# throwaway sends run on one node; nothing is recorded.
cluster_warmup() {
    ((CLUSTER_WARMUP > 0)) || return 0
    echo
    echo "================ cluster: warm-up (${CLUSTER_WARMUP} s of sends on one node, not recorded) ================"
    cluster_up cl_warmup 1 plain
    "${loadgen_pin[@]}" "$loadtest_bin" sends --url "${node_urls[0]}" --spaces "$SENDS_SPACES" \
        --concurrency "$SENDS_CONCURRENCY" --duration "$CLUSTER_WARMUP" >/dev/null
    cluster_down
}

# The sends part, one round: acknowledged sends/s and ack latency, 1 node vs 3 nodes, senders on
# the owner vs elsewhere, at SENDS_CONCURRENCY and at concurrency 1.
cluster_sends() {
    local round=$1 c group args
    for c in "$SENDS_CONCURRENCY" 1; do
        group="sends, $c concurrent"
        args=(--spaces "$SENDS_SPACES" --concurrency "$c" --duration "$CLUSTER_SENDS_DURATION"
            --warmup "$SENDS_WARMUP")
        cluster_step "$group" "$round" "1 node, no NATS" 1 plain sends "${args[@]}"
        cluster_step "$group" "$round" "1 node, cluster mode" 1 nats sends "${args[@]}"
        cluster_step "$group" "$round" "$CLUSTER_NODES nodes, senders on the owner" "$CLUSTER_NODES" nats \
            sends --send-url @0 "${args[@]}"
        cluster_step "$group" "$round" "$CLUSTER_NODES nodes, senders on a non-owner" "$CLUSTER_NODES" nats \
            sends --send-url @1 "${args[@]}"
        if ((c > 1)); then
            cluster_step "$group" "$round" "$CLUSTER_NODES nodes, senders spread over all" "$CLUSTER_NODES" \
                nats sends --send-url @ALL "${args[@]}"
        fi
    done
}

# The fan-out part, one round: one space, publishing through the owner (node 0), subscribers on
# the owner vs spread vs elsewhere.
cluster_fanout() {
    local round=$1
    local group="fanout, $FANOUT_SUBSCRIBERS subscribers @ $FANOUT_RATE msg/s"
    local args=(--subscribers "$FANOUT_SUBSCRIBERS" --rate "$FANOUT_RATE" --duration "$CLUSTER_FANOUT_DURATION"
        --send-url @0)
    cluster_step "$group" "$round" "1 node, no NATS" 1 plain fanout "${args[@]}"
    cluster_step "$group" "$round" "1 node, cluster mode" 1 nats fanout "${args[@]}"
    cluster_step "$group" "$round" "$CLUSTER_NODES nodes, subscribers on the owner" "$CLUSTER_NODES" nats \
        fanout "${args[@]}" --subscribe-url @0
    cluster_step "$group" "$round" "$CLUSTER_NODES nodes, subscribers spread over all" "$CLUSTER_NODES" nats \
        fanout "${args[@]}" --subscribe-url @ALL
    cluster_step "$group" "$round" "$CLUSTER_NODES nodes, subscribers on a non-owner" "$CLUSTER_NODES" nats \
        fanout "${args[@]}" --subscribe-url @1
}

# The failover part: this script is the loadtest's driver (see `loadtest failover`).
cluster_failover() {
    echo
    echo "================ cluster: failover ($CLUSTER_NODES nodes, $FAILOVER_KILLS kills) ================"
    cluster_up cl_failover "$CLUSTER_NODES" nats
    local all
    all=$(IFS=,; echo "${node_urls[*]}")
    local cmd=("${loadgen_pin[@]}" "$loadtest_bin" failover --url "$all" --nats-monitor "$CLUSTER_NATS_MONITOR"
        --spaces "$FAILOVER_SPACES" --rate "$FAILOVER_RATE" --kills "$FAILOVER_KILLS"
        --settle "$FAILOVER_SETTLE" --nats-url "$nats_url" --json)
    echo "\$ SPACECAST_JWT_SECRET=<per-run random> ${cmd[*]}"
    local out="$workdir/failover.out" line node space i t rc=0
    : >"$out"
    coproc LOADTEST { "${cmd[@]}"; }
    # Our own copies of the pipes: bash closes the coproc's descriptors as soon as it exits,
    # which would lose its last lines (the report).
    local lt_out lt_in lt_pid=$LOADTEST_PID
    exec {lt_out}<&"${LOADTEST[0]}" {lt_in}>&"${LOADTEST[1]}"
    while IFS= read -r line <&"$lt_out"; do
        case $line in
        "KILL "*)
            read -r _ node space <<<"$line"
            i=$(node_index "$node")
            # The kill time, µs on CLOCK_REALTIME (the loadtest's clock), read just before the signal.
            t=${EPOCHREALTIME/[.,]/}
            kill -KILL "${node_pids[i]}"
            echo "KILLED $t" >&"$lt_in"
            wait "${node_pids[i]}" 2>/dev/null || true
            node_pids[i]=
            echo "bench: killed $node (owner of $space) at $t"
            ;;
        "RESTART "*)
            read -r _ node <<<"$line"
            i=$(node_index "$node")
            node_start "$i" >/dev/null
            echo "RESTARTED" >&"$lt_in"
            echo "bench: restarted $node"
            ;;
        *)
            echo "$line"
            echo "$line" >>"$out"
            ;;
        esac
    done
    wait "$lt_pid" || rc=$?
    exec {lt_out}<&- {lt_in}>&-
    if ((rc != 0)); then
        echo "bench: loadtest failover failed (exit status $rc)" >&2
        return "$rc"
    fi
    tail -n 1 "$out" | jq -c '. + {group: "failover", step: "failover"}' >>"$cluster_out"
    record "$out" "cql-cluster"
    cluster_down
}

# Markdown tables of $cluster_out: per group, one row per step with the median over the rounds
# (and the range of the throughput), each with its ratio to the group's first row.
cluster_tables() {
    jq -rs '
      def r(x): if x == null then "—" else ((x * 100 | round) / 100 | tostring) end;
      def r0(x): if x == null then "—" else (x | round | tostring) end;
      def ratio(a; b): if b == null or b == 0 or a == null then "—" else (((a / b) * 100 | round) / 100 | tostring) + "×" end;
      def median: map(select(. != null)) | sort
        | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
          else (.[length / 2 - 1] + .[length / 2]) / 2 end;
      def owners(o): if o == null or (o | length) == 0 then "—"
        else ([o[] | (. // "none")] | group_by(.) | map("\(.[0]) (\(length))") | join(", ")) end;
      # Items grouped by key f, groups in order of first appearance (group_by would sort them).
      def groups(f): reduce .[] as $x ([];
        ($x | f) as $k
        | if any(.[]; (.[0] | f) == $k)
          then map(if (.[0] | f) == $k then . + [$x] else . end)
          else . + [[$x]] end);
      def per_send(cpu): (.acked + .warmup_acked) as $n | if $n == 0 then null else cpu * 1e6 / $n end;
      def sends_row: {
          step: .[0].step, rounds: length,
          rate: (map(.acked_per_sec) | median),
          lo: (map(.acked_per_sec) | min), hi: (map(.acked_per_sec) | max),
          p50: (map(.ack_latency_ms.p50_ms) | median), p99: (map(.ack_latency_ms.p99_ms) | median),
          errors: (map(.errors + .rejected) | add),
          owners: (map(owners(.owners_start) + " → " + owners(.owners_end)) | unique | join("; ")),
          node_us: (map(per_send(.cpu_nodes_s)) | median), nats_us: (map(per_send(.cpu_nats_s)) | median),
          cass_us: (map(per_send(.cpu_cassandra_s)) | median), other: (map(.other_pct) | median),
          warnings: (map(select(.warning != "") | .warning) | unique | join("; "))
        };
      def fanout_row: {
          step: .[0].step, rounds: length,
          rate: (map(.deliveries_per_sec) | median),
          p50: (map(.delivery_latency_ms.p50_ms) | median), p99: (map(.delivery_latency_ms.p99_ms) | median),
          ack99: (map(.publish_ack_ms.p99_ms) | median),
          node_us: (map(.server.cpu_us_per_delivery) | median),
          nats_s: (map(.cpu_nats_s) | median), other: (map(.other_pct) | median),
          bad: "\(map(.lost) | add) / \(map(.gaps) | add) / \(map(.duplicates) | add)",
          owners: (map(owners(.owners_end)) | unique | join("; ")),
          warnings: (map(select(.warning != "") | .warning) | unique | join("; "))
        };
      def note(w): if w == "" then "" else " (" + w + ")" end;
      (map(select(.scenario == "sends")) | groups(.group)) as $sends
      | (map(select(.scenario == "fanout")) | groups(.group)) as $fanout
      | (map(select(.scenario == "failover"))) as $failover
      | ([ $sends[] |
          (.[0].group) as $g | (groups(.step) | map(sends_row)) as $rows | $rows[0] as $b |
          "\n#### \($g) (median of \($b.rounds) rounds)\n",
          "| step | owner (start → end) | sends/s (range) | × | p50 ms | × | p99 ms | × | errors | node CPU µs/send | × | NATS CPU µs/send | Cassandra CPU µs/send | other load % |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
          ($rows[] | "| \(.step)\(note(.warnings)) | \(.owners) | \(r0(.rate)) (\(r0(.lo))–\(r0(.hi))) | \(ratio(.rate; $b.rate)) | \(r(.p50)) | \(ratio(.p50; $b.p50)) | \(r(.p99)) | \(ratio(.p99; $b.p99)) | \(.errors) | \(r0(.node_us)) | \(ratio(.node_us; $b.node_us)) | \(r0(.nats_us)) | \(r0(.cass_us)) | \(r0(.other)) |")
        ] | join("\n")),
        ([ $fanout[] |
          (.[0].group) as $g | (groups(.step) | map(fanout_row)) as $rows | $rows[0] as $b |
          "\n#### \($g) (median of \($b.rounds) rounds)\n",
          "| step | owner | deliveries/s | × | delivery p50 ms | × | p99 ms | × | publish ack p99 ms | × | node CPU µs/delivery | × | NATS CPU s | other load % | lost / gaps / dup |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
          ($rows[] | "| \(.step)\(note(.warnings)) | \(.owners) | \(r0(.rate)) | \(ratio(.rate; $b.rate)) | \(r(.p50)) | \(ratio(.p50; $b.p50)) | \(r(.p99)) | \(ratio(.p99; $b.p99)) | \(r(.ack99)) | \(ratio(.ack99; $b.ack99)) | \(r(.node_us)) | \(ratio(.node_us; $b.node_us)) | \(r(.nats_s)) | \(r0(.other)) | \(.bad) |")
        ] | join("\n")),
        ([ $failover[] |
          "\n#### failover: \(.kills | length) kills of a space owner (\(.spaces) spaces, \(.rate_per_space_per_node) sends/s per space per node)\n",
          "| kill | killed | space | new owner | failover ms | lease expired after the kill, ms | takeover after expiry, ms | other spaces of the node (slowest ms) | sends in flight at the kill (longest ms) | errors meanwhile |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
          (.kills[] | "| \(.round) | \(.killed) | …\(.space[-8:]) | \(.new_owner // "?") | \(r(.failover_ms)) | \(r(.lease_expired_after_kill_ms)) | \(r(.takeover_after_expiry_ms)) | \(.other_spaces) (\(r(.other_spaces_max_ms))) | \(.in_flight_at_kill | to_entries | map("\(.key) \(.value)") | join(", ")) (\(r(.in_flight_longest_ms))) | \(.errors_during | to_entries | map("\(.key) \(.value)") | join(", ")) |"),
          "",
          "lease expiry after the kill: min \(r(.lease_expired_after_kill.min_ms)), median \(r(.lease_expired_after_kill.median_ms)), max \(r(.lease_expired_after_kill.max_ms)) ms; takeover after the expiry: min \(r(.takeover_after_expiry.min_ms)), median \(r(.takeover_after_expiry.median_ms)), max \(r(.takeover_after_expiry.max_ms)) ms",
          "failover: min \(r(.failover.min_ms)) ms, median \(r(.failover.median_ms)) ms, mean \(r(.failover.mean_ms)) ms, max \(r(.failover.max_ms)) ms over \(.failover.count) kills (\(.failed_kills) without failover); \(.acked) of \(.sends) sends acknowledged, duplicate acknowledged seqs \(.duplicate_acked_seqs)"
        ] | join("\n"))
    ' "$cluster_out"
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
if [[ $mode == cluster || $mode == failover ]]; then
    [[ -n ${CLUSTER_OUT:-} ]] || : >"$cluster_out"
    echo "nats:      $nats_url (scripts/nats.sh, unpinned); monitoring $CLUSTER_NATS_MONITOR"
    echo "cluster:   every node pinned to CPUs ${SERVER_CPUS:-any}: $CLUSTER_NODES nodes share them"
    echo "load:      $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min averages at the start)"
    echo "rounds:    $CLUSTER_ROUNDS (the steps of each part run in turn, round after round)"
    for part in $CLUSTER_PARTS; do
        case $part in
        sends | fanout | failover) ;;
        *)
            echo "bench: CLUSTER_PARTS: unknown part $part (sends, fanout, failover)" >&2
            exit 2
            ;;
        esac
    done
    has_part() { [[ " $CLUSTER_PARTS " == *" $1 "* ]]; }
    if has_part sends || has_part fanout; then
        cluster_warmup
        for ((round = 1; round <= CLUSTER_ROUNDS; round++)); do
            if has_part sends; then cluster_sends "$round"; fi
            if has_part fanout; then cluster_fanout "$round"; fi
        done
    fi
    if has_part failover; then cluster_failover; fi
    echo
    echo "================ the cluster: tables ================"
    cluster_tables
fi
if [[ $mode == socketio ]]; then
    compare_out="$workdir/compare.jsonl"
    : >"$compare_out"
    for ((round = 1; round <= SOCKETIO_ROUNDS; round++)); do
        for step in $SOCKETIO_STEPS; do
            subs=${step%%:*}
            rate=${step##*:}
            for target in spacecast socketio; do
                compare_run "$target" "$subs subs @ $rate msg/s" fanout --subscribers "$subs" \
                    --rate "$rate" --duration "$SOCKETIO_DURATION" --processes "$COMPARE_PROCESSES" \
                    --source-addrs "$COMPARE_SOURCE_ADDRS" --quiet
            done
        done
    done
    table=$("$loadtest_bin" compare "$compare_out")
    echo
    echo "================ Socket.IO / native ================"
    echo "$table"
    if [[ ${BENCH_WRITE:-0} == 1 ]]; then
        {
            echo
            echo "### $(date -u +%Y-%m-%d) — commit $commit, \`scripts/bench.sh socketio\`"
            echo
            echo "$(nproc) vCPU ${cpu_model:-unknown CPU}; server on CPUs ${SERVER_CPUS:-any}, loadtest on CPUs ${LOADGEN_CPUS:-any}; ${SOCKETIO_DURATION} s per step, one space, the same REST publisher; \`spacecast\` = the native stream, \`socketio\` = Socket.IO."
            echo
            echo "$table"
        } >>"$root/BENCHMARKS.md"
        echo "bench: table appended to BENCHMARKS.md"
    fi
fi
if [[ $mode == native ]]; then
    native_out=${NATIVE_OUT:-$workdir/native.jsonl}
    : >"$native_out"
    # native_run LABEL LIMIT ARGS...: a fresh server (per-user send limit LIMIT), `loadtest
    # ARGS`; the JSON line, labelled, goes to $native_out.
    native_run() {
        local label=$1 limit=$2
        shift 2
        SPACECAST_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
        export SPACECAST_JWT_SECRET
        [[ $BENCH_STORE == cql ]] && cql_keyspace=$(new_keyspace native)
        echo
        echo "================ native: $label ================"
        SPACECAST_SEND_RATE_LIMIT=$limit start_server native "${spacecast_args[@]}"
        local cmd=("${loadgen_pin[@]}" "$loadtest_bin" "$@" --url "$url" --json)
        echo "\$ SPACECAST_SEND_RATE_LIMIT=$limit ${cmd[*]}"
        "${cmd[@]}" | tee "$workdir/native.out"
        tail -n 1 "$workdir/native.out" | sed "s/^{/{\"label\":\"$label\",/" >>"$native_out"
    }
    native_sends=(--concurrency "$SENDS_CONCURRENCY" --users "$NATIVE_USERS" --duration "$NATIVE_DURATION" --warmup 2)
    for ((round = 1; round <= NATIVE_ROUNDS; round++)); do
        for kind in space7 v1 v1-rich; do
            native_run "send $kind" 0 sends --kind "$kind" --spaces "$SENDS_SPACES" "${native_sends[@]}"
            stop_server
            drop_keyspace
        done
        native_run "send v1, rate limit on" "$NATIVE_HIGH_LIMIT" sends --kind v1 --spaces "$SENDS_SPACES" "${native_sends[@]}"
        stop_server
        drop_keyspace
        native_run "react, one hot message" 0 sends --kind react --spaces 1 "${native_sends[@]}"
        stop_server
        drop_keyspace
    done
    native_run "fill $NATIVE_FILL" 0 sends --kind v1 --spaces 1 --concurrency "$SENDS_CONCURRENCY" \
        --users "$NATIVE_USERS" --max-sends "$NATIVE_FILL" --duration 3600
    space=$(tail -n 1 "$workdir/native.out" | jq -r '.space_ids[0]')
    filled=$(tail -n 1 "$workdir/native.out" | jq -r '.acked')
    # A cursor is the direction byte (0xb1 backward) and the seq, base64url: the middle of the space.
    middle=$(python3 -c "import base64,sys; n=int(sys.argv[1]); print(base64.urlsafe_b64encode(bytes([0xb1])+(n//2).to_bytes(8,'big')).decode().rstrip('='))" "$filled")
    base="/v1/spaces/$space/messages?limit=50"
    paths=(
        "$base" "$base&cursor=$middle" "$base&direction=forward"
        "$base&sender_id=lt-user-0" "$base&cursor=$middle&sender_id=lt-user-0"
        "$base&msgtype=x.none" "$base&cursor=$middle&msgtype=x.none"
        "/v1/spaces/$space/stats"
    )
    path_args=()
    for p in "${paths[@]}"; do path_args+=(--path "$p"); done
    cmd=("${loadgen_pin[@]}" "$loadtest_bin" reads --url "$url" --concurrency 1 \
        --duration "$NATIVE_READ_DURATION" --warmup 2 "${path_args[@]}" --json)
    echo
    echo "================ native: reads over $filled messages ================"
    echo "\$ ${cmd[*]}"
    "${cmd[@]}" | tee "$workdir/native.out"
    tail -n 1 "$workdir/native.out" | sed "s/^{/{\"label\":\"reads over $filled messages\",/" >>"$native_out"
    if [[ -r /proc/$server_pid/status ]]; then
        awk '/^VmRSS:/ {printf "server rss after the reads: %.0f MiB\n", $2 / 1024}' "/proc/$server_pid/status"
    fi
    echo "data dir: $(du -sh "$workdir/native-data" | cut -f1) for $filled messages"
    stop_server
    drop_keyspace
    echo
    echo "================ native: summary (JSON lines in $native_out) ================"
    jq -r 'select(.scenario == "sends") | "\(.label): \(.acked_per_sec) /s, ack p50 \(.ack_latency_ms.p50_ms) ms, p99 \(.ack_latency_ms.p99_ms) ms, errors \(.errors)"' "$native_out"
    jq -r 'select(.scenario == "reads") | .paths[] | "\(.path): p50 \(.latency_ms.p50_ms) ms, p99 \(.latency_ms.p99_ms) ms, \(.ok_per_sec) /s, errors \(.errors)"' "$native_out"
fi
if [[ $mode == unread ]]; then
    SPACECAST_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    export SPACECAST_JWT_SECRET
    [[ $BENCH_STORE == cql ]] && cql_keyspace=$(new_keyspace unread)
    SPACECAST_SEND_RATE_LIMIT=0 SPACECAST_WRITE_RATE_LIMIT=0 start_server unread
    cmd=("${loadgen_pin[@]}" "$loadtest_bin" unread --url "$url" --spaces "$UNREAD_SPACES" \
        --concurrency "$UNREAD_CONCURRENCY" --duration "$UNREAD_DURATION" --warmup 2 --json)
    echo
    echo "================ unread: a user in $UNREAD_SPACES spaces ($BENCH_STORE store) ================"
    echo "\$ ${cmd[*]}"
    "${cmd[@]}" | tee "$workdir/unread.out"
    stop_server
    drop_keyspace
fi
if [[ $mode == search ]]; then
    SPACECAST_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    export SPACECAST_JWT_SECRET
    [[ $BENCH_STORE == cql ]] && cql_keyspace=$(new_keyspace search)
    SPACECAST_SEND_RATE_LIMIT=0 SPACECAST_WRITE_RATE_LIMIT=0 start_server search
    cmd=("${loadgen_pin[@]}" "$loadtest_bin" search --url "$url" --messages "$SEARCH_MESSAGES" \
        --spaces "$SEARCH_SPACES" --setup-concurrency "$SEARCH_CONCURRENCY" \
        --concurrency "$SEARCH_QUERY_CONCURRENCY" --duration "$SEARCH_DURATION" --warmup 2 --json)
    echo
    echo "================ search: $SEARCH_MESSAGES messages in $SEARCH_SPACES spaces ($BENCH_STORE store) ================"
    echo "\$ ${cmd[*]}"
    "${cmd[@]}" | tee "$workdir/search.out"
    if [[ -r /proc/$server_pid/status ]]; then
        awk '/^VmRSS:/ {printf "server rss after the queries: %.0f MiB\n", $2 / 1024}' "/proc/$server_pid/status"
    fi
    echo "search index: $(du -sh "$workdir/search-data/search" 2>/dev/null | cut -f1 || echo unknown)"
    stop_server
    drop_keyspace
fi
if [[ $mode == presence ]]; then
    SPACECAST_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    export SPACECAST_JWT_SECRET
    for step in below above counts; do
        case $step in
        below) flags=() ;;
        above) flags=(--presence-max-subscribers 10 --presence-count-interval 3600s) ;;
        counts) flags=(--presence-max-subscribers 10 --presence-count-interval 1s) ;;
        esac
        [[ $BENCH_STORE == cql ]] && cql_keyspace=$(new_keyspace presence)
        start_server "presence-$step" "${flags[@]}"
        cmd=("${loadgen_pin[@]}" "$loadtest_bin" presence --url "$url" \
            --subscribers "$PRESENCE_SUBSCRIBERS" --changes "$PRESENCE_CHANGES" \
            --window "$PRESENCE_WINDOW" --server-pid "$server_pid" --json)
        echo
        echo "================ presence ($step): $PRESENCE_SUBSCRIBERS subscribers + a changer, server flags: ${flags[*]} ================"
        echo "\$ ${cmd[*]}"
        "${cmd[@]}" | tee "$workdir/presence-$step.out"
        record "$workdir/presence-$step.out" "$BENCH_STORE"
        stop_server
        drop_keyspace
    done
fi
if [[ $mode == presence-cluster ]]; then
    saved_args=("${spacecast_args[@]}")
    spacecast_args+=(--presence-timeout 600s --max-connections 19000 --max-http-connections 512)
    for step in below above; do
        case $step in
        below) subs=$PRESENCE_CLUSTER_BELOW window=$PRESENCE_WINDOW ;;
        above) subs=$PRESENCE_CLUSTER_SUBSCRIBERS window=$PRESENCE_CLUSTER_WINDOW ;;
        esac
        cluster_up "presence_$step" 3 nats
        urls=$(IFS=,; echo "${node_urls[*]}")
        pids=$(IFS=,; echo "${node_pids[*]}")
        cmd=("${loadgen_pin[@]}" "$loadtest_bin" presence --url "$urls" \
            --subscribers "$subs" --changes "$PRESENCE_CHANGES" --window "$window" \
            --connect-concurrency 128 --server-pid "$pids" --json)
        echo
        echo "================ presence-cluster ($step): $subs subscribers + a changer over 3 nodes ================"
        echo "\$ ${cmd[*]}"
        "${cmd[@]}" | tee "$workdir/presence-cluster-$step.out"
        record "$workdir/presence-cluster-$step.out" cql
        cluster_down
    done
    spacecast_args=("${saved_args[@]}")
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
