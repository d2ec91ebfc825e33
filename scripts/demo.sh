#!/usr/bin/env bash
# Installs missing Debian packages, builds, and runs the scikit-learn KNN tutorial on the embedded
# digits data: split, fit KNN(n_neighbors=20, kd_tree, p=2), test accuracy, save and reload the model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
build/bin/knnctl tutorial --model "$workdir/digits_knn.model" "$@"
