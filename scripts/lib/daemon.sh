# Shared by the service scripts (cassandra.sh, nats.sh, seaweedfs.sh; sourced, not run): stopping
# a daemon the script started. The caller defines `running_pid` (prints the daemon's pid, fails
# when it is not running) and `log`, and sets PIDFILE and STOP_TIMEOUT (seconds).
# shellcheck shell=bash disable=SC2154 # PIDFILE and STOP_TIMEOUT come from the caller

# SIGTERM, then SIGKILL after STOP_TIMEOUT seconds; idempotent (not running is fine).
daemon_down() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PIDFILE"
        log "not running"
        return 0
    fi
    log "stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "still running after ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$PIDFILE"
    log "stopped"
}
