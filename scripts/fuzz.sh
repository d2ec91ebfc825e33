#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, a separate clang + ASan + UBSan build in build-fuzz/) and
# runs each for SECONDS (default 30), as many at once as there are cores. Fails if any target
# finds a crash, a sanitizer report, a leak, a timeout or an allocation over the memory limit,
# including on the committed corpus, which every run replays first (the regression inputs).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 600 fuzz_npy
# The committed corpus (fuzz/corpus/<target>/) is only read: each run works on a copy in a
# temporary directory. What a failing run found is kept in build-fuzz/fuzz-artifacts/ (crash-*,
# leak-*, oom-*, timeout-* inputs and each target's log); add a crash input to the corpus as
# regress-<what> once it is fixed. To grow the committed corpus on purpose, run a target by hand
# on the corpus directory (see fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
all_targets=(fuzz_csv fuzz_npy fuzz_model_file fuzz_requests)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -lt 1 ]]; then
  echo "fuzz: SECONDS must be a positive integer, got '$seconds'" >&2
  exit 2
fi

# Per input: a slow input is a bug too (libFuzzer's own default is 1200 s).
input_timeout=20
# Memory: RSS and any single allocation (a loader must refuse a huge claimed size before it
# allocates, so an allocation this large is a bug).
rss_limit_mb=2048
# Hard stop per target: the run itself, replaying the corpus and starting up.
wall_limit=$((seconds + 180))

jobs=$(nproc)
start=$(date +%s)
echo "fuzz: building ${targets[*]} (clang, libFuzzer + ASan + UBSan) in build-fuzz/"
cmake -S . -B build-fuzz -G Ninja -DKNN_FUZZ=ON \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ > build-fuzz.configure.log 2>&1 ||
  { cat build-fuzz.configure.log >&2; exit 1; }
rm -f build-fuzz.configure.log
cmake --build build-fuzz -j "$jobs" --target "${targets[@]}"
built=$(date +%s)

artifacts=build-fuzz/fuzz-artifacts
rm -rf "$artifacts"
mkdir -p "$artifacts"
work=$(mktemp -d "${TMPDIR:-/tmp}/knn-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0}
export GRPC_VERBOSITY=${GRPC_VERBOSITY:-NONE}
export TMPDIR="$work"  # fuzz_requests' data directory: removed with $work even after a crash

# run_target NAME: fuzzes NAME on a copy of its corpus; writes its exit status (0: nothing found)
# to $artifacts/NAME.status.
run_target() {
  local t=$1
  mkdir -p "$work/$t"
  cp -r "fuzz/corpus/$t/." "$work/$t/"
  local dict=()
  [[ -f "fuzz/$t.dict" ]] && dict=("-dict=fuzz/$t.dict")
  local status=0
  timeout --kill-after=10 "$wall_limit" "build-fuzz/bin/$t" "$work/$t" "${dict[@]}" \
    -max_total_time="$seconds" -timeout="$input_timeout" -rss_limit_mb="$rss_limit_mb" \
    -malloc_limit_mb="$rss_limit_mb" -artifact_prefix="$artifacts/$t-" -print_final_stats=1 \
    > "$artifacts/$t.log" 2>&1 || status=$?
  echo "$status" > "$artifacts/$t.status"
}

for t in "${targets[@]}"; do
  while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n || true; done
  run_target "$t" &
done
wait

passed=0
failed=0
for t in "${targets[@]}"; do
  if [[ "$(cat "$artifacts/$t.status" 2>/dev/null)" == "0" ]]; then
    passed=$((passed + 1))
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$artifacts/$t.log" | grep -o '[0-9]*$' || true)
    corpus=$(ls "$work/$t" | wc -l)
    echo "fuzz: $t passed: ${runs:-?} inputs in ${seconds} s, corpus $(ls "fuzz/corpus/$t" | wc -l) -> $corpus"
  else
    failed=$((failed + 1))
    echo "fuzz: $t FAILED; the end of its log ($artifacts/$t.log):" >&2
    grep -v '^#[0-9]' "$artifacts/$t.log" | tail -n 60 >&2
    echo "fuzz: $t exit status $(cat "$artifacts/$t.status" 2>/dev/null || echo '?')" >&2
    ls "$artifacts" | grep -E "^$t-" | sed "s|^|fuzz: found input: $artifacts/|" >&2 || true
  fi
done
end=$(date +%s)
echo "fuzz: build $((built - start)) s, fuzzing $((end - built)) s"
echo "fuzz: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
