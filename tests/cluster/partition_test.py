#!/usr/bin/python3
"""Network partition of one worker (issue 6), with Linux network namespaces.

Every process gets its own host: a namespace per worker, one for the coordinator and the
clients, all joined by veth pairs to a bridge that lives in a namespace of its own. Addresses
(10.77.0.0/24) exist only inside these namespaces; nothing is configured in the root namespace
and nothing there ever addresses 10.77.x. Everything is removed afterwards, also when the test
fails (try/finally, atexit, SIGTERM/SIGINT/SIGHUP), and namespaces left by a run that was
killed with SIGKILL are removed by the next run (their names carry the owner's pid).

- Partition: the worker's port on the bridge goes down, so its packets vanish (calls to it hang
  instead of failing fast). A stream of kneighbors / predict calls, each with a 10 s deadline,
  runs throughout: every call must succeed within its deadline with the reference answer, bit
  for bit. The calls waiting on the lost worker are cancelled when the coordinator declares it
  dead (3 missed heartbeat intervals) and retried on the replicas.
- Heal: the port comes back up; the worker must be ALIVE in GetClusterStatus again within a
  bound, and answers stay exact.
- One-way partition (when `nft` is installed): another worker's packets to the coordinator are
  dropped by an nftables rule in its namespace (requests still arrive, answers and heartbeats
  never leave); same assertions, then the rule is removed and the worker rejoins.

The clients run in the coordinator's namespace: this file started with --agent is a small
gRPC client that takes commands as JSON lines on stdin and answers on stdout, so the test
itself (and its assertions) stays in the root namespace, which only runs `ip`.

Needs root and iproute2 (`ip netns`); otherwise it skips with a message. Under CI=true with
root it never skips: a namespace that cannot be made is a failure.

ctest runs: /usr/bin/python3 partition_test.py --bin build/bin --python build/python
"""
import argparse
import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

# The namespace helpers are shared with the scaling experiments.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy",
                                "experiments"))
from netns import SUBNET, Agent, Network, netns_unavailable, remove_stale_namespaces  # noqa: E402

BIN = None
PYTHON = None  # the directory holding the generated knncluster.v1 stubs

# Extra flags for every server started here. The transport-security change makes plaintext
# servers say --insecure, and --allow-insecure-remote on a non-loopback address such as ours;
# binaries from before it know neither flag. Filled in by server_flags() from --help.
INSECURE_FLAGS = ["--insecure", "--allow-insecure-remote"]

HEARTBEAT_MS = 300
CALL_DEADLINE_S = 10.0
REJOIN_BOUND_S = 30.0
# How long a worker stays cut off after it was declared dead (KNN_PARTITION_HOLD_S overrides:
# longer partitions push the stalled TCP connections further into retransmission backoff).
HOLD_S = float(os.environ.get("KNN_PARTITION_HOLD_S", "2.0"))
COORDINATOR_IP = f"{SUBNET}.1"
WORKERS = 3
PREFIX = "knnp"  # namespace names: knnp-<pid>-<host>

SPLIT = ["--dataset", "digits", "--test-size", "0.2", "--random-state", "1337"]
TEST_SPLIT = "digits.test-0.2-1337"


def server_flags(binary):
    """INSECURE_FLAGS if `binary` knows them (its --help mentions allow-insecure-remote)."""
    p = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    knows = re.search(r"allow[-_]insecure[-_]remote", p.stdout + p.stderr)
    return list(INSECURE_FLAGS) if knows else []


# ---- The client agent (runs inside the coordinator's namespace) -------------------------------


def agent_main(coordinator):
    """Reads one JSON command per line on stdin, writes one JSON answer per line on stdout."""
    import grpc
    from knncluster.v1 import coordinator_pb2 as pb, coordinator_pb2_grpc

    channel = grpc.insecure_channel(coordinator)
    stub = coordinator_pb2_grpc.CoordinatorStub(channel)
    queries = pb.Queries(dataset=TEST_SPLIT)
    ref = {}
    stream = {}

    def kneighbors(timeout):
        return stub.KNeighbors(pb.KNeighborsRequest(model="m", queries=queries), timeout=timeout)

    def predict(timeout):
        return stub.Predict(pb.PredictRequest(model="m", queries=queries), timeout=timeout)

    def exact(i, timeout):
        """One call (kneighbors for even i, predict for odd i) compared to the reference."""
        if i % 2 == 0:
            got = kneighbors(timeout)
            return got.neighbors.SerializeToString() == ref["nb"] and not got.missing_shards
        return list(predict(timeout).predictions) == ref["pred"]

    def client(i, deadline_s):
        while not stream["stop"].is_set():
            start = time.monotonic()
            try:
                ok = exact(i, deadline_s)
                err = None if ok else "a different answer"
            except grpc.RpcError as e:
                err = f"{e.code()}: {e.details()}"
            with stream["lock"]:
                stream["calls"].append([start, time.monotonic() - start, err])

    def status():
        st = stub.GetClusterStatus(pb.GetClusterStatusRequest(), timeout=5)
        return [{"id": w.worker_id, "address": w.address,
                 "alive": w.state == pb.WORKER_ALIVE} for w in st.workers]

    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            what = cmd["cmd"]
            if what == "reference":
                ref["nb"] = kneighbors(30).neighbors.SerializeToString()
                ref["pred"] = list(predict(30).predictions)
                m = stub.DescribeModel(pb.DescribeModelRequest(model="m"), timeout=30)
                out = {"replication": m.replication, "predictions": len(ref["pred"]),
                       "shards": [sorted(s.replica_worker_ids) for s in m.shards]}
            elif what == "status":
                out = {"workers": status()}
            elif what == "copies":
                # Live copies of every shard of the model.
                alive = {w["id"] for w in status() if w["alive"]}
                m = stub.DescribeModel(pb.DescribeModelRequest(model="m"), timeout=5)
                out = {"live": [len({w for w in s.replica_worker_ids if w in alive})
                                for s in m.shards]}
            elif what == "check":
                out = {"exact": [exact(i, CALL_DEADLINE_S) for i in range(4)]}
            elif what == "start":
                stream.update(stop=threading.Event(), lock=threading.Lock(), calls=[])
                stream["threads"] = [
                    threading.Thread(target=client, args=(i, cmd["deadline_s"]))
                    for i in range(cmd["clients"])]
                for t in stream["threads"]:
                    t.start()
                out = {}
            elif what == "stop":
                stream["stop"].set()
                for t in stream["threads"]:
                    t.join()
                out = {"calls": stream["calls"]}
            elif what == "now":
                out = {}
            else:
                raise ValueError(f"unknown command {what}")
            out["ok"] = True
        except Exception as e:  # reported to the test, which fails with it
            out = {"ok": False, "error": repr(e)[:1000]}
        out["now"] = time.monotonic()
        print(json.dumps(out), flush=True)


# ---- The test --------------------------------------------------------------------------------


def skip_reason():
    reason = netns_unavailable()
    if reason is None:
        return None
    if os.environ.get("CI") == "true" and os.geteuid() == 0:
        return None  # CI with root: run, and fail loudly if namespaces do not work
    print(f"partition_test: SKIPPED: {reason}", file=sys.stderr, flush=True)
    return reason


class PartitionTest(unittest.TestCase):
    net = None
    procs = []
    agent = None

    @classmethod
    def cleanup(cls):
        """Every exit path: agent, processes, namespaces. Idempotent."""
        if cls.agent is not None:
            try:
                cls.agent.close()
            except Exception:
                pass
        for p in cls.procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 5
        for p in cls.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if cls.net is not None:
            cls.net.close()

    @classmethod
    def setUpClass(cls):
        reason = skip_reason()
        if reason:
            raise unittest.SkipTest(reason)
        t0 = time.monotonic()
        remove_stale_namespaces(PREFIX)
        atexit.register(cls.cleanup)
        cls.tmpdir = tempfile.TemporaryDirectory()
        cls.tmp = cls.tmpdir.name
        cls.files = []
        try:
            hosts = [("c", 1)] + [(f"w{i}", 10 + i) for i in range(WORKERS)]
            cls.net = Network(hosts, PREFIX)
            print(f"\nnamespaces up in {time.monotonic() - t0:.2f} s: "
                  f"{', '.join(cls.net.made)}", flush=True)
            coordinator_bin = os.path.join(BIN, "knn-coordinator")
            worker_bin = os.path.join(BIN, "knn-worker")
            flags = server_flags(coordinator_bin)
            print(f"server flags: {flags or '(none: binaries from before --insecure)'}",
                  flush=True)
            cls.coordinator = cls.start("c", [
                coordinator_bin, "--listen", f"{COORDINATOR_IP}:0",
                "--data-dir", os.path.join(cls.tmp, "coordinator"),
                "--heartbeat-interval-ms", str(HEARTBEAT_MS), "--replication", "2", *flags])
            cls.workers = {}
            for i in range(WORKERS):
                name = f"w{i}"
                ip = cls.net.hosts[name][1]
                cls.workers[name] = cls.start(name, [
                    worker_bin, "--listen", f"{ip}:0", "--data-dir", os.path.join(cls.tmp, name),
                    "--coordinator", cls.coordinator, "--threads", "1",
                    *server_flags(worker_bin)])
            log = open(os.path.join(cls.tmp, "agent.err"), "w")
            cls.files.append(log)
            cls.agent = Agent(cls.net.exec_argv(
                "c", "/usr/bin/python3", os.path.abspath(__file__), "--agent", cls.coordinator,
                "--python", PYTHON), log)
            cls.wait_for(lambda: sum(w["alive"] for w in cls.agent("status")["workers"])
                         == WORKERS, 30, "every worker registered")
            cls.knnctl("fit", *SPLIT, "--split", "train", "-k", "20", "--algorithm", "kd_tree",
                       "--model", "m")
            # The reference answers, before any partition: every later answer must equal them.
            ref = cls.agent("reference")
            if ref["replication"] != 2 or ref["predictions"] != 360 or any(
                    len(set(copies)) != 2 for copies in ref["shards"]):
                raise AssertionError(f"unexpected model: {ref}")
            print(f"cluster up and model fitted in {time.monotonic() - t0:.2f} s", flush=True)
        except BaseException:
            cls.dump_logs()
            cls.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cleanup()
        for f in cls.files:
            f.close()
        cls.tmpdir.cleanup()

    @classmethod
    def dump_logs(cls):
        for name in sorted(os.listdir(cls.tmp)):
            if name.endswith(".err"):
                with open(os.path.join(cls.tmp, name)) as f:
                    text = f.read()[-3000:]
                if text.strip():
                    print(f"---- {name}\n{text}", file=sys.stderr)

    @classmethod
    def start(cls, host, argv):
        """Starts `argv` on `host`; returns the address from its "listening on" line."""
        out = open(os.path.join(cls.tmp, f"{host}.out"), "w+")
        err = open(os.path.join(cls.tmp, f"{host}.err"), "w")
        cls.files += [out, err]
        proc = subprocess.Popen(cls.net.exec_argv(host, *argv), stdout=out, stderr=err,
                                env={**os.environ, "GRPC_VERBOSITY": "ERROR"})
        cls.procs.append(proc)
        deadline = time.time() + 30
        while time.time() < deadline:
            out.seek(0)
            line = out.readline()
            if line.startswith("listening on ") and line.endswith("\n"):
                return line.split()[-1]
            if proc.poll() is not None:
                with open(os.path.join(cls.tmp, f"{host}.err")) as f:
                    raise RuntimeError(f"{host} exited: {f.read()}")
            time.sleep(0.02)
        raise RuntimeError(f"{host} did not print its address")

    @classmethod
    def knnctl(cls, *args):
        p = subprocess.run(cls.net.exec_argv("c", os.path.join(BIN, "knnctl"), "--json",
                                             "--coordinator", cls.coordinator, *args),
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "GRPC_VERBOSITY": "ERROR"})
        if p.returncode != 0:
            raise AssertionError(f"knnctl {' '.join(args)} failed: {p.stderr}")
        return json.loads(p.stdout)

    @staticmethod
    def wait_for(predicate, timeout, what, expire_ok=False):
        """Seconds it took until predicate() held."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if predicate():
                return time.monotonic() - start
            time.sleep(0.05)
        if expire_ok:
            return timeout
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def alive(self, name):
        addr = self.workers[name]
        now = self.agent("status")
        alive = [w["alive"] for w in now["workers"] if w["address"] == addr] == [True]
        if not self.states or self.states[-1][1] != alive:
            self.states.append((now["now"], alive))
        return alive

    def watch(self, name, seconds):
        """Keeps recording `name`'s state (alive()) for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.alive(name)
            time.sleep(0.05)

    def partition_under_load(self, name, cut, heal, kind):
        """Runs the stream of calls, cuts `name` off with cut(), heals with heal(); asserts no
        call fails or changes, and the worker rejoins. Prints the timings."""
        self.wait_for(lambda: set(self.agent("copies")["live"]) == {2}, 30,
                      "two live copies of every shard before the partition")
        self.states = []  # (time, alive) at every change of `name`'s state seen
        self.agent("start", clients=4, deadline_s=CALL_DEADLINE_S)
        time.sleep(1.0)
        self.assertTrue(self.alive(name))
        t_cut = time.monotonic()
        cut()
        dead_after = self.wait_for(lambda: not self.alive(name), 10, f"{name} declared dead")
        self.watch(name, HOLD_S)  # the stream goes on through the replicas
        t_heal = time.monotonic()
        heal()
        rejoin = self.wait_for(lambda: self.alive(name), REJOIN_BOUND_S, f"{name} ALIVE again")
        time.sleep(1.0)  # and on after the return
        calls = self.agent("stop", timeout=CALL_DEADLINE_S + 30)["calls"]
        failures = [c for c in calls if c[2] is not None]
        before = [c for c in calls if c[0] + c[1] < t_cut]
        during = [c for c in calls if t_cut <= c[0] + c[1] and c[0] < t_heal]
        after = [c for c in calls if c[0] >= t_heal]
        worst = max(calls, key=lambda c: c[1])
        slow = [c for c in calls if c[1] > 0.5]  # far slower than the usual ~50 ms
        states = ", ".join(f"{'ALIVE' if a else 'DEAD'} at {t - t_cut:+.2f} s"
                           for t, a in self.states)
        print(f"{kind} of {name}: {len(calls)} calls, {len(failures)} failed or different "
              f"({len(before)} before, {len(during)} overlapping the partition, "
              f"{len(after)} after the heal; {len(slow)} slower than 0.5 s: "
              f"{len([c for c in slow if c[0] < t_heal])} caught by the cut, "
              f"{len([c for c in slow if c[0] >= t_heal])} started after the heal); "
              f"max latency {worst[1]:.3f} s "
              f"(call started {worst[0] - t_cut:+.3f} s from the cut; deadline "
              f"{CALL_DEADLINE_S:.0f} s, heartbeat {HEARTBEAT_MS} ms); declared dead "
              f"{dead_after:.2f} s after the cut; ALIVE again {rejoin:.2f} s after the heal "
              f"({states})", flush=True)
        self.assertEqual(failures[:5], [], f"{len(failures)} of {len(calls)} calls failed")
        # Dead once, for the whole partition (no flapping while cut off), then alive.
        self.assertEqual([a for _, a in self.states], [True, False, True], states)
        self.assertGreater(len(before), 0)
        self.assertGreater(len(during), 0)
        self.assertGreater(len(after), 0)
        self.assertLess(worst[1], CALL_DEADLINE_S)
        # Calls caught by the cut waited about the detection time, far less than the deadline.
        self.assertLess(max(c[1] for c in during), dead_after + 5.0)
        self.assertEqual(self.agent("check")["exact"], [True] * 4)
        # And the model is whole again: two live copies of every shard.
        took = self.wait_for(lambda: set(self.agent("copies")["live"]) == {2}, 30,
                             "two live copies of every shard")
        print(f"two live copies of every shard {time.monotonic() - t_heal:.2f} s after the heal "
              f"(waited {took:.2f} s more)", flush=True)

    def test_1_partitioned_worker_calls_go_to_replicas_and_it_rejoins(self):
        self.partition_under_load("w1", lambda: self.net.partition("w1"),
                                  lambda: self.net.heal("w1"), "partition (bridge port down)")

    def test_2_one_way_partition_with_nft(self):
        if shutil.which("nft") is None:
            if os.environ.get("CI") == "true":
                self.fail("nft is missing (scripts/install-deps.sh installs nftables)")
            print("partition_test: one-way partition SKIPPED: nftables is not installed",
                  file=sys.stderr, flush=True)
            self.skipTest("nftables is not installed (`nft`)")
        self.partition_under_load("w2", lambda: self.net.drop_outgoing("w2", COORDINATOR_IP),
                                  lambda: self.net.allow_outgoing("w2"),
                                  "one-way partition (nft drop w2 -> coordinator)")


def main():
    global BIN, PYTHON
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin")
    ap.add_argument("--python", required=True)
    ap.add_argument("--agent", metavar="COORDINATOR",
                    help="internal: run as the client agent inside the coordinator's namespace")
    args, rest = ap.parse_known_args()
    PYTHON = os.path.abspath(args.python)
    sys.path.insert(0, PYTHON)
    if args.agent:
        agent_main(args.agent)
        return
    BIN = os.path.abspath(args.bin)

    def on_signal(signum, frame):
        # ctest's timeout, ^C: remove everything, then leave at once (unittest would catch a
        # SystemExit raised in the middle of a test and carry on).
        print(f"partition_test: signal {signum}: cleaning up", file=sys.stderr, flush=True)
        PartitionTest.cleanup()
        tmpdir = getattr(PartitionTest, "tmpdir", None)
        if tmpdir is not None:
            shutil.rmtree(tmpdir.name, ignore_errors=True)
        os._exit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
