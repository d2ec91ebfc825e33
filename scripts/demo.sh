#!/usr/bin/env bash
# The README's run command: installs missing Debian packages, builds, starts a coordinator and
# three workers on loopback, runs scikit-learn's KNN tutorial through the cluster on the embedded
# digits data, prints the results, and stops exactly the processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh > /dev/null
exec scripts/local-cluster.sh --workers 3 -- \
  sh -c 'build/bin/knnctl --coordinator "$KNN_COORDINATOR" tutorial "$@"' knnctl "$@"
