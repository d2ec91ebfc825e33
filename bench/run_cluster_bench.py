#!/usr/bin/python3
"""The cluster against the in-process engine, in the same run (issue 3's goals).

  /usr/bin/python3 bench/run_cluster_bench.py [--build-dir build] [--datasets uniform3d,blobs16d]

Starts a coordinator and 2 workers (--workers) on loopback, fits a kd_tree classifier (k = 10,
leaf_size 30) on each dataset of make_bench_data.py (labels: row index mod 10) through knnctl,
then runs bin/cluster_bench, which times kneighbors and predict at batches of 1, 100 and 10,000
queries through the coordinator and in-process, alternating the two sides --rounds times, with
one caller, and at 10,000 also with --inflight callers at once (2 and 4 by default: with 4
both sides keep the cores busy). Prints the ratios, the p50
latency the cluster adds at a batch of one, the CPU each side spends per batch of 10,000 (the
cluster's split into client, coordinator and workers), and each worker's peak RSS against 1.5x
the raw float64 bytes of its shards + 64 MiB.
Goals: cluster >= 80% of in-process throughput at 10,000; added p50 latency < 1 ms at 1.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import make_bench_data  # noqa: E402


def start(argv, tmp, name):
    out = open(os.path.join(tmp, name + ".out"), "w+")
    proc = subprocess.Popen(argv, stdout=out, stderr=open(os.path.join(tmp, name + ".err"), "w"),
                            env={**os.environ, "GRPC_VERBOSITY": "ERROR"})
    for _ in range(600):
        out.seek(0)
        line = out.readline()
        if line.startswith("listening on ") and line.endswith("\n"):
            return proc, line.split()[-1]
        time.sleep(0.05)
    raise RuntimeError(name + " did not start")


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    import numpy as np
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--datasets", default="uniform3d,blobs16d")
    ap.add_argument("--budget", default="3")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3,
                    help="each case alternates in-process and cluster this many times")
    ap.add_argument("--inflight", default="1,2,4",
                    help="callers at once (comma-separated); 1 = one caller waiting on each answer")
    a = ap.parse_args()
    bin_dir = os.path.join(a.build_dir, "bin")
    data = os.path.join(os.environ.get("TMPDIR", "/tmp"), "knn-bench-data")
    names = a.datasets.split(",")
    for name in names:
        X, Q = make_bench_data.load(name)
        labels = os.path.join(data, f"{name}_labels.npy")
        if not os.path.exists(labels):
            np.save(labels, (np.arange(len(X)) % 10).astype(np.int64))
    tmp = tempfile.mkdtemp(prefix="knn-cluster-bench.")
    procs = []
    try:
        coord, addr = start([os.path.join(bin_dir, "knn-coordinator"), "--listen", "127.0.0.1:0",
                             "--data-dir", os.path.join(tmp, "c"), "--insecure"], tmp, "coordinator")
        procs.append(coord)
        workers = []
        for i in range(a.workers):
            w, waddr = start([os.path.join(bin_dir, "knn-worker"), "--listen", "127.0.0.1:0",
                              "--coordinator", addr, "--data-dir", os.path.join(tmp, f"w{i}"),
                              "--insecure"],
                         tmp, f"worker{i}")
            procs.append(w)
            workers.append((w, waddr))
        knnctl = [os.path.join(bin_dir, "knnctl"), "--coordinator", addr, "--json"]
        for _ in range(100):
            st = json.loads(subprocess.run(knnctl + ["status"], capture_output=True, text=True).stdout)
            if sum(w["state"] == "WORKER_ALIVE" for w in st["workers"]) == a.workers:
                break
            time.sleep(0.1)
        for name in names:
            t0 = time.time()
            subprocess.run(knnctl + ["fit", "--data", os.path.join(data, f"{name}_base.npy"),
                                     "--labels", os.path.join(data, f"{name}_labels.npy"),
                                     "-k", "10", "--algorithm", "kd_tree", "--model", f"{name}-kd"],
                           check=True, capture_output=True)
            print(f"uploaded and fitted {name} in {time.time() - t0:.1f} s", flush=True)
        bench = [os.path.join(bin_dir, "cluster_bench"), "--coordinator", addr, "--data", data,
                 "--datasets", a.datasets, "--budget", a.budget, "--rounds", str(a.rounds),
                 "--coordinator-pid", str(coord.pid),
                 "--worker-pids", ",".join(str(w.pid) for w, _ in workers)]
        rows = []
        for inflight in a.inflight.split(","):
            # One caller: every batch size. More callers: the large batch, where throughput is
            # the question (at a batch of one the question is latency).
            batches = "1,100,10000" if inflight == "1" else "10000"
            rows += [json.loads(line) for line in subprocess.run(
                bench + ["--inflight", inflight, "--batches", batches],
                check=True, capture_output=True, text=True).stdout.splitlines()]
        print()
        print("| dataset | op | batch | callers | in-process qps | cluster qps | cluster / in-process "
              "| p50 ms in-process | p50 ms cluster | added p50 ms |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['dataset']} | {r['op']} | {r['batch']} | {r['inflight']} | "
                  f"{r['in_process_qps']:,.0f} | {r['cluster_qps']:,.0f} | {r['ratio']:.2f} | "
                  f"{r['in_process_p50_ms']:.3f} | {r['cluster_p50_ms']:.3f} | "
                  f"{r['cluster_p50_ms'] - r['in_process_p50_ms']:.3f} |")
        print("\n(qps: median over the rounds; cluster / in-process: median of the per-round "
              "ratios, the two sides alternating)")
        print()
        print("| dataset | op | callers | in-process CPU ms | cluster CPU ms | client | coordinator "
              "| workers | in-process / cluster CPU |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            if r["batch"] != 10000:
                continue
            cluster = r["client_cpu_ms"] + r["coordinator_cpu_ms"] + r["workers_cpu_ms"]
            print(f"| {r['dataset']} | {r['op']} | {r['inflight']} | {r['in_process_cpu_ms']:.1f} | "
                  f"{cluster:.1f} | {r['client_cpu_ms']:.1f} | {r['coordinator_cpu_ms']:.1f} | "
                  f"{r['workers_cpu_ms']:.1f} | {r['in_process_cpu_ms'] / cluster:.2f} |")
        print("\n(CPU: core-milliseconds per batch of 10,000, user + system, median over the rounds; "
              "on a machine both sides share, throughput can reach at most the CPU ratio)")
        st = json.loads(subprocess.run(knnctl + ["status"], capture_output=True, text=True).stdout)
        print()
        print("| worker | shards | rows | raw float64 MiB | peak RSS MiB | budget (1.5x raw + 64) MiB |")
        print("|---|---|---|---|---|---|")
        dims = {n: make_bench_data.load(n)[0].shape[1] for n in names}
        procs_by_addr = {waddr: proc for proc, waddr in workers}
        for w in st["workers"]:
            raw = 0  # the float64 bytes of the shards this worker holds
            for m in st["models"]:
                for s in m.get("shards", []):
                    if s["worker_id"] == w["worker_id"]:
                        raw += int(s["rows"]) * dims.get(m["name"].rsplit("-kd", 1)[0], 0) * 8
            proc = procs_by_addr.get(w["address"])
            rss = peak_rss(proc.pid) if proc else 0
            print(f"| {w['worker_id'][:8]} | {len(w.get('shard_ids', []))} | {int(w.get('rows', 0)):,} | "
                  f"{raw / 2**20:.1f} | {rss / 2**20:.1f} | {(1.5 * raw + 64 * 2**20) / 2**20:.1f} |")
        print(f"\n(peak RSS: VmHWM of each worker process over the whole run, holding {a.datasets})")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main()
