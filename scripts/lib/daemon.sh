# Shared by the service scripts (cassandra.sh, nats.sh, seaweedfs.sh, jaeger.sh; sourced, not
# run): finding and stopping a daemon the script started, and probing ports. The caller defines
# `running_pid` (prints the daemon's pid, fails when it is not running; `daemon_pid` below does it
# for most) and `log`, and sets PIDFILE, STOP_TIMEOUT (seconds) and HOST.
# shellcheck shell=bash disable=SC2154 # PIDFILE, STOP_TIMEOUT and HOST come from the caller

# daemon_is PID WHAT MARK: whether process PID's command line has an argument equal to WHAT (its
# executable or main class) and one equal to MARK (an argument only our daemon has, such as its
# data dir or config file): pid files go stale and pids get reused.
daemon_is() {
    local cmdline
    cmdline="$(tr '\0' '\n' 2>/dev/null <"/proc/$1/cmdline")" || return 1
    grep -qxF -- "$2" <<<"$cmdline" && grep -qxF -- "$3" <<<"$cmdline"
}

# daemon_pid WHAT MARK: prints the pid of our running daemon (see `daemon_is`), from PIDFILE or,
# when that is missing or stale, by looking for MARK on every command line (then PIDFILE is
# written again); fails when it is not running.
daemon_pid() {
    local pid f
    if [[ -s "$PIDFILE" ]]; then
        pid="$(<"$PIDFILE")"
        if [[ "$pid" =~ ^[0-9]+$ ]] && daemon_is "$pid" "$1" "$2"; then
            echo "$pid"
            return 0
        fi
    fi
    for f in $(grep -alsF -- "$2" /proc/[0-9]*/cmdline); do
        pid="${f#/proc/}"
        pid="${pid%/cmdline}"
        if daemon_is "$pid" "$1" "$2"; then
            echo "$pid" >"$PIDFILE"
            echo "$pid"
            return 0
        fi
    done
    return 1
}

# port_in_use PORT: whether something accepts connections on $HOST:PORT.
port_in_use() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

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
