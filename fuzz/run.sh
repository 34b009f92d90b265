#!/usr/bin/env bash
# Fuzzes tessera_gguf::parse for SECONDS (default 60):
#
#   fuzz/run.sh 660            # ~11 minutes, AddressSanitizer
#   SANITIZER=none fuzz/run.sh # where ASan cannot be built
#
# Seeds fuzz/corpus/parse/ (gitignored) with the hostile corpus and the valid
# files of crates/tessera-gguf/tests, then runs `cargo fuzz` on stable Rust
# (RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags). Crashes land in
# fuzz/artifacts/parse/; add each to the hostile corpus once fixed.
# Needs `cargo install cargo-fuzz`.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
corpus=corpus/parse
mkdir -p "$corpus"
cp ../crates/tessera-gguf/tests/hostile/*.gguf-hostile "$corpus"/
cp ../crates/tessera-gguf/tests/valid/*.gguf-valid "$corpus"/
unset CARGO_TARGET_DIR # cargo-fuzz builds in fuzz/target
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run --sanitizer "${SANITIZER:-address}" --debug-assertions parse "$corpus" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1
