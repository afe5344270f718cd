#!/usr/bin/env bash
# Benchmark runner: starts a throwaway Spacecast server on loopback and drives
# it with the `loadtest` binary.
#
#   scripts/bench.sh [sends|fanout|all]        (default: all)
#
# Each scenario gets a fresh server (own temp data dir, random JWT secret) so
# results do not depend on what ran before. Defaults can be overridden through
# the environment:
#   SENDS_SPACES=8 SENDS_CONCURRENCY=64 SENDS_DURATION=20 SENDS_WARMUP=2
#   FANOUT_SUBSCRIBERS=1000 FANOUT_RATE=100 FANOUT_DURATION=20
#   SPACECAST_BIN=path   use this server binary instead of building spacecast-api
#   BENCH_OUT=file       also append each scenario's JSON result line to file
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

mode=${1:-all}
case "$mode" in
sends | fanout | all) ;;
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
READY_TIMEOUT_S=30
STOP_TIMEOUT_S=10

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}

command -v curl >/dev/null || {
    echo "bench: curl is required" >&2
    exit 1
}

# ---------------------------------------------------------------- build
if [[ -n ${SPACECAST_BIN:-} ]]; then
    build_cmd=(cargo build --release -p spacecast-loadtest)
    server_bin=$SPACECAST_BIN
else
    build_cmd=(cargo build --release -p spacecast-api -p spacecast-loadtest)
    server_bin=$target_dir/release/spacecast
fi
loadtest_bin=$target_dir/release/loadtest
echo "\$ ${build_cmd[*]}"
"${build_cmd[@]}"
[[ -x $server_bin ]] || {
    echo "bench: server binary $server_bin not found" >&2
    exit 1
}

# Both the server and the loadtest inherit this limit (1000+ sockets each).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- server
workdir=$(mktemp -d "${TMPDIR:-/tmp}/spacecast-bench.XXXXXX")
server_pid=
server_log=

stop_server() {
    [[ -n $server_pid ]] || return 0
    local pid=$server_pid status=0
    server_pid=
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + STOP_TIMEOUT_S))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "bench: server ignored SIGTERM for ${STOP_TIMEOUT_S} s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || status=$?
    echo "server stopped (exit status $status)"
}

cleanup() {
    local rc=$?
    trap - EXIT
    if ((rc != 0)) && [[ -n $server_log && -s $server_log ]]; then
        echo "---- last lines of the server log ($server_log) ----" >&2
        tail -n 40 "$server_log" >&2 || true
    fi
    stop_server || true
    rm -rf "$workdir"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback port nothing listens on, below the usual ephemeral range.
free_port() {
    local port _
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "bench: no free port found" >&2
    return 1
}

# start_server NAME: starts a fresh server, sets $url once /readyz is 200.
start_server() {
    local name=$1 port data_dir
    port=$(free_port)
    data_dir="$workdir/$name-data"
    mkdir -p "$data_dir"
    server_log="$workdir/$name-server.log"
    url="http://127.0.0.1:$port"
    echo "\$ $server_bin serve --listen 127.0.0.1:$port --data-dir $data_dir --jwt-secret \"\$SPACECAST_JWT_SECRET\""
    "$server_bin" serve --listen "127.0.0.1:$port" --data-dir "$data_dir" \
        --jwt-secret "$SPACECAST_JWT_SECRET" >"$server_log" 2>&1 &
    server_pid=$!

    local deadline=$((SECONDS + READY_TIMEOUT_S)) code
    while :; do
        code=$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/readyz" || true)
        [[ $code == 200 ]] && break
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "bench: server exited before becoming ready" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "bench: $url/readyz not 200 within ${READY_TIMEOUT_S} s (last: $code)" >&2
            exit 1
        fi
        sleep 0.2
    done
    local banner
    banner=$(grep -m1 'spacecast listening on' "$server_log" || true)
    echo "server ready: ${banner:-"(no 'spacecast listening on' line in its output)"}"
}

# run_scenario NAME ARGS...: fresh server, then the loadtest with ARGS.
run_scenario() {
    local name=$1
    shift
    SPACECAST_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    export SPACECAST_JWT_SECRET
    echo
    echo "================ $name ================"
    start_server "$name"
    local cmd=("$loadtest_bin" "$name" --url "$url" "$@" --json)
    echo "\$ SPACECAST_JWT_SECRET=<per-run random> ${cmd[*]}"
    local out="$workdir/$name.out"
    "${cmd[@]}" | tee "$out"
    if [[ -n ${BENCH_OUT:-} ]]; then
        tail -n 1 "$out" >>"$BENCH_OUT"
    fi
    stop_server
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
echo "note:      server and loadtest share this machine"

if [[ $mode == sends || $mode == all ]]; then
    run_scenario sends --spaces "$SENDS_SPACES" --concurrency "$SENDS_CONCURRENCY" \
        --duration "$SENDS_DURATION" --warmup "$SENDS_WARMUP"
fi
if [[ $mode == fanout || $mode == all ]]; then
    run_scenario fanout --subscribers "$FANOUT_SUBSCRIBERS" --rate "$FANOUT_RATE" \
        --duration "$FANOUT_DURATION"
fi
