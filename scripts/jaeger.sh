#!/usr/bin/env bash
# A real trace collector for the trace tests (issue 11): Jaeger v2 all-in-one (OTLP in, query API
# out, spans kept in memory), on loopback, without Docker or root.
#
#   scripts/jaeger.sh install   build jaeger v1.76.0 once through the Go module proxy (idempotent;
#                               ~3 min on 2 cores the first time)
#   scripts/jaeger.sh up        install (first time) and start; wait until OTLP and the query API
#                               answer; already running → ok
#   scripts/jaeger.sh down      stop (SIGTERM, then SIGKILL after a deadline); spans are lost
#   scripts/jaeger.sh status    print "up" or "down" (always exits 0)
#   scripts/jaeger.sh wipe      delete the log and the generated config; refused while it runs
#   scripts/jaeger.sh env       print `export SPACECAST_TEST_OTLP_ENDPOINT=… (gRPC)
#                               SPACECAST_TEST_OTLP_HTTP_ENDPOINT=… SPACECAST_TEST_JAEGER_QUERY=…`
#                               (eval it)
#
# install: in a throwaway module, `go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@v1.76.0`
# then `go build -o ~/.cache/spacecast/bin/jaeger github.com/jaegertracing/jaeger/cmd/jaeger`
# (module and build caches under ~/.cache/spacecast, like the other scripts). Skipped when the
# binary exists and bin/jaeger.version names the version.
#
# up: `jaeger --config <home>/jaeger.yaml`: an OpenTelemetry Collector pipeline with only the OTLP
# receiver (gRPC and HTTP), the in-memory trace store and the query extension, every port on
# 127.0.0.1 and none of the defaults (4317, 4318, 16686, 8888… are left to whoever else runs a
# collector here). Its own telemetry is off. In its own session (Ctrl-C on a test run does not take
# it down), pid in <home>/jaeger.pid, output appended to <home>/jaeger.log. Nothing is written in
# the repo:
#   $SPACECAST_JAEGER_HOME (default ~/.cache/spacecast/jaeger)
#     jaeger.yaml   jaeger.log   jaeger.pid
#
# Environment:
#   SPACECAST_JAEGER_OTLP_GRPC_PORT   OTLP gRPC (default 14317)
#   SPACECAST_JAEGER_OTLP_HTTP_PORT   OTLP HTTP (default 14318)
#   SPACECAST_JAEGER_QUERY_PORT       query API and UI over HTTP (default 16696; its gRPC API on
#                                     SPACECAST_JAEGER_QUERY_GRPC_PORT, default 16695)
#   SPACECAST_JAEGER_START_TIMEOUT    seconds to wait for readiness (default 60)
set -euo pipefail
# shellcheck source=scripts/lib/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemon.sh"

VERSION=v1.76.0
MODULE=github.com/jaegertracing/jaeger
cache=${SPACECAST_CACHE:-$HOME/.cache/spacecast}
bin=$cache/bin/jaeger

HOST=127.0.0.1
GRPC_PORT="${SPACECAST_JAEGER_OTLP_GRPC_PORT:-14317}"
HTTP_PORT="${SPACECAST_JAEGER_OTLP_HTTP_PORT:-14318}"
QUERY_PORT="${SPACECAST_JAEGER_QUERY_PORT:-16696}"
QUERY_GRPC_PORT="${SPACECAST_JAEGER_QUERY_GRPC_PORT:-16695}"
START_TIMEOUT="${SPACECAST_JAEGER_START_TIMEOUT:-60}"
# shellcheck disable=SC2034 # read by daemon_down (scripts/lib/daemon.sh)
STOP_TIMEOUT=15
HOME_DIR="${SPACECAST_JAEGER_HOME:-$cache/jaeger}"
CONFIG="$HOME_DIR/jaeger.yaml"
LOG="$HOME_DIR/jaeger.log"
PIDFILE="$HOME_DIR/jaeger.pid"

log() { printf 'jaeger: %s\n' "$*" >&2; }
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
    [[ -x $bin && -f $bin.version && "$(<"$bin.version")" == "$VERSION" ]]
}

cmd_install() {
    if installed; then
        return 0
    fi
    command -v go >/dev/null || die "go is required to build jaeger (Go module proxy)"
    mkdir -p "$cache/bin"
    local work start=$SECONDS
    work="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand now: the trap outlives this function's locals
    trap "rm -rf '$work'" RETURN
    log "building $MODULE/cmd/jaeger@$VERSION (into $bin)"
    (
        cd "$work"
        export GOMODCACHE=$cache/gomod GOCACHE=$cache/gocache GOFLAGS=-modcacherw \
            GOPROXY="${GOPROXY:-https://proxy.golang.org}"
        go mod init spacecast-jaeger-build >/dev/null 2>&1
        # `go get` names each of the ~300 modules it adds: keep that for a failure only.
        if ! go get -tool "$MODULE/cmd/jaeger@$VERSION" 2>get.log; then
            cat get.log >&2
            exit 1
        fi
        go build -o "$bin.tmp" "$MODULE/cmd/jaeger"
    )
    mv "$bin.tmp" "$bin"
    echo "$VERSION" >"$bin.version"
    log "installed in $((SECONDS - start)) s"
}

# ---------------------------------------------------------------------------------------------
# Process and readiness

write_config() {
    cat >"$CONFIG" <<EOF
# Written by scripts/jaeger.sh; rewritten on every start.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  # Jaeger's own telemetry is off: no metrics port, and no traces of its own sent to the default
  # OTLP port (127.0.0.1:4317, which may be another collector's).
  telemetry:
    metrics:
      level: none
    traces:
      level: none
    logs:
      level: info

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: "$HOST:$QUERY_PORT"
    grpc:
      endpoint: "$HOST:$QUERY_GRPC_PORT"

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "$HOST:$GRPC_PORT"
      http:
        endpoint: "$HOST:$HTTP_PORT"

processors:
  batch:
    timeout: 200ms

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
}

# Prints the pid of our running Jaeger, if any (the `--config` argument identifies it).
running_pid() {
    daemon_pid "$bin" "$CONFIG"
}

# Ready when both OTLP ports accept connections and the query API answers.
ready() {
    port_in_use "$GRPC_PORT" && port_in_use "$HTTP_PORT" &&
        curl --noproxy '*' -sf -o /dev/null --max-time 2 "http://$HOST:$QUERY_PORT/api/services"
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
            echo "jaeger: already up (pid $pid): OTLP grpc $HOST:$GRPC_PORT, http $HOST:$HTTP_PORT, query http://$HOST:$QUERY_PORT"
            return 0
        fi
        log "pid $pid is running but not ready yet; waiting for it"
    else
        local p
        for p in "$GRPC_PORT" "$HTTP_PORT" "$QUERY_PORT" "$QUERY_GRPC_PORT"; do
            port_in_use "$p" && die "port $HOST:$p is in use by another process; see the SPACECAST_JAEGER_*_PORT variables"
        done
        cmd_install
        write_config
        rm -f "$PIDFILE"
        printf '\n==== %s starting jaeger %s ====\n' "$(date -u +%FT%TZ)" "$VERSION" >>"$LOG"
        (
            cd "$HOME_DIR"
            # shellcheck disable=SC2016
            exec setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' jaeger "$PIDFILE" \
                "$bin" --config "$CONFIG" </dev/null >>"$LOG" 2>&1
        ) &
        local t=0
        while [[ ! -s "$PIDFILE" ]] && ((t < 50)); do
            sleep 0.1
            t=$((t + 1))
        done
        pid="$(<"$PIDFILE")" || die "jaeger did not start (no pid file)"
    fi
    local start=$SECONDS deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log
            rm -f "$PIDFILE"
            die "jaeger (pid $pid) exited during startup"
        fi
        if ready; then
            log "up (pid $pid, ready after $((SECONDS - start)) s): OTLP grpc $HOST:$GRPC_PORT, http $HOST:$HTTP_PORT, query http://$HOST:$QUERY_PORT"
            return 0
        fi
        sleep 0.2
    done
    show_log
    die "jaeger did not become ready within ${START_TIMEOUT}s (pid $pid left running; run '$0 down')"
}

cmd_status() {
    local pid
    if pid="$(running_pid)" && ready; then
        echo "up"
        log "pid $pid: OTLP grpc $HOST:$GRPC_PORT, http $HOST:$HTTP_PORT, query http://$HOST:$QUERY_PORT"
    elif pid="$(running_pid)"; then
        echo "down"
        log "pid $pid is running but not ready (starting, or stuck)"
    else
        echo "down"
    fi
}

cmd_wipe() {
    local pid
    if pid="$(running_pid)"; then
        die "refusing to wipe: jaeger is running (pid $pid); run '$0 down' first"
    fi
    rm -f "$LOG" "$PIDFILE" "$CONFIG"
    log "log and config deleted"
}

case "${1:-}" in
install) cmd_install ;;
up)
    mkdir -p "$HOME_DIR"
    cmd_up
    ;;
down) daemon_down ;;
status) cmd_status ;;
wipe) cmd_wipe ;;
env)
    echo "export SPACECAST_TEST_OTLP_ENDPOINT=http://$HOST:$GRPC_PORT SPACECAST_TEST_OTLP_HTTP_ENDPOINT=http://$HOST:$HTTP_PORT SPACECAST_TEST_JAEGER_QUERY=http://$HOST:$QUERY_PORT"
    ;;
-h | --help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
