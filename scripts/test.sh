#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests and the black-box tests that start
# the real `spacecast` binary. Everything the tests need is built here; no external service is
# needed yet (the embedded store is the default).
#
# Build output goes to $CARGO_TARGET_DIR (default: ~/.cache/spacecast/target, outside the repo) so
# repeated runs and CI on the same machine reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spacecast/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Black-box tests open many sockets (1000-subscriber fan-out lives in the loadtest, not here).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --all-targets --locked
