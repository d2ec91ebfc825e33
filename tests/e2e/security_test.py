#!/usr/bin/python3
"""Transport security end to end: certificates from scripts/make-certs.sh, a real knn-coordinator
with TLS and a bearer token and two real knn-workers with mutual TLS, on 127.0.0.1 with OS-chosen
ports; driven by knnctl, the Python client and raw gRPC channels (real TLS, no mocks).

Checks: the tutorial's fit / score / predict work through TLS with the token (knnctl and the
Python client); every Coordinator method without the token, or with a wrong one, is
UNAUTHENTICATED; a client trusting another CA, or speaking plaintext, fails the handshake; every
Worker method called with a certificate that is not the coordinator's is refused (and succeeds
with the coordinator's); every Membership method called with a certificate that is not a worker's
is refused; --insecure on a non-loopback address needs --allow-insecure-remote; a server with
neither TLS flags nor --insecure does not start.

ctest runs: /usr/bin/python3 security_test.py --bin build/bin --python build/client/python
            --source SOURCE_DIR
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
import unittest

os.environ["GRPC_VERBOSITY"] = "NONE"  # handshake failures are expected here; keep stderr quiet

ARGS = None
TOKEN = "s3cret-Token_for.tests"
SPLIT = ["--dataset", "digits", "--test-size", "0.2", "--random-state", "1337"]


def cluster_module():
    sys.path.insert(0, os.path.join(ARGS.source, "tests", "cluster"))
    import cluster_test  # the repository's launcher: real processes, loopback, port 0
    cluster_test.BIN = ARGS.bin
    return cluster_test


class SecureClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import grpc
        from knncluster.v1 import coordinator_pb2, coordinator_pb2_grpc, worker_pb2
        from knncluster.v1 import worker_pb2_grpc
        cls.grpc, cls.pb, cls.pb_grpc = grpc, coordinator_pb2, coordinator_pb2_grpc
        cls.wpb, cls.wpb_grpc = worker_pb2, worker_pb2_grpc
        cls.tmpdir = tempfile.TemporaryDirectory()
        tmp = cls.tmpdir.name
        certs = cls.certs = os.path.join(tmp, "certs")
        t0 = time.time()
        subprocess.run([os.path.join(ARGS.source, "scripts", "make-certs.sh"), certs,
                        "--workers", "2"], check=True, capture_output=True, timeout=60)
        cls.cert_seconds = time.time() - t0
        cls.token_file = os.path.join(tmp, "token")
        with open(cls.token_file, "w") as f:
            f.write(TOKEN + "\n")
        ct = cluster_module()
        cls.ct = ct
        cert = cls.cert

        class SecureCluster(ct.Cluster):
            knnctl_args = ("--tls-ca", cert("ca"), "--token-file", cls.token_file)

            def coordinator_security(self):
                return ["--tls-cert", cert("coordinator"), "--tls-key", cert("coordinator-key"),
                        "--tls-ca", cert("ca"), "--auth-token-file", cls.token_file]

            def worker_security(self, name):
                n = int(name.lstrip("w")) + 1  # w0 → worker-1.pem
                return ["--tls-cert", cert(f"worker-{n}"), "--tls-key", cert(f"worker-{n}-key"),
                        "--tls-ca", cert("ca")]

        cls.cluster = SecureCluster(2, tmp)
        cls.address = cls.cluster.coordinator
        cls.channels = []

    @classmethod
    def tearDownClass(cls):
        for c in cls.channels:
            c.close()
        cls.cluster.stop()
        cls.tmpdir.cleanup()

    @classmethod
    def cert(cls, name):
        return os.path.join(cls.certs, name + ".pem")

    @classmethod
    def read(cls, name):
        with open(cls.cert(name), "rb") as f:
            return f.read()

    def channel(self, address, ca="ca", client=None):
        """A TLS channel trusting `ca`, presenting certificate `client` (None: none)."""
        creds = self.grpc.ssl_channel_credentials(
            root_certificates=self.read(ca),
            private_key=self.read(client + "-key") if client else None,
            certificate_chain=self.read(client) if client else None)
        ch = self.grpc.secure_channel(address, creds)
        self.channels.append(ch)
        return ch

    def plaintext(self, address):
        ch = self.grpc.insecure_channel(address)
        self.channels.append(ch)
        return ch

    def status_code(self, call, *args, **kw):
        try:
            call(*args, timeout=10, **kw)
        except self.grpc.RpcError as e:
            return e.code(), e.details()
        return self.grpc.StatusCode.OK, ""

    def every_method(self, channel, service):
        """Calls every method of `service` (a descriptor) with an empty message on `channel`;
        returns {method: (code, details)}."""
        out = {}
        for m in service.methods:
            path = f"/{service.full_name}/{m.name}"
            try:
                if m.client_streaming and m.server_streaming:
                    for _ in channel.stream_stream(path)(iter([b""]), timeout=10):
                        pass
                elif m.client_streaming:
                    channel.stream_unary(path)(iter([b""]), timeout=10)
                elif m.server_streaming:
                    for _ in channel.unary_stream(path)(b"", timeout=10):
                        pass
                else:
                    channel.unary_unary(path)(b"", timeout=10)
                out[m.name] = (self.grpc.StatusCode.OK, "")
            except self.grpc.RpcError as e:
                out[m.name] = (e.code(), e.details())
        return out

    def worker_addresses(self):
        return [addr for addr, _ in self.cluster.workers.values()]

    # ---- Through TLS with the token, everything works --------------------------------------

    def test_make_certs_is_fast_and_idempotent(self):
        self.assertLess(self.cert_seconds, 20)
        before = self.read("ca")
        subprocess.run([os.path.join(ARGS.source, "scripts", "make-certs.sh"), self.certs,
                        "--workers", "2"], check=True, capture_output=True, timeout=60)
        self.assertEqual(self.read("ca"), before)  # kept, so existing certificates stay valid

    def test_tutorial_flow_through_tls_with_the_token(self):
        c = self.cluster
        status = c.status()
        self.assertEqual(sum(w["state"] == "WORKER_ALIVE" for w in status["workers"]), 2)
        c.knnctl("fit", *SPLIT, "--split", "train", "-k", "3", "--algorithm", "kd_tree",
                 "--model", "secure-knn")
        remote = c.knnctl("score", "--model", "secure-knn", *SPLIT, "--split", "test")
        local_model = os.path.join(self.tmpdir.name, "local.model")
        self.ct.knnctl("fit", *SPLIT, "--split", "train", "-k", "3", "--algorithm", "kd_tree",
                       "--model", local_model)
        local = self.ct.knnctl("score", "--model", local_model, *SPLIT, "--split", "test")
        self.assertEqual(remote["score"], local["score"])
        self.assertGreater(remote["score"], 0.95)
        pred = c.knnctl("predict", "--model", "secure-knn", *SPLIT, "--split", "test")
        want = self.ct.knnctl("predict", "--model", local_model, *SPLIT, "--split", "test")
        self.assertEqual(pred["predictions"], want["predictions"])
        model = [m for m in c.status()["models"] if m["name"] == "secure-knn"][0]
        self.assertEqual(len(model["shards"]), 2)  # loaded on both workers, through mTLS

    def test_python_client_through_tls_with_the_token(self):
        import numpy as np
        import knncluster
        rs = np.random.RandomState(0)
        X = rs.standard_normal((120, 4))
        y = (X[:, 0] > 0).astype(int)
        cluster = knncluster.Cluster(self.address, token=TOKEN, tls=self.cert("ca"), timeout=60)
        try:
            knn = knncluster.KNeighborsClassifier(n_neighbors=1, cluster=cluster).fit(X, y)
            self.assertEqual(list(knn.predict(X)), list(y))  # each row is its own neighbour
            self.assertEqual(len(cluster.status().workers), 2)
        finally:
            cluster.close()
        no_token = knncluster.Cluster(self.address, tls=self.cert("ca"), timeout=10)
        try:
            with self.assertRaises(Exception) as e:
                no_token.status()
            self.assertIn("bearer token", str(e.exception))
        finally:
            no_token.close()

    # ---- The bearer token --------------------------------------------------------------------

    def test_every_coordinator_method_needs_the_token(self):
        ch = self.channel(self.address)
        results = self.every_method(ch, self.pb.DESCRIPTOR.services_by_name["Coordinator"])
        self.assertGreaterEqual(len(results), 20)
        for method, (code, details) in results.items():
            self.assertEqual(code, self.grpc.StatusCode.UNAUTHENTICATED, method)
            self.assertIn("bearer token", details, method)

    def test_a_wrong_token_is_unauthenticated(self):
        stub = self.pb_grpc.CoordinatorStub(self.channel(self.address))
        request = self.pb.GetClusterStatusRequest()
        for metadata in ([("authorization", "Bearer wrong")],
                         [("authorization", "Bearer " + TOKEN + "x")],
                         [("authorization", "Bearer " + TOKEN[:-1])],
                         [("authorization", TOKEN)],
                         [("authorization", "Basic " + TOKEN)]):
            code, details = self.status_code(stub.GetClusterStatus, request, metadata=metadata)
            self.assertEqual(code, self.grpc.StatusCode.UNAUTHENTICATED, metadata)
            self.assertIn("invalid bearer token", details)
        code, _ = self.status_code(stub.GetClusterStatus, request,
                                   metadata=[("authorization", "Bearer " + TOKEN)])
        self.assertEqual(code, self.grpc.StatusCode.OK)

    def test_knnctl_without_or_with_a_wrong_token_fails(self):
        wrong = os.path.join(self.tmpdir.name, "wrong-token")
        with open(wrong, "w") as f:
            f.write("nope\n")
        for extra in ([], ["--token-file", wrong]):
            p = self.ct.knnctl("--coordinator", self.address, "--tls-ca", self.cert("ca"),
                               *extra, "status", check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("bearer token", p.stderr)

    # ---- The handshake -----------------------------------------------------------------------

    def test_a_client_that_does_not_trust_the_ca_fails_the_handshake(self):
        stub = self.pb_grpc.CoordinatorStub(self.channel(self.address, ca="rogue-ca"))
        code, _ = self.status_code(stub.GetClusterStatus, self.pb.GetClusterStatusRequest(),
                                   metadata=[("authorization", "Bearer " + TOKEN)])
        self.assertEqual(code, self.grpc.StatusCode.UNAVAILABLE)
        p = self.ct.knnctl("--coordinator", self.address, "--tls-ca", self.cert("rogue-ca"),
                           "--token-file", self.token_file, "status", check=False)
        self.assertNotEqual(p.returncode, 0)

    def test_a_plaintext_client_fails_against_tls(self):
        stub = self.pb_grpc.CoordinatorStub(self.plaintext(self.address))
        code, _ = self.status_code(stub.GetClusterStatus, self.pb.GetClusterStatusRequest(),
                                   metadata=[("authorization", "Bearer " + TOKEN)])
        self.assertEqual(code, self.grpc.StatusCode.UNAVAILABLE)

    # ---- Workers serve the coordinator only ---------------------------------------------------

    def test_a_worker_refuses_every_call_without_the_coordinators_certificate(self):
        service = self.wpb.DESCRIPTOR.services_by_name["Worker"]
        for address in self.worker_addresses():
            for client in ("client", "worker-2"):  # CA-signed, but not the coordinator's
                results = self.every_method(self.channel(address, client=client), service)
                self.assertEqual(len(results), len(service.methods))
                for method, (code, details) in results.items():
                    self.assertEqual(code, self.grpc.StatusCode.PERMISSION_DENIED,
                                     (address, client, method, details))
                    self.assertIn("only the coordinator may call", details)
                    self.assertIn("knn-coordinator", details)
            # No certificate, or the coordinator's name from another CA: the handshake fails.
            for client in (None, "rogue-coordinator"):
                stub = self.wpb_grpc.WorkerStub(self.channel(address, client=client))
                code, _ = self.status_code(stub.GetWorkerStatus, self.wpb.GetWorkerStatusRequest())
                self.assertEqual(code, self.grpc.StatusCode.UNAVAILABLE, (address, client))
            # The coordinator's own certificate is served (the check is not "refuse all").
            stub = self.wpb_grpc.WorkerStub(self.channel(address, client="coordinator"))
            code, details = self.status_code(stub.GetWorkerStatus,
                                             self.wpb.GetWorkerStatusRequest())
            self.assertEqual(code, self.grpc.StatusCode.OK, details)

    def test_membership_serves_workers_certificates_only(self):
        service = self.pb.DESCRIPTOR.services_by_name["Membership"]
        for client, want in (("client", self.grpc.StatusCode.PERMISSION_DENIED),
                             ("coordinator", self.grpc.StatusCode.PERMISSION_DENIED),
                             (None, self.grpc.StatusCode.UNAUTHENTICATED)):
            results = self.every_method(self.channel(self.address, client=client), service)
            self.assertEqual(set(results), {"Register", "Heartbeat"})
            for method, (code, details) in results.items():
                self.assertEqual(code, want, (client, method, details))
                self.assertIn("only a worker may call", details)
        stub = self.pb_grpc.MembershipStub(self.channel(self.address, client="client"))
        code, details = self.status_code(
            stub.Register, self.pb.RegisterRequest(worker_id="intruder", address="127.0.0.1:1"))
        self.assertEqual(code, self.grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("CN knn-client", details)
        ids = [w["worker_id"] for w in self.cluster.status()["workers"]]
        self.assertEqual(len(ids), 2)
        self.assertNotIn("intruder", ids)
        # A worker's certificate is served (an unknown id is told to register).
        stub = self.pb_grpc.MembershipStub(self.channel(self.address, client="worker-1"))
        code, details = self.status_code(stub.Heartbeat,
                                         self.pb.HeartbeatRequest(worker_id="nobody"))
        self.assertEqual(code, self.grpc.StatusCode.OK, details)

    def test_a_worker_with_a_non_worker_certificate_cannot_join(self):
        tmp = tempfile.mkdtemp(dir=self.tmpdir.name)
        err_path = os.path.join(tmp, "err")
        with open(err_path, "w") as err:
            proc = subprocess.Popen(
                [os.path.join(ARGS.bin, "knn-worker"), "--listen", "127.0.0.1:0", "--data-dir",
                 os.path.join(tmp, "w"), "--coordinator", self.address,
                 "--tls-cert", self.cert("client"), "--tls-key", self.cert("client-key"),
                 "--tls-ca", self.cert("ca")],
                stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "GRPC_VERBOSITY": "NONE"})
        try:
            # Registration is retried with backoff; the first attempt may also fail otherwise
            # (e.g. while connecting), so wait for the refusal itself.
            deadline, log = time.time() + 20, ""
            while time.time() < deadline and "CN knn-client" not in log:
                time.sleep(0.05)
                with open(err_path) as f:
                    log = f.read()
            self.assertIn("cannot register", log)
            self.assertIn("PERMISSION_DENIED: only a worker may call this service", log)
            self.assertIn("CN knn-client", log)
            self.assertEqual(len(self.cluster.status()["workers"]), 2)
        finally:
            proc.terminate()
            proc.wait(timeout=15)


class StartupRulesTest(unittest.TestCase):
    """What the binaries refuse before serving anything."""

    def setUp(self):
        self.tmpdir = tempfile.TemporaryDirectory()
        self.tmp = self.tmpdir.name

    def tearDown(self):
        self.tmpdir.cleanup()

    def argv(self, binary, *flags):
        return [os.path.join(ARGS.bin, binary), "--data-dir",
                os.path.join(self.tmp, binary), *flags]

    def refused(self, argv):
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                           env={**os.environ, "GRPC_VERBOSITY": "NONE"})
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertEqual(p.stdout, "")
        return p.stderr

    def serves(self, argv):
        """Starts argv, waits for its "listening on" line, stops it; returns the address."""
        with open(os.path.join(self.tmp, "out"), "w+") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE,
                                    env={**os.environ, "GRPC_VERBOSITY": "NONE"})
            try:
                deadline = time.time() + 30
                while time.time() < deadline:
                    out.seek(0)
                    line = out.readline()
                    if line.startswith("listening on ") and line.endswith("\n"):
                        return line.split()[-1]
                    if proc.poll() is not None:
                        self.fail(f"{argv} exited {proc.returncode}: {proc.stderr.read()}")
                    time.sleep(0.02)
                self.fail(f"{argv} did not start")
            finally:
                proc.terminate()
                proc.wait(timeout=15)
                proc.stderr.close()

    def test_insecure_on_a_non_loopback_address_needs_allow_insecure_remote(self):
        for binary in ("knn-coordinator", "knn-worker"):
            err = self.refused(self.argv(binary, "--listen", "0.0.0.0:0", "--insecure"))
            self.assertIn("--allow-insecure-remote", err)
            self.assertIn("0.0.0.0:0", err)
            address = self.serves(self.argv(binary, "--listen", "0.0.0.0:0", "--insecure",
                                            "--allow-insecure-remote"))
            self.assertTrue(address.startswith("0.0.0.0:"), address)
            self.serves(self.argv(binary, "--listen", "127.0.0.1:0", "--insecure"))

    def test_neither_tls_nor_insecure_is_refused(self):
        for binary in ("knn-coordinator", "knn-worker"):
            for listen in ("127.0.0.1:0", "0.0.0.0:0"):
                err = self.refused(self.argv(binary, "--listen", listen))
                self.assertIn("--insecure", err)
                self.assertIn("--tls-cert", err)
                self.assertIn("make-certs.sh", err)

    def test_incomplete_or_unreadable_tls_files_are_refused(self):
        for binary in ("knn-coordinator", "knn-worker"):
            err = self.refused(self.argv(binary, "--tls-cert", "c.pem", "--tls-key", "k.pem"))
            self.assertIn("missing --tls-ca", err)
            err = self.refused(self.argv(binary, "--insecure", "--tls-cert", "c.pem",
                                         "--tls-key", "k.pem", "--tls-ca", "ca.pem"))
            self.assertIn("exclude each other", err)
            p = subprocess.run(self.argv(binary, "--tls-cert", "/nonexistent/c.pem", "--tls-key",
                                         "/nonexistent/k.pem", "--tls-ca", "/nonexistent/ca.pem"),
                               capture_output=True, text=True, timeout=30)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("--tls-cert: cannot read", p.stderr)

    def test_a_key_that_is_not_the_certificates_is_refused(self):
        certs = os.path.join(self.tmp, "certs")
        subprocess.run([os.path.join(ARGS.source, "scripts", "make-certs.sh"), certs,
                        "--workers", "1"], check=True, capture_output=True, timeout=60)
        pem = lambda name: os.path.join(certs, name + ".pem")  # noqa: E731
        for key, words in (("worker-1-key", "is not the key of --tls-cert"),
                           ("ca", "holds no unencrypted PEM private key")):
            for binary in ("knn-coordinator", "knn-worker"):
                p = subprocess.run(self.argv(binary, "--tls-cert", pem("coordinator"),
                                             "--tls-key", pem(key), "--tls-ca", pem("ca")),
                                   capture_output=True, text=True, timeout=30,
                                   env={**os.environ, "GRPC_VERBOSITY": "NONE"})
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn(words, p.stderr)

    def test_an_empty_token_file_is_refused(self):
        empty = os.path.join(self.tmp, "empty-token")
        open(empty, "w").close()
        p = subprocess.run(self.argv("knn-coordinator", "--insecure", "--auth-token-file", empty),
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--auth-token-file", p.stderr)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--source", required=True)
    ARGS, rest = ap.parse_known_args()
    ARGS.bin = os.path.abspath(ARGS.bin)
    ARGS.source = os.path.abspath(ARGS.source)
    sys.path.insert(0, os.path.abspath(ARGS.python))
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
