#!/usr/bin/env bash
# The one test command: installs missing Debian packages, builds, and runs every test with ctest.
# Under CI (CI=true) a parity test whose oracle (scikit-learn) is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@"
