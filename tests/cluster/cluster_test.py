#!/usr/bin/python3
"""End-to-end tests of the cluster: real knn-coordinator and knn-worker processes on 127.0.0.1
with OS-chosen ports, driven by the real knnctl and by raw gRPC stubs (for requests knnctl would
refuse before sending).

ctest runs: /usr/bin/python3 cluster_test.py --bin build/bin --python build/python
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import numpy as np

BIN = None


class Cluster:
    """A coordinator and `workers` workers, each a real process with its own data directory."""

    def __init__(self, workers, tmp, static=False, worker_args=(), coordinator_args=(),
                 heartbeat_ms=200):
        """static: workers start first, without --coordinator, and the coordinator gets their
        addresses with --workers; otherwise workers register with the coordinator.
        worker_args / coordinator_args: extra flags for every worker / the coordinator.
        heartbeat_ms: the coordinator's heartbeat interval (a worker silent for 3 of them is
        dead)."""
        self.tmp = tmp
        self.worker_args = list(worker_args)
        self.procs = []
        self.files = []
        self.workers = {}
        self.coordinator = None
        static_addrs = [self.add_worker(f"w{i}") for i in range(workers)] if static else []
        argv = [os.path.join(BIN, "knn-coordinator"), "--listen", "127.0.0.1:0",
                "--data-dir", os.path.join(tmp, "coordinator"),
                "--heartbeat-interval-ms", str(heartbeat_ms)]
        argv += list(coordinator_args)
        if static:
            argv += ["--workers", ",".join(static_addrs)]
        self.coordinator = self._start("coordinator", argv)
        if not static:
            for i in range(workers):
                self.add_worker(f"w{i}")
        self.wait_alive(workers)

    def _start(self, name, argv):
        out = open(os.path.join(self.tmp, f"{name}.out"), "w+")
        err = open(os.path.join(self.tmp, f"{name}.err"), "w")
        self.files += [out, err]
        proc = subprocess.Popen(argv, stdout=out, stderr=err,
                                env={**os.environ, "GRPC_VERBOSITY": "ERROR"})
        self.procs.append(proc)
        deadline = time.time() + 30
        while time.time() < deadline:
            out.seek(0)
            line = out.readline()
            if line.startswith("listening on ") and line.endswith("\n"):
                return line.split()[-1]
            if proc.poll() is not None:
                with open(os.path.join(self.tmp, f"{name}.err")) as f:
                    raise RuntimeError(f"{name} exited: {f.read()}")
            time.sleep(0.02)
        raise RuntimeError(f"{name} did not print its address")

    def add_worker(self, name):
        argv = [os.path.join(BIN, "knn-worker"), "--listen", "127.0.0.1:0",
                "--data-dir", os.path.join(self.tmp, name), *self.worker_args]
        if self.coordinator:
            argv += ["--coordinator", self.coordinator]
        addr = self._start(name, argv)
        self.workers[name] = (addr, self.procs[-1])
        return addr

    def kill_worker(self, name):
        _, proc = self.workers[name]
        proc.kill()
        proc.wait()

    def status(self):
        return self.knnctl("status")

    def wait_alive(self, n, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            alive = [w for w in self.status()["workers"] if w["state"] == "WORKER_ALIVE"]
            if len(alive) >= n:
                return
            time.sleep(0.05)
        raise RuntimeError(f"fewer than {n} workers alive: {self.status()}")

    def knnctl(self, *args, check=True):
        return knnctl("--coordinator", self.coordinator, *args, check=check)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in self.files:
            f.close()


def knnctl(*args, check=True):
    p = subprocess.run([os.path.join(BIN, "knnctl"), "--json", *args], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "GRPC_VERBOSITY": "ERROR"})
    if check and p.returncode != 0:
        raise AssertionError(f"knnctl {' '.join(args)} failed: {p.stderr}")
    return json.loads(p.stdout) if check else p


SPLIT = ["--dataset", "digits", "--test-size", "0.2", "--random-state", "1337"]


class ClusterTest(unittest.TestCase):
    def setUp(self):
        self.tmpdir = tempfile.TemporaryDirectory()
        self.tmp = self.tmpdir.name
        self.clusters = []

    def tearDown(self):
        for c in self.clusters:
            c.stop()
        self.tmpdir.cleanup()

    def cluster(self, workers):
        c = Cluster(workers, tempfile.mkdtemp(dir=self.tmp))
        self.clusters.append(c)
        return c

    def test_tutorial_through_the_cluster_prints_the_local_figures(self):
        c = self.cluster(3)
        remote = c.knnctl("tutorial")
        local = knnctl("tutorial")
        self.assertEqual(remote["split"], local["split"])
        self.assertEqual(remote["classifier"]["n_correct"], 349)
        self.assertEqual(remote["classifier"]["test_accuracy"], local["classifier"]["test_accuracy"])
        self.assertTrue(remote["save_load"]["identical_predictions"])
        self.assertEqual(remote["grid_search"]["best_score"], local["grid_search"]["best_score"])
        status = c.status()
        self.assertEqual(len(status["workers"]), 3)
        model = [m for m in status["models"] if m["name"] == "tutorial-knn"][0]
        self.assertEqual(int(model["rows"]), 1437)
        self.assertGreaterEqual(len(model["shards"]), 3)  # spread over every worker

    def test_neighbours_equal_in_process_brute_force(self):
        local_model = os.path.join(self.tmp, "brute.model")
        for workers in (1, 2, 3):
            c = self.cluster(workers)
            for p in ("1", "2", "3"):
                knnctl("fit", *SPLIT, "--split", "train", "-k", "10", "--algorithm", "brute",
                       "--p", p, "--model", local_model)
                want = knnctl("kneighbors", "--model", local_model, *SPLIT, "--split", "test")
                want_pred = knnctl("predict", "--model", local_model, *SPLIT, "--split", "test",
                                   "--proba")
                for algorithm in ("kd_tree", "ball_tree", "brute", "auto"):
                    name = f"m-{workers}-{p}-{algorithm}"
                    c.knnctl("fit", *SPLIT, "--split", "train", "-k", "10", "--algorithm",
                             algorithm, "--p", p, "--model", name)
                    got = c.knnctl("kneighbors", "--model", name, *SPLIT, "--split", "test")
                    ctx = f"workers={workers} p={p} {algorithm}"
                    self.assertEqual(got["indices"], want["indices"], ctx)
                    self.assertEqual(got["distances"], want["distances"], ctx)  # bit for bit
                    pred = c.knnctl("predict", "--model", name, *SPLIT, "--split", "test",
                                    "--proba")
                    self.assertEqual(pred["predictions"], want_pred["predictions"], ctx)
                    self.assertEqual(pred["probabilities"], want_pred["probabilities"], ctx)
            score = c.knnctl("score", "--model", f"m-{workers}-2-kd_tree", *SPLIT, "--split",
                             "test")
            self.assertEqual(score["score"], score["server_score"])

    def test_distance_weights_regression_and_outliers_equal_local(self):
        c = self.cluster(2)
        rs = np.random.RandomState(3)
        X = rs.randint(0, 5, size=(400, 3)).astype(float)  # many ties and duplicates
        y = X[:, 0] * 2 + rs.standard_normal(400)
        csv = os.path.join(self.tmp, "reg.csv")
        np.savetxt(csv, np.column_stack([X, y]), delimiter=",", fmt="%.17g")
        for task, extra in (("regressor", ["--weights", "distance", "-k", "7"]),
                            ("outlier", ["-k", "2", "--contamination", "0.1"]),
                            ("classifier", ["--weights", "distance", "-k", "5"])):
            data = ["--data", csv, "--test-size", "0.25", "--random-state", "5"]
            if task == "classifier":
                lab = os.path.join(self.tmp, "cls.csv")
                np.savetxt(lab, np.column_stack([X, (y > 4).astype(int)]), delimiter=",", fmt="%.17g")
                data = ["--data", lab, "--test-size", "0.25", "--random-state", "5"]
            local_model = os.path.join(self.tmp, f"{task}.model")
            knnctl("fit", *data, "--split", "train", "--task", task, *extra, "--model", local_model)
            c.knnctl("fit", *data, "--split", "train", "--task", task, *extra, "--model", task)
            want = knnctl("predict", "--model", local_model, *data, "--split", "test")
            got = c.knnctl("predict", "--model", task, *data, "--split", "test")
            self.assertEqual(got["predictions"], want["predictions"], task)
            if task == "outlier":
                self.assertEqual(got["scores"], want["scores"])
                self.assertEqual(got["threshold"], want["threshold"])

    def test_routed_spatial_shards_equal_local(self):
        # 3 features and >= 1024 rows per shard: the coordinator cuts the training set into
        # spatial shards and routes each query only to the shards that can hold its neighbours.
        # Integer data (many ties and duplicates, rows exactly on the cuts) and queries inside
        # and outside the data's box must still give the single-process answer bit for bit.
        rs = np.random.RandomState(7)
        X = rs.randint(0, 12, size=(8000, 3)).astype(float)
        y = (X.sum(axis=1) > 16).astype(int)
        csv = os.path.join(self.tmp, "grid.csv")
        np.savetxt(csv, np.column_stack([X, y]), delimiter=",", fmt="%.17g")
        queries = os.path.join(self.tmp, "grid_q.npy")
        np.save(queries, np.vstack([rs.randint(-4, 16, size=(150, 3)).astype(float),
                                    rs.uniform(-3, 15, size=(150, 3))]))
        data = ["--data", csv, "--test-size", "0.25", "--random-state", "3"]
        for workers in (2, 3):
            c = self.cluster(workers)
            for p in ("1", "2", "3"):
                for task, extra in (("classifier", ["-k", "10"]), ("outlier", ["-k", "4"])):
                    local_model = os.path.join(self.tmp, f"grid-{p}-{task}.model")
                    knnctl("fit", *data, "--split", "train", "--task", task, *extra, "--p", p,
                           "--algorithm", "kd_tree", "--model", local_model)
                    name = f"grid-{workers}-{p}-{task}"
                    c.knnctl("fit", *data, "--split", "train", "--task", task, *extra, "--p", p,
                             "--algorithm", "kd_tree", "--model", name)
                    ctx = f"workers={workers} p={p} {task}"
                    for q in ([*data, "--split", "test"], ["--data", queries, "--label-column",
                                                           "none"]):
                        for k in (["-k", "1"], ["-k", "3"], []):
                            want = knnctl("kneighbors", "--model", local_model, *q, *k)
                            got = c.knnctl("kneighbors", "--model", name, *q, *k)
                            self.assertEqual(got["indices"], want["indices"], ctx)
                            self.assertEqual(got["distances"], want["distances"], ctx)
                    want = knnctl("predict", "--model", local_model, *data, "--split", "test")
                    got = c.knnctl("predict", "--model", name, *data, "--split", "test")
                    self.assertEqual(got["predictions"], want["predictions"], ctx)
                    if task == "outlier":
                        self.assertEqual(got["scores"], want["scores"], ctx)
                        self.assertEqual(got["threshold"], want["threshold"], ctx)

    def test_export_and_import_round_trip(self):
        c = self.cluster(2)
        c.knnctl("fit", *SPLIT, "--split", "train", "-k", "20", "--algorithm", "kd_tree",
                 "--model", "digits-knn")
        path = os.path.join(self.tmp, "exported.model")
        c.knnctl("save", "--model", "digits-knn", "--out", path)
        # The exported bytes are a model file the local engine reads.
        local = knnctl("score", "--model", path, *SPLIT, "--split", "test")
        self.assertEqual(local["n_correct"], 349)
        c.knnctl("load", "--file", path, "--model", "imported")
        remote = c.knnctl("score", "--model", "imported", *SPLIT, "--split", "test")
        self.assertEqual(remote["n_correct"], 349)

    def test_dead_worker_is_marked_and_its_shards_are_resent(self):
        c = self.cluster(3)
        c.knnctl("fit", *SPLIT, "--split", "train", "-k", "10", "--algorithm", "kd_tree",
                 "--model", "m")
        want = c.knnctl("kneighbors", "--model", "m", *SPLIT, "--split", "test")
        # A model with spatial shards (3 features, routed queries): its re-sent shard keeps its
        # rows, and routing over a worker holding two shards stays exact.
        rs = np.random.RandomState(5)
        grid = os.path.join(self.tmp, "spatial.csv")
        X = rs.randint(0, 9, size=(6000, 3)).astype(float)
        np.savetxt(grid, np.column_stack([X, X[:, 0] > 4]), delimiter=",", fmt="%.17g")
        routed = ["--data", grid, "--test-size", "0.2", "--random-state", "1"]
        c.knnctl("fit", *routed, "--split", "train", "-k", "8", "--model", "r")
        want_r = c.knnctl("kneighbors", "--model", "r", *routed, "--split", "test")
        local_model = os.path.join(self.tmp, "spatial.model")
        knnctl("fit", *routed, "--split", "train", "-k", "8", "--model", local_model)
        local = knnctl("kneighbors", "--model", local_model, *routed, "--split", "test")
        self.assertEqual(want_r["indices"], local["indices"])
        self.assertEqual(want_r["distances"], local["distances"])
        victim = c.workers["w0"][0]
        c.kill_worker("w0")
        deadline = time.time() + 20
        while time.time() < deadline:
            states = {w["address"]: w["state"] for w in c.status()["workers"]}
            if states.get(victim) == "WORKER_DEAD":
                break
            time.sleep(0.05)
        self.assertEqual(states.get(victim), "WORKER_DEAD")
        # Until the lost shard is re-sent a query fails UNAVAILABLE naming it; then it is exact.
        deadline, errors = time.time() + 30, []
        while time.time() < deadline:
            p = c.knnctl("kneighbors", "--model", "m", *SPLIT, "--split", "test", check=False)
            if p.returncode == 0:
                self.assertEqual(json.loads(p.stdout), want)
                break
            errors.append(p.stderr)
            self.assertIn("shard", p.stderr)
            time.sleep(0.1)
        else:
            self.fail(f"the lost shard was never re-sent: {errors[-1:]}")
        deadline = time.time() + 30
        while time.time() < deadline:
            p = c.knnctl("kneighbors", "--model", "r", *routed, "--split", "test", check=False)
            if p.returncode == 0:
                self.assertEqual(json.loads(p.stdout), want_r)
                break
            time.sleep(0.1)
        else:
            self.fail("the spatial model's lost shard was never re-sent")
        model = [m for m in c.status()["models"] if m["name"] == "m"][0]
        alive = {w["worker_id"] for w in c.status()["workers"] if w["state"] == "WORKER_ALIVE"}
        self.assertTrue(all(s["worker_id"] in alive for s in model["shards"]))

    def test_worker_killed_and_restarted_keeps_its_shards_without_a_resend(self):
        # A 1 s heartbeat: the worker is back (about 0.1 s) long before it would be dead (3 s).
        c = Cluster(2, tempfile.mkdtemp(dir=self.tmp), heartbeat_ms=1000)
        self.clusters.append(c)
        c.knnctl("fit", *SPLIT, "--split", "train", "-k", "10", "--algorithm", "kd_tree",
                 "--model", "m")
        want = c.knnctl("kneighbors", "--model", "m", *SPLIT, "--split", "test")
        want_pred = c.knnctl("predict", "--model", "m", *SPLIT, "--split", "test")
        import grpc
        from knncluster.v1 import worker_pb2, worker_pb2_grpc

        def worker_status(addr):
            with grpc.insecure_channel(addr) as channel:
                return worker_pb2_grpc.WorkerStub(channel).GetWorkerStatus(
                    worker_pb2.GetWorkerStatusRequest(), timeout=10)

        before = worker_status(c.workers["w0"][0])
        self.assertGreater(len(before.shards), 0)
        self.assertEqual(before.shard_loads, len(before.shards))
        placed = {s["shard_id"] for m in c.status()["models"] for s in m["shards"]
                  if s["worker_id"] == before.worker_id}
        self.assertEqual(placed, {s.shard_id for s in before.shards})

        other_loads = worker_status(c.workers["w1"][0]).shard_loads
        # Placements older than the repair grace (2 heartbeats + 1 s): a restarted worker that
        # reported nothing at registration would have them marked lost by the next repair round.
        time.sleep(3.5)
        c.kill_worker("w0")  # SIGKILL: nothing is flushed or said on the way out
        addr = c.add_worker("w0")  # the same data directory, a new port
        deadline = time.time() + 20
        while time.time() < deadline:
            w = [w for w in c.status()["workers"] if w["worker_id"] == before.worker_id][0]
            if w["address"] == addr and w["state"] == "WORKER_ALIVE":
                break
            time.sleep(0.05)
        self.assertEqual(w["address"], addr)
        # Several repair rounds later, nothing was sent again: the shards came from disk.
        time.sleep(3.5)
        after = worker_status(addr)
        self.assertEqual(after.worker_id, before.worker_id)
        self.assertEqual(after.shard_loads, 0)
        self.assertEqual(after.shards_restored, len(before.shards))
        self.assertEqual(list(after.quarantined_files), [])
        self.assertEqual([(s.shard_id, s.rows, s.memory_bytes) for s in after.shards],
                         [(s.shard_id, s.rows, s.memory_bytes) for s in before.shards])
        placed_after = {s["shard_id"] for m in c.status()["models"] for s in m["shards"]
                        if s["worker_id"] == before.worker_id}
        self.assertEqual(placed_after, placed)
        # Nor to the other worker.
        self.assertEqual(worker_status(c.workers["w1"][0]).shard_loads, other_loads)
        self.assertEqual(c.knnctl("kneighbors", "--model", "m", *SPLIT, "--split", "test"), want)
        self.assertEqual(c.knnctl("predict", "--model", "m", *SPLIT, "--split", "test"),
                         want_pred)
        with open(os.path.join(c.tmp, "w0.err")) as f:
            self.assertIn(f"restored {len(before.shards)} shard(s)", f.read())

        # Again, with one bit of one shard file flipped: that file is quarantined, the shard is
        # not held, and the coordinator's repair sends it again; answers stay exact.
        c.kill_worker("w0")
        shard_dir = os.path.join(c.tmp, "w0", "shards")
        victim = sorted(os.listdir(shard_dir))[0]
        with open(os.path.join(shard_dir, victim), "r+b") as f:
            f.seek(os.path.getsize(os.path.join(shard_dir, victim)) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x20]))
        addr = c.add_worker("w0")
        status = worker_status(addr)
        self.assertEqual(status.shards_restored, len(before.shards) - 1)
        self.assertEqual(len(status.quarantined_files), 1)
        self.assertIn("checksum", status.quarantined_files[0])
        self.assertTrue(os.listdir(os.path.join(c.tmp, "w0", "quarantine")))
        deadline = time.time() + 30
        while time.time() < deadline:
            loads = worker_status(addr).shard_loads + worker_status(c.workers["w1"][0]).shard_loads
            if loads > other_loads:
                break
            time.sleep(0.1)
        self.assertGreater(loads, other_loads, "the quarantined shard was never sent again")
        deadline = time.time() + 30
        while time.time() < deadline:
            p = c.knnctl("kneighbors", "--model", "m", *SPLIT, "--split", "test", check=False)
            if p.returncode == 0:
                break
            time.sleep(0.1)
        self.assertEqual(json.loads(p.stdout), want)
        with open(os.path.join(c.tmp, "w0.err")) as f:
            self.assertIn("quarantined unreadable shard file", f.read())

    def test_restarted_worker_keeps_its_id_at_a_new_address(self):
        c = self.cluster(1)
        before = c.status()["workers"][0]
        c.workers["w0"][1].terminate()
        c.workers["w0"][1].wait()
        new_addr = c.add_worker("w0")  # same data directory, a new free port
        deadline = time.time() + 20
        while time.time() < deadline:
            workers = c.status()["workers"]
            if workers[0]["address"] == new_addr and workers[0]["state"] == "WORKER_ALIVE":
                break
            time.sleep(0.05)
        self.assertEqual(len(workers), 1)
        self.assertEqual(workers[0]["worker_id"], before["worker_id"])
        self.assertEqual(workers[0]["address"], new_addr)

    def test_static_worker_list(self):
        c = Cluster(2, tempfile.mkdtemp(dir=self.tmp), static=True)
        self.clusters.append(c)
        local_model = os.path.join(self.tmp, "l.model")
        knnctl("fit", *SPLIT, "--split", "train", "-k", "10", "--algorithm", "brute",
               "--model", local_model)
        c.knnctl("fit", *SPLIT, "--split", "train", "-k", "10", "--model", "s")
        self.assertEqual(c.knnctl("kneighbors", "--model", "s", *SPLIT, "--split", "test"),
                         {**knnctl("kneighbors", "--model", local_model, *SPLIT, "--split", "test"),
                          "model": "s"})

    def test_dataset_larger_than_16_mib(self):
        c = self.cluster(2)
        rs = np.random.RandomState(11)
        X = rs.random_sample((600_000, 4))  # 19.2 MB of float64
        y = (X[:, 0] > 0.5).astype(np.int64)
        data = os.path.join(self.tmp, "big.npy")
        labels = os.path.join(self.tmp, "big_labels.npy")
        np.save(data, X)
        np.save(labels, y)
        queries = os.path.join(self.tmp, "q.npy")
        np.save(queries, rs.random_sample((50, 4)))
        c.knnctl("fit", "--data", data, "--labels", labels, "-k", "5", "--algorithm", "kd_tree",
                 "--model", "big")
        got = c.knnctl("kneighbors", "--model", "big", "--data", queries, "--label-column", "none")
        # The oracle: numpy brute force with the (distance, index) order.
        Q = np.load(queries)
        for q in range(len(Q)):
            d2 = ((X - Q[q]) ** 2).sum(axis=1)
            order = np.lexsort((np.arange(len(X)), d2))[:5]
            self.assertEqual(got["indices"][q], order.tolist())
            np.testing.assert_allclose(got["distances"][q], np.sqrt(d2[order]), rtol=1e-12)
        info = [d for d in c.status()["datasets"] if d["name"].startswith("big")]
        self.assertEqual(int(info[0]["rows"]), 600_000)


class BadInputTest(unittest.TestCase):
    """Bad requests get INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION naming the field, and
    another client's calls running at the same time are unaffected."""

    @classmethod
    def setUpClass(cls):
        import grpc
        from knncluster.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc
        cls.grpc, cls.pb, cls.common = grpc, coordinator_pb2, common_pb2
        cls.tmpdir = tempfile.TemporaryDirectory()
        cls.c = Cluster(2, cls.tmpdir.name)
        cls.c.knnctl("fit", *SPLIT, "--split", "train", "-k", "5", "--model", "good")
        cls.channel = grpc.insecure_channel(cls.c.coordinator)
        cls.stub = coordinator_pb2_grpc.CoordinatorStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.c.stop()
        cls.tmpdir.cleanup()

    def queries(self, rows, cols=64, value=1.0):
        m = self.common.Matrix(rows=rows, cols=cols, values=[value] * (rows * cols))
        return self.pb.Queries(matrix=m)

    def expect(self, call, request, code, *words):
        with self.assertRaises(self.grpc.RpcError) as cm:
            call(request, timeout=30)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        for w in words:
            self.assertIn(w, cm.exception.details())

    def test_health_and_reflection_on_every_server(self):
        import grpc
        from health.v1 import health_pb2, health_pb2_grpc
        from reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
        servers = [(self.c.coordinator, ["knncluster.v1.Coordinator", "knncluster.v1.Membership"])]
        servers += [(addr, ["knncluster.v1.Worker"]) for addr, _ in self.c.workers.values()]
        for addr, services in servers:
            with grpc.insecure_channel(addr) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for service in ["", *services]:
                    r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                    self.assertEqual(r.status, health_pb2.HealthCheckResponse.SERVING, (addr, service))
                reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
                replies = reflection.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
                listed = {s.name for r in replies for s in r.list_services_response.service}
                for service in services + ["grpc.health.v1.Health"]:
                    self.assertIn(service, listed, addr)

    def test_every_bad_request_is_named_and_the_good_client_is_unaffected(self):
        code = self.grpc.StatusCode
        good_request = self.pb.PredictRequest(model="good", queries=self.pb.Queries(
            dataset="digits.test-0.2-1337"))
        want = self.stub.Predict(good_request, timeout=30).predictions
        failures, done, calls = [], threading.Event(), [0]

        def good_client():
            while not done.is_set():
                try:
                    got = self.stub.Predict(good_request, timeout=30).predictions
                    if got != want:
                        failures.append("different predictions")
                    calls[0] += 1
                except self.grpc.RpcError as e:
                    failures.append(e.details())

        t = threading.Thread(target=good_client)
        t.start()
        try:
            kn = self.pb.KNeighborsRequest
            self.expect(self.stub.KNeighbors, kn(model="nope", queries=self.queries(1)),
                        code.NOT_FOUND, "nope")
            self.expect(self.stub.KNeighbors, kn(model="good", queries=self.queries(1), k=0),
                        code.INVALID_ARGUMENT, "k")
            self.expect(self.stub.KNeighbors, kn(model="good", queries=self.queries(1), k=-3),
                        code.INVALID_ARGUMENT, "k")
            self.expect(self.stub.KNeighbors, kn(model="good", queries=self.queries(1), k=1438),
                        code.INVALID_ARGUMENT, "k")
            self.expect(self.stub.KNeighbors, kn(model="good", queries=self.queries(2, cols=63)),
                        code.INVALID_ARGUMENT, "queries", "64", "63")
            self.expect(self.stub.Predict, self.pb.PredictRequest(
                model="good", queries=self.queries(2, value=math.nan)),
                code.INVALID_ARGUMENT, "queries")
            self.expect(self.stub.Predict, self.pb.PredictRequest(
                model="good", queries=self.queries(2, value=math.inf)),
                code.INVALID_ARGUMENT, "queries")
            self.expect(self.stub.Predict, self.pb.PredictRequest(
                model="good", queries=self.pb.Queries(dataset="no-such-dataset")),
                code.NOT_FOUND, "no-such-dataset")
            params = self.common.NeighborsParams(p=0.5)
            self.expect(self.stub.Fit, self.pb.FitRequest(model="bad", dataset="digits",
                                                          params=params),
                        code.INVALID_ARGUMENT, "p")
            self.expect(self.stub.Fit, self.pb.FitRequest(model="bad", dataset="missing"),
                        code.NOT_FOUND, "missing")
            self.expect(self.stub.Fit, self.pb.FitRequest(
                model="bad", dataset="digits",
                params=self.common.NeighborsParams(n_neighbors=5000)),
                code.INVALID_ARGUMENT, "n_neighbors")
            self.expect(self.stub.SplitDataset, self.pb.SplitDatasetRequest(
                dataset="digits", test_count=1797, train_name="a", test_name="b"),
                code.INVALID_ARGUMENT, "test_size")
            self.expect(self.stub.SplitDataset, self.pb.SplitDatasetRequest(
                dataset="digits", test_fraction=0.0, train_name="a", test_name="b"),
                code.INVALID_ARGUMENT, "test_fraction")
            # An empty dataset: a header and no rows.
            empty = iter([self.pb.UploadDatasetRequest(header=self.pb.DatasetHeader(
                name="empty", cols=3))])
            self.expect(self.stub.UploadDataset, empty, code.INVALID_ARGUMENT, "rows")
            # Rows of the wrong width in an upload.
            bad_rows = iter([
                self.pb.UploadDatasetRequest(header=self.pb.DatasetHeader(name="w", cols=3)),
                self.pb.UploadDatasetRequest(chunk=self.pb.DatasetChunk(
                    rows=self.common.Matrix(rows=1, cols=2, values=[1, 2])))])
            self.expect(self.stub.UploadDataset, bad_rows, code.INVALID_ARGUMENT, "chunk.rows", "columns")
            # Scoring rows without labels.
            self.expect(self.stub.Score, self.pb.ScoreRequest(model="good", queries=self.queries(2)),
                        code.FAILED_PRECONDITION, "labels")
            # A client whose own deadline is too short fails alone: no worker is blamed.
            with self.assertRaises(self.grpc.RpcError) as cm:
                self.stub.KNeighbors(kn(model="good", queries=self.queries(3000)), timeout=0.002)
            self.assertEqual(cm.exception.code(), code.DEADLINE_EXCEEDED)
            # Keep going until the good client has run alongside for a while.
            deadline = time.time() + 10
            while calls[0] < 20 and time.time() < deadline:
                time.sleep(0.01)
        finally:
            done.set()
            t.join()
        self.assertEqual(failures, [])
        self.assertGreaterEqual(calls[0], 20)
        alive = [w for w in self.c.status()["workers"] if w["state"] == "WORKER_ALIVE"]
        self.assertEqual(len(alive), 2)
        self.assertEqual(self.stub.Predict(good_request, timeout=30).predictions, want)
        # The bad attempts left nothing behind.
        names = [d.name for d in self.stub.ListDatasets(self.pb.ListDatasetsRequest(),
                                                        timeout=30).datasets]
        self.assertNotIn("empty", names)
        self.assertNotIn("w", names)


class GridSearchE2ETest(unittest.TestCase):
    """The distributed grid search with real processes: scikit-learn's cv_results_ for the
    tutorial grid, computed as scikit-learn computes them, through a kill -9 of a worker."""

    CANONICAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                             "reference", "digits_gridsearch_canonical.csv")

    @classmethod
    def setUpClass(cls):
        import grpc
        from knncluster.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc
        from knncluster.v1 import grid_search_pb2
        cls.grpc, cls.pb, cls.common, cls.gs = grpc, coordinator_pb2, common_pb2, grid_search_pb2
        cls.tmpdir = tempfile.TemporaryDirectory()
        # Each fold job sleeps 150 ms first, so a worker can be killed in the middle of one.
        cls.c = Cluster(2, cls.tmpdir.name, worker_args=["--testing-job-delay-ms", "150"])
        # Uploads the built-in digits as "digits" and stores the tutorial's split views.
        cls.c.knnctl("fit", *SPLIT, "--split", "train", "-k", "5", "--model", "m")
        cls.channel = grpc.insecure_channel(cls.c.coordinator)
        cls.stub = coordinator_pb2_grpc.CoordinatorStub(cls.channel)
        with open(cls.CANONICAL) as f:
            header = f.readline().strip().split(",")
            cls.want = [dict(zip(header, map(float, line.split(",")))) for line in f if line.strip()]

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.c.stop()
        cls.tmpdir.cleanup()

    def tutorial_request(self, **kw):
        grid = self.gs.ParamGrid(n_neighbors=list(range(2, 20, 2)), p=[1, 2, 3])
        return self.pb.StartGridSearchRequest(
            dataset="digits", task=self.common.TASK_CLASSIFIER,
            base=self.common.NeighborsParams(algorithm=self.common.ALGORITHM_KD_TREE),
            param_grid=[grid], cv=5, **kw)

    def check_tutorial_result(self, result):
        from scipy.stats import rankdata
        cv = result.cv_results
        self.assertEqual(len(cv.params), 27)
        splits = np.array([list(s.scores) for s in cv.split_test_scores]).T  # [candidate][split]
        for c, want in enumerate(self.want):
            self.assertEqual(cv.params[c].n_neighbors, want["n_neighbors"])
            self.assertEqual(cv.params[c].p, want["p"])
            self.assertEqual(list(splits[c]), [want[f"split{i}_test_score"] for i in range(5)])
            self.assertEqual(cv.mean_test_score[c], want["mean_test_score"])
            self.assertEqual(list(cv.param_keys[c].keys), ["n_neighbors", "p"])
        # As scikit-learn computes them: numpy mean / std (ddof 0) over the splits, ranks by
        # scipy's rankdata(-mean, method="min").
        means = np.mean(splits, axis=1)
        self.assertEqual(list(cv.mean_test_score), list(means))
        self.assertEqual(list(cv.std_test_score), list(np.std(splits, axis=1)))
        self.assertEqual(list(cv.rank_test_score),
                         list(rankdata(-means, method="min").astype(int)))
        self.assertEqual(result.best_index, 1)
        self.assertEqual(result.best_score, 0.9671711544413494)
        self.assertEqual((result.best_params.n_neighbors, result.best_params.p), (2, 2))
        self.assertTrue(all(t > 0 for t in cv.mean_fit_time))
        self.assertTrue(all(t > 0 for t in cv.mean_score_time))

    def watch(self, search_id, on_event=None):
        events = []
        for info in self.stub.WatchGridSearch(
                self.pb.WatchGridSearchRequest(id=search_id, interval_ms=100), timeout=300):
            events.append(info)
            if on_event:
                on_event(info)
        return events

    def test_tutorial_grid_equals_scikit_learn(self):
        info = self.stub.StartGridSearch(self.tutorial_request(refit_model="e2e-best"), timeout=30)
        events = self.watch(info.id)
        self.assertEqual(events[-1].state, self.pb.GRID_SEARCH_SUCCEEDED, events[-1].error)
        self.assertEqual([e.jobs_done for e in events], sorted(e.jobs_done for e in events))
        self.assertTrue(any(0 < e.jobs_done < 15 and e.eta_seconds > 0 for e in events))
        result = self.stub.GetGridSearchResult(
            self.pb.GetGridSearchResultRequest(id=info.id), timeout=30)
        self.check_tutorial_result(result)
        self.assertEqual(result.info.neighbor_searches, 15)
        self.assertEqual(result.refit_model, "e2e-best")
        # The refit model answers on the tutorial's test split as scikit-learn's best_estimator_.
        score = self.stub.Score(self.pb.ScoreRequest(
            model="e2e-best", queries=self.pb.Queries(dataset="digits.test-0.2-1337")), timeout=30)
        self.assertEqual(score.score, 0.9833333333333333)

    def test_kill_9_of_a_worker_mid_search_changes_nothing(self):
        info = self.stub.StartGridSearch(
            self.tutorial_request(refit=False, mode=self.gs.GRID_SEARCH_MODE_REPLICATED),
            timeout=30)
        killed = []

        def kill_once(event):
            if not killed and event.jobs_done >= 1:
                self.c.kill_worker("w1")  # SIGKILL, with jobs in flight on it
                killed.append(event.jobs_done)

        events = self.watch(info.id, kill_once)
        self.assertTrue(killed)
        self.assertEqual(events[-1].state, self.pb.GRID_SEARCH_SUCCEEDED, events[-1].error)
        result = self.stub.GetGridSearchResult(
            self.pb.GetGridSearchResultRequest(id=info.id), timeout=30)
        self.check_tutorial_result(result)
        self.assertGreaterEqual(result.info.jobs_requeued, 1)
        self.assertGreaterEqual(result.info.neighbor_searches, 15)
        # The worker comes back on its data directory and rejoins.
        self.c.add_worker("w1")
        self.c.wait_alive(2)

    def test_a_client_that_goes_away_does_not_stop_the_search(self):
        channel = self.grpc.insecure_channel(self.c.coordinator)
        stub = __import__("knncluster.v1.coordinator_pb2_grpc",
                          fromlist=["x"]).CoordinatorStub(channel)
        info = stub.StartGridSearch(self.tutorial_request(refit=False), timeout=30)
        stream = stub.WatchGridSearch(self.pb.WatchGridSearchRequest(id=info.id), timeout=300)
        next(stream)
        stream.cancel()
        channel.close()
        events = self.watch(info.id)
        self.assertEqual(events[-1].state, self.pb.GRID_SEARCH_SUCCEEDED, events[-1].error)
        listed = {s.id: s for s in self.stub.ListGridSearches(
            self.pb.ListGridSearchesRequest(), timeout=30).searches}
        self.assertEqual(listed[info.id].jobs_done, 15)


def main():
    global BIN
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--python", required=True)
    args, rest = ap.parse_known_args()
    BIN = os.path.abspath(args.bin)
    sys.path.insert(0, os.path.abspath(args.python))
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
