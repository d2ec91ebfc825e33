#!/usr/bin/python3
"""Runs knn_bench next to scikit-learn and FAISS in the same run and prints one table.

Usage (Debian's python, not a pyenv one):
  /usr/bin/python3 bench/run_bench.py [--build-dir build-bench] [--datasets a,b] [--budget 4]

1. Generates the datasets with make_bench_data.py (cached as .npy in $TMPDIR/knn-bench-data).
2. Runs the references in a subprocess with LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp
   so that scikit-learn and FAISS use OpenBLAS (Debian's default libblas.so.3 may be the slow
   reference BLAS), and prints the BLAS each used (threadpoolctl).  scikit-learn
   KNeighbors(kd_tree|ball_tree|brute, leaf_size=30, k=10) and FAISS IndexFlatL2 (float32), at 1 and
   2 threads (n_jobs plus threadpool_limits, faiss.omp_set_num_threads).  Each reference case is
   calibrated on a few queries and then timed on as many queries as fit in --budget seconds (all of
   them if they fit; qps is per query either way); best of 2 timings.
3. Runs <build-dir>/bin/knn_bench --benchmark_format=json and joins the results.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import make_bench_data  # noqa: E402

DATASETS = ("digits", "uniform3d", "blobs16d", "gauss784d")
OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
K = 10


def cache_dir():
    return os.path.join(os.environ.get("TMPDIR", "/tmp"), "knn-bench-data")


# ---------------------------------------------------------------------------------------------
# The reference side: runs in a subprocess (see main) so that LD_LIBRARY_PATH selects OpenBLAS.
def reference_main(names, budget):
    import numpy as np
    import threadpoolctl
    import faiss
    from sklearn.neighbors import NearestNeighbors

    info = threadpoolctl.threadpool_info()
    blas = [f"{i['internal_api']} {i.get('version')} ({i.get('threading_layer')}) {i['filepath']}"
            for i in info if i["user_api"] == "blas"]
    maps = open("/proc/self/maps").read()
    out = {"blas": blas, "openblas_mapped": "libopenblas" in maps, "cases": []}

    def timed(fn, Q, nq):
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            fn(Q[:nq])
            best = min(best, time.perf_counter() - t0)
        return nq / best

    def measure(fn, Q):
        # Calibrate on a few queries, then use as many as fit in the budget.
        probe = min(len(Q), 64)
        t0 = time.perf_counter()
        fn(Q[:probe])
        per = max((time.perf_counter() - t0) / probe, 1e-9)
        nq = int(min(len(Q), max(probe, budget / per)))
        return timed(fn, Q, nq), nq

    for name in names:
        X, Q = make_bench_data.load(name, cache_dir())
        for threads in (1, 2):
            with threadpoolctl.threadpool_limits(limits=threads):
                for algo in ("kd_tree", "ball_tree", "brute"):
                    nn = NearestNeighbors(n_neighbors=K, algorithm=algo, leaf_size=30, n_jobs=threads)
                    t0 = time.perf_counter()
                    nn.fit(X)
                    build = time.perf_counter() - t0
                    qps, nq = measure(lambda q: nn.kneighbors(q, K), Q)
                    out["cases"].append(dict(dataset=name, algorithm=algo, threads=threads, qps=qps,
                                             queries=nq, build_s=build))
                    print(f"  sklearn {name} {algo} t={threads}: {qps:,.0f} qps ({nq} queries)",
                          file=sys.stderr, flush=True)
                faiss.omp_set_num_threads(threads)
                Xf, Qf = X.astype(np.float32), Q.astype(np.float32)
                index = faiss.IndexFlatL2(X.shape[1])
                index.add(Xf)
                qps, nq = measure(lambda q: index.search(q, K), Qf)
                out["cases"].append(dict(dataset=name, algorithm="faiss", threads=threads, qps=qps,
                                         queries=nq, build_s=0.0))
                print(f"  faiss {name} t={threads}: {qps:,.0f} qps ({nq} queries)",
                      file=sys.stderr, flush=True)
    json.dump(out, sys.stdout)


# ---------------------------------------------------------------------------------------------
def run_references(names, budget):
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = OPENBLAS_DIR + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    env.pop("OMP_NUM_THREADS", None)
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--reference", ",".join(names),
                        "--budget", str(budget)], env=env, stdout=subprocess.PIPE, check=True)
    return json.loads(p.stdout)


def run_ours(binary, names, extra):
    filt = "(build|query)/(" + "|".join(names) + ")/"
    cmd = [binary, "--data_dir=" + cache_dir(), "--benchmark_format=json",
           "--benchmark_filter=" + filt] + extra
    print("running:", " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, check=True)
    res = {}
    for b in json.loads(p.stdout)["benchmarks"]:
        parts = b["name"].split("/")
        if parts[0] == "build":
            ms = b["real_time"] if b.get("time_unit") == "ms" else b["real_time"] / 1e6
            res[("build", parts[1], parts[2])] = (ms / 1e3, b.get("label", ""))
        else:
            t = int(parts[3].split(":")[1])
            res[("query", parts[1], parts[2], t)] = (b["qps"], b.get("label", ""))
    return res


def fmt(x):
    return "—" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:,.1f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--budget", type=float, default=4.0, help="seconds per reference timing")
    ap.add_argument("--reference", help=argparse.SUPPRESS)
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("bench_args", nargs="*", help="extra arguments for knn_bench")
    a = ap.parse_args()
    if a.reference:
        reference_main(a.reference.split(","), a.budget)
        return
    names = a.datasets.split(",")
    start = time.time()
    for n in names:  # generate (or reuse) the cached datasets
        make_bench_data.load(n, cache_dir())
    print(f"datasets ready in {cache_dir()} ({time.time() - start:.1f} s)", file=sys.stderr)
    ref = run_references(names, a.budget)
    ours = {} if a.skip_ours else run_ours(os.path.join(a.build_dir, "bin", "knn_bench"), names,
                                           a.bench_args)
    cases = {(c["dataset"], c["algorithm"], c["threads"]): c for c in ref["cases"]}

    print()
    print("References' BLAS (threadpoolctl):", "; ".join(ref["blas"]) or "none found",
          "| libopenblas mapped:", ref["openblas_mapped"])
    print("qps = queries per second of kneighbors(k=10); ratio = ours / reference; build = seconds")
    print()
    hdr = ("| dataset | algorithm | threads | ours qps | sklearn qps | ours/sklearn | FAISS qps | "
           "ours/FAISS | build s ours | build s sklearn |")
    print(hdr)
    print("|" + "---|" * 10)
    for n in names:
        for algo in ("kd_tree", "ball_tree", "brute", "auto"):
            for t in (1, 2):
                q = ours.get(("query", n, algo, t))
                qps = q[0] if q else None
                if algo == "auto":
                    # auto is compared with the fastest scikit-learn algorithm at this thread count.
                    best = max((cases[(n, s, t)] for s in ("kd_tree", "ball_tree", "brute")),
                               key=lambda c: c["qps"])
                    sk = best["qps"]
                    label = f"auto→{q[1]}" if q else "auto"
                    sk_build = None
                    sk_note = f" ({best['algorithm']})"
                else:
                    sk = cases[(n, algo, t)]["qps"]
                    label = algo
                    sk_build = cases[(n, algo, t)]["build_s"] if algo != "brute" and t == 1 else None
                    sk_note = ""
                fa = cases[(n, "faiss", t)]["qps"]
                b = ours.get(("build", n, algo)) if t == 1 else None
                r1 = f"{qps / sk:.2f}" if qps else "—"
                r2 = f"{qps / fa:.2f}" if qps else "—"
                bo = f"{b[0]:.3f}" if b else ""
                bs = f"{sk_build:.3f}" if sk_build is not None else ""
                print(f"| {n} | {label} | {t} | {fmt(qps)} | {fmt(sk)}{sk_note} | {r1} | {fmt(fa)} | {r2} "
                      f"| {bo} | {bs} |")
    print(f"\nwhole run: {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
