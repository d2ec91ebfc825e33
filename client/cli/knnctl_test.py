#!/usr/bin/python3
"""End-to-end tests of the real knnctl binary: every subcommand, its JSON, its errors.

Run by ctest as: /usr/bin/python3 knnctl_test.py --knnctl build/bin/knnctl --data tests/data
scikit-learn is the oracle where installed; without it those tests skip, unless CI=true, where
they fail (a parity test must not silently vanish in CI). Cluster-mode tests start a real local
cluster (knn-coordinator and knn-worker from knnctl's directory, as tests/cluster/cluster_test.py
does).
"""
import argparse
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET
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
        # The honest figure: the same search on the training split alone (scikit-learn 1.2.1:
        # best_score_ 0.9832946186604724, {n_neighbors: 2, p: 2}, test accuracy 0.98333...).
        honest = out["grid_search_on_train_split"]
        self.assertEqual(honest["best_score"], 0.9832946186604724)
        self.assertEqual(honest["best_params"], {"n_neighbors": 2, "p": 2})
        self.assertEqual(honest["test_accuracy_of_best_estimator"], 0.9833333333333333)
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


TUTORIAL_GRID = ["--dataset", "digits", "--param", "n_neighbors=2:20:2", "--param", "p=1:4",
                 "--cv", "5"]
SVG = "{http://www.w3.org/2000/svg}"


def canonical_rows():
    """scikit-learn's cv_results_ for the tutorial grid (tests/data/reference)."""
    with open(os.path.join(DATA, "reference/digits_gridsearch_canonical.csv")) as f:
        header = f.readline().strip().split(",")
        return [dict(zip(header, map(float, line.split(",")))) for line in f if line.strip()]


def score_fields(cv_results):
    """cv_results_ without the timings (which differ from run to run)."""
    return {k: v for k, v in cv_results.items() if "time" not in k}


def heatmap_cells(path):
    root = ET.parse(path).getroot()
    return root, [r for r in root.iter(SVG + "rect") if r.get("class") == "cell"]


class GridSearchTest(unittest.TestCase):
    """knnctl grid-search in-process: the figures, the flags, the heatmap, the progress."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_tutorial_grid_json_and_table(self):
        out = run_json("grid-search", *TUTORIAL_GRID)
        self.assertEqual(out["id"], "local")
        self.assertEqual(out["state"], "SUCCEEDED")
        self.assertEqual(out["best_score"], 0.9671711544413494)
        self.assertEqual(out["best_params"], {"n_neighbors": 2, "p": 2})
        self.assertEqual(out["best_index"], 1)
        self.assertEqual(out["scoring"], "accuracy")
        self.assertEqual((out["n_candidates"], out["n_splits"], out["jobs_total"]), (27, 5, 15))
        self.assertEqual((out["neighbor_searches"], out["jobs_requeued"]), (15, 0))
        self.assertIsNone(out["refit_model"])  # local mode keeps a refit model only in a file
        cv = out["cv_results"]
        rows = canonical_rows()
        # scikit-learn's cv_results_ keys, params with the grid's keys only.
        self.assertEqual(list(cv), ["mean_fit_time", "std_fit_time", "mean_score_time",
                                    "std_score_time", "param_n_neighbors", "param_p", "params",
                                    *[f"split{i}_test_score" for i in range(5)],
                                    "mean_test_score", "std_test_score", "rank_test_score"])
        self.assertEqual(cv["params"], [{"n_neighbors": int(r["n_neighbors"]), "p": r["p"]}
                                        for r in rows])
        self.assertEqual(cv["param_n_neighbors"], [int(r["n_neighbors"]) for r in rows])
        self.assertEqual(cv["mean_test_score"], [r["mean_test_score"] for r in rows])
        for i in range(5):
            self.assertEqual(cv[f"split{i}_test_score"], [r[f"split{i}_test_score"] for r in rows])
        self.assertEqual(len(cv["mean_fit_time"]), 27)
        self.assertTrue(all(t > 0 for t in cv["mean_score_time"]))
        # The table, sorted by rank.
        text = run("grid-search", *TUTORIAL_GRID).stdout
        table = text[text.index("rank "):].splitlines()
        self.assertEqual(table[0].split(), ["rank", "n_neighbors", "p", "mean_test_score",
                                            "std_test_score"])
        self.assertEqual(table[1].split()[:4], ["1", "2", "2", "0.9671711544413494"])
        ranks = [int(line.split()[0]) for line in table[1:28]]
        self.assertEqual(ranks, sorted(cv["rank_test_score"]))
        self.assertIn("best accuracy: 0.9671711544413494 with n_neighbors=2, p=2 (candidate 1 of 27)",
                      text)
        self.assertIn("27 candidates x 5 folds: 15 jobs, 15 neighbour searches, 0 re-queued", text)

    def test_refit_model_file(self):
        model = os.path.join(self.dir, "best.model")
        out = run_json("grid-search", *TUTORIAL_GRID, "--algorithm", "kd_tree", "--refit-model",
                       model)
        self.assertEqual(out["refit_model"], model)
        desc = run_json("load", "--model", model)
        self.assertEqual((desc["params"]["n_neighbors"], desc["params"]["p"]), (2, 2))
        self.assertEqual(desc["n_samples"], 1797)
        p = run("grid-search", *TUTORIAL_GRID, "--no-refit", "--refit-model", model, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("--refit-model:", p.stderr)

    def test_param_specs(self):
        def params(*flags):
            return run_json("grid-search", "--dataset", "digits", "--cv", "3", *flags)[
                "cv_results"]["params"]

        # numpy arange: p=1:4 is 1, 2, 3; a float step; a list mixing values, ranges and inf.
        self.assertEqual(params("--param", "p=1:4"), params("--param", "p=1,2,3"))
        self.assertEqual([c["p"] for c in params("--param", "p=1:2:0.5")], [1.0, 1.5])
        self.assertEqual([c["p"] for c in params("--param", "p=1:3,inf")], [1, 2, "inf"])
        self.assertEqual(params("-k", "1:4", "--p", "1,2"),
                         params("--param", "n_neighbors=1,2,3", "--param", "p=1:3"))
        # Several grids, as scikit-learn's list of dicts; masked param_ entries are null.
        out = run_json("grid-search", "--dataset", "digits", "--cv", "3", "--param",
                       "n_neighbors=1,3", "--grid", "weights=distance;leaf_size=10:30:10")
        cv = out["cv_results"]
        self.assertEqual(cv["params"], [{"n_neighbors": 1}, {"n_neighbors": 3},
                                        {"leaf_size": 10, "weights": "distance"},
                                        {"leaf_size": 20, "weights": "distance"}])
        self.assertEqual(cv["param_n_neighbors"], [1, 3, None, None])
        self.assertEqual(cv["param_weights"], [None, None, "distance", "distance"])

    @need_sklearn
    def test_explicit_folds_equal_cv_number(self):
        from sklearn.model_selection import StratifiedKFold
        d = datasets.load_digits()
        folds = [{"train": tr.tolist(), "test": te.tolist()}
                 for tr, te in StratifiedKFold(5).split(d.data, d.target)]
        path = os.path.join(self.dir, "folds.json")
        with open(path, "w") as f:
            json.dump(folds, f)
        flags = ["--dataset", "digits", "--param", "n_neighbors=1,5", "--param", "p=1,2"]
        with_file = run_json("grid-search", *flags, "--cv", path)
        with_number = run_json("grid-search", *flags, "--cv", "5")
        self.assertEqual(score_fields(with_file["cv_results"]),
                         score_fields(with_number["cv_results"]))

    def test_bad_flags_are_clear_errors(self):
        cases = [
            (["--param", "n_neighbors=x"], '--param n_neighbors: "x" is not an integer'),
            (["--param", "n_neighbors=0:3"], "--param n_neighbors: values must be >= 1"),
            (["--param", "p=0.5"], "--param p: p must be >= 1 or inf, got 0.5"),
            (["--param", "metric=l2"], '--param metric: unknown parameter "metric"'),
            (["--param", "weights=heavy"], '--param weights: "heavy" is not one of uniform'),
            (["--param", "n_neighbors"], "--param: expected KEY=VALUES"),
            (["--param", "p=1", "--p", "2"], "--p: p is given twice for the same grid"),
            (["--grid", "n_neighbors=1;p"], "--grid: expected KEY=VALUES"),
            (["--cv", "1"], "--cv: the number of folds must be at least 2, got 1"),
            (["--cv", "nofile.json"], "--cv: expected a number of folds (>= 2) or a JSON file"),
            (["--scoring", "r2"], "--scoring: r2 scores a regressor, but --task is classifier"),
            (["--scoring", "top5"], '--scoring: expected accuracy, balanced_accuracy'),
            (["--mode", "sharded"], "--mode: chooses how a cluster runs the search"),
            (["--heatmap-x", "p"], "--heatmap-x: needs --heatmap FILE.svg"),
            (["--param", "n_neighbors=1,2", "--heatmap", os.path.join(self.dir, "h.svg"),
              "--heatmap-x", "weights"],
             '--heatmap-x: "weights" is not a parameter the grid varies (n_neighbors)'),
            (["--shuffle", "--cv", os.path.join(DATA, "nonexistent")], "--cv:"),
        ]
        for flags, want in cases:
            p = run("--json", "grid-search", "--dataset", "digits", *flags, check=False)
            self.assertEqual(p.returncode, 1, flags)
            self.assertIn(want, p.stderr, flags)
            self.assertEqual(json.loads(p.stdout)["error"]["code"], "INVALID_ARGUMENT", flags)
        for flags, want in [(["--attach", "gs-0123456789ab"], "--attach: needs a cluster"),
                            (["--list"], "--list: needs a cluster"),
                            (["--cancel", "gs-0123456789ab"], "--cancel: needs a cluster")]:
            p = run("grid-search", *flags, check=False)
            self.assertEqual(p.returncode, 1, flags)
            self.assertIn(want, p.stderr, flags)

    def test_heatmap_svg(self):
        path = os.path.join(self.dir, "out.svg")
        out = run_json("grid-search", *TUTORIAL_GRID, "--heatmap", path)
        self.assertEqual(out["heatmap"], {"file": path, "x": "n_neighbors", "y": "p"})
        root, cells = heatmap_cells(path)
        self.assertEqual(root.tag, SVG + "svg")
        self.assertEqual(len(cells), 27)
        best = [c for c in cells if c.get("data-value") == repr(out["best_score"])]
        self.assertEqual([(c.get("data-x"), c.get("data-y")) for c in best], [("2", "2")])
        texts = [t.text for t in root.iter(SVG + "text")]
        self.assertIn("0.9672", texts)   # the best cell's value, printed in it
        self.assertIn("n_neighbors", texts)
        self.assertIn("p", texts)
        self.assertIn("18", texts)       # a tick label
        self.assertEqual([t.text for t in root.iter(SVG + "text")
                          if t.get("class") in ("legend-min", "legend-max")], ["0.9672", "0.9416"])
        # Explicit axes, swapped.
        out = run_json("grid-search", *TUTORIAL_GRID, "--heatmap", path, "--heatmap-x", "p",
                       "--heatmap-y", "n_neighbors")
        self.assertEqual((out["heatmap"]["x"], out["heatmap"]["y"]), ("p", "n_neighbors"))
        self.assertEqual(len(heatmap_cells(path)[1]), 27)

    def test_progress_lines_and_bar(self):
        # Not a terminal: plain lines. With --json: the JSON alone (run_json parses all stdout).
        text = run("grid-search", *TUTORIAL_GRID).stdout
        self.assertTrue(text.startswith("grid-search local: 0/15 jobs, "), text[:80])
        self.assertIn("grid-search local: done, 15/15 jobs in ", text)
        self.assertNotIn("\r", text)
        # A terminal: a bar redrawn in place.
        master, slave = pty.openpty()
        p = subprocess.Popen([KNNCTL, "grid-search", *TUTORIAL_GRID], stdout=slave,
                             stderr=subprocess.PIPE)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        err = p.stderr.read()
        p.stderr.close()
        self.assertEqual(p.wait(timeout=60), 0, err)
        tty = out.decode()
        self.assertTrue(tty.startswith("\rlocal [...."), tty[:80])
        self.assertIn("\rlocal [##############################] 100% 15/15 jobs", tty)
        self.assertIn("rank ", tty)


def cluster_binaries():
    d = os.path.dirname(KNNCTL)
    return all(os.path.exists(os.path.join(d, b)) for b in ("knn-coordinator", "knn-worker"))


@unittest.skipUnless(HAVE_SKLEARN or os.environ.get("CI") == "true", "needs numpy")
class ClusterGridSearchTest(unittest.TestCase):
    """knnctl grid-search against a real local cluster: the local figures, detach and attach,
    cancel on interrupt, progress lines."""

    # Larger than the tutorial grid, and each fold job sleeps 200 ms on the worker, so that a
    # search is still running when the test interrupts knnctl.
    SLOW_GRID = ["--dataset", "digits", "--param", "n_neighbors=1:30", "--param", "p=1,2,3,inf",
                 "--cv", "10"]

    @classmethod
    def setUpClass(cls):
        if not cluster_binaries():
            if os.environ.get("CI") == "true":
                raise AssertionError("knn-coordinator / knn-worker are missing under CI=true")
            raise unittest.SkipTest("knn-coordinator / knn-worker are not built")
        sys.path.insert(0, os.path.join(DATA, "..", "cluster"))
        import cluster_test  # the Cluster of tests/cluster: real processes on loopback
        cluster_test.BIN = os.path.dirname(KNNCTL)
        cls.tmpdir = tempfile.TemporaryDirectory()
        cls.c = cluster_test.Cluster(2, cls.tmpdir.name,
                                     worker_args=["--testing-job-delay-ms", "200"])
        cls.address = cls.c.coordinator

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()
        cls.tmpdir.cleanup()

    def remote(self, *args, check=True):
        return run("--coordinator", self.address, *args, check=check)

    def remote_json(self, *args):
        return json.loads(self.remote("--json", *args).stdout)

    def listed(self):
        return {s["id"]: s for s in self.remote_json("grid-search", "--list")["searches"]}

    def start_and_interrupt(self, *extra):
        """Starts a slow search, sends SIGINT once its first progress line is out."""
        p = subprocess.Popen([KNNCTL, "--coordinator", self.address, "grid-search",
                              *self.SLOW_GRID, *extra], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        first = p.stdout.readline()
        self.assertRegex(first, r"^grid-search gs-[0-9a-f]{12}: ")
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=60)
        return p.returncode, first + rest, err, first.split()[1].rstrip(":")

    def test_same_results_as_local(self):
        with tempfile.TemporaryDirectory() as d:
            local_svg, remote_svg = os.path.join(d, "l.svg"), os.path.join(d, "r.svg")
            local = run_json("grid-search", *TUTORIAL_GRID, "--heatmap", local_svg)
            remote = self.remote_json("grid-search", *TUTORIAL_GRID, "--heatmap", remote_svg,
                                      "--refit-model", "knnctl-best")
            self.assertEqual(score_fields(remote["cv_results"]), score_fields(local["cv_results"]))
            for key in ("best_index", "best_score", "best_params", "best_estimator_params",
                        "scoring", "n_candidates", "n_splits", "jobs_total", "neighbor_searches",
                        "jobs_requeued"):
                self.assertEqual(remote[key], local[key], key)
            self.assertRegex(remote["id"], r"^gs-[0-9a-f]{12}$")
            self.assertEqual(remote["state"], "SUCCEEDED")
            self.assertEqual(remote["refit_model"], "knnctl-best")
            self.assertEqual(len(remote["cv_results"]["mean_fit_time"]), 27)
            with open(local_svg) as a, open(remote_svg) as b:
                self.assertEqual(a.read(), b.read())
        # The refit model is a model of the cluster.
        score = self.remote_json("score", "--model", "knnctl-best", "--dataset", "digits",
                                 "--split", "test", *SPLIT)
        self.assertEqual(score["n_samples"], 360)
        # Text: plain progress lines (stdout is a pipe), then the same table as local.
        text = self.remote("grid-search", *TUTORIAL_GRID, "--no-refit").stdout
        lines = text.splitlines()
        self.assertRegex(lines[0], r"^grid-search gs-[0-9a-f]{12}: (queued, )?0/15 jobs, ")
        self.assertRegex(text, r"grid-search gs-[0-9a-f]{12}: \d+/15 jobs, [0-9.]+ s elapsed")
        self.assertRegex(text, r"grid-search gs-[0-9a-f]{12}: done, 15/15 jobs in ")
        local_text = run("grid-search", *TUTORIAL_GRID).stdout
        self.assertEqual(text[text.index("rank "):text.index("best estimator")],
                         local_text[local_text.index("rank "):local_text.index("best estimator")])

    def test_sharded_mode_and_a_regressor_equal_local(self):
        # (flags for both, flags for the cluster only)
        for common, cluster_only in (([], ["--mode", "sharded"]),
                                     (["--task", "regressor", "--scoring",
                                       "neg_mean_squared_error", "--param",
                                       "weights=uniform,distance"], [])):
            local = run_json("grid-search", *TUTORIAL_GRID, *common)
            remote = self.remote_json("grid-search", *TUTORIAL_GRID, *common, *cluster_only,
                                      "--no-refit")
            self.assertEqual(score_fields(remote["cv_results"]), score_fields(local["cv_results"]),
                             common + cluster_only)
            self.assertEqual((remote["best_score"], remote["scoring"]),
                             (local["best_score"], local["scoring"]))
            self.assertIsNone(remote["refit_model"])
            self.assertEqual(remote["mode"], "sharded" if cluster_only else "replicated")

    def test_detach_on_interrupt_then_attach(self):
        code, out, err, search = self.start_and_interrupt()
        self.assertEqual(code, 130, err)
        self.assertIn(f"detached from grid search {search}", out)
        self.assertIn(f"grid-search --attach {search}", out)
        self.assertIn(self.listed()[search]["state"], ("QUEUED", "RUNNING", "REFITTING",
                                                       "SUCCEEDED"))
        attached = self.remote_json("grid-search", "--attach", search)
        self.assertEqual((attached["id"], attached["state"]), (search, "SUCCEEDED"))
        self.assertEqual((attached["n_candidates"], attached["jobs_total"]), (116, 40))
        self.assertEqual(attached["refit_model"], f"{search}-best")
        local = run_json("grid-search", *self.SLOW_GRID)
        self.assertEqual(score_fields(attached["cv_results"]), score_fields(local["cv_results"]))
        self.assertEqual(attached["best_score"], local["best_score"])
        # Attaching to a finished search prints its result again.
        again = self.remote_json("grid-search", "--attach", search)
        self.assertEqual(again["cv_results"]["mean_test_score"],
                         attached["cv_results"]["mean_test_score"])

    def test_cancel_on_interrupt(self):
        code, out, err, search = self.start_and_interrupt("--cancel-on-interrupt")
        self.assertEqual(code, 130, err)
        self.assertIn(f"cancelled grid search {search} after ", out)
        self.assertEqual(self.listed()[search]["state"], "CANCELLED")
        p = self.remote("grid-search", "--attach", search, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"grid search {search} was cancelled", p.stderr)
        # --cancel of a finished search leaves it as it is.
        out = self.remote_json("grid-search", "--cancel", search)
        self.assertEqual((out["state"], out["cancelled"]), ("CANCELLED", True))

    def test_cancel_by_id_and_unknown_ids(self):
        p = subprocess.Popen([KNNCTL, "--coordinator", self.address, "grid-search",
                              *self.SLOW_GRID, "--no-refit"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        search = p.stdout.readline().split()[1].rstrip(":")
        out = self.remote_json("grid-search", "--cancel", search)
        self.assertEqual((out["id"], out["state"], out["cancelled"]), (search, "CANCELLED", True))
        rest, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 1)  # the watching knnctl saw it cancelled
        self.assertIn(f"grid search {search} was cancelled", err)
        for flag in ("--attach", "--cancel"):
            p = self.remote("grid-search", flag, "gs-000000000000", check=False)
            self.assertEqual(p.returncode, 1, flag)
            self.assertIn("gs-000000000000", p.stderr, flag)

    def test_tutorial_uses_the_distributed_grid_search(self):
        out = self.remote_json("tutorial")
        gs = out["grid_search"]
        self.assertRegex(gs["id"], r"^gs-[0-9a-f]{12}$")
        self.assertEqual(gs["best_score"], 0.9671711544413494)
        self.assertEqual(gs["best_params"], {"n_neighbors": 2, "p": 2})
        self.assertEqual(gs["test_accuracy_of_best_estimator"], 0.9833333333333333)
        self.assertEqual(gs["refit_model"], "tutorial-knn-best")
        self.assertEqual(gs["cv_results"]["mean_test_score"],
                         [r["mean_test_score"] for r in canonical_rows()])
        text = self.remote("tutorial").stdout  # runs again on the same cluster
        self.assertIn("  best score: 0.9671711544413494\n  best params: n_neighbors=2, p=2\n"
                      "  test accuracy of the best model: 0.9833333333333333 (flattering", text)
        self.assertIn("The same grid search on the 1437 training rows alone (the honest figure):\n"
                      "  best score: 0.9832946186604724\n  best params: n_neighbors=2, p=2\n"
                      "  test accuracy of its best model on the 360 unseen test rows: "
                      "0.9833333333333333\n", text)
        honest = out["grid_search_on_train_split"]
        self.assertRegex(honest["id"], r"^gs-[0-9a-f]{12}$")
        self.assertEqual(honest["refit_model"], "tutorial-knn-best-train")


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
