# Shared by scripts/bench.sh and scripts/profile.sh (sourced, not run): a free loopback port,
# waiting for a server's HTTP readiness, and stopping it. The caller sets `script` (the prefix
# of its error lines), `server_pid`, `STOP_TIMEOUT_S` and `READY_TIMEOUT_S`.
# shellcheck shell=bash disable=SC2154 # script, server_pid and the timeouts come from the caller

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
    echo "$script: no free port found" >&2
    return 1
}

# wait_ready URL WHAT: polls URL until it answers 200; exits the script if the server
# ($server_pid, named WHAT in errors) dies first or READY_TIMEOUT_S passes.
wait_ready() {
    local url=$1 what=$2 code deadline=$((SECONDS + READY_TIMEOUT_S))
    while :; do
        code=$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
        [[ $code == 200 ]] && return 0
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "$script: $what exited before becoming ready" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "$script: $url not 200 within ${READY_TIMEOUT_S} s (last: $code)" >&2
            exit 1
        fi
        sleep 0.2
    done
}

# Stops $server_pid (SIGTERM, SIGKILL after STOP_TIMEOUT_S) and prints its exit status.
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
            echo "$script: server ignored SIGTERM for ${STOP_TIMEOUT_S} s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || status=$?
    echo "server stopped (exit status $status)"
}
