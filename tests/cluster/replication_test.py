#!/usr/bin/python3
"""Replication end to end (issue 6): real knn-coordinator and knn-worker processes on loopback.

- R = 2: a steady stream of kneighbors / predict calls and a sharded grid search run while one
  worker is killed with SIGKILL: no call fails and every answer equals the answer before the
  kill, bit for bit; afterwards every shard has two live copies again (re-replication from the
  coordinator's dataset).
- R = 1: the same kill gives clean UNAVAILABLE errors naming the shard (or, with allow_partial,
  an answer over the other shards that lists the missing one); the cluster recovers fully when
  the worker restarts on its data directory.
- The coordinator killed (SIGKILL) under a stream of calls and restarted on its data directory:
  clients see UNAVAILABLE during the gap and nothing else, then every dataset, split and model
  is back and answers exactly, without a re-upload and without a shard sent again.

ctest runs: /usr/bin/python3 replication_test.py --bin build/bin --python build/python
"""
import argparse
import os
import sys
import tempfile
import threading
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_test  # noqa: E402  (the Cluster harness and knnctl helper)
from cluster_test import Cluster, SPLIT  # noqa: E402

TEST_SPLIT = "digits.test-0.2-1337"
TRAIN_SPLIT = "digits.train-0.2-1337"


class ReplicationBase(unittest.TestCase):
    replication = 1
    workers = 2
    heartbeat_ms = 200

    @classmethod
    def setUpClass(cls):
        import grpc
        from knncluster.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc
        from knncluster.v1 import grid_search_pb2
        cls.grpc, cls.pb, cls.common, cls.gs = grpc, coordinator_pb2, common_pb2, grid_search_pb2
        cls.tmpdir = tempfile.TemporaryDirectory()
        cls.c = Cluster(cls.workers, cls.tmpdir.name, heartbeat_ms=cls.heartbeat_ms,
                        coordinator_args=["--replication", str(cls.replication)])
        # Uploads the built-in digits as "digits" and stores the tutorial's split views.
        cls.c.knnctl("fit", *SPLIT, "--split", "train", "-k", "20", "--algorithm", "kd_tree",
                     "--model", "m")
        cls.channel = grpc.insecure_channel(cls.c.coordinator)
        cls.stub = coordinator_pb2_grpc.CoordinatorStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.c.stop()
        cls.tmpdir.cleanup()

    def queries(self):
        return self.pb.Queries(dataset=TEST_SPLIT)

    def kneighbors(self, **kw):
        return self.stub.KNeighbors(self.pb.KNeighborsRequest(model="m", queries=self.queries(),
                                                              **kw), timeout=30)

    def predict(self, **kw):
        return self.stub.Predict(self.pb.PredictRequest(model="m", queries=self.queries(), **kw),
                                 timeout=30)

    def model(self):
        return self.stub.DescribeModel(self.pb.DescribeModelRequest(model="m"), timeout=30)

    def alive_ids(self):
        status = self.stub.GetClusterStatus(self.pb.GetClusterStatusRequest(), timeout=30)
        return {w.worker_id for w in status.workers if w.state == self.pb.WORKER_ALIVE}

    def worker_id(self, name):
        """The stable id of worker `name` (kept in its data directory)."""
        addr = self.c.workers[name][0]
        status = self.stub.GetClusterStatus(self.pb.GetClusterStatusRequest(), timeout=30)
        return [w.worker_id for w in status.workers if w.address == addr][0]

    def wait_for(self, what, predicate, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        self.fail(f"timed out waiting for {what}")


class ReplicationTwoTest(ReplicationBase):
    replication = 2
    workers = 3

    def test_kill_9_under_load_fails_no_call_and_changes_no_answer(self):
        m = self.model()
        self.assertEqual(m.replication, 2)
        for s in m.shards:
            self.assertEqual(len(set(s.replica_worker_ids)), 2, s)
        want_nb = self.kneighbors()
        want_pred = self.predict()
        victim = self.worker_id("w1")
        # The stream: 4 clients calling kneighbors / predict back to back until told to stop.
        stop, lock = threading.Event(), threading.Lock()
        calls, failures = [0], []

        def client(i):
            while not stop.is_set():
                try:
                    if i % 2 == 0:
                        got = self.kneighbors()
                        ok = got.neighbors == want_nb.neighbors and not got.missing_shards
                    else:
                        got = self.predict()
                        ok = list(got.predictions) == list(want_pred.predictions)
                    if not ok:
                        raise AssertionError("a different answer")
                    with lock:
                        calls[0] += 1
                except Exception as e:  # a failed call or a wrong answer: both are failures
                    with lock:
                        failures.append(repr(e)[:300])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        # A grid search in sharded mode: every fold job is a search over the replicated shards.
        grid = self.gs.ParamGrid(n_neighbors=list(range(2, 20, 2)), p=[1, 2, 3])
        info = self.stub.StartGridSearch(self.pb.StartGridSearchRequest(
            dataset=TRAIN_SPLIT, task=self.common.TASK_CLASSIFIER,
            base=self.common.NeighborsParams(algorithm=self.common.ALGORITHM_KD_TREE),
            param_grid=[grid], cv=5, refit=False, mode=self.gs.GRID_SEARCH_MODE_SHARDED),
            timeout=30)
        time.sleep(1.0)
        before_kill = calls[0]
        self.c.kill_worker("w1")  # SIGKILL, with calls in flight on it
        events = list(self.stub.WatchGridSearch(
            self.pb.WatchGridSearchRequest(id=info.id, interval_ms=200), timeout=300))
        time.sleep(2.0)  # the stream goes on through detection and re-replication
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])
        self.assertGreater(before_kill, 0)
        self.assertGreater(calls[0], before_kill)
        self.assertEqual(events[-1].state, self.pb.GRID_SEARCH_SUCCEEDED, events[-1].error)
        result = self.stub.GetGridSearchResult(
            self.pb.GetGridSearchResultRequest(id=info.id), timeout=30)
        # The tutorial's train-only search (README; scikit-learn gives the same).
        self.assertEqual(result.best_score, 0.9832946186604724)
        self.assertEqual((result.best_params.n_neighbors, result.best_params.p), (2, 2))
        # Re-replication: every shard back to two live copies, none on the dead worker.
        alive = self.alive_ids()
        self.assertNotIn(victim, alive)

        def two_live_copies():
            return all(len({w for w in s.replica_worker_ids if w in alive}) == 2
                       for s in self.model().shards)
        self.wait_for("two live copies of every shard", two_live_copies)
        self.assertEqual(self.kneighbors().neighbors, want_nb.neighbors)
        # The worker comes back on its data directory: still exact, still two copies in the end.
        self.c.add_worker("w1")
        self.c.wait_alive(3)
        alive = self.alive_ids()
        self.wait_for("exactly two live copies after the return",
                      lambda: all(len({w for w in s.replica_worker_ids if w in alive}) == 2
                                  for s in self.model().shards))
        self.assertEqual(self.kneighbors().neighbors, want_nb.neighbors)


class ReplicationOneTest(ReplicationBase):
    replication = 1
    workers = 2
    # Slow heartbeats keep the repair loop from re-sending the lost shard before the calls
    # below have seen it missing (a failed call marks the worker dead at once).
    heartbeat_ms = 5000

    def test_kill_9_gives_unavailable_naming_the_shard_then_full_recovery(self):
        want_nb = self.kneighbors()
        victim = self.worker_id("w1")
        lost = sorted(s.shard_id for s in self.model().shards if victim in s.replica_worker_ids)
        self.assertTrue(lost)
        self.c.kill_worker("w1")
        try:
            got = self.kneighbors()
            # Only when the repair loop re-sent the shard in between: then it is exact.
            self.assertEqual(got.neighbors, want_nb.neighbors)
        except self.grpc.RpcError as e:
            self.assertEqual(e.code(), self.grpc.StatusCode.UNAVAILABLE, e.details())
            for shard in lost:
                self.assertIn(f"shard {shard}", e.details())
        # allow_partial: the other shards' answer, with the missing shard listed.
        got = self.kneighbors(allow_partial=True)
        if got.missing_shards:
            self.assertEqual(sorted(got.missing_shards), lost)
            ind = np.array(got.neighbors.indices).reshape(got.neighbors.num_queries, -1)
            m = self.model()
            lost_rows = set()
            for s in m.shards:
                if s.shard_id in lost:
                    lost_rows.update(range(s.first_global_index, s.first_global_index + s.rows))
            self.assertFalse(lost_rows & set(ind.ravel().tolist()))
        else:
            self.assertEqual(got.neighbors, want_nb.neighbors)
        # The Python client's allow_partial: a warning naming the missing shards.
        import warnings
        import knncluster
        cl = knncluster.Cluster(self.c.coordinator, allow_partial=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, ind = cl.kneighbors("m", TEST_SPLIT, 20)
        partial = [w for w in caught if issubclass(w.category, knncluster.PartialAnswerWarning)]
        if cl.last_missing_shards:
            self.assertEqual(cl.last_missing_shards, lost)
            self.assertEqual(len(partial), 1)
            for shard in lost:
                self.assertIn(shard, str(partial[0].message))
        else:
            self.assertEqual(ind.ravel().tolist(), list(want_nb.neighbors.indices))
        # Without it, a clean ClusterUnavailableError naming the shard (or, if the repair loop
        # has re-sent it meanwhile, the exact answer).
        strict = knncluster.Cluster(self.c.coordinator)
        try:
            _, ind = strict.kneighbors("m", TEST_SPLIT, 20)
            self.assertEqual(ind.ravel().tolist(), list(want_nb.neighbors.indices))
        except knncluster.ClusterUnavailableError as e:
            self.assertIn(f"shard {lost[0]}", str(e))
        # The worker restarts on its data directory: everything answers exactly again.
        self.c.add_worker("w1")
        self.c.wait_alive(2)
        deadline, last = time.time() + 30, None
        while time.time() < deadline:
            try:
                got = self.kneighbors()
                self.assertEqual(got.neighbors, want_nb.neighbors)
                break
            except self.grpc.RpcError as e:
                last = e
                self.assertEqual(e.code(), self.grpc.StatusCode.UNAVAILABLE, e.details())
                time.sleep(0.1)
        else:
            self.fail(f"no recovery: {last}")
        self.assertEqual(self.kneighbors().neighbors, want_nb.neighbors)


class CoordinatorRestartTest(ReplicationBase):
    replication = 1
    workers = 2

    def worker_status(self, name):
        from knncluster.v1 import worker_pb2, worker_pb2_grpc
        with self.grpc.insecure_channel(self.c.workers[name][0]) as channel:
            return worker_pb2_grpc.WorkerStub(channel).GetWorkerStatus(
                worker_pb2.GetWorkerStatusRequest(), timeout=10)

    def restart_coordinator(self):
        """SIGKILL, then the same binary on the same data directory and address."""
        proc = self.c.procs[0]
        proc.kill()
        proc.wait()
        time.sleep(0.5)  # the gap
        argv = [os.path.join(cluster_test.BIN, "knn-coordinator"), "--listen", self.c.coordinator,
                "--data-dir", os.path.join(self.c.tmp, "coordinator"),
                "--heartbeat-interval-ms", str(self.heartbeat_ms),
                "--replication", str(self.replication), *self.c.coordinator_security()]
        self.assertEqual(self.c._start("coordinator-2", argv), self.c.coordinator)

    def test_restart_under_load_loses_nothing_and_resends_nothing(self):
        want_nb = self.kneighbors()
        want_pred = self.predict()
        datasets = sorted(d.name for d in self.stub.ListDatasets(
            self.pb.ListDatasetsRequest(), timeout=30).datasets)
        model = self.model()
        loads = {w: self.worker_status(w).shard_loads for w in ("w0", "w1")}
        stop, lock = threading.Event(), threading.Lock()
        outcomes = {"ok": 0, "unavailable": 0, "other": []}

        def client():
            while not stop.is_set():
                try:
                    got = self.stub.Predict(self.pb.PredictRequest(
                        model="m", queries=self.queries()), timeout=5)
                    with lock:
                        if list(got.predictions) == list(want_pred.predictions):
                            outcomes["ok"] += 1
                        else:
                            outcomes["other"].append("a different answer")
                except self.grpc.RpcError as e:
                    with lock:
                        if e.code() == self.grpc.StatusCode.UNAVAILABLE:
                            outcomes["unavailable"] += 1
                        else:
                            outcomes["other"].append(f"{e.code()}: {e.details()}")
                    time.sleep(0.02)

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        before = outcomes["ok"]
        self.restart_coordinator()
        # Until the workers have re-registered, the model's shards are on unknown workers
        # (UNAVAILABLE naming them); then every call succeeds again.
        self.wait_for("a successful call after the restart",
                      lambda: outcomes["ok"] > before + 10, timeout=30)
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(outcomes["other"], [])
        self.assertGreater(outcomes["unavailable"], 0)
        self.assertEqual(sorted(d.name for d in self.stub.ListDatasets(
            self.pb.ListDatasetsRequest(), timeout=30).datasets), datasets)
        after = self.model()
        self.assertEqual([(s.shard_id, s.rows, s.first_global_index) for s in after.shards],
                         [(s.shard_id, s.rows, s.first_global_index) for s in model.shards])
        self.assertEqual(after.params, model.params)
        self.assertEqual(list(after.classes), list(model.classes))
        self.assertEqual(self.kneighbors().neighbors, want_nb.neighbors)
        # Nothing was sent again: the workers kept their shards, the coordinator its records.
        time.sleep(2.0)  # several repair rounds
        self.assertEqual({w: self.worker_status(w).shard_loads for w in ("w0", "w1")}, loads)
        # And a new fit after the restart gets a new generation (shard ids never reused).
        self.c.knnctl("fit", *SPLIT, "--split", "train", "-k", "5", "--model", "m2")
        self.stub.DescribeModel(self.pb.DescribeModelRequest(model="m2"), timeout=30)
        gens = {s.shard_id.split("@")[1].split("/")[0] for m in ("m", "m2") for s in
                self.stub.DescribeModel(self.pb.DescribeModelRequest(model=m), timeout=30).shards}
        self.assertEqual(len(gens), 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--client-python", required=True, help="the assembled knncluster package")
    args, rest = ap.parse_known_args()
    cluster_test.BIN = os.path.abspath(args.bin)
    # The client package first: it carries the same generated stubs as knncluster.v1.
    sys.path.insert(0, os.path.abspath(args.python))
    sys.path.insert(0, os.path.abspath(args.client_python))
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
