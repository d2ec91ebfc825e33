#!/usr/bin/python3
"""Multi-node scaling experiments (issue 7): throughput and p50 / p99 batch latency against the
number of workers N, with a cost model that predicts the curve for machines with a core per worker.

Local mode (root, iproute2): for each N, a coordinator and N workers are started, each in its own
network namespace with its own address (10.77.0.x on a bridge, deploy/experiments/netns.py); the
client runs in the coordinator's namespace as an agent (this file with --agent). The dataset is
uploaded and fitted (one shard per worker), the cluster warmed up, then C clients send predict
batches of B inline rows for T seconds, and one grid search runs. Everything is torn down before
the next N, and on every exit path.

External mode (--coordinator HOST:PORT, e.g. a Kubernetes Service reached by port-forward): nothing
is started; the same workload runs against that cluster, N being its live workers from
GetClusterStatus. The cost model needs a worker it can call, so it is measured in local mode only
(--costs-from reuses a local run's cost_model.json).

Cost model (measured separately, on one worker with --threads 1, before the runs):
  rtt        round trip of an empty call over the veth (GetWorkerStatus, coordinator -> worker)
  search(m)  one worker's SearchShards of one batch over a shard of m rows, less rtt
  merge(N)   the coordinator's merge of N partial answers for one batch (bin/merge_bench)
  overhead   the rest of one batch's time through the coordinator (client, coordinator and
             protobuf work): a lone predict call on the first cluster, with a model of the
             smallest shard size m0 = n / 64, less rtt + search(m0) + merge
  latency(N)    = overhead + rtt + search(n / N) + merge(N)
  throughput(N) = B * min(C / latency(N), 1 / max(search(n / N), merge(N)))
  loaded latency(N) = C * B / throughput(N)   (Little's law: C clients in a closed loop)
(every batch goes to every worker; with a core per worker the N searches run in parallel, and a
worker's core or the coordinator's merge is the bottleneck once C clients keep it busy).

Writes OUT/scaling.csv (one row per N), OUT/cost_model.csv (the inputs and the prediction for
N = 1 .. 64), OUT/cost_model.json and OUT/scaling.svg. See deploy/experiments/README.md.

  sudo /usr/bin/python3 deploy/experiments/scaling.py --bin build/bin --python build/python \\
      --workers 1,2,4,8 --dataset generated --rows 100000 --dim 16 --out /tmp/scaling
  ... --ci                 # CI-sized: N = 1, 2, 4, small data, a few seconds each
  ... --coordinator 127.0.0.1:50051   # an existing cluster (Kubernetes: kubectl port-forward)
"""
import argparse
import atexit
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import netns  # noqa: E402
import plot  # noqa: E402

PREFIX = "knns"  # namespace names: knns-<pid>-<host>
COORDINATOR_OCTET = 1
MODEL = "scaling"
PREDICT_NS = [1, 2, 4, 8, 16, 32, 64]  # where the cost model draws its prediction
# The cost model's inputs are this percentile of their timed calls, not the median: the model
# describes machines that do nothing else, and on a shared one the slow calls are mostly other
# processes' time.
COST_QUANTILE = 10
GRPC_ENV = {**os.environ, "GRPC_VERBOSITY": "ERROR"}

CSV_FIELDS = ["mode", "N", "dataset", "train_rows", "dim", "k", "algorithm", "batch", "clients",
              "seconds", "batches", "throughput_qps", "p50_ms", "p99_ms", "grid_s",
              "grid_candidates", "grid_folds", "shard_rows", "overhead_ms", "rtt_ms", "search_ms",
              "merge_ms", "pred_latency_ms", "pred_loaded_latency_ms", "pred_throughput_qps"]


# ---- Data ------------------------------------------------------------------------------------


def make_data(args):
    """(X_train, y_train, X_queries) as float64 / float64 numpy arrays."""
    import numpy as np
    if args.dataset == "digits":
        import gzip
        with gzip.open(os.path.join(ROOT, "data", "digits.csv.gz"), "rt") as f:
            a = np.loadtxt(f, delimiter=",")
        X, y = a[:, :-1], a[:, -1]
        perm = np.random.RandomState(1337).permutation(len(X))
        n_test = int(round(0.2 * len(X)))
        test, train = perm[:n_test], perm[n_test:]
        return X[train], y[train], X[test]
    # generated: 10 Gaussian blobs in `dim` dimensions (the recipe of bench/make_bench_data.py's
    # blobs16d at a chosen size), labels = the blob; queries drawn the same way.
    rs = np.random.RandomState(0)
    centres = rs.uniform(-10, 10, size=(10, args.dim))
    lx = rs.randint(0, 10, size=args.rows)
    X = centres[lx] + rs.standard_normal((args.rows, args.dim))
    lq = rs.randint(0, 10, size=args.queries)
    Q = centres[lq] + rs.standard_normal((args.queries, args.dim))
    return X, lx.astype(np.float64), Q


# ---- The agent: the client, run where the coordinator is reachable ----------------------------


def agent_main(coordinator, tls_ca=None, token_file=None, tls_server_name=None):
    """Reads one JSON command per line on stdin, writes one JSON answer per line on stdout.
    With tls_ca (and token_file): TLS to the coordinator, as a Kubernetes deployment wants."""
    import grpc
    import numpy as np
    from knncluster.v1 import common_pb2 as cpb
    from knncluster.v1 import coordinator_pb2 as pb, coordinator_pb2_grpc
    from knncluster.v1 import grid_search_pb2 as gpb
    from knncluster.v1 import worker_pb2 as wpb, worker_pb2_grpc

    opts = [("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20)]
    if tls_ca:
        with open(tls_ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        if token_file:
            with open(token_file) as f:
                creds = grpc.composite_channel_credentials(
                    creds, grpc.access_token_call_credentials(f.read().strip()))
        if tls_server_name:
            opts.append(("grpc.ssl_target_name_override", tls_server_name))
        channel = grpc.secure_channel(coordinator, creds, opts)
    else:
        channel = grpc.insecure_channel(coordinator, opts)
    stub = coordinator_pb2_grpc.CoordinatorStub(channel)
    algorithms = {"auto": cpb.ALGORITHM_AUTO, "kd_tree": cpb.ALGORITHM_KD_TREE,
                  "ball_tree": cpb.ALGORITHM_BALL_TREE, "brute": cpb.ALGORITHM_BRUTE}

    def matrix(a):
        return cpb.Matrix(rows=a.shape[0], cols=a.shape[1], values=a.ravel().tolist())

    def status():
        st = stub.GetClusterStatus(pb.GetClusterStatusRequest(), timeout=10)
        return [{"id": w.worker_id, "address": w.address, "cores": w.cores,
                 "alive": w.state == pb.WORKER_ALIVE} for w in st.workers]

    def upload(cmd):
        X, y = np.load(cmd["x"]), np.load(cmd["y"])
        per_chunk = max(1, (2 << 20) // (8 * X.shape[1]))

        def parts():
            yield pb.UploadDatasetRequest(header=pb.DatasetHeader(
                name=cmd["name"], cols=X.shape[1], labels=pb.LABELS_NUMERIC, replace=True))
            for b in range(0, len(X), per_chunk):
                yield pb.UploadDatasetRequest(chunk=pb.DatasetChunk(
                    rows=matrix(X[b:b + per_chunk]), labels=y[b:b + per_chunk].tolist()))

        info = stub.UploadDataset(parts(), timeout=300)
        return {"rows": info.rows, "cols": info.cols}

    def params(cmd):
        return cpb.NeighborsParams(n_neighbors=cmd["k"], algorithm=algorithms[cmd["algorithm"]])

    def fit(cmd):
        m = stub.Fit(pb.FitRequest(model=cmd.get("model", MODEL), dataset=cmd["dataset"], task=cpb.TASK_CLASSIFIER,
                                   params=params(cmd), replace=True), timeout=600)
        return {"shards": [s.rows for s in m.shards],
                "workers": sorted({s.worker_id for s in m.shards})}

    def workload(cmd):
        """C clients, each sending predict batches back to back for `seconds` (after `warmup`
        seconds whose calls are not counted)."""
        Q = np.load(cmd["queries"])
        B = cmd["batch"]
        requests = []
        for b in range(0, max(1, len(Q) - B + 1), B):
            requests.append(pb.PredictRequest(model=MODEL,
                                              queries=pb.Queries(matrix=matrix(Q[b:b + B]))))
        calls, errors, lock = [], [], threading.Lock()
        t_count = time.monotonic() + cmd["warmup"]
        t_end = t_count + cmd["seconds"]

        def client(i):
            j = i
            while True:
                t0 = time.monotonic()
                if t0 >= t_end:
                    return
                try:
                    got = stub.Predict(requests[j % len(requests)], timeout=60)
                    if len(got.predictions) != B:
                        raise RuntimeError(f"{len(got.predictions)} predictions for {B} rows")
                except Exception as e:  # reported below
                    with lock:
                        errors.append(repr(e)[:300])
                    return
                t1 = time.monotonic()
                if t0 >= t_count and t1 <= t_end:
                    with lock:
                        calls.append(t1 - t0)
                j += cmd["clients"]

        threads = [threading.Thread(target=client, args=(i,)) for i in range(cmd["clients"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(f"{len(errors)} predict calls failed: {errors[0]}")
        if not calls:
            raise RuntimeError("no predict call completed inside the measured window")
        lat = np.array(calls)
        return {"batches": len(calls), "throughput_qps": len(calls) * B / cmd["seconds"],
                "p50_ms": float(np.percentile(lat, 50) * 1e3),
                "p99_ms": float(np.percentile(lat, 99) * 1e3)}

    def grid(cmd):
        req = pb.StartGridSearchRequest(
            dataset=cmd["dataset"], task=cpb.TASK_CLASSIFIER,
            base=cpb.NeighborsParams(algorithm=algorithms[cmd["algorithm"]]),
            param_grid=[gpb.ParamGrid(n_neighbors=cmd["n_neighbors"])], cv=cmd["cv"],
            refit=False)
        t0 = time.monotonic()
        info = stub.StartGridSearch(req, timeout=60)
        terminal = {pb.GRID_SEARCH_SUCCEEDED, pb.GRID_SEARCH_FAILED, pb.GRID_SEARCH_CANCELLED}
        while info.state not in terminal:
            for info in stub.WatchGridSearch(pb.WatchGridSearchRequest(id=info.id), timeout=600):
                if info.state in terminal:
                    break
        wall = time.monotonic() - t0
        if info.state != pb.GRID_SEARCH_SUCCEEDED:
            raise RuntimeError(f"grid search {info.id}: {pb.GridSearchState.Name(info.state)} "
                               f"{info.error}")
        return {"grid_s": wall, "candidates": info.n_candidates, "folds": info.n_splits,
                "mode": gpb.GridSearchMode.Name(info.mode)}

    def low(times):
        return float(np.percentile(times, COST_QUANTILE))

    def costs(cmd):
        """rtt and search(m) on one worker, called directly (not through the coordinator)."""
        X, Q = np.load(cmd["x"]), np.load(cmd["queries"])
        B, reps = cmd["batch"], cmd["reps"]
        w = worker_pb2_grpc.WorkerStub(grpc.insecure_channel(cmd["worker"], opts))
        rtts = []
        for i in range(reps * 10 + 20):
            t0 = time.perf_counter()
            w.GetWorkerStatus(wpb.GetWorkerStatusRequest(), timeout=10)
            if i >= 20:
                rtts.append(time.perf_counter() - t0)
        rtt = low(rtts)
        coord_rtts = []
        for i in range(reps * 5):
            t0 = time.perf_counter()
            stub.GetClusterStatus(pb.GetClusterStatusRequest(), timeout=10)
            coord_rtts.append(time.perf_counter() - t0)
        queries = matrix(Q[:B])
        search = {}
        for m in cmd["sizes"]:
            sid = f"scaling-cost/{m}"

            def parts():
                yield wpb.LoadShardRequest(header=wpb.ShardHeader(
                    shard_id=sid, rows=m, cols=X.shape[1], first_global_index=0,
                    index_params=params(cmd)))
                per_chunk = max(1, (2 << 20) // (8 * X.shape[1]))
                for b in range(0, m, per_chunk):
                    yield wpb.LoadShardRequest(rows=matrix(X[b:min(m, b + per_chunk)]))

            w.LoadShard(parts(), timeout=300)
            req = wpb.SearchShardsRequest(shard_ids=[sid], queries=queries, k=cmd["k"])
            times = []
            for i in range(reps + 2):
                t0 = time.perf_counter()
                w.SearchShards(req, timeout=60)
                if i >= 2:  # the first calls warm caches up
                    times.append(time.perf_counter() - t0)
            w.DropShard(wpb.DropShardRequest(shard_id=sid), timeout=30)
            search[str(m)] = max(0.0, low(times) - rtt)
        # One batch through the coordinator, one call at a time on the idle cluster, with a
        # model of the smallest shard size: what rtt + search leaves out of it (the client's and
        # the coordinator's own work per call) is the fixed overhead. (A residual of the full
        # model would be the difference of two much larger, noisier times.)
        req = pb.PredictRequest(model=cmd["tiny_model"], queries=pb.Queries(matrix=queries))
        times = []
        for i in range(reps + 2):
            t0 = time.perf_counter()
            stub.Predict(req, timeout=60)
            if i >= 2:
                times.append(time.perf_counter() - t0)
        return {"rtt_s": rtt, "coordinator_rtt_s": low(coord_rtts), "search_s": search,
                "predict_s": low(times), "quantile": COST_QUANTILE}

    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            what = cmd["cmd"]
            if what == "status":
                out = {"workers": status()}
            elif what == "upload":
                out = upload(cmd)
            elif what == "fit":
                out = fit(cmd)
            elif what == "workload":
                out = workload(cmd)
            elif what == "grid":
                out = grid(cmd)
            elif what == "costs":
                out = costs(cmd)
            elif what == "delete":
                # What the run left on a cluster it did not start (external mode).
                for m in cmd["models"]:
                    stub.DeleteModel(pb.DeleteModelRequest(model=m), timeout=60)
                for d in cmd["datasets"]:
                    stub.DeleteDataset(pb.DeleteDatasetRequest(name=d), timeout=60)
                out = {}
            else:
                raise ValueError(f"unknown command {what}")
            out["ok"] = True
        except Exception as e:  # reported to the harness, which fails with it
            out = {"ok": False, "error": repr(e)[:1000]}
        print(json.dumps(out), flush=True)


# ---- The harness (root namespace) -------------------------------------------------------------


class Cluster:
    """One coordinator and N workers on namespaces, and the agent in the coordinator's; or, with
    `external`, only the agent, against that address. close() is idempotent."""

    def __init__(self, args, n, tmp, cost_worker=False):
        """cost_worker: one more worker, on a host of its own and not registered with the
        coordinator (which would drop the shards the cost model loads into it), at
        self.cost_worker."""
        self.args, self.tmp, self.with_cost_worker = args, tmp, cost_worker
        self.procs, self.files = [], []
        self.net, self.agent = None, None
        try:
            self._start(n)
        except BaseException:
            self.dump_logs()
            self.close()
            raise

    def _start(self, n):
        a = self.args
        agent_argv = ["/usr/bin/python3", os.path.abspath(__file__), "--python", a.python,
                      "--agent"]
        log = open(os.path.join(self.tmp, "agent.err"), "w")
        self.files.append(log)
        if a.coordinator:
            self.coordinator = a.coordinator
            for flag, value in (("--tls-ca", a.tls_ca), ("--token-file", a.token_file),
                                ("--tls-server-name", a.tls_server_name)):
                if value:
                    agent_argv += [flag, os.path.abspath(value) if flag != "--tls-server-name"
                                   else value]
            self.agent = netns.Agent(agent_argv + [a.coordinator], log, GRPC_ENV)
            return
        data = os.path.join(self.tmp, f"n{n}")  # a fresh data directory per cluster
        hosts = [("c", COORDINATOR_OCTET)] + [(f"w{i}", 10 + i) for i in range(n)]
        if self.with_cost_worker:
            hosts.append(("cost", 250))
        self.net = netns.Network(hosts, PREFIX)
        self.coordinator = self.start("c", [
            os.path.join(a.bin, "knn-coordinator"),
            "--listen", f"{self.net.address('c')}:0", "--data-dir", os.path.join(data, "c"),
            "--insecure", "--allow-insecure-remote"])
        self.workers = []
        for i in range(n):
            name = f"w{i}"
            self.workers.append(self.start(name, [
                os.path.join(a.bin, "knn-worker"), "--listen", f"{self.net.address(name)}:0",
                "--data-dir", os.path.join(data, name), "--coordinator", self.coordinator,
                "--threads", str(a.worker_threads), "--insecure", "--allow-insecure-remote"]))
        if self.with_cost_worker:
            self.cost_worker = self.start("cost", [
                os.path.join(a.bin, "knn-worker"), "--listen", f"{self.net.address('cost')}:0",
                "--data-dir", os.path.join(data, "cost"), "--threads", "1", "--insecure",
                "--allow-insecure-remote"])
        self.agent = netns.Agent(self.net.exec_argv("c", *agent_argv, self.coordinator), log,
                                 GRPC_ENV)
        deadline = time.monotonic() + 60
        while sum(w["alive"] for w in self.agent("status")["workers"]) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n} workers did not register within 60 s")
            time.sleep(0.1)

    def start(self, host, argv):
        """Starts `argv` on `host`; returns the address from its "listening on" line."""
        out = open(os.path.join(self.tmp, f"{host}.out"), "w+")
        err = open(os.path.join(self.tmp, f"{host}.err"), "w")
        self.files += [out, err]
        proc = subprocess.Popen(self.net.exec_argv(host, *argv), stdout=out, stderr=err,
                                env=GRPC_ENV)
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out.seek(0)
            line = out.readline()
            if line.startswith("listening on ") and line.endswith("\n"):
                return line.split()[-1]
            if proc.poll() is not None:
                with open(err.name) as f:
                    raise RuntimeError(f"{host} exited: {f.read()[-2000:]}")
            time.sleep(0.02)
        raise RuntimeError(f"{host} did not print its address")

    def dump_logs(self):
        for name in sorted(os.listdir(self.tmp)):
            if name.endswith(".err"):
                with open(os.path.join(self.tmp, name)) as f:
                    text = f.read()[-3000:]
                if text.strip():
                    print(f"---- {name}\n{text}", file=sys.stderr)

    def close(self):
        if self.agent is not None:
            try:
                self.agent.close()
            except Exception:
                pass
            self.agent = None
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        if self.net is not None:
            self.net.close()
        for f in self.files:
            f.close()
        self.files = []


def merge_costs(args, ns):
    """merge(N) in seconds for one batch, from bin/merge_bench (no network: root namespace)."""
    exe = os.path.join(args.bin, "merge_bench")
    p = subprocess.run([exe, "--batch", str(args.batch), "--k", str(args.k), "--parts",
                        ",".join(map(str, ns)), "--min-seconds", "0.1" if args.ci else "0.3"],
                       capture_output=True, text=True, timeout=120, check=True)
    out = {}
    for line in p.stdout.splitlines():
        r = json.loads(line)
        out[r["parts"]] = r["seconds"]
    return out


def predict(model, n, clients, batch):
    """(lone-batch latency s, throughput q/s, latency under the C clients s) of the cost model
    at N = n, or None outside its range."""
    m = str(model["train_rows"] // n)
    if m not in model["search_s"] or n not in model["merge_s"]:
        return None
    search, merge, rtt = model["search_s"][m], model["merge_s"][n], model["rtt_s"]
    latency = model["overhead_s"] + rtt + search + merge
    throughput = batch * min(clients / latency, 1.0 / max(search, merge, 1e-9))
    # With C clients in a closed loop, each batch's latency is C * B / throughput (Little's law):
    # the lone batch's latency, or longer once the bottleneck queues the clients' batches.
    return latency, throughput, clients * batch / throughput


def load_costs(path):
    with open(path) as f:
        model = json.load(f)
    model["merge_s"] = {int(k): v for k, v in model["merge_s"].items()}
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--python", default=os.path.join(ROOT, "build", "python"),
                    help="directory holding the generated knncluster.v1 stubs")
    ap.add_argument("--workers", default="1,2,4,8", help="values of N, comma-separated")
    ap.add_argument("--dataset", choices=["digits", "generated"], default="generated")
    ap.add_argument("--rows", type=int, default=100_000, help="generated: training rows")
    ap.add_argument("--dim", type=int, default=16, help="generated: dimension")
    ap.add_argument("--queries", type=int, default=5000, help="generated: query rows")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--algorithm", default="kd_tree",
                    choices=["auto", "kd_tree", "ball_tree", "brute"])
    ap.add_argument("--batch", type=int, default=100, help="query rows per predict call")
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients")
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per N")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before")
    ap.add_argument("--grid", choices=["on", "off"], default="on")
    ap.add_argument("--grid-cv", type=int, default=3)
    ap.add_argument("--grid-neighbors", default="1,3,5,7,9,11")
    ap.add_argument("--worker-threads", type=int, default=1,
                    help="search threads per worker (1: the core-per-worker model)")
    ap.add_argument("--reps", type=int, default=30, help="cost model: timed calls per size")
    ap.add_argument("--out", required=False, default="scaling-out")
    ap.add_argument("--coordinator", help="external mode: run against this HOST:PORT")
    ap.add_argument("--costs-from", help="external mode: a local run's cost_model.json")
    ap.add_argument("--tls-ca", help="external mode: the cluster's ca.pem (TLS)")
    ap.add_argument("--token-file", help="external mode, with --tls-ca: the bearer token file")
    ap.add_argument("--tls-server-name", help="external mode: the name in the certificate")
    ap.add_argument("--ci", action="store_true",
                    help="CI-sized: N = 1,2,4, 8,000 x 16 generated rows, 2 s per N")
    ap.add_argument("--agent", metavar="COORDINATOR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.python = os.path.abspath(args.python)
    sys.path.insert(0, args.python)
    if args.agent:
        agent_main(args.agent, args.tls_ca, args.token_file, args.tls_server_name)
        return 0
    if args.ci:
        args.workers, args.dataset, args.rows, args.dim, args.queries = "1,2,4", "generated", \
            8000, 16, 1000
        args.batch, args.clients, args.seconds, args.warmup = 50, 2, 2.0, 0.5
        args.grid_cv, args.grid_neighbors, args.reps = 3, "1,5,9", 8
    args.bin = os.path.abspath(args.bin)
    ns = [int(x) for x in args.workers.split(",")]
    os.makedirs(args.out, exist_ok=True)
    if not args.coordinator:
        reason = netns.netns_unavailable()
        if reason:
            print(f"scaling: cannot run locally: {reason}", file=sys.stderr)
            return 77
        netns.remove_stale_namespaces(PREFIX)

    tmp = tempfile.mkdtemp(prefix="knn-scaling.")
    state = {"cluster": None}

    def cleanup():
        if state["cluster"] is not None:
            state["cluster"].close()
            state["cluster"] = None
        if not args.coordinator:
            # A signal may come while a cluster is being made, before `state` knows it.
            netns.remove_own_namespaces(PREFIX)
        shutil.rmtree(tmp, ignore_errors=True)

    def on_signal(signum, frame):
        print(f"scaling: signal {signum}: cleaning up", file=sys.stderr, flush=True)
        cleanup()
        os._exit(128 + signum)

    atexit.register(cleanup)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    import numpy as np
    X, y, Q = make_data(args)
    np.save(os.path.join(tmp, "x.npy"), X)
    np.save(os.path.join(tmp, "y.npy"), y)
    np.save(os.path.join(tmp, "q.npy"), Q)
    if not 1 <= args.batch <= len(Q):
        print(f"scaling: --batch must be in [1, {len(Q)}] (the query rows)", file=sys.stderr)
        return 2
    name = f"scaling-{args.dataset}-{len(X)}x{X.shape[1]}"
    n_train = len(X)
    print(f"scaling: {name}, {len(Q)} query rows, batch {args.batch}, {args.clients} clients, "
          f"{args.seconds:g} s per N, k = {args.k}, {args.algorithm}; "
          + (f"the cluster at {args.coordinator}" if args.coordinator else f"N = {ns}"),
          flush=True)

    model = None
    if args.costs_from:
        model = load_costs(args.costs_from)
        if (model["train_rows"], model["batch"]) != (n_train, args.batch):
            print(f"scaling: WARNING: {args.costs_from} was measured with {model['train_rows']} "
                  f"rows and batches of {model['batch']}: no prediction at this run's N",
                  file=sys.stderr)
    rows = []
    for n in ([0] if args.coordinator else ns):
        t0 = time.monotonic()
        measure = model is None and not args.coordinator
        cluster = state["cluster"] = Cluster(args, n, tmp, cost_worker=measure)
        try:
            agent = cluster.agent
            if args.coordinator:
                n = sum(w["alive"] for w in agent("status")["workers"])
            agent("upload", timeout=600, name=name, x=os.path.join(tmp, "x.npy"),
                  y=os.path.join(tmp, "y.npy"))
            fit = agent("fit", timeout=600, dataset=name, k=args.k, algorithm=args.algorithm)
            if measure:
                # The cost model's inputs, measured on this cluster's first worker.
                pred_ns = sorted(set(PREDICT_NS) | set(ns))
                sizes = sorted({n_train // m for m in pred_ns if n_train // m >= max(args.k, 50)})
                tiny = min(sizes)
                np.save(os.path.join(tmp, "x_tiny.npy"), X[:tiny])
                np.save(os.path.join(tmp, "y_tiny.npy"), y[:tiny])
                agent("upload", timeout=600, name=f"{name}-tiny",
                      x=os.path.join(tmp, "x_tiny.npy"), y=os.path.join(tmp, "y_tiny.npy"))
                agent("fit", timeout=600, dataset=f"{name}-tiny", model=f"{MODEL}-tiny",
                      k=args.k, algorithm=args.algorithm)
                c = agent("costs", timeout=900, worker=cluster.cost_worker, x=os.path.join(
                    tmp, "x.npy"), queries=os.path.join(tmp, "q.npy"), sizes=sizes,
                    batch=args.batch, k=args.k, reps=args.reps, algorithm=args.algorithm,
                    tiny_model=f"{MODEL}-tiny")
                model = {"train_rows": n_train, "dim": X.shape[1], "batch": args.batch,
                         "k": args.k, "algorithm": args.algorithm, "rtt_s": c["rtt_s"],
                         "coordinator_rtt_s": c["coordinator_rtt_s"], "search_s": c["search_s"],
                         "merge_s": merge_costs(args, pred_ns), "measured_at_N": n,
                         "overhead_model_rows": tiny, "predict_tiny_s": c["predict_s"]}
                # A search over fewer rows cannot cost more: on a shared machine the smallest
                # shards' times are mostly noise, so each is capped by every larger one's
                # (a running minimum from the largest shard down; the raw times are kept).
                model["search_raw_s"] = dict(c["search_s"])
                cap = float("inf")
                for m in sorted(c["search_s"], key=int, reverse=True):
                    cap = min(cap, c["search_s"][m])
                    c["search_s"][m] = cap
                model["search_s"] = c["search_s"]
                # The tiny model has n workers' shards of about tiny / n rows: search(tiny)
                # is an upper bound of its search, so the overhead errs low.
                model["overhead_s"] = max(0.0, c["predict_s"] - c["rtt_s"] - c["search_s"][
                    str(tiny)] - model["merge_s"][n])
                print(f"cost model: rtt {c['rtt_s'] * 1e3:.3f} ms; search(m) ms: " + ", ".join(
                    f"{m}: {s * 1e3:.2f}" for m, s in c["search_s"].items()) + "; merge(N) ms: "
                    + ", ".join(f"{k}: {v * 1e3:.3f}" for k, v in model["merge_s"].items())
                    + f"; fixed overhead {model['overhead_s'] * 1e3:.3f} ms",
                    flush=True)
            w = agent("workload", timeout=args.warmup + args.seconds + 120,
                      queries=os.path.join(tmp, "q.npy"), batch=args.batch,
                      clients=args.clients, seconds=args.seconds, warmup=args.warmup)
            g = {"grid_s": "", "candidates": "", "folds": ""}
            if args.grid == "on":
                g = agent("grid", timeout=1800, dataset=name, algorithm=args.algorithm,
                          n_neighbors=[int(v) for v in args.grid_neighbors.split(",")],
                          cv=args.grid_cv)
            if args.coordinator:
                agent("delete", timeout=120, models=[MODEL], datasets=[name])
        except BaseException:
            cluster.dump_logs()
            raise
        finally:
            cluster.close()
            state["cluster"] = None
        row = {"mode": "external" if args.coordinator else "netns", "N": n,
               "dataset": args.dataset, "train_rows": n_train, "dim": X.shape[1], "k": args.k,
               "algorithm": args.algorithm, "batch": args.batch, "clients": args.clients,
               "seconds": args.seconds, "batches": w["batches"],
               "throughput_qps": round(w["throughput_qps"], 3), "p50_ms": round(w["p50_ms"], 4),
               "p99_ms": round(w["p99_ms"], 4),
               "grid_s": round(g["grid_s"], 4) if g["grid_s"] != "" else "",
               "grid_candidates": g["candidates"], "grid_folds": g["folds"],
               "shard_rows": n_train // max(1, n)}
        if model is not None and str(n_train // max(1, n)) in model["search_s"]:
            p = predict(model, n, args.clients, args.batch)
            row.update(overhead_ms=round(model["overhead_s"] * 1e3, 4),
                       rtt_ms=round(model["rtt_s"] * 1e3, 4),
                       search_ms=round(model["search_s"][str(n_train // n)] * 1e3, 4),
                       merge_ms=round(model["merge_s"].get(n, float("nan")) * 1e3, 4))
            if p:
                row.update(pred_latency_ms=round(p[0] * 1e3, 4),
                           pred_loaded_latency_ms=round(p[2] * 1e3, 4),
                           pred_throughput_qps=round(p[1], 3))
        rows.append(row)
        print(f"N = {n}: {row['throughput_qps']:.0f} queries/s, p50 {row['p50_ms']:.2f} ms, "
              f"p99 {row['p99_ms']:.2f} ms per batch of {args.batch} ({w['batches']} batches); "
              f"grid search {row['grid_s'] or '-'} s; fit shards {fit['shards']}; "
              f"{time.monotonic() - t0:.1f} s in all", flush=True)

    with open(os.path.join(args.out, "scaling.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        wr.writeheader()
        for r in rows:
            wr.writerow(r)
    predicted = []
    if model is not None:
        with open(os.path.join(args.out, "cost_model.json"), "w") as f:
            json.dump(model, f, indent=1, sort_keys=True)
        with open(os.path.join(args.out, "cost_model.csv"), "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["N", "shard_rows", "overhead_ms", "rtt_ms", "search_ms", "merge_ms",
                         "pred_latency_ms", "pred_loaded_latency_ms", "pred_throughput_qps"])
            for n in sorted(set(PREDICT_NS) | set(ns)):
                p = predict(model, n, args.clients, args.batch)
                if p is None:
                    continue
                m = model["train_rows"] // n
                wr.writerow([n, m, round(model["overhead_s"] * 1e3, 4),
                             round(model["rtt_s"] * 1e3, 4),
                             round(model["search_s"][str(m)] * 1e3, 4),
                             round(model["merge_s"][n] * 1e3, 4), round(p[0] * 1e3, 4),
                             round(p[2] * 1e3, 4), round(p[1], 3)])
                predicted.append({"N": n, "latency_ms": p[0] * 1e3, "throughput_qps": p[1],
                                  "loaded_latency_ms": p[2] * 1e3})
    title = (f"{args.dataset} {n_train} x {X.shape[1]}, k = {args.k}, {args.algorithm}, "
             f"batch {args.batch}, {args.clients} clients, {os.cpu_count()} cores")
    plot.write_svg(os.path.join(args.out, "scaling.svg"), rows, predicted, title)
    print(f"wrote {args.out}/scaling.csv, scaling.svg"
          + (", cost_model.csv, cost_model.json" if model else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
