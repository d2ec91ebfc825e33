#!/usr/bin/python3
"""The installed C++ client package, used as another project uses it: `cmake --install` the build
into a temporary prefix, configure and build client/cpp/examples (find_package(knncluster)) against
that prefix alone, start a real local cluster (a coordinator and two workers on loopback, as
tests/cluster does) and run the example on it.

ctest runs: /usr/bin/python3 example_test.py --build BUILD --source SOURCE --generator Ninja
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import unittest

ARGS = None


def run(*argv, env=None, timeout=240):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout


class InstalledPackageTest(unittest.TestCase):
    def test_example_builds_against_the_installed_package_and_runs(self):
        with tempfile.TemporaryDirectory() as tmp:
            prefix = os.path.join(tmp, "prefix")
            run("cmake", "--install", ARGS.build, "--prefix", prefix)
            for f in ("include/knncluster/client.h", "include/knncluster/cancel_token.h",
                      "lib/libknncluster_client.a", "lib/cmake/knncluster/knnclusterConfig.cmake",
                      "lib/cmake/knncluster/knnclusterConfigVersion.cmake",
                      "lib/cmake/knncluster/knnclusterTargets.cmake"):
                self.assertTrue(os.path.exists(os.path.join(prefix, f)), f)
            # Only the public headers: no generated or internal ones.
            headers = sorted(os.listdir(os.path.join(prefix, "include", "knncluster")))
            self.assertEqual(headers, ["cancel_token.h", "client.h"])

            # A separate project, which knows the package by its prefix only.
            example = os.path.join(tmp, "example")
            run("cmake", "-S", os.path.join(ARGS.source, "client", "cpp", "examples"),
                "-B", example, "-G", ARGS.generator, f"-DCMAKE_PREFIX_PATH={prefix}",
                "-DCMAKE_BUILD_TYPE=Release")
            run("cmake", "--build", example)
            binary = os.path.join(example, "tutorial_client")

            p = subprocess.run([binary], capture_output=True, text=True, timeout=30,
                               env={k: v for k, v in os.environ.items()
                                    if k != "KNNCLUSTER_ADDRESS"})
            self.assertEqual(p.returncode, 2)
            self.assertIn("usage:", p.stderr)

            sys.path.insert(0, os.path.join(ARGS.source, "tests", "cluster"))
            import cluster_test  # its Cluster: real processes on loopback, port 0
            cluster_test.BIN = os.path.join(ARGS.build, "bin")
            cluster = cluster_test.Cluster(2, tmp)
            try:
                env = {**os.environ, "KNNCLUSTER_ADDRESS": cluster.coordinator,
                       "GRPC_VERBOSITY": "ERROR"}
                out = run(binary, env=env, timeout=120)  # the address from the environment
                # The same figures the digits tutorial prints (scikit-learn's own).
                self.assertIn("uploaded tutorial-digits: 1797 rows x 64 columns", out)
                self.assertIn("split: 1437 training rows, 360 test rows", out)
                self.assertRegex(out, r"fitted tutorial-knn: classifier, n_neighbors=20, "
                                      r"algorithm=auto, 1437 rows in 2 shards")
                self.assertIn("predicted 360 test rows: 349 correct", out)
                m = re.search(r"test accuracy: (\S+) \(349 of 360\)", out)
                self.assertIsNotNone(m, out)
                self.assertEqual(float(m.group(1)), 349 / 360)
                self.assertRegex(out, r"nearest training rows of test row 0:( \d+ \(distance "
                                      r"\d+\.\d{4}\)){3}\n")
                # Again, the address as an argument: the example removes what its first run left.
                again = run(binary, cluster.coordinator, env=env, timeout=120)
                self.assertEqual(again, out)
            finally:
                cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--generator", default="Ninja")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], *rest])
