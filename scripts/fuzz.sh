#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ briefly (CI smoke run, issue 12): builds them
# once (nightly, cargo-fuzz, no sanitizer: the crate forbids unsafe code, so
# libFuzzer's coverage guidance and our property assertions are what matter,
# and the build takes a fraction of an ASan one), then gives each target
# FUZZ_SECONDS (default 8) from its committed corpus. Any crash or failed
# property stops the run with the target's reproducer under fuzz/artifacts/.
# The corpora grow in a scratch copy; the committed seeds are never changed.
#   FUZZ_SECONDS=600 scripts/fuzz.sh [target...]   # a longer run
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-8}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz)" >&2
  exit 1
fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

t0=$(date +%s)
cargo +nightly fuzz build -s none
echo "fuzz targets built in $(( $(date +%s) - t0 )) s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  cp -r "corpus/$t/." "$scratch/$t/" 2>/dev/null || true
  echo "== $t (${seconds} s)"
  status=0
  cargo +nightly fuzz run -s none "$t" "$scratch/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$scratch/$t.log" 2>&1 || status=$?
  grep -E '^stat::(number_of_executed_units|new_units_added)|^#[0-9]+ +DONE' "$scratch/$t.log" || true
  if [[ $status -ne 0 ]]; then
    tail -40 "$scratch/$t.log" >&2
    echo "scripts/fuzz.sh: $t failed (exit $status); the reproducer is under fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "scripts/fuzz.sh: ${#targets[@]} targets, $(( $(date +%s) - t0 )) s in all"
