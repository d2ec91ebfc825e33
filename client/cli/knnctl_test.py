#!/usr/bin/python3
"""End-to-end tests of the real knnctl binary: every subcommand, its JSON, its errors.

Run by ctest as: /usr/bin/python3 knnctl_test.py --knnctl build/bin/knnctl --data tests/data
scikit-learn is the oracle where installed; without it those tests skip, unless CI=true, where
they fail (a parity test must not silently vanish in CI).
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

KNNCTL = None
DATA = None

try:
    import numpy as np
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier
    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - depends on the machine
    HAVE_SKLEARN = False


def need_sklearn(test):
    def wrapper(self):
        if not HAVE_SKLEARN:
            if os.environ.get("CI") == "true":
                self.fail("scikit-learn is missing under CI=true: run scripts/install-deps.sh")
            self.skipTest("scikit-learn is not installed (scripts/install-deps.sh installs it)")
        return test(self)
    wrapper.__name__ = test.__name__
    return wrapper


def run(*args, check=True):
    p = subprocess.run([KNNCTL, *args], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"knnctl {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def run_json(*args):
    return json.loads(run("--json", *args).stdout)


SPLIT = ["--test-size", "0.2", "--random-state", "1337"]


class KnnctlTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_split_matches_reference_indices(self):
        got = run_json("split", "--dataset", "digits", *SPLIT)
        with open(os.path.join(DATA, "reference/splits/tts_digits_n1797_test0.2_rs1337.json")) as f:
            want = json.load(f)
        self.assertEqual(got["train"], want["train"])
        self.assertEqual(got["test"], want["test"])
        self.assertEqual((got["n_train"], got["n_test"]), (1437, 360))

    @need_sklearn
    def test_split_matches_fresh_sklearn(self):
        for n_test, seed in (("0.25", 0), ("100", 42), ("0.33", 2024)):
            got = run_json("split", "--dataset", "digits", "--test-size", n_test,
                           "--random-state", str(seed))
            size = float(n_test) if "." in n_test else int(n_test)
            train, test = train_test_split(np.arange(1797), test_size=size, random_state=seed)
            self.assertEqual(got["train"], train.tolist())
            self.assertEqual(got["test"], test.tolist())

    def test_tutorial_prints_the_scikit_learn_accuracy(self):
        out = run_json("tutorial", "--model", self.path("t.model"))
        self.assertEqual(out["split"]["n_train"], 1437)
        self.assertEqual(out["classifier"]["n_correct"], 349)
        self.assertEqual(out["classifier"]["test_accuracy"], 0.9694444444444444)
        self.assertTrue(out["save_load"]["identical_predictions"])
        self.assertTrue(os.path.getsize(self.path("t.model")) > 0)
        text = run("tutorial").stdout
        self.assertIn("test accuracy: 0.9694444444444444 (349 of 360)", text)

    def test_tutorial_grid_search_matches_reference(self):
        out = run_json("tutorial")
        gs = out["grid_search"]
        self.assertEqual(gs["best_params"]["n_neighbors"], 2)
        self.assertEqual(gs["best_params"]["p"], 2)
        self.assertEqual(gs["best_score"], 0.9671711544413494)
        self.assertEqual(gs["best_index"], 1)
        self.assertEqual(gs["test_accuracy_of_best_estimator"], 0.9833333333333333)
        self.assertLessEqual(gs["neighbor_searches"], 15)
        with open(os.path.join(DATA, "reference/digits_gridsearch_canonical.csv")) as f:
            rows = [line.strip().split(",") for line in f][1:]
        self.assertEqual(gs["cv_results"]["mean_test_score"], [float(r[2]) for r in rows])
        self.assertEqual(gs["cv_results"]["split3_test_score"], [float(r[6]) for r in rows])

    @need_sklearn
    def test_grid_search_matches_sklearn_cv_results(self):
        from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
        from sklearn.neighbors import KNeighborsRegressor
        rs = np.random.RandomState(7)
        X = rs.standard_normal((240, 5))
        y_cls = (X[:, 0] + 0.5 * rs.standard_normal(240) > 0).astype(int) + (X[:, 1] > 1)
        y_reg = X[:, 0] * 3 + X[:, 2] ** 2 + 0.1 * rs.standard_normal(240)
        cases = [
            ("classifier", y_cls, KNeighborsClassifier(), "f1_macro",
             StratifiedKFold(4, shuffle=True, random_state=3),
             ["--cv", "4", "--shuffle", "--random-state", "3", "--scoring", "f1_macro"]),
            ("classifier", y_cls, KNeighborsClassifier(), "balanced_accuracy",
             StratifiedKFold(5), ["--scoring", "balanced_accuracy"]),
            ("regressor", y_reg, KNeighborsRegressor(), "neg_mean_squared_error",
             KFold(3, shuffle=True, random_state=0),
             ["--cv", "3", "--shuffle", "--random-state", "0", "--scoring",
              "neg_mean_squared_error"]),
            ("regressor", y_reg, KNeighborsRegressor(), "r2", KFold(5), []),
        ]
        grid = {"n_neighbors": [1, 4, 9], "p": [1, 2], "weights": ["uniform", "distance"]}
        for task, y, est, scoring, cv, flags in cases:
            csv = self.path("g.csv")
            np.savetxt(csv, np.column_stack([X, y]), delimiter=",", fmt="%.17g")
            ours = run_json("grid-search", "--data", csv, "--task", task, "-k", "1,4,9",
                            "--p", "1,2", "--weights", "uniform,distance", *flags)
            ref = GridSearchCV(est, grid, cv=cv, scoring=scoring).fit(X, y)
            for key in ("mean_test_score", "std_test_score", "split0_test_score"):
                np.testing.assert_allclose(ours["cv_results"][key], ref.cv_results_[key],
                                           rtol=1e-12, atol=1e-15, err_msg=f"{task} {scoring} {key}")
            self.assertEqual(ours["cv_results"]["rank_test_score"],
                             ref.cv_results_["rank_test_score"].tolist(), f"{task} {scoring}")
            self.assertEqual(ours["best_index"], ref.best_index_)
            got_params = [(p["n_neighbors"], p["p"], p["weights"]) for p in ours["cv_results"]["params"]]
            want_params = [(p["n_neighbors"], p["p"], p["weights"]) for p in ref.cv_results_["params"]]
            self.assertEqual(got_params, want_params)
            self.assertEqual(ours["neighbor_searches"], cv.get_n_splits() * 2)

    def test_fit_score_for_every_algorithm(self):
        for algorithm in ("kd_tree", "ball_tree", "brute", "auto"):
            model = self.path(f"{algorithm}.model")
            fit = run_json("fit", "--dataset", "digits", "--split", "train", *SPLIT,
                           "-k", "20", "--algorithm", algorithm, "--model", model)
            self.assertEqual(fit["n_samples"], 1437)
            score = run_json("score", "--model", model, "--dataset", "digits", "--split", "test",
                             *SPLIT)
            self.assertEqual(score["n_correct"], 349, algorithm)
            self.assertEqual(score["score"], 0.9694444444444444, algorithm)
            cm = score["confusion_matrix"]
            self.assertEqual(cm["labels"], list(range(10)))
            self.assertEqual(sum(cm["counts"][i][i] for i in range(10)), 349)
            self.assertEqual(sum(map(sum, cm["counts"])), 360)

    @need_sklearn
    def test_predict_proba_and_kneighbors_match_sklearn(self):
        d = datasets.load_digits()
        Xtr, Xte, ytr, _ = train_test_split(d.data, d.target, test_size=0.2, random_state=1337)
        for p, weights in (("1", "distance"), ("2", "uniform"), ("3", "uniform")):
            model = self.path("m.model")
            run("fit", "--dataset", "digits", "--split", "train", *SPLIT, "-k", "7",
                "--weights", weights, "--p", p, "--model", model)
            ours = run_json("predict", "--model", model, "--dataset", "digits", "--split", "test",
                            *SPLIT, "--proba")
            ref = KNeighborsClassifier(n_neighbors=7, weights=weights, p=int(p)).fit(Xtr, ytr)
            # Where the 7th and 8th neighbours are at the same distance, scikit-learn's choice is
            # arbitrary; compare the rest exactly (the estimator parity test covers ties).
            d8, _ = ref.kneighbors(Xte, 8)
            clear = ~np.isclose(d8[:, 6], d8[:, 7], rtol=1e-12, atol=0)
            self.assertGreater(clear.sum(), 250)
            self.assertEqual(np.array(ours["predictions"])[clear].tolist(),
                             ref.predict(Xte)[clear].tolist())
            np.testing.assert_allclose(np.array(ours["probabilities"])[clear],
                                       ref.predict_proba(Xte)[clear], rtol=0, atol=1e-12)
            nb = run_json("kneighbors", "--model", model, "--dataset", "digits", "--split",
                          "test", *SPLIT, "-k", "5")
            dist, ind = ref.kneighbors(Xte, 5)
            rn = run_json("kneighbors", "--model", model, "--dataset", "digits", "--split",
                          "test", *SPLIT, "--radius", "20", "--limit", "40")
            from sklearn.neighbors import NearestNeighbors
            nn = NearestNeighbors(p=int(p)).fit(Xtr)
            rd, ri = nn.radius_neighbors(Xte[:40], 20, sort_results=True)
            for q in range(40):
                self.assertEqual(sorted(rn["indices"][q]), sorted(ri[q].tolist()), f"p={p} q={q}")
                np.testing.assert_allclose(rn["distances"][q], np.sort(rd[q]), rtol=1e-12)
                self.assertEqual(rn["distances"][q], sorted(rn["distances"][q]))
            np.testing.assert_allclose(np.array(nb["distances"]), dist, rtol=1e-12)
            # Where sklearn's order is ambiguous (equal distances), ours is (distance, index).
            ours_ind = np.array(nb["indices"])
            d6, i6 = ref.kneighbors(Xte, 6)
            for q in range(len(Xte)):
                if np.isclose(d6[q, 4], d6[q, 5], rtol=1e-12, atol=0):
                    continue  # a tie at the 5th neighbour: sklearn may return either row
                key = sorted(zip(np.round(dist[q], 9), ind[q]))
                self.assertEqual(ours_ind[q].tolist(), [i for _, i in key], f"p={p} query {q}")

    def test_regressor_and_outlier_tasks(self):
        csv = self.path("reg.csv")
        with open(csv, "w") as f:
            f.write("x,y,target\n0,0,1\n1,0,2\n0,1,3\n1,1,4\n5,5,10\n")
        model = self.path("reg.model")
        run("fit", "--data", csv, "--label-column", "target", "--task", "regressor", "-k", "2",
            "--model", model)
        pred = run_json("predict", "--model", model, "--data", csv, "--label-column", "target")
        # Row 0's two nearest: itself (1) and (1,0)/(0,1) tie at distance 1 -> index 1 (2).
        self.assertEqual(pred["predictions"][0], 1.5)
        score = run_json("score", "--model", model, "--data", csv, "--label-column", "target")
        self.assertEqual(score["metric"], "r2")
        out_model = self.path("out.model")
        run("fit", "--data", csv, "--label-column", "target", "--task", "outlier",
            "--threshold", "2", "--model", out_model)
        pred = run_json("predict", "--model", out_model, "--data", csv, "--label-column", "target")
        self.assertEqual(pred["predictions"], [1, 1, 1, 1, 1])  # every row is a training row
        far = self.path("far.csv")
        with open(far, "w") as f:
            f.write("x,y\n0.5,0.5\n9,9\n")
        pred = run_json("predict", "--model", out_model, "--data", far, "--label-column", "none")
        self.assertEqual(pred["predictions"], [1, -1])
        self.assertAlmostEqual(pred["scores"][1], 32 ** 0.5)

    def test_string_labels_round_trip(self):
        csv = self.path("s.csv")
        with open(csv, "w") as f:
            f.write("a,b,kind\n0,0,cat\n0,1,cat\n5,5,dog\n5,6,dog\n9,9,emu\n")
        model = self.path("s.model")
        run("fit", "--data", csv, "-k", "1", "--model", model)
        pred = run_json("predict", "--model", model, "--data", csv)
        self.assertEqual(pred["predictions"], ["cat", "cat", "dog", "dog", "emu"])
        self.assertEqual(run_json("score", "--model", model, "--data", csv)["score"], 1.0)

    def test_save_and_load(self):
        model, copy = self.path("a.model"), self.path("b.model")
        run("fit", "--dataset", "digits", "-k", "3", "--model", model)
        run("save", "--model", model, "--out", copy)
        with open(model, "rb") as a, open(copy, "rb") as b:
            self.assertEqual(a.read(), b.read())
        desc = run_json("load", "--model", copy)
        self.assertEqual((desc["task"], desc["n_samples"], desc["n_features"]),
                         ("classifier", 1797, 64))
        # A corrupted file is a clear error.
        with open(copy, "r+b") as f:
            f.seek(100)
            byte = f.read(1)
            f.seek(100)
            f.write(bytes([byte[0] ^ 0xFF]))
        p = run("load", "--model", copy, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(copy, p.stderr)
        self.assertIn("checksum", p.stderr)

    def test_bad_input_is_a_clear_error(self):
        bad = self.path("bad.csv")
        with open(bad, "w") as f:
            f.write("a,b,label\n1,2,0\n3,x,1\n")
        p = run("fit", "--data", bad, "--model", self.path("m"), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"{bad}:3:2", p.stderr)
        self.assertIn('"x" is not a number', p.stderr)
        p = run("--json", "fit", "--dataset", "digits", "-k", "1798", "--model", self.path("m"),
                check=False)
        self.assertEqual(p.returncode, 1)
        err = json.loads(p.stdout)["error"]
        self.assertEqual(err["code"], "INVALID_ARGUMENT")
        self.assertIn("n_neighbors", err["message"])
        p = run("fit", "--dataset", "digits", "--p", "0.5", "--model", self.path("m"), check=False)
        self.assertIn("p:", p.stderr)
        p = run("split", "--dataset", "nope", check=False)
        self.assertIn("unknown built-in dataset", p.stderr)
        p = run("frobnicate", check=False)
        self.assertNotEqual(p.returncode, 0)

    def test_every_command_has_help(self):
        for cmd in ("split", "fit", "score", "predict", "kneighbors", "save", "load", "tutorial",
                    "show-digits", "grid-search", "status"):
            p = run(cmd, "--help")
            self.assertIn("Usage", p.stdout, cmd)

    def test_show_digits_writes_a_png(self):
        out = self.path("digits.png")
        res = run_json("show-digits", "--count", "10", "--out", out)
        self.assertEqual(res["labels"], list(range(10)))
        with open(out, "rb") as f:
            data = f.read()
        self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n")
        width, height = struct.unpack(">II", data[16:24])
        self.assertEqual((width, height), (res["width"], res["height"]))
        # Decode the image data and check a digit's darkest cell is full ink (pixel value 16).
        idat = b"".join(data[i + 8:i + 8 + struct.unpack(">I", data[i:i + 4])[0]]
                        for i in range(8, len(data)) if data[i + 4:i + 8] == b"IDAT")
        raw = zlib.decompress(idat)
        self.assertEqual(len(raw), height * (width + 1))


def main():
    global KNNCTL, DATA
    ap = argparse.ArgumentParser()
    ap.add_argument("--knnctl", required=True)
    ap.add_argument("--data", required=True)
    args, rest = ap.parse_known_args()
    KNNCTL, DATA = os.path.abspath(args.knnctl), os.path.abspath(args.data)
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
