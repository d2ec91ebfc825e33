"""Shared fixtures: a real local cluster (knn-coordinator and knn-worker processes on 127.0.0.1,
ports chosen by the OS), started with tests/cluster/cluster_test.py's Cluster.

ctest sets PYTHONPATH to build/client/python (the assembled package), KNN_BIN_DIR to build/bin
and KNN_SOURCE_DIR to the repository; run by hand:

    PYTHONPATH=build/client/python KNN_BIN_DIR=build/bin \
        /usr/bin/python3 -m pytest client/python/tests
"""
import gc
import os
import sys
import tempfile

import pytest

SOURCE_DIR = os.environ.get("KNN_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BIN_DIR = os.environ.get("KNN_BIN_DIR") or os.path.join(SOURCE_DIR, "build", "bin")
PACKAGE_DIR = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or os.path.join(
    SOURCE_DIR, "build", "client", "python")

sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "cluster"))
import cluster_test  # noqa: E402  (the repository's cluster launcher)

cluster_test.BIN = BIN_DIR

import knncluster  # noqa: E402
from knncluster import _cluster  # noqa: E402
from knncluster.v1 import coordinator_pb2  # noqa: E402


class LocalCluster(cluster_test.Cluster):
    """cluster_test.Cluster, its liveness read through the Python client instead of knnctl."""

    def status(self):
        client = knncluster.Cluster(self.coordinator, timeout=10)
        try:
            st = client.status()
        finally:
            client.close()
        return {"workers": [{"state": coordinator_pb2.WorkerState.Name(w.state)}
                            for w in st.workers]}

    def stop(self, clients=()):
        # The coordinator's shutdown waits out its grace period while clients keep a connection
        # open: close this process's channels to it first.
        for name, proc in [("coordinator", self.procs[0])] + [
                (n, p) for n, (_, p) in self.workers.items()]:
            if proc.poll() is not None:  # died before its time: show why
                with open(os.path.join(self.tmp, name + ".err")) as f:
                    print("%s exited with %s:\n%s" % (name, proc.returncode, f.read()[-4000:]))
        gc.collect()
        for c in list(_cluster._by_address.values()) + list(clients):
            if c.address == self.coordinator:
                c.close()
        super().stop()


def start_cluster(workers, tmp):
    return LocalCluster(workers, tmp)


@pytest.fixture(scope="module")
def local_cluster():
    """A 2-worker cluster for the module: (LocalCluster, knncluster.Cluster)."""
    with tempfile.TemporaryDirectory() as tmp:
        c = start_cluster(2, tmp)
        client = knncluster.Cluster(c.coordinator)
        try:
            yield c, client
        finally:
            c.stop(clients=[client])


@pytest.fixture
def cluster(local_cluster):
    """The module's cluster, current for the test (estimators need no cluster parameter)."""
    with local_cluster[1] as c:
        yield c
