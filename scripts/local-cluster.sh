#!/usr/bin/env bash
# Starts a coordinator and N workers on loopback (free ports, data in a temp directory), waits
# until every worker has registered, runs a command with KNN_COORDINATOR=HOST:PORT in its
# environment, and stops exactly the processes it started — also on Ctrl-C or failure.
#
#   scripts/local-cluster.sh [--workers N] [--bin DIR] [--keep-data] -- COMMAND [ARGS...]
#   e.g. scripts/local-cluster.sh --workers 3 -- sh -c 'build/bin/knnctl --coordinator $KNN_COORDINATOR tutorial'
set -euo pipefail
cd "$(dirname "$0")/.."

workers=3
bin=build/bin
keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workers) workers=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --keep-data) keep=1; shift ;;
    --) shift; break ;;
    *) echo "local-cluster: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $# -gt 0 ]] || { echo "local-cluster: give a command after --" >&2; exit 2; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/knn-cluster.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $keep -eq 0 ]]; then rm -rf "$dir"; else echo "local-cluster: data kept in $dir" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts a server in the background and sets `addr` from its first stdout line
# ("listening on HOST:PORT"). Not run in a subshell, so that `pids` keeps every process.
start() {
  local name=$1; shift
  "$@" > "$dir/$name.out" 2> "$dir/$name.err" &
  pids+=($!)
  for _ in $(seq 1 300); do
    if [[ -s "$dir/$name.out" ]]; then
      addr=$(head -n 1 "$dir/$name.out" | sed -n 's/^listening on //p')
      [[ -n "$addr" ]] && return 0
    fi
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "local-cluster: $name exited; its log:" >&2; cat "$dir/$name.err" >&2; return 1
    fi
    sleep 0.05
  done
  echo "local-cluster: $name did not start" >&2
  return 1
}

# Plaintext on loopback; see README.md, Security, for TLS.
start coordinator "$bin/knn-coordinator" --listen 127.0.0.1:0 --data-dir "$dir/coordinator" --insecure
coordinator=$addr
for i in $(seq 1 "$workers"); do
  start "worker$i" "$bin/knn-worker" --listen 127.0.0.1:0 --coordinator "$coordinator" \
    --data-dir "$dir/worker$i" --insecure
done
# Wait until all workers are alive in the coordinator's view.
for _ in $(seq 1 200); do
  alive=$("$bin/knnctl" --coordinator "$coordinator" --json status 2>/dev/null |
          grep -c '"state": "WORKER_ALIVE"' || true)
  [[ "$alive" -ge "$workers" ]] && break
  sleep 0.1
done
if [[ "${alive:-0}" -lt "$workers" ]]; then
  echo "local-cluster: only ${alive:-0} of $workers workers registered" >&2
  exit 1
fi
echo "local-cluster: coordinator $coordinator with $workers workers" >&2
# In the background and waited for, so that a signal reaches the traps (and cleanup) at once.
KNN_COORDINATOR=$coordinator "$@" &
command_pid=$!
pids=("$command_pid" "${pids[@]}")
wait "$command_pid"
