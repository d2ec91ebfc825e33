#!/usr/bin/python3
"""The tutorial's grid search through a cluster against scikit-learn, in the same run (issue 4).

  /usr/bin/python3 bench/run_grid_search_bench.py [--build-dir build] [--repeats 5] [--workers 2]

Ours: for each repeat, a freshly started coordinator and --workers workers on loopback (so no
worker cache helps), digits uploaded through knnctl, then the wall time from the StartGridSearch
call to the GetGridSearchResult answer of GridSearchCV(KNeighborsClassifier(algorithm=kd_tree),
{n_neighbors: 2..18 step 2, p: 1..3}, cv=5) with refit (as scikit-learn's default); median of
the repeats. Reference: scikit-learn's GridSearchCV(..., n_jobs=-1) on the same data, on the same
machine, in the same run (median of --sklearn-repeats). Both results are checked to agree on the
best parameters and score. Goal: at least 100x faster.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def start(argv, tmp, name):
    out = open(os.path.join(tmp, name + ".out"), "w+")
    proc = subprocess.Popen(argv, stdout=out, stderr=open(os.path.join(tmp, name + ".err"), "w"),
                            env={**os.environ, "GRPC_VERBOSITY": "ERROR"})
    for _ in range(600):
        out.seek(0)
        line = out.readline()
        if line.startswith("listening on ") and line.endswith("\n"):
            return proc, line.split()[-1]
        if proc.poll() is not None:
            raise RuntimeError(name + " exited")
        time.sleep(0.02)
    raise RuntimeError(name + " did not start")


def cluster_once(bin_dir, workers, pb, common, gs, grpc, stubs):
    """One measurement on a fresh cluster: seconds from the start call to the result."""
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        try:
            proc, coord = start([os.path.join(bin_dir, "knn-coordinator"), "--listen", "127.0.0.1:0",
                                 "--data-dir", os.path.join(tmp, "c"),
                                 "--heartbeat-interval-ms", "200", "--insecure"],
                                tmp, "coordinator")
            procs.append(proc)
            for i in range(workers):
                proc, _ = start([os.path.join(bin_dir, "knn-worker"), "--listen", "127.0.0.1:0",
                                 "--data-dir", os.path.join(tmp, f"w{i}"),
                                 "--coordinator", coord, "--insecure"], tmp, f"w{i}")
                procs.append(proc)
            channel = grpc.insecure_channel(coord)
            stub = stubs.CoordinatorStub(channel)
            for _ in range(300):
                alive = [w for w in stub.GetClusterStatus(pb.GetClusterStatusRequest(),
                                                          timeout=10).workers
                         if w.state == pb.WORKER_ALIVE]
                if len(alive) == workers:
                    break
                time.sleep(0.02)
            # Uploads the built-in digits as "digits" (not timed).
            subprocess.run([os.path.join(bin_dir, "knnctl"), "--coordinator", coord, "--json",
                            "fit", "--dataset", "digits", "-k", "1", "--model", "warmup"],
                           check=True, capture_output=True)
            request = pb.StartGridSearchRequest(
                dataset="digits", task=common.TASK_CLASSIFIER,
                base=common.NeighborsParams(algorithm=common.ALGORITHM_KD_TREE),
                param_grid=[gs.ParamGrid(n_neighbors=list(range(2, 20, 2)), p=[1, 2, 3])], cv=5)
            t0 = time.perf_counter()
            info = stub.StartGridSearch(request, timeout=600)
            for event in stub.WatchGridSearch(pb.WatchGridSearchRequest(id=info.id, interval_ms=1000),
                                              timeout=600):
                pass
            result = stub.GetGridSearchResult(pb.GetGridSearchResultRequest(id=info.id),
                                              timeout=600)
            seconds = time.perf_counter() - t0
            channel.close()
            return seconds, result
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)


def sklearn_once():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KNeighborsClassifier
    X, y = load_digits(return_X_y=True)
    search = GridSearchCV(KNeighborsClassifier(algorithm="kd_tree"),
                          {"n_neighbors": list(range(2, 20, 2)), "p": [1, 2, 3]}, cv=5, n_jobs=-1)
    t0 = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - t0, search


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sklearn-repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    bin_dir = os.path.join(a.build_dir, "bin")
    sys.path.insert(0, os.path.join(a.build_dir, "python"))
    import grpc
    from knncluster.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc, grid_search_pb2

    ours, result = [], None
    for _ in range(a.repeats):
        seconds, result = cluster_once(bin_dir, a.workers, coordinator_pb2, common_pb2,
                                       grid_search_pb2, grpc, coordinator_pb2_grpc)
        ours.append(seconds)
    theirs, search = [], None
    for _ in range(a.sklearn_repeats):
        seconds, search = sklearn_once()
        theirs.append(seconds)
    best = (result.best_params.n_neighbors, result.best_params.p)
    sk_best = (search.best_params_["n_neighbors"], search.best_params_["p"])
    ok = best == sk_best and result.best_score == search.best_score_
    ours_m, theirs_m = statistics.median(ours), statistics.median(theirs)
    print(f"tutorial grid search (27 candidates x 5 folds), {a.workers}-worker cluster on loopback:")
    print(f"  ours    (start -> result, fresh cluster each): median {ours_m * 1e3:8.1f} ms  "
          f"of {', '.join(f'{s * 1e3:.1f}' for s in ours)}")
    print(f"  sklearn GridSearchCV(n_jobs=-1):               median {theirs_m * 1e3:8.1f} ms  "
          f"of {', '.join(f'{s * 1e3:.1f}' for s in theirs)}")
    print(f"  neighbour searches: {result.info.neighbor_searches}, dataset transfers: "
          f"{result.info.dataset_transfers}")
    print(f"  best: ours {best} {result.best_score!r}, sklearn {sk_best} {search.best_score_!r}: "
          f"{'same' if ok else 'DIFFERENT'}")
    ratio = theirs_m / ours_m
    print(f"  speed-up: {ratio:.1f}x (goal >= 100x): {'met' if ratio >= 100 else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
