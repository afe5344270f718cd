#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests, and the black-box tests that start the
# real `spacecast` binary — once on the embedded store and once on the CQL store, against a real
# Apache Cassandra 5 that this script installs (from Maven Central) and starts itself
# (scripts/cassandra.sh). If Cassandra cannot start, the run fails; nothing is skipped. The loadtest
# harness tests also run one scenario against Centrifugo v6.9.1, which scripts/centrifugo.sh
# installs with `go install` (cached under ~/.cache/spacecast); a missing Centrifugo fails them.
# nats-server v2.15.2 with JetStream (scripts/nats.sh, same `go install` caching) runs beside
# Cassandra with fresh data for the cluster tests (SPACECAST_TEST_NATS_URL); it is stopped at exit.
# The S3 media store's tests run against a real SeaweedFS, which scripts/seaweedfs.sh builds from its
# Go module source (about 3.5 min the first time, cached after) and starts with test credentials.
# The Socket.IO and web console tests drive the real `socket.io-client` and a headless Debian
# Chromium (through playwright-core), which scripts/js.sh installs from npm and apt.
# tests/ops (pytest, in a venv that scripts/helm.sh installs) builds the container image with Debian's
# buildah (scripts/image.sh) and runs it, and renders and validates the Helm chart with helm v3.21.4
# (scripts/helm.sh, `go install`, cached under ~/.cache/spacecast).
# api/tests/schemathesis.rs runs Schemathesis (scripts/schemathesis.sh installs a pinned version
# from PyPI into a venv under ~/.cache/spacecast) against the served OpenAPI document, on both
# stores like every black-box test.
# The alert rules and the dashboard are checked with promtool (observability/tests/promtool.rs:
# `check rules`, `test rules`, every panel query parses; api/tests/metrics_export.rs: every metric
# they use is exported by a running server, and `check metrics` on its scrape), from Debian's
# prometheus package, which scripts/promtool.sh unpacks without installing it.
# The trace test (api/tests/traces.rs, beside the cluster tests) exports to a real Jaeger v2
# all-in-one, which scripts/jaeger.sh builds through the Go module proxy (about 3 min the first
# time, cached after) and runs in memory; it is stopped at exit.
#
# Build output goes to $CARGO_TARGET_DIR (default: ~/.cache/spacecast/target, outside the repo) so
# repeated runs and CI on the same machine reuse it. Cassandra's jars, data and logs live under
# ~/.cache/spacecast/cassandra; each run starts it with empty data and stops it at the end, and so
# SeaweedFS (~/.cache/spacecast/seaweedfs).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spacecast/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
# api/tests/cluster*.rs and traces.rs are `test = false` (they run in a step of their own, last),
# so --all-targets leaves them out.
CLUSTER_TESTS=(--test cluster --test cluster_discovery --test cluster_notifications --test cluster_unread
  --test cluster_search --test cluster_presence --test traces)
cargo clippy -p spacecast-api "${CLUSTER_TESTS[@]}" --locked -- -D warnings

step "build the tests"
cargo test --workspace --all-targets --locked --no-run
cargo test -p spacecast-api "${CLUSTER_TESTS[@]}" --locked --no-run

step "install Centrifugo v6.9.1 (cached; the loadtest harness compares against it)"
scripts/centrifugo.sh install

step "install NATS (nats-server v2.15.2, cached; the cluster tests run against it)"
scripts/nats.sh install

step "install SeaweedFS (cached; the S3 media store's tests run against it)"
scripts/seaweedfs.sh install

step "install Jaeger v1.76.0 (cached; the trace test exports to it)"
scripts/jaeger.sh install

step "install the JavaScript peers (socket.io-client, playwright-core) and Debian's Chromium"
scripts/js.sh install
eval "$(scripts/js.sh env)" # exports SPACECAST_TEST_{NODE,JS_DIR,CHROMIUM}

step "install Schemathesis (PyPI, pinned, cached; api/tests/schemathesis.rs runs it against /openapi.json)"
scripts/schemathesis.sh install
eval "$(scripts/schemathesis.sh env)" # exports SPACECAST_TEST_SCHEMATHESIS

step "install buildah (Debian; tests/ops builds and runs the container image with it)"
scripts/image.sh install

step "install helm v3.21.4 and kubernetes-validate (go install / PyPI, pinned, cached; the chart tests)"
scripts/helm.sh install
eval "$(scripts/helm.sh env)" # exports SPACECAST_HELM, SPACECAST_OPS_PYTHON

step "install promtool (Debian's prometheus package, unpacked under ~/.cache/spacecast; the alert rule and dashboard tests run it)"
scripts/promtool.sh install
eval "$(scripts/promtool.sh env)" # exports SPACECAST_TEST_PROMTOOL

step "start Cassandra (fresh data)"
scripts/cassandra.sh wipe
scripts/cassandra.sh up
trap 'scripts/jaeger.sh down || true; scripts/seaweedfs.sh down || true; scripts/nats.sh down || true; scripts/cassandra.sh down || true' EXIT

step "start NATS with JetStream (fresh data)"
scripts/nats.sh down
scripts/nats.sh wipe
scripts/nats.sh up
SPACECAST_TEST_NATS_URL="$(scripts/nats.sh url)"
export SPACECAST_TEST_NATS_URL

step "start SeaweedFS S3 (fresh data and credentials)"
scripts/seaweedfs.sh wipe
scripts/seaweedfs.sh up
eval "$(scripts/seaweedfs.sh env)" # exports SPACECAST_TEST_S3_{ENDPOINT,REGION,BUCKET,...}

step "start Jaeger (in memory: every run starts empty)"
scripts/jaeger.sh down
scripts/jaeger.sh up
eval "$(scripts/jaeger.sh env)" # exports SPACECAST_TEST_OTLP_{,HTTP_}ENDPOINT, SPACECAST_TEST_JAEGER_QUERY

# tests/ops: the image that scripts/image.sh builds (from the debug binary built above, not a release
# build), run chrooted from its own root filesystem, alone and as a cluster node (migrate, then serve
# on the Cassandra, NATS and SeaweedFS above); and the Helm chart (lint, template of every example,
# Kubernetes 1.33 schemas, assertions, every `fail`).
step "container image and Helm chart (tests/ops)"
SPACECAST_TEST_BINARY="$CARGO_TARGET_DIR/debug/spacecast" \
    "$SPACECAST_OPS_PYTHON" -m pytest -q -p no:cacheprovider tests/ops

step "cargo test (embedded store; CQL store conformance and outage tests)"
cargo test --workspace --all-targets --locked

step "cargo test again with the black-box suite on the CQL store (same build)"
SPACECAST_TEST_STORE=cql cargo test --workspace --tests --locked

# api/tests/cluster.rs runs three nodes on the CQL store sharing one keyspace and the NATS above;
# one test at a time, since one of them restarts NATS under load.
step "cluster tests: three nodes over NATS + CQL (api/tests/cluster.rs)"
cargo test -p spacecast-api --test cluster --locked -- --test-threads 1
# Issue 12 through every node of three: discovery and user stats, notifications, read markers,
# unread counts and the inbox; presence.
cargo test -p spacecast-api --test cluster_discovery --locked -- --test-threads 1
cargo test -p spacecast-api --test cluster_notifications --locked -- --test-threads 1
cargo test -p spacecast-api --test cluster_unread --locked -- --test-threads 1
# Message search: every node indexes every commit of the cluster.
cargo test -p spacecast-api --test cluster_search --locked -- --test-threads 1
# Presence: a user online through one node is online on the others; a dead node's users go
# offline within the expiry bound.
cargo test -p spacecast-api --test cluster_presence --locked -- --test-threads 1
# One send through one node into a space another owns, traced end to end into Jaeger.
cargo test -p spacecast-api --test traces --locked -- --test-threads 1
