#!/usr/bin/env bash
# Fuzzes the edge's parsers with cargo-fuzz (libFuzzer), each target for a bounded time. Not part
# of the test suite or CI: run it by hand, or on a schedule, and turn each crash it finds into a
# fix plus a regression test.
#
#   scripts/fuzz.sh [TARGET...]          (default: every target in api/fuzz/fuzz_targets)
#
#   FUZZ_SECONDS=60   time per target        FUZZ_JOBS=1   parallel fuzzing jobs per target
#
# Targets: stream_frame (native stream client frames), jwt_claims (bearer tokens and claims),
# multipart_send (the Space7 multipart send body). Corpora grow under api/fuzz/corpus/ (ignored by
# git), seeded from api/fuzz/seeds/; crashes land in api/fuzz/artifacts/<target>/.
#
# cargo-fuzz needs nightly-only compiler flags (-Zsanitizer); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take them, so no nightly download is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_JOBS=${FUZZ_JOBS:-1}
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spacecast/target}-fuzz"

if ! command -v cargo-fuzz >/dev/null; then
    echo "==> installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

fuzz_dir=api/fuzz
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir "$fuzz_dir")
fi

failed=()
for t in "${targets[@]}"; do
    echo "==> fuzzing $t for ${FUZZ_SECONDS}s"
    corpus=$fuzz_dir/corpus/$t
    mkdir -p "$corpus"
    seeds=()
    [[ -d $fuzz_dir/seeds/$t ]] && seeds=("$fuzz_dir/seeds/$t")
    if ! cargo fuzz run --fuzz-dir "$fuzz_dir" "$t" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$FUZZ_SECONDS" -jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS" \
        -rss_limit_mb=2048 -timeout=10 -max_len=65536; then
        failed+=("$t")
    fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: crashes found in: ${failed[*]} (see $fuzz_dir/artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} target(s), ${FUZZ_SECONDS}s each, no crash"
