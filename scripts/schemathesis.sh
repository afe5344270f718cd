#!/usr/bin/env bash
# Schemathesis, the property-based API tester that api/tests/schemathesis.rs runs against the
# served OpenAPI document (`GET /openapi.json`), installed from PyPI at a pinned version into a venv
# under ~/.cache/spacecast/ (outside the repo).
#
#   scripts/schemathesis.sh install   idempotent: creates the venv and pip-installs the pinned
#                                     version when it is missing or another version; no network
#                                     when it is already installed
#   scripts/schemathesis.sh env       print `export` lines for the tests: SPACECAST_TEST_SCHEMATHESIS
#                                     (the `schemathesis` executable)
#   scripts/schemathesis.sh status    print what is installed (always exits 0)
set -euo pipefail

version=4.32.5
venv=${SPACECAST_SCHEMATHESIS_VENV:-$HOME/.cache/spacecast/schemathesis-$version}
exe=$venv/bin/schemathesis

die() {
    echo "schemathesis: $*" >&2
    exit 1
}

installed() {
    [[ -x $exe ]] && [[ $("$venv/bin/python" -c \
        'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null) == "$version" ]]
}

case ${1:-} in
install)
    if installed; then
        echo "schemathesis: $version ready ($exe)"
        exit 0
    fi
    command -v python3 >/dev/null || die "python3 is not installed"
    echo "schemathesis: installing $version from PyPI into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version" ||
        die "pip install schemathesis==$version failed"
    installed || die "installed, but $exe does not report version $version"
    echo "schemathesis: $version ready ($exe)"
    ;;
env)
    echo "export SPACECAST_TEST_SCHEMATHESIS=$exe"
    ;;
status)
    if installed; then echo "schemathesis: $version ($exe)"; else echo "schemathesis: missing"; fi
    ;;
*)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 2
    ;;
esac
