"""GridSearchCV on a real local cluster: cv_results_ shaped and valued as scikit-learn's (its
GridSearchCV where no distances tie; the contract oracle on the digits), every cv form, scoring,
refit, the refit model behind predict/score, scikit-learn's other arguments, errors, progress and
cancelling on Ctrl-C."""
import io
import pickle
import warnings

import numpy as np
import pytest
import sklearn.metrics
import sklearn.model_selection as skms
import sklearn.neighbors as skn
from sklearn.datasets import load_digits

import knncluster
from knncluster import (GridSearchCV, KFold, KNeighborsClassifier, KNeighborsRegressor,
                        StratifiedKFold, _progress)
from knncluster.v1 import coordinator_pb2
from oracle import cv_split_scores, format_test_scores

TIME_KEYS = ["mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"]


def gauss(n=200, classes=(-2, 0, 3, 7)):
    rng = np.random.RandomState(23)
    X = rng.normal(size=(n, 4)) * np.array([1.0, 3.0, 0.5, 10.0])
    return X, rng.choice(classes, size=n)


def assert_cv_results_equal(ours, theirs, rtol=0.0):
    """Same keys in the same order, same params, same masked parameter arrays, same scores (bit
    for bit unless rtol), time arrays of the same shape and dtype."""
    assert list(ours) == list(theirs)
    for key, want in theirs.items():
        got = ours[key]
        if key == "params":
            assert got == want
        elif key in TIME_KEYS:
            assert got.shape == want.shape and got.dtype == want.dtype and np.all(got >= 0)
        elif isinstance(want, np.ma.MaskedArray):
            assert isinstance(got, np.ma.MaskedArray) and got.dtype == want.dtype, key
            np.testing.assert_array_equal(got.mask, want.mask, key)
            assert got.compressed().tolist() == want.compressed().tolist(), key
        else:
            assert type(got) is type(want) and got.dtype == want.dtype, key
            if rtol and key != "rank_test_score":
                np.testing.assert_allclose(got, want, rtol=rtol, err_msg=key)
            else:
                np.testing.assert_array_equal(got, want, key)


def sk_search(estimator, grid, X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skms.GridSearchCV(estimator, grid, **kwargs).fit(X, y)


@pytest.mark.parametrize("cv_kind", ["int", "ours", "sklearn", "list"])
def test_classifier_cv_results_equal_sklearns(cluster, cv_kind):
    X, y = gauss()
    grid = [{"n_neighbors": [1, 5, 9], "weights": ["uniform", "distance"]},
            {"p": [1, 3.5, np.inf], "algorithm": ["ball_tree"]}]
    cv = {"int": 4, "ours": StratifiedKFold(3, shuffle=True, random_state=2),
          "sklearn": skms.KFold(5, shuffle=True, random_state=7),
          "list": list(skms.KFold(3).split(X))}[cv_kind]
    sk_cv = cv if cv_kind != "ours" else skms.StratifiedKFold(3, shuffle=True, random_state=2)
    ours = GridSearchCV(KNeighborsClassifier(), grid, cv=cv).fit(X, y)
    theirs = sk_search(skn.KNeighborsClassifier(), grid, X, y, cv=sk_cv)
    assert_cv_results_equal(ours.cv_results_, theirs.cv_results_)
    assert ours.best_index_ == theirs.best_index_
    assert ours.best_score_ == theirs.best_score_
    assert ours.best_params_ == theirs.best_params_
    assert ours.n_splits_ == theirs.n_splits_
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_array_equal(ours.predict(X[:50]), theirs.predict(X[:50]))
    np.testing.assert_allclose(ours.predict_proba(X[:50]), theirs.predict_proba(X[:50]),
                               rtol=1e-12)
    assert ours.score(X, y) == theirs.score(X, y)


@pytest.mark.parametrize("scoring", [None, "r2", "neg_mean_squared_error"])
def test_regressor_cv_results_and_scoring_equal_sklearns(cluster, scoring):
    X, _ = gauss()
    y = X[:, 0] * 3 + np.sin(X[:, 1])
    grid = {"n_neighbors": [2, 6], "weights": ["uniform", "distance"], "p": [1, 2]}
    ours = GridSearchCV(KNeighborsRegressor(algorithm="kd_tree"), grid, scoring=scoring,
                        cv=KFold(4, shuffle=True, random_state=0)).fit(X, y)
    theirs = sk_search(skn.KNeighborsRegressor(algorithm="kd_tree"), grid, X, y, scoring=scoring,
                       cv=skms.KFold(4, shuffle=True, random_state=0))
    # Distance weights: 1 / distance, and the distances are core's (the same neighbours, the
    # last bit of a p=1 sum may differ from scikit-learn's), hence rtol against scikit-learn...
    assert_cv_results_equal(ours.cv_results_, theirs.cv_results_, rtol=1e-13)
    assert ours.best_params_ == theirs.best_params_
    # ...and bit for bit against scikit-learn's code on the contract's neighbours.
    folds = list(skms.KFold(4, shuffle=True, random_state=0).split(X))
    scorer = {None: sklearn.metrics.r2_score, "r2": sklearn.metrics.r2_score,
              "neg_mean_squared_error": lambda a, b: -sklearn.metrics.mean_squared_error(a, b)}
    want = cv_split_scores(X, y, ours.cv_results_["params"], folds, False, scorer[scoring])
    got = np.column_stack([ours.cv_results_["split%d_test_score" % i] for i in range(4)])
    np.testing.assert_array_equal(got, want)
    means, stds, ranks = format_test_scores(want)
    np.testing.assert_array_equal(ours.cv_results_["mean_test_score"], means)
    np.testing.assert_array_equal(ours.cv_results_["std_test_score"], stds)
    np.testing.assert_array_equal(ours.cv_results_["rank_test_score"], ranks)
    assert ours.score(X[:40], y[:40]) == pytest.approx(theirs.score(X[:40], y[:40]), rel=1e-12)


@pytest.mark.parametrize("scoring", ["accuracy", "balanced_accuracy", "f1_macro"])
def test_classifier_scorings_and_string_labels_equal_sklearns(cluster, scoring):
    X, y = gauss(classes=("ant", "bee", "cat"))
    grid = {"n_neighbors": [1, 3, 7]}
    ours = GridSearchCV(KNeighborsClassifier(weights="distance"), grid, scoring=scoring,
                        cv=3).fit(X, y)
    theirs = sk_search(skn.KNeighborsClassifier(weights="distance"), grid, X, y,
                       scoring=scoring, cv=3)
    assert_cv_results_equal(ours.cv_results_, theirs.cv_results_)
    assert ours.best_estimator_.classes_.tolist() == ["ant", "bee", "cat"]
    assert ours.predict(X[:9]).tolist() == theirs.predict(X[:9]).tolist()
    # score() is the scoring's value for the refitted model, as scikit-learn's.
    assert ours.score(X[::3], y[::3]) == theirs.score(X[::3], y[::3])


def test_the_tutorial_grid_on_the_digits_equals_the_oracle(cluster):
    digits = load_digits()
    X, y = digits.data, digits.target
    grid = {"n_neighbors": list(range(2, 20, 2)), "p": [1, 2, 3]}
    search = GridSearchCV(KNeighborsClassifier(algorithm="kd_tree"), grid, cv=5).fit(X, y)
    res = search.cv_results_
    candidates = list(skms.ParameterGrid(grid))
    assert res["params"] == candidates
    folds = list(skms.StratifiedKFold(5).split(X, y))
    want = cv_split_scores(X, y, candidates, folds, True, sklearn.metrics.accuracy_score)
    got = np.column_stack([res["split%d_test_score" % i] for i in range(5)])
    np.testing.assert_array_equal(got, want)
    means, stds, ranks = format_test_scores(want)
    np.testing.assert_array_equal(res["mean_test_score"], means)
    np.testing.assert_array_equal(res["std_test_score"], stds)
    np.testing.assert_array_equal(res["rank_test_score"], ranks)
    assert res["rank_test_score"].dtype == np.int32
    assert search.best_index_ == int(np.argmin(ranks))
    assert search.best_params_ == {"n_neighbors": 2, "p": 2}
    assert search.best_score_ == 0.9671711544413494
    # The refitted model answers predict and score, and pickles.
    best = search.best_estimator_
    assert isinstance(best, KNeighborsClassifier)
    assert best.get_params()["n_neighbors"] == 2 and best.algorithm == "kd_tree"
    X_train, X_test, y_train, y_test = skms.train_test_split(X, y, test_size=0.2,
                                                             random_state=1337)
    assert search.score(X_test, y_test) == best.score(X_test, y_test) == 0.9833333333333333
    fresh = KNeighborsClassifier(n_neighbors=2, algorithm="kd_tree").fit(X, y)
    np.testing.assert_array_equal(search.predict(X_test), fresh.predict(X_test))
    np.testing.assert_array_equal(search.predict_proba(X_test), fresh.predict_proba(X_test))
    back = pickle.loads(pickle.dumps(search))
    assert back.best_estimator_.model_name_ == best.model_name_
    np.testing.assert_array_equal(back.predict(X_test), fresh.predict(X_test))


def test_refit_false_and_callable_refit(cluster):
    X, y = gauss()
    grid = {"n_neighbors": [1, 3, 5]}
    no_refit = GridSearchCV(KNeighborsClassifier(), grid, cv=3, refit=False).fit(X, y)
    assert not hasattr(no_refit, "best_estimator_")
    assert no_refit.best_params_ in no_refit.cv_results_["params"]
    with pytest.raises(knncluster.NotFittedError, match="refit=False"):
        no_refit.predict(X)

    def pick_last(cv_results):
        return len(cv_results["params"]) - 1

    ours = GridSearchCV(KNeighborsClassifier(), grid, cv=3, refit=pick_last).fit(X, y)
    theirs = sk_search(skn.KNeighborsClassifier(), grid, X, y, cv=3, refit=pick_last)
    assert ours.best_index_ == theirs.best_index_ == 2
    assert ours.best_params_ == theirs.best_params_ == {"n_neighbors": 5}
    assert hasattr(ours, "best_score_") == hasattr(theirs, "best_score_")
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_sklearns_other_arguments_are_accepted_and_verbose_prints_its_line(cluster, capsys):
    X, y = gauss()
    search = GridSearchCV(KNeighborsClassifier(), {"n_neighbors": [1, 2, 3]}, cv=5, n_jobs=-1,
                          verbose=1, pre_dispatch=4, error_score=0.0)
    search.fit(X, y)
    assert capsys.readouterr().out == \
        "Fitting 5 folds for each of 3 candidates, totalling 15 fits\n"
    assert repr(search).startswith("GridSearchCV(cv=5, error_score=0.0, estimator=")


def test_bad_searches_raise_value_errors(cluster):
    X, y = gauss()
    clf = KNeighborsClassifier()
    for kwargs, match in (
            ({"param_grid": {"metric": ["manhattan"]}}, "the cluster searches over"),
            ({"param_grid": {"n_neighbors": 3}}, "needs to be a list or a numpy array"),
            ({"param_grid": {"n_neighbors": [0]}}, "'n_neighbors' parameter"),
            ({"param_grid": {"n_neighbors": [1]}, "scoring": "roc_auc"}, "scoring"),
            ({"param_grid": {"n_neighbors": [1]}, "return_train_score": True},
             "return_train_score"),
            ({"param_grid": {"n_neighbors": [1]}, "cv": "five"}, "Expected cv as an integer")):
        grid = kwargs.pop("param_grid")
        with pytest.raises((ValueError, TypeError), match=match):
            GridSearchCV(clf, grid, **kwargs).fit(X, y)
    with pytest.raises(ValueError, match="knncluster KNeighborsClassifier"):
        GridSearchCV(skn.KNeighborsClassifier(), {"n_neighbors": [1]}).fit(X, y)
    # Checked by the cluster: its message arrives as a ValueError.
    with pytest.raises(ValueError, match="n_neighbors") as e:
        GridSearchCV(clf, {"n_neighbors": [1, 500]}, cv=2).fit(X, y)
    assert isinstance(e.value, knncluster.ClusterError)


class Tty(io.StringIO):
    def isatty(self):
        return True


class InterruptingTty(Tty):
    def write(self, s):
        raise KeyboardInterrupt


def test_progress_bar_and_ctrl_c_cancels_the_search(cluster, monkeypatch):
    monkeypatch.setattr(_progress, "DEFAULT_DELAY", 0)
    digits = load_digits()
    grid = {"n_neighbors": list(range(2, 20, 2)), "p": [1, 2, 3]}
    X, y = gauss()
    stream = Tty()
    GridSearchCV(KNeighborsClassifier(), {"n_neighbors": [1, 2]}, cv=3).fit(
        X, y, progress_stream=stream)
    assert "grid search [" in stream.getvalue() and "100%" in stream.getvalue()
    assert stream.getvalue().endswith("\n")

    before = {s.id for s in cluster.call("ListGridSearches",
                                         coordinator_pb2.ListGridSearchesRequest()).searches}
    with pytest.raises(KeyboardInterrupt):
        GridSearchCV(KNeighborsClassifier(), grid, cv=5).fit(digits.data, digits.target,
                                                              progress_stream=InterruptingTty())
    searches = [s for s in cluster.call("ListGridSearches",
                                        coordinator_pb2.ListGridSearchesRequest()).searches
                if s.id not in before]
    assert len(searches) == 1
    assert searches[0].state == coordinator_pb2.GRID_SEARCH_CANCELLED
