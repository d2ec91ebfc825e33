#!/usr/bin/env bash
# Installs every Debian 12 package knncluster needs to build, test, benchmark and run the demo,
# with apt-get (through sudo when not root), only what is missing, non-interactively.
# Safe to run any number of times.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # fuzzing (scripts/fuzz.sh): clang 14 and its libFuzzer / sanitizer runtimes
  clang libclang-rt-14-dev
  # C++ libraries
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev
  libpng-dev zlib1g-dev libssl-dev
  # gRPC and Protocol Buffers (the -dev packages do not pull protoc or libprotobuf-dev)
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  python3-grpcio python3-protobuf
  # the Python client (client/python): its tests, and installing it into a venv without network
  python3-pytest python3-venv python3-setuptools python3-wheel python3-scipy
  # scikit-learn as the test oracle and benchmark reference; FAISS and OpenBLAS for benchmarks
  python3 python3-numpy python3-sklearn python3-faiss libopenblas0-openmp
  # network-partition test (tests/cluster/partition_test.py): namespaces, one-way drops
  iproute2 nftables
  # the status page test (tests/cluster/http_test.py) opens it in headless Chromium
  chromium
)
# Not from apt: scripts/check-deploy.sh (ctest -L deploy) uses node >= 20 with npm and kubectl,
# which the project's machine image provides (Debian 12's nodejs is 18; its kubernetes-client
# 1.20 has a kustomize too old for deploy/k8s). Without them that check skips, or fails under CI.

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
echo "install-deps: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
