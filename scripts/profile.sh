#!/usr/bin/env bash
# CPU profile of the server under load: starts a throwaway release Spacecast
# server pinned to one CPU, drives it with the `loadtest` binary pinned to
# another, and samples the server with `perf record` during the measured
# window only (after the loadtest's set-up: joins, connections, warm-up).
#
#   scripts/profile.sh [fanout|sends]        (default: fanout)
#
# fanout: loadtest fanout --subscribers $FANOUT_SUBSCRIBERS --rate $FANOUT_RATE
#         (one REST publisher, N WebSocket subscribers: the stream's write path)
# sends:  loadtest sends --spaces $SENDS_SPACES --concurrency $SENDS_CONCURRENCY
#         (closed-loop acknowledged REST sends: the request → commit → ack path)
#
# Writes into $PROFILE_OUT (default: a new directory under /tmp):
#   perf.data           the samples (perf report -i perf.data to browse them)
#   report.txt          perf report --no-children --sort symbol (self time, top lines)
#   folded.txt          collapsed stacks, root;...;leaf COUNT (flame-graph input)
#   areas.txt           share of the server's samples by area (see classify below)
#   loadtest.out        the loadtest's report, server.log the server's output
#   summary.txt         all of the above in one text (also printed)
#
# Environment:
#   SPACECAST_BIN=path     server binary (default: build spacecast-api + loadtest in release)
#   LOADTEST_BIN=path      loadtest binary (default: next to the built server)
#   PROFILE_OUT=dir        output directory (created; default mktemp -d)
#   PROFILE_SECONDS=N      seconds sampled (default: the loadtest's duration minus 3)
#   PROFILE_FREQ=999       sampling frequency (Hz)
#   PROFILE_CALLGRAPH=dwarf  dwarf (default; --call-graph dwarf,16384) or fp (-g, needs
#                          frame pointers: RUSTFLAGS="-C force-frame-pointers=yes")
#   FANOUT_SUBSCRIBERS=1000 FANOUT_RATE=300 FANOUT_DURATION=15
#   FANOUT_TARGET=spacecast  the subscribers' protocol: spacecast (the native stream) or socketio
#   SENDS_SPACES=8 SENDS_CONCURRENCY=64 SENDS_DURATION=15 SENDS_WARMUP=2
#   SERVER_CPUS=0 LOADGEN_CPUS=1   taskset CPUs of the server and of the loadtest
#   PERF_CPUS=$LOADGEN_CPUS        taskset CPUs of perf's own writer (empty: unpinned)
#
# Needs perf (linux-perf), curl, taskset, awk; run as root or with
# kernel.perf_event_paranoid <= 1.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

mode=${1:-fanout}
case "$mode" in
fanout | sends) ;;
-h | --help)
    usage
    exit 0
    ;;
*)
    usage >&2
    exit 2
    ;;
esac

FANOUT_SUBSCRIBERS=${FANOUT_SUBSCRIBERS:-1000}
FANOUT_RATE=${FANOUT_RATE:-300}
FANOUT_DURATION=${FANOUT_DURATION:-15}
FANOUT_TARGET=${FANOUT_TARGET:-spacecast}
SENDS_SPACES=${SENDS_SPACES:-8}
SENDS_CONCURRENCY=${SENDS_CONCURRENCY:-64}
SENDS_DURATION=${SENDS_DURATION:-15}
SENDS_WARMUP=${SENDS_WARMUP:-2}
PROFILE_FREQ=${PROFILE_FREQ:-999}
PROFILE_CALLGRAPH=${PROFILE_CALLGRAPH:-dwarf}
SERVER_CPUS=${SERVER_CPUS-0}
LOADGEN_CPUS=${LOADGEN_CPUS-1}
READY_TIMEOUT_S=30
STOP_TIMEOUT_S=10
# Longest wait for the loadtest's set-up (joins and connections) to finish.
SETUP_TIMEOUT_S=300

if [[ $mode == fanout ]]; then
    duration=$FANOUT_DURATION
    # fanout: "loadtest: subscribers connected in X s" (then the measured window starts)
    marker='subscribers connected in'
    delay=1
    loadtest_args=(fanout --target "$FANOUT_TARGET" --subscribers "$FANOUT_SUBSCRIBERS"
        --rate "$FANOUT_RATE" --duration "$FANOUT_DURATION")
else
    duration=$SENDS_DURATION
    # sends: "loadtest: W workers sending for D s (+U s warm-up)"
    marker='workers sending for'
    delay=$SENDS_WARMUP
    loadtest_args=(sends --spaces "$SENDS_SPACES" --concurrency "$SENDS_CONCURRENCY"
        --duration "$SENDS_DURATION" --warmup "$SENDS_WARMUP")
fi
PROFILE_SECONDS=${PROFILE_SECONDS:-$((duration > 4 ? duration - 3 : 1))}
if ((PROFILE_SECONDS + 1 > duration)); then
    echo "profile: PROFILE_SECONDS=$PROFILE_SECONDS does not fit in the loadtest's $duration s" >&2
    exit 2
fi

case "$PROFILE_CALLGRAPH" in
dwarf) callgraph=(--call-graph "dwarf,16384") ;;
fp) callgraph=(-g) ;;
*)
    echo "profile: PROFILE_CALLGRAPH=$PROFILE_CALLGRAPH: use dwarf or fp" >&2
    exit 2
    ;;
esac

PERF_CPUS=${PERF_CPUS-$LOADGEN_CPUS}
server_pin=()
loadgen_pin=()
perf_pin=()
if [[ -n $PERF_CPUS ]]; then perf_pin=(taskset -c "$PERF_CPUS"); fi
if [[ -n $SERVER_CPUS ]]; then server_pin=(taskset -c "$SERVER_CPUS"); fi
if [[ -n $LOADGEN_CPUS ]]; then loadgen_pin=(taskset -c "$LOADGEN_CPUS"); fi

for tool in perf curl awk; do
    command -v "$tool" >/dev/null || {
        echo "profile: $tool is required" >&2
        exit 1
    }
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}

# ---------------------------------------------------------------- build
if [[ -n ${SPACECAST_BIN:-} ]]; then
    server_bin=$SPACECAST_BIN
    loadtest_bin=${LOADTEST_BIN:-$(dirname "$SPACECAST_BIN")/loadtest}
    if [[ ! -x $loadtest_bin ]]; then
        echo "\$ cargo build --release -p spacecast-loadtest"
        cargo build --release -p spacecast-loadtest
        loadtest_bin=$target_dir/release/loadtest
    fi
else
    echo "\$ cargo build --release -p spacecast-api -p spacecast-loadtest"
    cargo build --release -p spacecast-api -p spacecast-loadtest
    server_bin=$target_dir/release/spacecast
    loadtest_bin=${LOADTEST_BIN:-$target_dir/release/loadtest}
fi
for bin in "$server_bin" "$loadtest_bin"; do
    if [[ ! -x $bin ]]; then
        echo "profile: binary $bin not found" >&2
        exit 1
    fi
done

if [[ -n ${PROFILE_OUT:-} ]]; then
    out=$PROFILE_OUT
    mkdir -p "$out"
else
    out=$(mktemp -d "${TMPDIR:-/tmp}/spacecast-profile.XXXXXX")
fi
out=$(cd "$out" && pwd)

# Both the server and the loadtest inherit this limit (1000+ sockets each).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- server
workdir=$(mktemp -d "${TMPDIR:-/tmp}/spacecast-profile-run.XXXXXX")
server_pid=
loadtest_pid=
server_log=$out/server.log
script=profile
# shellcheck source=scripts/lib/server.sh
. "$root/scripts/lib/server.sh"


cleanup() {
    local rc=$?
    trap - EXIT
    if [[ -n $loadtest_pid ]] && kill -0 "$loadtest_pid" 2>/dev/null; then
        kill -TERM "$loadtest_pid" 2>/dev/null || true
        wait "$loadtest_pid" 2>/dev/null || true
    fi
    if ((rc != 0)) && [[ -s $server_log ]]; then
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

# Server CPU time (utime + stime, clock ticks) from /proc/PID/stat.
cpu_ticks() {
    # The command name (field 2) may hold spaces: cut everything up to ") ".
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    # shellcheck disable=SC2086 # word splitting into fields is the point
    set -- $stat
    echo $((${12} + ${13}))
}

SPACECAST_JWT_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export SPACECAST_JWT_SECRET
port=$(free_port)
data_dir=$workdir/data
mkdir -p "$data_dir"
url="http://127.0.0.1:$port"
echo "\$ ${server_pin[*]} $server_bin serve --listen 127.0.0.1:$port --data-dir $data_dir --jwt-secret \"\$SPACECAST_JWT_SECRET\""
"${server_pin[@]}" "$server_bin" serve --listen "127.0.0.1:$port" --data-dir "$data_dir" \
    --jwt-secret "$SPACECAST_JWT_SECRET" >"$server_log" 2>&1 &
server_pid=$!

wait_ready "$url/readyz" server
echo "server ready (pid $server_pid) on $url"

# ---------------------------------------------------------------- load + perf
loadtest_cmd=("${loadgen_pin[@]}" "$loadtest_bin" "${loadtest_args[@]}" --url "$url")
echo "\$ SPACECAST_JWT_SECRET=<per-run random> ${loadtest_cmd[*]}"
loadtest_err=$out/loadtest.err
"${loadtest_cmd[@]}" >"$out/loadtest.out" 2>"$loadtest_err" &
loadtest_pid=$!

deadline=$((SECONDS + SETUP_TIMEOUT_S))
until grep -q "$marker" "$loadtest_err" 2>/dev/null; do
    if ! kill -0 "$loadtest_pid" 2>/dev/null; then
        cat "$loadtest_err" >&2
        echo "profile: the loadtest exited during its set-up" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "profile: the loadtest's set-up took over ${SETUP_TIMEOUT_S} s" >&2
        exit 1
    fi
    sleep 0.1
done
sleep "$delay"

perf_cmd=(perf record -F "$PROFILE_FREQ" "${callgraph[@]}" -p "$server_pid" -o "$out/perf.data"
    -- sleep "$PROFILE_SECONDS")
echo "\$ ${perf_pin[*]} ${perf_cmd[*]}"
ticks0=$(cpu_ticks "$server_pid")
"${perf_pin[@]}" "${perf_cmd[@]}" 2>"$out/perf-record.log"
ticks1=$(cpu_ticks "$server_pid")
clk_tck=$(getconf CLK_TCK)

if ! wait "$loadtest_pid"; then
    loadtest_pid=
    cat "$loadtest_err" >&2
    echo "profile: the loadtest failed" >&2
    exit 1
fi
loadtest_pid=
server_rss=$(awk '/^VmRSS:/ {printf "%.0f MiB", $2 / 1024}' "/proc/$server_pid/status")
stop_server

# ---------------------------------------------------------------- reports
echo "\$ perf report --no-children --sort symbol --percent-limit 0.5 --stdio -g none"
perf report -i "$out/perf.data" --no-children --sort symbol --percent-limit 0.5 --stdio \
    -g none --no-inline 2>/dev/null | sed -E -e '/^$/d' -e 's/[[:space:]]+(-[[:space:]]+)*$//' \
    >"$out/report.txt"

# Collapsed stacks: one line per distinct stack, root first, with its sample count.
perf script -i "$out/perf.data" -F ip,sym --no-inline 2>/dev/null | awk '
    function flush() {
        if (n > 0) {
            s = frames[n]
            for (i = n - 1; i >= 1; i--) s = s ";" frames[i]
            count[s]++
        }
        n = 0
    }
    /^[[:space:]]*$/ { flush(); next }
    {
        $1 = ""
        sub(/^ +/, "")
        sub(/\+0x[0-9a-f]+$/, "")
        gsub(/;/, ":")
        if ($0 == "") $0 = "[unknown]"
        frames[++n] = $0
    }
    END { flush(); for (s in count) print s, count[s] }
' | sort >"$out/folded.txt"

# Areas: each sample goes to the first rule that matches it. Kernel write paths
# are matched anywhere in the stack (the leaf is deep in TCP); allocator and
# memcpy by the leaf; library areas by any frame of that library.
awk '
    function any(re,   i) { for (i = 1; i <= nf; i++) if (f[i] ~ re) return 1; return 0 }
    function area() {
        if (any("tcp_sendmsg|sock_sendmsg|sock_write_iter|sys_sendto|sys_sendmsg")) return "syscalls: socket write/send (TCP tx)"
        if (any("sys_fsync|sys_fdatasync|do_fsync|sync_file_range|file_write_and_wait|blk_mq|io_schedule")) return "syscalls: fsync (store durability)"
        if (any("ext4_|xfs_|generic_perform_write|sys_pwrite|sys_pread|sys_fallocate|sys_openat|sys_unlink|sys_rename")) return "syscalls: file I/O (store)"
        if (any("sys_read|sys_readv|sys_recvfrom|sys_recvmsg|tcp_recvmsg")) return "syscalls: socket read/recv"
        if (any("sys_epoll|ep_poll")) return "syscalls: epoll"
        if (any("sys_futex|futex_wait|futex_wake|eventfd")) return "syscalls: futex/eventfd (wake-ups)"
        if (any("sys_mprotect|sys_mmap|sys_munmap|sys_brk|sys_madvise")) return "malloc/free"
        if (any("entry_SYSCALL|do_syscall_64")) return "syscalls: other"
        if (any("irqentry|asm_sysvec|asm_common_interrupt|do_softirq|net_rx_action")) return "kernel: irq/softirq (incl. loopback rx)"
        if (leaf ~ /memcpy|memmove|memset/) return "memcpy/memmove/memset"
        if (leaf ~ /malloc|free|realloc|calloc|_int_|tcache|arena|sdallocx|mallocx|__rdl_|__rust_(alloc|dealloc|realloc)/) return "malloc/free"
        if (any("serde_json|serde::")) return "serde_json"
        if (any("tungstenite")) return "tungstenite framing"
        if (any("socketioxide|engineioxide")) return "socketioxide/engineioxide"
        if (any("tokio::sync::broadcast|broadcast::")) return "broadcast"
        if (any("fjall|lsm_tree|value_log")) return "store (fjall)"
        if (any("jsonwebtoken|sha2|hmac|ring::")) return "jwt/crypto"
        if (any("hyper::|warp::|http::|h2::|httparse")) return "http (hyper/warp)"
        if (any("tracing|prometheus")) return "tracing/metrics"
        if (any("tokio::runtime|tokio::task|tokio::sync|tokio::time|parking_lot|std::sync")) return "tokio scheduler/sync"
        if (leaf ~ /^0x|unknown/) return "unknown"
        return "other"
    }
    {
        c = $NF
        $NF = ""
        nf = split($0, f, ";")
        leaf = f[nf]
        total += c
        a = area()
        sum[a] += c
    }
    END {
        for (a in sum) printf "%6.1f%%  %7d  %s\n", 100 * sum[a] / total, sum[a], a
        printf "%6.1f%%  %7d  %s\n", 100, total, "total samples"
    }
' "$out/folded.txt" | sort -k1,1nr >"$out/areas.txt"

cpu_s=$(awk -v t=$((ticks1 - ticks0)) -v h="$clk_tck" 'BEGIN { printf "%.2f", t / h }')
{
    echo "================ profile: $mode ================"
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit:    $(git rev-parse --short HEAD 2>/dev/null || echo "no commit")"
    echo "server:    $server_bin (CPUs ${SERVER_CPUS:-any}); loadtest on CPUs ${LOADGEN_CPUS:-any}, perf on CPUs ${PERF_CPUS:-any}"
    echo "loadtest:  ${loadtest_args[*]}"
    echo "window:    ${PROFILE_SECONDS} s after the set-up (+${delay} s), perf -F $PROFILE_FREQ, call graph $PROFILE_CALLGRAPH"
    echo "server CPU in the window: ${cpu_s} s of ${PROFILE_SECONDS} s (utime+stime); RSS at the end: $server_rss"
    echo
    echo "---- loadtest report ----"
    grep -v '^{' "$out/loadtest.out" || true
    echo
    echo "---- areas (share of server samples; a sample counts once) ----"
    cat "$out/areas.txt"
    echo
    echo "---- perf report --no-children --sort symbol (self time, top 30) ----"
    grep -v '^#' "$out/report.txt" | sed -n '1,30p'
    echo
    echo "---- hottest stacks (folded, top 15) ----"
    # Leaf end of each stack (the root end is the same runtime frames every time).
    awk '{ print $NF, $0 }' "$out/folded.txt" | sort -k1,1nr | sed -n '1,15p' |
        awk '{ c = $1; $1 = ""; $NF = ""; sub(/^ +/, ""); sub(/ +$/, "")
               n = split($0, f, ";"); s = f[n]
               for (i = n - 1; i >= 1 && i > n - 4; i--) s = f[i] ";" s
               if (length(s) > 320) s = substr(s, length(s) - 319)
               printf "%6d  ...%s\n", c, s }' 
} | tee "$out/summary.txt"
echo
echo "outputs in $out"
