#!/usr/bin/env bash
# Centrifugo v6, the peer of `scripts/bench.sh compare` (and of loadtest's Centrifugo test).
#
#   scripts/centrifugo.sh install                       build it once (idempotent)
#   scripts/centrifugo.sh bin                           print the binary's path
#   scripts/centrifugo.sh config DIR PORT SECRET APIKEY write DIR/config.json
#   scripts/centrifugo.sh up DIR                        start it with DIR/config.json (pid in DIR/pid)
#   scripts/centrifugo.sh down DIR                      stop it
#
# install: `go install github.com/centrifugal/centrifugo/v6@v6.9.1` through the Go module proxy
# into ~/.cache/spacecast/bin (module and build caches under ~/.cache/spacecast too), unless that
# binary is already there and was built from v6.9.1 (`go version -m`: a `go install` build prints
# v0.0.0 in `centrifugo version`, so the module version is what is checked).
#
# config: the memory engine (nothing durable: history lives in process memory only), clients
# authenticate with an HS256 connection JWT signed with SECRET (`sub` = user), the HTTP server
# API (/api/publish …) takes `X-API-Key: APIKEY`, and the `bench` namespace (channels
# `bench:<name>`) lets any authenticated client subscribe, keeps a short history and forces
# positioning so every publication carries its channel offset (consecutive: gaps are detectable).
# Listens on 127.0.0.1:PORT only; /health is on. Prints nothing.
set -euo pipefail

VERSION=v6.9.1
MODULE=github.com/centrifugal/centrifugo/v6
cache=${SPACECAST_CACHE:-$HOME/.cache/spacecast}
bin=$cache/bin/centrifugo

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

installed() {
    [[ -x $bin ]] && go version -m "$bin" 2>/dev/null | grep -qE "^[[:space:]]*mod[[:space:]]+$MODULE[[:space:]]+$VERSION([[:space:]]|$)"
}

cmd_install() {
    if installed; then
        return 0
    fi
    command -v go >/dev/null || {
        echo "centrifugo.sh: go is required to install Centrifugo" >&2
        exit 1
    }
    mkdir -p "$cache/bin"
    echo "centrifugo.sh: go install $MODULE@$VERSION (into $cache/bin)" >&2
    GOBIN=$cache/bin GOMODCACHE=$cache/gomod GOCACHE=$cache/gocache GOFLAGS=-modcacherw \
        go install "$MODULE@$VERSION"
    installed || {
        echo "centrifugo.sh: $bin is not $MODULE $VERSION after go install" >&2
        exit 1
    }
}

cmd_config() {
    [[ $# -eq 4 ]] || {
        usage >&2
        exit 2
    }
    local dir=$1 port=$2 secret=$3 key=$4
    [[ $port =~ ^[0-9]+$ ]] || {
        echo "centrifugo.sh: bad port $port" >&2
        exit 2
    }
    mkdir -p "$dir"
    python3 - "$dir/config.json" "$port" "$secret" "$key" <<'EOF'
import json, sys
path, port, secret, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
config = {
    "http_server": {"address": "127.0.0.1", "port": port},
    "log": {"level": "warn"},
    "engine": {"type": "memory"},
    "client": {"token": {"hmac_secret_key": secret}, "allowed_origins": []},
    "http_api": {"key": key},
    "health": {"enabled": True},
    "usage_stats": {"disabled": True},
    "channel": {
        "namespaces": [
            {
                "name": "bench",
                "allow_subscribe_for_client": True,
                "history_size": 100,
                "history_ttl": "300s",
                "force_positioning": True,
            }
        ]
    },
}
with open(path, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
EOF
}

cmd_up() {
    local dir=${1:?usage: up DIR}
    cmd_install
    "$bin" --config "$dir/config.json" >"$dir/centrifugo.log" 2>&1 &
    echo $! >"$dir/pid"
    local port
    port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http_server"]["port"])' "$dir/config.json")
    local deadline=$((SECONDS + 30))
    until curl --noproxy '*' -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/health"; do
        if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
            echo "centrifugo.sh: centrifugo exited; see $dir/centrifugo.log" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "centrifugo.sh: no /health on port $port within 30 s" >&2
            exit 1
        fi
        sleep 0.2
    done
}

cmd_down() {
    local dir=${1:?usage: down DIR} pid
    [[ -f $dir/pid ]] || return 0
    pid=$(cat "$dir/pid")
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
}

case "${1:-}" in
install) cmd_install ;;
bin)
    cmd_install
    echo "$bin"
    ;;
config)
    shift
    cmd_config "$@"
    ;;
up)
    shift
    cmd_up "$@"
    ;;
down)
    shift
    cmd_down "$@"
    ;;
-h | --help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
