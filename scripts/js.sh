#!/usr/bin/env bash
# The JavaScript peers of the test suite: the real `socket.io-client` v4 (the library the Space7
# app ships) and `playwright-core` driving Debian's Chromium (browser downloads are unreachable, so
# Playwright is pointed at /usr/bin/chromium, never at a downloaded browser).
#
#   scripts/js.sh install    idempotent: Debian's chromium (apt-get) when /usr/bin/chromium is
#                            missing; `npm ci` in api/tests/js when its node_modules is missing or
#                            older than package-lock.json
#   scripts/js.sh env        print `export` lines for the tests: SPACECAST_TEST_NODE (node),
#                            SPACECAST_TEST_JS_DIR (api/tests/js), SPACECAST_TEST_CHROMIUM
#   scripts/js.sh status     print what is installed (always exits 0)
#
# The packages come from the npm registry at the versions package-lock.json pins; npm's cache is
# ~/.npm (outside the repo). node_modules/ is git-ignored. Chromium comes from Debian's packages
# (needs root for apt-get, as CI has).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
js_dir=$root/api/tests/js
chromium=${SPACECAST_TEST_CHROMIUM:-/usr/bin/chromium}

die() {
    echo "js: $*" >&2
    exit 1
}

install_chromium() {
    if [[ -x $chromium ]]; then
        return 0
    fi
    command -v apt-get >/dev/null || die "no $chromium and no apt-get to install Debian's chromium"
    echo "js: installing Debian's chromium (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null ||
        die "apt-get install chromium failed"
    [[ -x $chromium ]] || die "chromium installed but $chromium is missing"
}

install_packages() {
    command -v node >/dev/null || die "node is not installed"
    command -v npm >/dev/null || die "npm is not installed"
    local stamp=$js_dir/node_modules/.package-lock.json
    if [[ -f $stamp && ! $js_dir/package-lock.json -nt $stamp ]]; then
        return 0
    fi
    echo "js: npm ci in api/tests/js"
    (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
}

case ${1:-} in
install)
    install_chromium
    install_packages
    echo "js: ready ($(node --version), $("$chromium" --version 2>/dev/null | head -n 1))"
    ;;
env)
    echo "export SPACECAST_TEST_NODE=$(command -v node)"
    echo "export SPACECAST_TEST_JS_DIR=$js_dir"
    echo "export SPACECAST_TEST_CHROMIUM=$chromium"
    ;;
status)
    echo "node: $(command -v node || echo missing)"
    if [[ -x $chromium ]]; then echo "chromium: $("$chromium" --version 2>/dev/null | head -n 1)"; else echo "chromium: missing"; fi
    if [[ -d $js_dir/node_modules ]]; then echo "packages: installed"; else echo "packages: missing"; fi
    ;;
*)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 2
    ;;
esac
