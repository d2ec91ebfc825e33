#!/usr/bin/python3
"""The servers' plaintext HTTP port (issue 7): /healthz, /readyz, Prometheus /metrics and the
coordinator's status page, on real knn-coordinator / knn-worker processes (loopback, --insecure,
--http-port 0).

MetricsTest makes a known number of gRPC calls per method (some OK, some failing with known
codes) and asserts the scraped per-method, per-status counters moved by exactly that many.
StatusPageTest opens the status page in headless Chromium (Debian's `chromium`), checks the DOM
lists what GetClusterStatus lists, and saves a screenshot to --out (skips when chromium is
missing, except under CI=true).

ctest runs: /usr/bin/python3 http_test.py --bin build/bin --python build/python --out DIR
"""
import argparse
import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_test  # noqa: E402  (the Cluster harness)

OUT = None
SPLIT = cluster_test.SPLIT


class HttpCluster(cluster_test.Cluster):
    """A Cluster whose servers all serve HTTP on an OS-chosen port (self.http[name])."""

    def __init__(self, workers, tmp, coordinator_args=(), heartbeat_ms=1000):
        # 1 s heartbeats (3 s to be declared dead): the tests compare exact liveness, which must
        # not flicker on a machine busy with parallel builds and tests.
        self.http = {}
        super().__init__(workers, tmp, worker_args=["--http-port", "0"],
                         coordinator_args=["--http-port", "0", *coordinator_args],
                         heartbeat_ms=heartbeat_ms)

    def _start(self, name, argv):
        addr = super()._start(name, argv)
        out = self.files[-2]
        deadline = time.time() + 10
        while time.time() < deadline:
            out.seek(0)
            lines = out.readlines()
            if len(lines) >= 2 and lines[1].startswith("http listening on ") and lines[1].endswith("\n"):
                self.http[name] = lines[1].split()[-1]
                return addr
            time.sleep(0.02)
        raise RuntimeError(f"{name} did not print its HTTP address")


def http(addr, path, method="GET", data=None):
    """(status, headers, body) of one request; never raises for an HTTP error status."""
    req = urllib.request.Request(f"http://{addr}{path}", method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value}; checks every line is a comment or a sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = dict(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


def value(metrics, name, **labels):
    return metrics.get((name, frozenset(labels.items())), 0.0)


class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import grpc
        from knncluster.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc
        cls.grpc, cls.pb, cls.common = grpc, coordinator_pb2, common_pb2
        cls.tmpdir = tempfile.TemporaryDirectory()
        cls.c = HttpCluster(2, cls.tmpdir.name)
        cls.c.knnctl("fit", *SPLIT, "--split", "train", "-k", "5", "--model", "good")
        cls.channel = grpc.insecure_channel(cls.c.coordinator)
        cls.stub = coordinator_pb2_grpc.CoordinatorStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.c.stop()
        cls.tmpdir.cleanup()

    def scrape(self, name="coordinator"):
        status, headers, body = http(self.c.http[name], "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        return parse_metrics(body)

    def test_health_and_readiness_of_every_server(self):
        for name, addr in self.c.http.items():
            self.assertEqual(http(addr, "/healthz")[::2], (200, "ok\n"), name)
            self.assertEqual(http(addr, "/readyz")[::2], (200, "ready\n"), name)
            self.assertEqual(http(addr, "/nope")[0], 404, name)
            status, headers, body = http(addr, "/healthz", method="HEAD")
            self.assertEqual((status, body, headers["Content-Length"]), (200, "", "3"), name)

    def test_nothing_but_get_and_head(self):
        for name, addr in self.c.http.items():
            for method in ["POST", "PUT", "DELETE", "PATCH"]:
                status, headers, _ = http(addr, "/metrics", method=method, data=b"x=1")
                self.assertEqual(status, 405, (name, method))
                self.assertEqual(headers["Allow"], "GET, HEAD")
        # No status page without --status-page.
        self.assertEqual(http(self.c.http["coordinator"], "/")[0], 404)

    def test_counters_equal_the_calls_made(self):
        code = self.grpc.StatusCode
        before = self.scrape()
        made = {}  # (method, code name) -> calls

        def call(method, request, want, streaming=False):
            fn = getattr(self.stub, method)
            try:
                r = fn(request, timeout=30)
                if streaming:
                    list(r)
                got = code.OK
            except self.grpc.RpcError as e:
                got = e.code()
            self.assertEqual(got, want, method)
            made[(method, want.name)] = made.get((method, want.name), 0) + 1

        for _ in range(3):
            call("ListDatasets", self.pb.ListDatasetsRequest(), code.OK)
        for _ in range(2):
            call("DescribeDataset", self.pb.DescribeDatasetRequest(name="no-such-dataset"),
                 code.NOT_FOUND)
        call("DescribeDataset", self.pb.DescribeDatasetRequest(name="digits"), code.OK)
        test_rows = self.pb.Queries(dataset="digits.test-0.2-1337")
        for _ in range(2):
            call("Predict", self.pb.PredictRequest(model="good", queries=test_rows), code.OK)
        for _ in range(4):
            call("Predict", self.pb.PredictRequest(model="no-such-model", queries=test_rows),
                 code.NOT_FOUND)
        bad = self.common.Matrix(rows=1, cols=3, values=[1.0, 2.0, 3.0])
        call("Predict", self.pb.PredictRequest(model="good", queries=self.pb.Queries(matrix=bad)),
             code.INVALID_ARGUMENT)
        call("KNeighbors", self.pb.KNeighborsRequest(model="good", queries=test_rows, k=0),
             code.INVALID_ARGUMENT)
        call("GetClusterStatus", self.pb.GetClusterStatusRequest(), code.OK)
        # Server streaming, OK and failing.
        call("ExportModel", self.pb.ExportModelRequest(model="good"), code.OK, streaming=True)
        call("ExportModel", self.pb.ExportModelRequest(model="no-such-model"), code.NOT_FOUND,
             streaming=True)
        # Client streaming: a header with a bad name.
        bad_upload = iter([self.pb.UploadDatasetRequest(
            header=self.pb.DatasetHeader(name="empty", cols=3))])  # a header and no rows
        call("UploadDataset", bad_upload, code.INVALID_ARGUMENT)

        after = self.scrape()
        methods = {m for m, _ in made}
        for method in methods:
            for c in code:
                labels = dict(grpc_service="knncluster.v1.Coordinator", grpc_method=method,
                              grpc_code=c.name)
                delta = (value(after, "knn_grpc_server_handled_total", **labels)
                         - value(before, "knn_grpc_server_handled_total", **labels))
                self.assertEqual(delta, made.get((method, c.name), 0), (method, c.name))
                # The latency histogram counts the same calls, and its +Inf bucket too.
                delta_count = (value(after, "knn_grpc_server_handling_seconds_count", **labels)
                               - value(before, "knn_grpc_server_handling_seconds_count", **labels))
                self.assertEqual(delta_count, made.get((method, c.name), 0), (method, c.name))
                self.assertEqual(
                    value(after, "knn_grpc_server_handling_seconds_bucket", le="+Inf", **labels),
                    value(after, "knn_grpc_server_handling_seconds_count", **labels))
            started = dict(grpc_service="knncluster.v1.Coordinator", grpc_method=method)
            self.assertEqual(value(after, "knn_grpc_server_started_total", **started)
                             - value(before, "knn_grpc_server_started_total", **started),
                             sum(n for (m, _), n in made.items() if m == method), method)
        # Workers count the searches the coordinator sent them, with codes, and heartbeats reach
        # the coordinator's Membership service.
        searched = sum(value(self.scrape(w), "knn_grpc_server_handled_total",
                             grpc_service="knncluster.v1.Worker", grpc_method="SearchShards",
                             grpc_code="OK") for w in ("w0", "w1"))
        self.assertGreaterEqual(searched, 2)
        heartbeats = dict(grpc_service="knncluster.v1.Membership", grpc_method="Heartbeat",
                          grpc_code="OK")
        deadline = time.time() + 10  # one heartbeat interval (1 s) after registering at most
        while value(after, "knn_grpc_server_handled_total", **heartbeats) == 0 and \
                time.time() < deadline:
            time.sleep(0.1)
            after = self.scrape()
        self.assertGreater(value(after, "knn_grpc_server_handled_total", **heartbeats), 0)

    def test_gauges_match_cluster_status(self):
        status = self.stub.GetClusterStatus(self.pb.GetClusterStatusRequest(), timeout=30)
        m = self.scrape()
        self.assertEqual(value(m, "knn_coordinator_workers", state="alive"), 2)
        self.assertEqual(value(m, "knn_coordinator_workers", state="dead"), 0)
        for w in status.workers:
            self.assertEqual(value(m, "knn_coordinator_worker_up", worker_id=w.worker_id,
                                   address=w.address), 1)
        self.assertEqual(value(m, "knn_coordinator_models"), len(status.models))
        self.assertEqual(value(m, "knn_coordinator_datasets"), len(status.datasets))
        self.assertEqual(value(m, "knn_coordinator_dataset_rows"),
                         sum(d.rows for d in status.datasets if not d.view_of))
        shards = [s for model in status.models for s in model.shards]
        self.assertGreater(len(shards), 0)
        self.assertEqual(value(m, "knn_coordinator_shards"), len(shards))
        copies = sum(len(s.replica_worker_ids) for s in shards)
        self.assertGreater(copies, 0)
        self.assertEqual(value(m, "knn_coordinator_shard_copies", state="live"), copies)
        self.assertEqual(value(m, "knn_coordinator_shard_copies", state="lost"), 0)
        self.assertEqual(value(m, "knn_coordinator_model_rows"),
                         sum(model.rows for model in status.models))
        self.assertGreater(value(m, "knn_process_resident_memory_bytes"), 0)
        self.assertEqual(value(m, "knn_coordinator_grid_search_jobs_pending"), 0)
        # Each worker holds what the coordinator placed on it, rows included.
        held_shards = held_rows = 0
        for name in ("w0", "w1"):
            wm = self.scrape(name)
            self.assertEqual(value(wm, "knn_worker_registered"), 1)
            held_shards += value(wm, "knn_worker_shards")
            held_rows += value(wm, "knn_worker_rows")
            self.assertGreater(value(wm, "knn_process_resident_memory_bytes"), 0)
        self.assertEqual(held_shards, copies)
        self.assertEqual(held_rows, sum(w.rows for w in status.workers))

    def test_z_killed_worker_is_dead_in_the_gauges(self):
        # Named to run last (unittest sorts by name): it kills w1.
        with open(os.path.join(self.tmpdir.name, "w1", "worker_id")) as f:
            w1_id = f.read().strip()
        self.c.kill_worker("w1")
        deadline = time.time() + 30
        while time.time() < deadline:
            m = self.scrape()
            if value(m, "knn_coordinator_workers", state="dead") == 1:
                break
            time.sleep(0.1)
        self.assertEqual(value(m, "knn_coordinator_workers", state="dead"), 1)
        self.assertEqual(value(m, "knn_coordinator_workers", state="alive"), 1)
        up = {dict(labels)["worker_id"]: v for (name, labels), v in m.items()
              if name == "knn_coordinator_worker_up"}
        self.assertEqual(up[w1_id], 0)
        self.assertEqual(sorted(up.values()), [0, 1])


class DomText(html.parser.HTMLParser):
    """Collects elements' attributes by tag, and the text."""

    def __init__(self):
        super().__init__()
        self.tags = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def find_chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class StatusPageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.chromium = find_chromium()
        if cls.chromium is None:
            if os.environ.get("CI") == "true":
                raise AssertionError("chromium is missing (scripts/install-deps.sh installs it)")
            raise unittest.SkipTest("chromium is not installed (apt-get install chromium)")
        import grpc
        from knncluster.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc
        from knncluster.v1 import grid_search_pb2
        cls.grpc, cls.pb, cls.common, cls.gs = grpc, coordinator_pb2, common_pb2, grid_search_pb2
        cls.tmpdir = tempfile.TemporaryDirectory()
        cls.c = HttpCluster(2, cls.tmpdir.name, coordinator_args=["--status-page",
                                                                  "--replication", "2"])
        cls.c.knnctl("fit", *SPLIT, "--split", "train", "-k", "3", "--model", "page-model")
        cls.channel = grpc.insecure_channel(cls.c.coordinator)
        cls.stub = coordinator_pb2_grpc.CoordinatorStub(cls.channel)
        grid = cls.gs.ParamGrid(n_neighbors=[1, 3, 5], p=[1, 2])
        info = cls.stub.StartGridSearch(cls.pb.StartGridSearchRequest(
            dataset="digits", task=cls.common.TASK_CLASSIFIER,
            base=cls.common.NeighborsParams(algorithm=cls.common.ALGORITHM_BRUTE),
            param_grid=[grid], cv=3), timeout=30)
        for i in cls.stub.WatchGridSearch(cls.pb.WatchGridSearchRequest(id=info.id), timeout=300):
            pass
        cls.search = cls.stub.GetGridSearchResult(
            cls.pb.GetGridSearchResultRequest(id=info.id), timeout=30)
        assert cls.search.info.state == cls.pb.GRID_SEARCH_SUCCEEDED, cls.search.info

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.c.stop()
        cls.tmpdir.cleanup()

    def chromium_run(self, *args):
        with tempfile.TemporaryDirectory() as profile:
            p = subprocess.run(
                [self.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                 *args], capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        return p.stdout

    def test_page_in_headless_chromium_shows_the_cluster(self):
        url = f"http://{self.c.http['coordinator']}/"
        dom = self.chromium_run("--dump-dom", url)
        status = self.stub.GetClusterStatus(self.pb.GetClusterStatusRequest(), timeout=30)
        page = DomText()
        page.feed(dom)
        text = "".join(page.text)
        attrs = page.tags
        ids = {a.get("id") for _, a in attrs}
        for table in ("workers", "datasets", "models", "grid-searches"):
            self.assertIn(table, ids)

        def rows(attr):
            return sorted(a[attr] for t, a in attrs if t == "tr" and attr in a)

        self.assertEqual(rows("data-worker-id"), sorted(w.worker_id for w in status.workers))
        for t, a in attrs:
            if t == "tr" and "data-worker-id" in a:
                self.assertEqual(a["data-state"], "alive")
        self.assertEqual(rows("data-dataset"), sorted(d.name for d in status.datasets))
        self.assertEqual(rows("data-model"), sorted(m.name for m in status.models))
        shards = sorted(a["data-shard"] for t, a in attrs if t == "div" and "data-shard" in a)
        self.assertEqual(shards, sorted(s.shard_id for m in status.models for s in m.shards))
        replicas = [a["data-worker"] for t, a in attrs if t == "span" and "data-worker" in a]
        self.assertEqual(len(replicas), sum(len(s.replica_worker_ids)
                                            for m in status.models for s in m.shards))
        # The grid search: done, with its progress and the heatmap of its 3 x 2 grid.
        info = self.search.info
        (row,) = [a for t, a in attrs if t == "tr" and a.get("data-grid-search") == info.id]
        self.assertEqual((int(row["data-jobs-done"]), int(row["data-jobs-total"])),
                         (info.jobs_done, info.jobs_total))
        self.assertEqual(info.jobs_done, info.jobs_total)
        best = repr(self.search.best_score)
        self.assertIn(best[:-2] if best.endswith(".0") else best, text)
        self.assertTrue(any(t == "svg" for t, _ in attrs))
        cells = [a for t, a in attrs if t == "rect" and "cell" in a.get("class", "").split()]
        self.assertEqual(len(cells), 6)
        means = sorted(self.search.cv_results.mean_test_score)
        self.assertEqual(sorted(float(a["data-value"]) for a in cells), means)
        # No script, no external asset.
        self.assertFalse(any(t == "script" for t, _ in attrs))
        self.assertNotIn("http://", dom.replace("http://www.w3.org/2000/svg", ""))
        self.assertNotIn("https://", dom)

        os.makedirs(OUT, exist_ok=True)
        shot = os.path.join(OUT, "status_page.png")
        if os.path.exists(shot):
            os.remove(shot)
        self.chromium_run(f"--screenshot={shot}", "--window-size=1280,1600",
                          "--hide-scrollbars", url)
        with open(shot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        print(f"screenshot: {shot}", file=sys.stderr)

    def test_page_is_read_only(self):
        # (Escaping of names: coordinator/status_page_test.cc; names the service accepts have no
        # markup characters.)
        addr = self.c.http["coordinator"]
        status, headers, body = http(addr, "/")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/html"))
        self.assertIn("page-model", body)
        self.assertEqual(http(addr, "/status")[0], 200)
        self.assertEqual(http(addr, "/", method="POST", data=b"")[0], 405)


def main():
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "knn-http-test"))
    args, rest = ap.parse_known_args()
    cluster_test.BIN = os.path.abspath(args.bin)
    OUT = os.path.abspath(args.out)
    sys.path.insert(0, os.path.abspath(args.python))
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
