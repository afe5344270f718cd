#!/usr/bin/env bash
# promtool, Prometheus' rule and metrics checker, for the observability tests: `promtool check
# rules` / `promtool test rules` on observability/alerts/, the dashboard's queries, and `promtool
# check metrics` on a real /metrics scrape. Taken from Debian's `prometheus` package (pinned
# version below), which is NOT installed system-wide (its postinst would start a Prometheus
# service): the .deb is fetched with `apt-get download` and unpacked with `dpkg -x` under
# ~/.cache/spacecast/prometheus (outside the repo). `go install` of prometheus does not work
# (its go.mod has exclude/replace directives).
#
#   scripts/promtool.sh install   idempotent: nothing to do (no network) when the pinned version is
#                                 unpacked already; otherwise `apt-get download` (after
#                                 `apt-get update` if the pinned version is not known to apt) and
#                                 `dpkg -x`
#   scripts/promtool.sh env       print `export` lines for the tests: SPACECAST_TEST_PROMTOOL (the
#                                 promtool executable)
#   scripts/promtool.sh status    print what is installed (always exits 0)
set -euo pipefail

version=2.42.0+ds-5+deb12u1
home=${SPACECAST_PROMETHEUS_HOME:-$HOME/.cache/spacecast/prometheus}
root=$home/root
exe=$root/usr/bin/promtool
stamp=$home/version

die() {
    echo "promtool: $*" >&2
    exit 1
}

installed() {
    [[ -x $exe ]] && [[ -f $stamp ]] && [[ $(<"$stamp") == "$version" ]] &&
        "$exe" --version >/dev/null 2>&1
}

case ${1:-} in
install)
    if installed; then
        echo "promtool: prometheus $version ready ($exe)"
        exit 0
    fi
    command -v apt-get >/dev/null || die "apt-get is not available (Debian's prometheus package ships promtool)"
    command -v dpkg >/dev/null || die "dpkg is not available"
    mkdir -p "$home"
    debs=$home/debs
    rm -rf "$debs" "$root"
    mkdir -p "$debs"
    if ! apt-cache show "prometheus=$version" >/dev/null 2>&1; then
        echo "promtool: apt does not know prometheus=$version yet; apt-get update"
        apt-get update -qq || die "apt-get update failed"
    fi
    echo "promtool: apt-get download prometheus=$version into $debs"
    (cd "$debs" && apt-get download -qq "prometheus=$version") ||
        die "apt-get download prometheus=$version failed"
    deb=$(ls "$debs"/prometheus_*.deb 2>/dev/null | head -n1)
    [[ -n $deb ]] || die "no prometheus .deb in $debs after apt-get download"
    dpkg -x "$deb" "$root" || die "dpkg -x $deb failed"
    rm -rf "$debs"
    # Only promtool is used: drop the server, its web assets and docs (about 90 MB).
    find "$root" -type f ! -path "$exe" -delete
    echo "$version" >"$stamp"
    installed || die "unpacked, but $exe does not run"
    echo "promtool: prometheus $version ready ($exe)"
    ;;
env)
    echo "export SPACECAST_TEST_PROMTOOL=$exe"
    ;;
status)
    if installed; then echo "promtool: prometheus $version ($exe)"; else echo "promtool: missing"; fi
    ;;
*)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 2
    ;;
esac
