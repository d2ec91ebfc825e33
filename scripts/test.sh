#!/usr/bin/env bash
# The one test command: installs missing Debian packages, builds, runs the fuzz targets for
# KNN_FUZZ_SECONDS each (default 30; see scripts/fuzz.sh), and runs every test with ctest.
# Under CI (CI=true) a parity test whose oracle (scikit-learn) is missing fails instead of skipping,
# and the fuzz targets run at least 30 s each. KNN_FUZZ_SECONDS=0 skips them (not under CI).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh

# Fuzzing first, so that ctest's summary closes the output; a failure is reported after ctest.
# Time budget: the fuzz build (a few minutes from scratch) and about 2 x 30 s of fuzzing on two
# cores; `timeout` stops the suite at 20 minutes whatever happens.
fuzz_seconds=${KNN_FUZZ_SECONDS:-30}
if [[ "${CI:-}" == "true" && "$fuzz_seconds" -lt 30 ]]; then fuzz_seconds=30; fi
fuzz_status=0
if [[ "$fuzz_seconds" -gt 0 ]]; then
  timeout --kill-after=30 1200 scripts/fuzz.sh "$fuzz_seconds" || fuzz_status=$?
fi

cd build
ctest_status=0
ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@" || ctest_status=$?
if [[ $fuzz_status -ne 0 ]]; then
  echo "test: the fuzz targets failed (exit $fuzz_status; scripts/fuzz.sh output above)" >&2
fi
if [[ $ctest_status -ne 0 ]]; then exit "$ctest_status"; fi
exit "$fuzz_status"
