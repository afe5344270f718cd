#!/usr/bin/env bash
# The Kubernetes tooling the chart's tests use (helm/spacecast, tests/ops/test_chart.py), installed
# from package registries and cached under ~/.cache/spacecast (nothing in the repo):
#
#   scripts/helm.sh install   idempotent, no network when already installed:
#                             - helm v3.21.4: `go install helm.sh/helm/v3/cmd/helm@v3.21.4` into
#                               ~/.cache/spacecast/bin, with ldflags that make it assume Kubernetes
#                               1.33 (Capabilities.KubeVersion, `helm lint`; else it assumes 1.20);
#                               module and build caches under ~/.cache/spacecast like scripts/nats.sh;
#                               skipped when that binary reports v3.21.4 and those ldflags
#                               (`go version -m`)
#                             - a venv (~/.cache/spacecast/ops-venv-<pins>) with pinned PyPI
#                               packages: kubernetes-validate (ships the Kubernetes JSON schemas,
#                               1.25-1.37, for offline validation), PyYAML, pytest, and
#                               prometheus-client (its OpenMetrics parser reads /metrics in
#                               api/tests/traces.rs)
#   scripts/helm.sh env       print `export` lines: SPACECAST_HELM (the helm binary),
#                             SPACECAST_OPS_PYTHON (the venv's python)
#   scripts/helm.sh check     install, then run the chart tests (pytest tests/ops/test_chart.py):
#                             helm lint --strict, helm template of every example, the manifests
#                             validated against the Kubernetes 1.33 schemas, assertions on the
#                             objects, and every `fail` of the chart
#   scripts/helm.sh status    print what is installed (always exits 0)
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v3.21.4
HELM_MODULE=helm.sh/helm/v3
KUBE_MINOR=33
cache=${SPACECAST_CACHE:-$HOME/.cache/spacecast}
helm=$cache/bin/helm
LDFLAGS="-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$KUBE_MINOR -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$KUBE_MINOR"

# Pinned PyPI packages for the venv (its name changes with the pins, so a new pin makes a new venv).
PY_PINS=(kubernetes-validate==1.37.0 PyYAML==6.0.3 pytest==9.2.0 prometheus-client==0.26.0)
venv=${SPACECAST_OPS_VENV:-$cache/ops-venv-kv1.37.0-py6.0.3-pt9.2.0-pc0.26.0}

log() { printf 'helm.sh: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

helm_installed() {
    [[ -x $helm ]] || return 1
    local info
    info="$(go version -m "$helm" 2>/dev/null)" || return 1
    grep -qE "^[[:space:]]*mod[[:space:]]+${HELM_MODULE}[[:space:]]+${HELM_VERSION}([[:space:]]|$)" <<<"$info" &&
        grep -qF -- "k8sVersionMinor=$KUBE_MINOR" <<<"$info"
}

venv_installed() {
    [[ -x $venv/bin/python ]] || return 1
    local want=" ${PY_PINS[*]} " have
    have="$("$venv/bin/python" - "${PY_PINS[@]}" 2>/dev/null <<'EOF'
import importlib.metadata as m, sys
print(" ".join(f"{p.split('==')[0]}=={m.version(p.split('==')[0])}" for p in sys.argv[1:]))
EOF
)" || return 1
    [[ " $have " == "$want" ]]
}

install_helm() {
    helm_installed && return 0
    command -v go >/dev/null || die "go is required to install helm (Go module proxy)"
    mkdir -p "$cache/bin"
    log "go install $HELM_MODULE/cmd/helm@$HELM_VERSION (Kubernetes 1.$KUBE_MINOR ldflags; into $cache/bin)"
    local start=$SECONDS
    GOBIN=$cache/bin GOMODCACHE=$cache/gomod GOCACHE=$cache/gocache GOFLAGS=-modcacherw \
        GOPROXY="${GOPROXY:-https://proxy.golang.org}" \
        go install -ldflags "$LDFLAGS" "$HELM_MODULE/cmd/helm@$HELM_VERSION"
    helm_installed || die "$helm is not $HELM_MODULE $HELM_VERSION with the 1.$KUBE_MINOR ldflags after go install"
    log "helm installed in $((SECONDS - start)) s"
}

install_venv() {
    venv_installed && return 0
    command -v python3 >/dev/null || die "python3 is not installed"
    log "creating $venv (${PY_PINS[*]})"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${PY_PINS[@]}" ||
        die "pip install ${PY_PINS[*]} failed"
    venv_installed || die "the venv does not hold ${PY_PINS[*]} after pip install"
}

cmd_env() {
    echo "export SPACECAST_HELM=$helm"
    echo "export SPACECAST_OPS_PYTHON=$venv/bin/python"
}

case ${1:-} in
install)
    install_helm
    install_venv
    log "ready: $helm ($HELM_VERSION, Kubernetes 1.$KUBE_MINOR), $venv"
    ;;
env) cmd_env ;;
check)
    install_helm
    install_venv
    eval "$(cmd_env)"
    exec "$SPACECAST_OPS_PYTHON" -m pytest -q -p no:cacheprovider tests/ops/test_chart.py
    ;;
status)
    if helm_installed; then echo "helm: $HELM_VERSION ($helm)"; else echo "helm: missing"; fi
    if venv_installed; then echo "venv: ${PY_PINS[*]} ($venv)"; else echo "venv: missing"; fi
    ;;
*)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 2
    ;;
esac
