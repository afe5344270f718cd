#!/usr/bin/env bash
# A real nats-server with JetStream on loopback, for the cluster tests (issue 8), without Docker
# or root.
#
#   scripts/nats.sh install   build nats-server v2.15.2 once with `go install` (idempotent)
#   scripts/nats.sh up        install (first time) and start; wait until it accepts clients and
#                             JetStream is ready; already running → ok
#   scripts/nats.sh down      stop (SIGTERM, then SIGKILL after a deadline); data is kept
#   scripts/nats.sh restart   down + up, data kept (used by the NATS-outage test)
#   scripts/nats.sh status    print "up" or "down" (always exits 0); details from the monitoring
#                             port on stderr
#   scripts/nats.sh wipe      delete JetStream data and the log; refused while the server runs
#                             (run `down` first: other test runs on this machine may be using it)
#   scripts/nats.sh url       print the client URL, nats://127.0.0.1:14222
#
# install: `go install github.com/nats-io/nats-server/v2@v2.15.2` through the Go module proxy into
# ~/.cache/spacecast/bin (GOBIN; module and build caches under ~/.cache/spacecast too), skipped when
# that binary is there and was built from v2.15.2 (checked with `go version -m`).
#
# The server: `nats-server -c <home>/nats.conf -js -sd <home>/data -a 127.0.0.1 -p 14222 -m 18222`
# (the config file sets a 1 s client ping interval, so a frozen client is dropped quickly), in its own
# session (Ctrl-C on a test run does not take it down), pid in <home>/nats.pid, output appended to
# <home>/nats.log. Nothing is written inside the repo:
#   $SPACECAST_NATS_HOME (default ~/.cache/spacecast/nats)
#     data/  JetStream store (streams, KV buckets)   nats.log   nats.pid
#
# Environment:
#   SPACECAST_NATS_PORT           client port (default 14222), 127.0.0.1 only
#   SPACECAST_NATS_MONITOR_PORT   HTTP monitoring port (default 18222): /healthz, /varz
#   SPACECAST_NATS_START_TIMEOUT  seconds to wait for readiness (default 30)
#   SPACECAST_NATS_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (default 15)
set -euo pipefail
# shellcheck source=scripts/lib/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemon.sh"

VERSION=v2.15.2
MODULE=github.com/nats-io/nats-server/v2
cache=${SPACECAST_CACHE:-$HOME/.cache/spacecast}
bin=$cache/bin/nats-server

HOST=127.0.0.1
PORT="${SPACECAST_NATS_PORT:-14222}"
MONITOR_PORT="${SPACECAST_NATS_MONITOR_PORT:-18222}"
START_TIMEOUT="${SPACECAST_NATS_START_TIMEOUT:-30}"
STOP_TIMEOUT="${SPACECAST_NATS_STOP_TIMEOUT:-15}"
HOME_DIR="${SPACECAST_NATS_HOME:-$cache/nats}"
DATA="$HOME_DIR/data"
LOG="$HOME_DIR/nats.log"
PIDFILE="$HOME_DIR/nats.pid"

log() { printf 'nats: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------------------------------------
# Installation

installed() {
    [[ -x $bin ]] && go version -m "$bin" 2>/dev/null | grep -qE "^[[:space:]]*mod[[:space:]]+${MODULE}[[:space:]]+${VERSION}([[:space:]]|$)"
}

cmd_install() {
    if installed; then
        return 0
    fi
    command -v go >/dev/null || die "go is required to install nats-server (Go module proxy)"
    mkdir -p "$cache/bin"
    log "go install $MODULE@$VERSION (into $cache/bin)"
    local start=$SECONDS
    GOBIN=$cache/bin GOMODCACHE=$cache/gomod GOCACHE=$cache/gocache GOFLAGS=-modcacherw \
        GOPROXY="${GOPROXY:-https://proxy.golang.org}" \
        go install "$MODULE@$VERSION"
    installed || die "$bin is not $MODULE $VERSION after go install"
    log "installed in $((SECONDS - start)) s"
}

# ---------------------------------------------------------------------------------------------
# Process and readiness

# Prints the pid of our running nats-server, if any (the `-sd` argument identifies it).
running_pid() {
    daemon_pid "$bin" "$DATA"
}

# True when the client port greets with the protocol's `INFO {…}` line and the monitoring port's
# /healthz (which includes JetStream) answers 200.
ready() {
    local greeting
    greeting="$(
        exec 3<>"/dev/tcp/$HOST/$PORT" || exit 1
        IFS= read -r -t 2 line <&3 || exit 1
        printf '%s' "$line"
    )" 2>/dev/null || return 1
    [[ $greeting == INFO\ * ]] || return 1
    curl --noproxy '*' -sf -o /dev/null --max-time 2 "http://$HOST:$MONITOR_PORT/healthz"
}

show_log() {
    if [[ -s $LOG ]]; then
        log "---- last 30 lines of $LOG ----"
        tail -n 30 "$LOG" >&2
    fi
}

# ---------------------------------------------------------------------------------------------
# Commands

cmd_up() {
    local pid
    if pid="$(running_pid)"; then
        if ready; then
            echo "nats: already up on nats://$HOST:$PORT (pid $pid)"
            return 0
        fi
        log "pid $pid is running but not ready yet; waiting for it"
    else
        port_in_use "$PORT" && die "port $HOST:$PORT is in use by another process; set SPACECAST_NATS_PORT"
        port_in_use "$MONITOR_PORT" && die "monitoring port $HOST:$MONITOR_PORT is in use; set SPACECAST_NATS_MONITOR_PORT"
        cmd_install
        mkdir -p "$DATA"
        rm -f "$PIDFILE"
        # Ping every client each second and drop one that misses two: a frozen (SIGSTOPped) node
        # loses its subscriptions within ~3 s, so commands stop going to it (docs/cluster.md).
        printf 'ping_interval: "1s"\nping_max: 2\n' >"$HOME_DIR/nats.conf"
        printf '\n==== %s starting nats-server %s on %s:%s ====\n' "$(date -u +%FT%TZ)" "$VERSION" "$HOST" "$PORT" >>"$LOG"
        # New session; the inner shell records its own pid and then becomes the server (exec), so
        # the pid file is exact.
        (
            cd "$HOME_DIR"
            # shellcheck disable=SC2016
            exec setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' nats "$PIDFILE" \
                "$bin" -c "$HOME_DIR/nats.conf" -js -sd "$DATA" -a "$HOST" -p "$PORT" -m "$MONITOR_PORT" \
                </dev/null >>"$LOG" 2>&1
        ) &
        local t=0
        while [[ ! -s "$PIDFILE" ]] && ((t < 50)); do
            sleep 0.1
            t=$((t + 1))
        done
        pid="$(<"$PIDFILE")" || die "nats-server did not start (no pid file)"
    fi
    local start=$SECONDS deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log
            rm -f "$PIDFILE"
            die "nats-server (pid $pid) exited during startup"
        fi
        if ready; then
            log "up on nats://$HOST:$PORT (pid $pid, ready after $((SECONDS - start)) s; monitoring http://$HOST:$MONITOR_PORT)"
            return 0
        fi
        sleep 0.1
    done
    show_log
    die "nats-server did not become ready within ${START_TIMEOUT}s (pid $pid left running; run '$0 down')"
}

cmd_down() {
    daemon_down
}

cmd_status() {
    local pid
    if pid="$(running_pid)" && ready; then
        echo "up"
        local varz
        if varz="$(curl --noproxy '*' -sf --max-time 2 "http://$HOST:$MONITOR_PORT/varz")"; then
            python3 -c '
import json, sys
v = json.load(sys.stdin)
js = v.get("jetstream", {}).get("stats", {})
print("nats: pid %s, version %s, connections %s, uptime %s, jetstream storage %s bytes"
      % (sys.argv[1], v.get("version"), v.get("connections"), v.get("uptime"), js.get("storage", 0)))
' "$pid" <<<"$varz" >&2 || true
        fi
    elif pid="$(running_pid)"; then
        echo "down"
        log "pid $pid is running but not ready on $HOST:$PORT (starting, or stuck)"
    else
        echo "down"
    fi
}

cmd_wipe() {
    local pid
    if pid="$(running_pid)"; then
        die "refusing to wipe: nats-server is running (pid $pid); run '$0 down' first"
    fi
    rm -rf "$DATA" "$LOG" "$PIDFILE"
    log "data and log deleted"
}

case "${1:-}" in
install) cmd_install ;;
up)
    mkdir -p "$HOME_DIR"
    cmd_up
    ;;
down) cmd_down ;;
restart)
    mkdir -p "$HOME_DIR"
    cmd_down
    cmd_up
    ;;
status) cmd_status ;;
wipe) cmd_wipe ;;
url) echo "nats://$HOST:$PORT" ;;
-h | --help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
