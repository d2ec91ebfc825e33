#!/usr/bin/env bash
# Configures and builds knncluster into build/ (RelWithDebInfo, Ninja). Binaries land in build/bin/.
# Usage: scripts/build.sh [extra cmake arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja "$@"
cmake --build build -j "$(nproc)"
