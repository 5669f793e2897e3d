#!/usr/bin/env bash
# Runs one fuzz target of <build>/fuzz for a bounded time. Usage:
#   run_fuzz.sh FUZZ_BUILD_DIR TARGET SEED_CORPUS_DIR SECONDS [libFuzzer flags...]
# STRATA_FUZZ_SECONDS in the environment overrides SECONDS (a longer run on demand). New inputs go
# to FUZZ_BUILD_DIR/corpus/TARGET (kept between runs), crashes to FUZZ_BUILD_DIR/artifacts/; the
# seed corpus in the repository is only read. Every seed is run first: a seed that crashes (a
# committed regression input) fails at once.
set -euo pipefail
dir="$1"; target="$2"; seeds="$3"; seconds="${STRATA_FUZZ_SECONDS:-$4}"; shift 4
mkdir -p "$dir/corpus/$target" "$dir/artifacts"
exec "$dir/bin/$target" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=3072 \
    -max_len=65536 -print_final_stats=1 -print_funcs=0 -artifact_prefix="$dir/artifacts/$target-" "$@" \
    "$dir/corpus/$target" "$seeds"
