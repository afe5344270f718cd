#!/usr/bin/env bash
# A real S3-compatible object store for the tests of `--media-store s3`: SeaweedFS (Apache-2.0),
# built from its Go module source, run on loopback with real credentials.
#
#   scripts/seaweedfs.sh install   build `weed` once (idempotent; ~3.5 min on 2 cores the first time)
#   scripts/seaweedfs.sh up        install, start `weed server -s3`, wait until S3 answers a signed
#                                  request, create the test bucket; already up → ok
#   scripts/seaweedfs.sh down      stop it (SIGTERM, SIGKILL after a deadline); data is kept
#   scripts/seaweedfs.sh status    print "up" or "down" (always exits 0)
#   scripts/seaweedfs.sh wipe      down, then delete data, logs and credentials
#   scripts/seaweedfs.sh env       print `export SPACECAST_TEST_S3_*=…` lines (eval them)
#   scripts/seaweedfs.sh endpoint  print the S3 endpoint URL
#
# install: `go mod download` of github.com/seaweedfs/seaweedfs@$VERSION through the Go module proxy
# (`go install` refuses the module: its go.mod has replace directives), a writable copy of the
# source (the module cache is read-only), then `go build -o ~/.cache/spacecast/bin/weed ./weed`
# there. Skipped when the binary exists and bin/weed.version names $VERSION.
#
# up: one `weed server` (master, volume, filer, S3 gateway) bound to 127.0.0.1 with data under
# $SPACECAST_SEAWEEDFS_HOME (default ~/.cache/spacecast/seaweedfs), telemetry off, the Iceberg and
# Lance side servers off, and bucket auto-creation off (a missing bucket stays missing, as on AWS).
# Access needs credentials from an identities file (-s3.config) whose key pair is generated once per
# data dir (creds.env); anonymous requests are refused. The bucket $SPACECAST_TEST_S3_BUCKET
# (default spacecast-test) is created if absent; tests keep apart by key prefix.
#
# Environment:
#   SPACECAST_SEAWEEDFS_S3_PORT        S3 port (default 18333); the master, volume and filer use
#                                      19333, 18081, 18889 and gRPC on port+10000 (override with
#                                      SPACECAST_SEAWEEDFS_{MASTER,VOLUME,FILER}_PORT)
#   SPACECAST_SEAWEEDFS_START_TIMEOUT  seconds to wait for S3 (default 90)
set -euo pipefail
# shellcheck source=scripts/lib/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemon.sh"

VERSION=v0.0.0-20261109003541-7506e5f91cd6
MODULE=github.com/seaweedfs/seaweedfs
cache=${SPACECAST_CACHE:-$HOME/.cache/spacecast}
bin=$cache/bin/weed
HOME_DIR=${SPACECAST_SEAWEEDFS_HOME:-$cache/seaweedfs}
HOST=127.0.0.1
S3_PORT=${SPACECAST_SEAWEEDFS_S3_PORT:-18333}
MASTER_PORT=${SPACECAST_SEAWEEDFS_MASTER_PORT:-19333}
VOLUME_PORT=${SPACECAST_SEAWEEDFS_VOLUME_PORT:-18081}
FILER_PORT=${SPACECAST_SEAWEEDFS_FILER_PORT:-18889}
START_TIMEOUT=${SPACECAST_SEAWEEDFS_START_TIMEOUT:-90}
STOP_TIMEOUT=20
BUCKET=${SPACECAST_TEST_S3_BUCKET:-spacecast-test}
REGION=us-east-1
ENDPOINT="http://$HOST:$S3_PORT"

DATA=$HOME_DIR/data
LOGS=$HOME_DIR/logs
PIDFILE=$HOME_DIR/weed.pid
CREDS=$HOME_DIR/creds.env
IDENTITIES=$HOME_DIR/s3.json

log() { printf 'seaweedfs: %s\n' "$*" >&2; }
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
    command -v go >/dev/null || die "go is required to build SeaweedFS"
    command -v jq >/dev/null || die "jq is required to install SeaweedFS"
    mkdir -p "$cache/bin"
    local goenv=(GOMODCACHE="$cache/gomod" GOCACHE="$cache/gocache" GOFLAGS=-modcacherw)
    log "go mod download $MODULE@$VERSION (Go module proxy)"
    local dir
    dir=$(cd "$cache" && env "${goenv[@]}" go mod download -json "$MODULE@$VERSION" | jq -r .Dir)
    [[ -n $dir && -f $dir/go.mod ]] || die "go mod download gave no source directory"
    local src=$cache/seaweedfs-src
    rm -rf "$src"
    cp -r "$dir" "$src"
    chmod -R u+w "$src"
    log "go build ./weed in $src (first time: about 3.5 min on 2 cores)"
    local start=$SECONDS
    (cd "$src" && env "${goenv[@]}" go build -o "$bin.new" ./weed) || die "go build ./weed failed"
    mv "$bin.new" "$bin"
    echo "$VERSION" >"$bin.version"
    rm -rf "$src"
    log "built $bin in $((SECONDS - start)) s"
}

# ---------------------------------------------------------------------------------------------
# Credentials

# Generates the test key pair once per data dir, and the identities file that grants it.
ensure_credentials() {
    mkdir -p "$HOME_DIR"
    if [[ ! -s $CREDS ]]; then
        local key secret
        key=SPACECAST$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
        secret=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
        umask 077
        printf 'S3_ACCESS_KEY_ID=%s\nS3_SECRET_ACCESS_KEY=%s\n' "$key" "$secret" >"$CREDS.tmp"
        mv "$CREDS.tmp" "$CREDS"
    fi
    load_credentials
    (
        umask 077
        jq -n --arg k "$S3_ACCESS_KEY_ID" --arg s "$S3_SECRET_ACCESS_KEY" '{identities: [{
            name: "spacecast-test",
            credentials: [{accessKey: $k, secretKey: $s}],
            actions: ["Admin", "Read", "List", "Tagging", "Write"]
        }]}' >"$IDENTITIES.tmp"
        mv "$IDENTITIES.tmp" "$IDENTITIES"
    )
}

load_credentials() {
    [[ -s $CREDS ]] || die "no credentials yet in $CREDS: run '$0 up'"
    S3_ACCESS_KEY_ID=$(sed -n 's/^S3_ACCESS_KEY_ID=//p' "$CREDS")
    S3_SECRET_ACCESS_KEY=$(sed -n 's/^S3_SECRET_ACCESS_KEY=//p' "$CREDS")
}

# s3 METHOD PATH [curl args…]: a SigV4-signed request; prints the HTTP status.
s3() {
    local method=$1 path=$2
    shift 2
    curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 5 -X "$method" \
        --aws-sigv4 "aws:amz:$REGION:s3" --user "$S3_ACCESS_KEY_ID:$S3_SECRET_ACCESS_KEY" \
        "$@" "$ENDPOINT$path" || true
}

# ---------------------------------------------------------------------------------------------
# Process and readiness

# The pid of our running `weed server`, if any (checked against its command line: pid files go
# stale and pids get reused).
running_pid() {
    local pid
    [[ -s $PIDFILE ]] || return 1
    pid=$(<"$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | grep -qxF -- "-s3.config=$IDENTITIES" || return 1
    echo "$pid"
}

# True when S3 answers a signed ListBuckets with 200 (the gateway, filer and credentials work).
s3_ready() {
    [[ -s $CREDS ]] || return 1
    load_credentials
    [[ $(s3 GET /) == 200 ]]
}

ensure_bucket() {
    local code
    code=$(s3 GET "/$BUCKET?max-keys=1")
    [[ $code == 200 ]] && return 0
    code=$(s3 PUT "/$BUCKET")
    [[ $code == 200 ]] || die "creating bucket $BUCKET answered HTTP $code"
    log "created bucket $BUCKET"
}

cmd_up() {
    local pid
    if s3_ready; then
        ensure_bucket
        log "already up at $ENDPOINT"
        echo "$ENDPOINT"
        return 0
    fi
    if pid=$(running_pid); then
        log "pid $pid is running but S3 does not answer yet; waiting for it"
    else
        local p
        for p in "$S3_PORT" "$MASTER_PORT" "$VOLUME_PORT" "$FILER_PORT" \
            $((MASTER_PORT + 10000)) $((VOLUME_PORT + 10000)) $((FILER_PORT + 10000)) $((S3_PORT + 10000)); do
            port_in_use "$p" && die "port $HOST:$p is in use; set SPACECAST_SEAWEEDFS_*_PORT"
        done
        cmd_install
        ensure_credentials
        mkdir -p "$DATA" "$LOGS"
        rm -f "$PIDFILE"
        printf '\n==== %s starting weed server (S3 on %s) ====\n' "$(date -u +%FT%TZ)" "$ENDPOINT" >>"$LOGS/weed.log"
        local args=(
            server
            -dir="$DATA"
            -ip="$HOST" -ip.bind="$HOST"
            -master.port="$MASTER_PORT" -master.port.grpc=$((MASTER_PORT + 10000))
            -master.telemetry=false
            -master.volumeSizeLimitMB=64
            -volume.port="$VOLUME_PORT" -volume.port.grpc=$((VOLUME_PORT + 10000))
            -volume.max=64
            -filer.port="$FILER_PORT" -filer.port.grpc=$((FILER_PORT + 10000))
            -filer.localSocket="$HOME_DIR/filer.sock"
            -s3 -s3.port="$S3_PORT" -s3.port.grpc=$((S3_PORT + 10000))
            -s3.port.iceberg=0 -s3.port.lance=0
            -s3.localSocket="$HOME_DIR/s3.sock"
            -s3.autoCreateBucket=false
            -s3.config="$IDENTITIES"
        )
        # New session so Ctrl-C on a test run does not take the server down with it; the inner
        # shell records its own pid and then becomes weed (exec), so the pid file is exact.
        (
            cd "$HOME_DIR"
            # shellcheck disable=SC2016 # expanded by the inner shell
            exec setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' weed "$PIDFILE" "$bin" "${args[@]}" \
                </dev/null >>"$LOGS/weed.log" 2>&1
        ) &
        local t=0
        while [[ ! -s $PIDFILE ]] && ((t < 50)); do
            sleep 0.1
            t=$((t + 1))
        done
        pid=$(<"$PIDFILE") || die "weed did not start (no pid file)"
        log "started pid $pid, waiting up to ${START_TIMEOUT}s for S3 at $ENDPOINT"
    fi
    local start=$SECONDS deadline=$((SECONDS + START_TIMEOUT))
    until s3_ready; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$LOGS/weed.log" >&2
            rm -f "$PIDFILE"
            die "weed (pid $pid) exited during startup; log: $LOGS/weed.log"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 40 "$LOGS/weed.log" >&2
            die "S3 did not answer at $ENDPOINT within ${START_TIMEOUT}s (pid $pid left running; run '$0 down')"
        fi
        sleep 0.5
    done
    ensure_bucket
    log "up at $ENDPOINT (pid $pid, S3 ready after $((SECONDS - start)) s)"
    echo "$ENDPOINT"
}

cmd_down() {
    daemon_down
}

cmd_status() {
    if s3_ready; then
        echo up
    else
        echo down
        local pid
        if pid=$(running_pid); then
            log "pid $pid is running but S3 does not answer at $ENDPOINT (starting, or stuck)"
        fi
    fi
}

cmd_env() {
    load_credentials
    printf 'export SPACECAST_TEST_S3_ENDPOINT=%q\n' "$ENDPOINT"
    printf 'export SPACECAST_TEST_S3_REGION=%q\n' "$REGION"
    printf 'export SPACECAST_TEST_S3_BUCKET=%q\n' "$BUCKET"
    printf 'export SPACECAST_TEST_S3_ACCESS_KEY_ID=%q\n' "$S3_ACCESS_KEY_ID"
    printf 'export SPACECAST_TEST_S3_SECRET_ACCESS_KEY=%q\n' "$S3_SECRET_ACCESS_KEY"
}

case "${1:-}" in
install) cmd_install ;;
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
wipe)
    cmd_down
    rm -rf "$DATA" "$LOGS" "$CREDS" "$IDENTITIES"
    log "data, logs and credentials deleted"
    ;;
env) cmd_env ;;
endpoint) echo "$ENDPOINT" ;;
-h | --help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
