#!/usr/bin/env bash
# Builds the Spacecast container image without a container daemon, with Debian's buildah: the same
# image as the Containerfile (entrypoint /usr/local/bin/spacecast, default command `serve`, user
# 10001:10001, port 8080/tcp, volume /data owned by that user, SPACECAST_LISTEN=0.0.0.0:8080,
# SPACECAST_DATA_DIR=/data, OCI labels), but `FROM scratch`, since no base image can be pulled here:
# the stripped binary, the shared libraries `ldd` names plus the dynamic loader, /etc/passwd and
# /etc/group lines for the user, and Debian's CA bundle (the binary verifies TLS peers with the
# system roots: rustls-platform-verifier for S3, rustls-native-certs for NATS).
#
#   scripts/image.sh install                 apt-get install buildah (idempotent)
#   scripts/image.sh build [--binary PATH]   build the image; without --binary, build the release
#                                            binary first (cargo build --release --locked -p
#                                            spacecast-api --bin spacecast). The test suite passes
#                                            the debug binary its test build already made, to save
#                                            a release build in CI (the image is then larger and
#                                            slower, but built the same way)
#   scripts/image.sh name                    print the image name, NAME:TAG (see below)
#   scripts/image.sh run [--env NAME=VALUE]... [ARGS...]
#                                            run `spacecast ARGS` (default: serve) from the image's
#                                            root filesystem, with `buildah run --isolation chroot`
#                                            and the host network, with these env vars added to the
#                                            image's (as a pod's env); Ctrl-C / SIGTERM drains and
#                                            stops it
#   scripts/image.sh export [PATH]           write the image as an OCI archive (default
#                                            ~/.cache/spacecast/containers/spacecast-TAG.oci.tar);
#                                            prints the path
#   scripts/image.sh push DESTINATION        buildah push, e.g. docker://registry.example/spacecast:0.1.0
#   scripts/image.sh clean                   delete the image, working containers and the storage
#
# The name is the Helm chart's default image: `image.repository` from helm/spacecast/values.yaml
# and, as tag, the chart's `appVersion` (helm/spacecast/Chart.yaml); buildah stores it as
# localhost/NAME:TAG. tests/ops checks that they match.
#
# Storage: buildah runs with `--storage-driver vfs` (no overlay or fuse needed) and its root under
# $SPACECAST_CACHE/containers (default ~/.cache/spacecast/containers), never in the repo. Needs
# root (as CI and the dev machines run) for chroot isolation and file ownership.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${SPACECAST_CACHE:-$HOME/.cache/spacecast}
store=$cache/containers
chart=helm/spacecast
USER_ID=10001
PORT=8080

log() { printf 'image: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# The chart's default image: values.yaml `image.repository` (first `repository:` under `image:`)
# and Chart.yaml `appVersion`.
image_name() {
    local repo tag
    repo="$(awk '/^image:/{i=1;next} i&&/^[^ #]/{i=0} i&&$1=="repository:"{print $2; exit}' "$chart/values.yaml")"
    tag="$(awk '$1=="appVersion:"{gsub(/"/,"",$2); print $2; exit}' "$chart/Chart.yaml")"
    [[ -n $repo && -n $tag ]] || die "cannot read image.repository / appVersion from $chart"
    echo "$repo:$tag"
}

bh() {
    buildah --root "$store/storage" --runroot "$store/run" --storage-driver vfs "$@"
}

cmd_install() {
    if command -v buildah >/dev/null; then
        return 0
    fi
    command -v apt-get >/dev/null || die "buildah is missing and apt-get is not available"
    log "apt-get install buildah"
    # Another apt run (a parallel install) holds the lock: wait for it, bounded.
    local tries=0
    until DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah >&2; do
        tries=$((tries + 1))
        ((tries < 3)) || die "apt-get install buildah failed"
        apt-get update -q >&2 || true
        sleep 5
    done
    command -v buildah >/dev/null || die "buildah is not on PATH after apt-get install"
}

need_buildah() {
    command -v buildah >/dev/null || die "buildah is not installed: run 'scripts/image.sh install'"
    mkdir -p "$store"
}

# Copies FILE to the same path under ROOT, dereferencing symlinks (the loader's /lib64 path is one).
copy_into() {
    local root=$1 file=$2
    install -D -m "$(stat -Lc '%a' "$file")" "$(readlink -f "$file")" "$root$file"
}

cmd_build() {
    local binary=""
    while (($#)); do
        case $1 in
        --binary)
            binary=${2:?--binary needs a path}
            shift 2
            ;;
        *) die "build: unknown argument $1" ;;
        esac
    done
    need_buildah
    if [[ -z $binary ]]; then
        export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
        log "cargo build --release --locked -p spacecast-api --bin spacecast"
        cargo build --release --locked -p spacecast-api --bin spacecast >&2
        binary=$CARGO_TARGET_DIR/release/spacecast
    fi
    [[ -x $binary ]] || die "no executable binary at $binary"
    local name version revision
    name="$(image_name)"
    version=${name##*:}
    revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"

    local work rootfs
    work="$(mktemp -d "${TMPDIR:-/tmp}/spacecast-image.XXXXXX")"
    # shellcheck disable=SC2064 # expand now: the path is fixed
    trap "rm -rf '$work'" RETURN
    rootfs=$work/rootfs
    mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/data" "$rootfs/tmp"
    chmod 1777 "$rootfs/tmp"
    cp "$binary" "$rootfs/usr/local/bin/spacecast"
    strip "$rootfs/usr/local/bin/spacecast"
    chmod 0755 "$rootfs/usr/local/bin/spacecast"
    # The binary's shared libraries and the dynamic loader (e.g. libgcc_s, libm, libc, ld-linux).
    local libs
    libs="$(ldd "$binary" | awk '$2=="=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')"
    [[ -n $libs ]] || die "ldd found no shared libraries in $binary (a static binary needs no libs: adapt this script)"
    local lib
    for lib in $libs; do
        copy_into "$rootfs" "$lib"
    done
    printf 'root:x:0:0:root:/root:/sbin/nologin\nspacecast:x:%d:%d:spacecast:/data:/sbin/nologin\n' "$USER_ID" "$USER_ID" >"$rootfs/etc/passwd"
    printf 'root:x:0:\nspacecast:x:%d:\n' "$USER_ID" >"$rootfs/etc/group"
    printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
    [[ -s /etc/ssl/certs/ca-certificates.crt ]] || die "no CA bundle at /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)"
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"

    log "building localhost/$name from scratch ($(du -sh "$rootfs" | cut -f1) root filesystem; libraries: $(tr "\n" " " <<<"$libs"))"
    local ctr
    ctr="$(bh from --pull=never scratch)"
    # buildah copy keeps the modes and gives everything to root (as COPY does); /data then goes to
    # the non-root user (in the mounted root filesystem), so a fresh volume there is writable by it.
    bh copy "$ctr" "$rootfs/" / >/dev/null
    local mnt
    mnt="$(bh mount "$ctr")"
    chown "$USER_ID:$USER_ID" "$mnt/data"
    bh umount "$ctr" >/dev/null
    bh config \
        --os linux --arch "$(go env GOARCH 2>/dev/null || echo amd64)" \
        --entrypoint '["/usr/local/bin/spacecast"]' --cmd '["serve"]' \
        --user "$USER_ID:$USER_ID" --workingdir /data --volume /data --port "$PORT/tcp" \
        --env "SPACECAST_LISTEN=0.0.0.0:$PORT" --env SPACECAST_DATA_DIR=/data \
        --label org.opencontainers.image.title=spacecast \
        --label "org.opencontainers.image.description=Spacecast, a realtime messaging engine (REST, Socket.IO, native WebSocket)" \
        --label "org.opencontainers.image.version=$version" \
        --label "org.opencontainers.image.revision=$revision" \
        --label org.opencontainers.image.licenses=Apache-2.0 \
        "$ctr"
    bh commit --quiet --format oci --rm "$ctr" "localhost/$name" >/dev/null
    # A rebuild leaves the previous image unnamed: drop it (vfs keeps whole copies).
    bh rmi --prune >/dev/null 2>&1 || true
    log "built localhost/$name"
}

# Prints the pids of PID's descendants.
descendants() {
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

cmd_run() {
    need_buildah
    local name ctr
    name="$(image_name)"
    bh inspect --type image "localhost/$name" >/dev/null 2>&1 || die "no image localhost/$name: run 'scripts/image.sh build' first"
    ctr="$(bh from --pull=never "localhost/$name")"
    # shellcheck disable=SC2064
    trap "bh rm '$ctr' >/dev/null 2>&1 || true" EXIT
    local envs=()
    while [[ ${1:-} == --env ]]; do
        [[ ${2:-} == *=* ]] || die "run: --env needs NAME=VALUE"
        envs+=(--env "$2")
        shift 2
    done
    (($#)) || set -- serve
    # The image's user, working dir and environment apply; buildah run does not apply the
    # entrypoint, so it is named here. buildah answers SIGTERM by killing its child, so SIGTERM
    # and SIGINT are passed to the spacecast process itself: it drains and exits 0, as in a pod.
    bh run --isolation chroot --network host --terminal=false "${envs[@]}" "$ctr" -- /usr/local/bin/spacecast "$@" &
    local runner=$! rc=0 pid
    # shellcheck disable=SC2317 # called by the trap
    forward() {
        for pid in $(descendants "$runner"); do
            [[ $(cat "/proc/$pid/comm" 2>/dev/null) == spacecast ]] && kill -TERM "$pid" 2>/dev/null
        done
        return 0
    }
    trap forward TERM INT
    while :; do
        rc=0
        wait "$runner" || rc=$?
        kill -0 "$runner" 2>/dev/null || break
    done
    return "$rc"
}

default_archive() {
    local name
    name="$(image_name)"
    echo "$store/${name%%:*}-${name##*:}.oci.tar"
}

cmd_export() {
    need_buildah
    local name path
    name="$(image_name)"
    path=${1:-$(default_archive)}
    rm -f "$path"
    bh push --quiet "localhost/$name" "oci-archive:$path:$name" >&2
    echo "$path"
}

cmd_push() {
    need_buildah
    local dest=${1:?push needs a destination, e.g. docker://registry.example/spacecast:0.1.0}
    bh push "localhost/$(image_name)" "$dest"
}

cmd_clean() {
    if command -v buildah >/dev/null && [[ -d $store/storage ]]; then
        bh rm --all >/dev/null 2>&1 || true
        bh rmi --all --force >/dev/null 2>&1 || true
    fi
    rm -rf "$store"
    log "deleted $store"
}

case "${1:-}" in
install) cmd_install ;;
build)
    shift
    cmd_build "$@"
    ;;
name) image_name ;;
run)
    shift
    cmd_run "$@"
    ;;
export)
    shift
    cmd_export "$@"
    ;;
push)
    shift
    cmd_push "$@"
    ;;
clean) cmd_clean ;;
-h | --help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
