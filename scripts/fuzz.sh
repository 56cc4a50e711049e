#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ and runs each for FUZZ_SECONDS (issue 12).
# CI runs it briefly (.ci/run: 10 targets x 15 s, two at a time); the long
# runs are the same script with more time (docs/fuzzing.md):
#   FUZZ_SECONDS=600 FUZZ_JOBS=2 FUZZ_OUT=/tmp/fuzz nice -n 19 scripts/fuzz.sh [target...]
# Needs the nightly toolchain (libFuzzer's coverage instrumentation) and a C++
# compiler (libfuzzer-sys builds libFuzzer); no cargo-fuzz: the crate is built
# with cargo directly and the flags `cargo fuzz build -s none` passes. No
# sanitizer: the crate forbids unsafe code, so coverage guidance and the
# property checks of src/fuzzing.rs are what matter.
# Each target starts from fuzz/corpus/<target>/ and fuzz/regressions/<target>/
# (read only); new inputs go to FUZZ_OUT/<target>/ (default: a scratch
# directory removed on exit). Any crash, hang or failed property fails the run,
# with its reproducer in fuzz/artifacts/<target>/.
# Settings: FUZZ_SECONDS (15), FUZZ_JOBS targets at a time (2), FUZZ_OUT,
# FUZZ_TARGET_DIR (fuzz/target).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds="${FUZZ_SECONDS:-15}"
jobs="${FUZZ_JOBS:-2}"
target_dir="${FUZZ_TARGET_DIR:-$root/fuzz/target}"

if ! host=$(rustc +nightly -vV 2>/dev/null | sed -n 's/^host: //p') || [[ -z $host ]]; then
  echo "scripts/fuzz.sh: FAILED: the nightly Rust toolchain is missing; fuzzing needs it" >&2
  echo "  (rustup toolchain install nightly --profile minimal)" >&2
  exit 1
fi
if ! command -v c++ >/dev/null; then
  echo "scripts/fuzz.sh: FAILED: no C++ compiler (c++); libfuzzer-sys builds libFuzzer with it" >&2
  exit 1
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^xtm-composer-fuzz$')
fi

# What `cargo fuzz build -s none` passes (cargo-fuzz 0.13, src/project.rs),
# except `-Ccodegen-units=1`: fuzz/Cargo.toml's profile trades some speed per
# execution for a build several times shorter. `--target` keeps these flags
# off build scripts and proc macros.
flags=(
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  -Cllvm-args=-simplifycfg-branch-fold-threshold=0
  --cfg fuzzing
  -Clink-dead-code
  -Cllvm-args=-sanitizer-coverage-stack-depth
  -Cdebug-assertions
)
t0=$(date +%s)
RUSTFLAGS="${flags[*]}${RUSTFLAGS:+ $RUSTFLAGS}" cargo +nightly build --release --locked \
  --manifest-path fuzz/Cargo.toml --target "$host" --target-dir "$target_dir" --bins
echo "scripts/fuzz.sh: fuzz targets built in $(( $(date +%s) - t0 )) s"
bin="$target_dir/$host/release"

out="${FUZZ_OUT:-}"
if [[ -z $out ]]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

# One target: its summary row, or its failure with the log's end.
run_one() {
  local t=$1 status=0
  mkdir -p "$out/$t" "fuzz/artifacts/$t"
  local seeds=("fuzz/corpus/$t")
  [[ -d fuzz/regressions/$t ]] && seeds+=("fuzz/regressions/$t")
  "$bin/$t" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" "$out/$t" "${seeds[@]}" >"$out/$t.log" 2>&1 || status=$?
  if [[ $status -ne 0 ]]; then
    # The broken property (the panic message), then libFuzzer's summary.
    { grep -m1 -A1 'panicked at' "$out/$t.log" || true; tail -12 "$out/$t.log"; } >&2
    echo "scripts/fuzz.sh: FAILED: $t (exit $status); reproducer: $(ls -t fuzz/artifacts/$t/* 2>/dev/null | head -1)" >&2
    return 1
  fi
  local execs done_line
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log")
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$out/$t.log" | tail -1)
  printf '%-16s %10s execs  cov %5s  ft %6s  corpus %s\n' "$t" "$execs" \
    "$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$done_line")" \
    "$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$done_line")" \
    "$(sed -n 's/.*corp: \([^ ]*\).*/\1/p' <<<"$done_line")"
}

echo "scripts/fuzz.sh: ${#targets[@]} targets, ${seconds} s each, ${jobs} at a time"
for t in "${targets[@]}"; do
  while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n || true; done
  { s=0; run_one "$t" || s=1; echo "$s" >"$out/$t.status"; } &
done
wait
failed=0
for t in "${targets[@]}"; do
  [[ $(cat "$out/$t.status" 2>/dev/null) == 0 ]] || failed=1
done
if [[ $failed -ne 0 ]]; then
  echo "scripts/fuzz.sh: FAILED: a fuzz target crashed or broke a property (above)" >&2
  exit 1
fi
echo "scripts/fuzz.sh: ${#targets[@]} targets passed, $(( $(date +%s) - t0 )) s in all"
