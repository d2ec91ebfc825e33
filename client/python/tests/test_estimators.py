"""The estimators against a real local cluster (2 workers), method by method, compared with
scikit-learn 1.2.1 on the digits and on generated data (see oracle.py for ties); labels of every
kind; errors; pickling; large inputs in chunks; scikit-learn's Pipeline, cross_val_score and
GridSearchCV around our estimators."""
import io
import pickle
import warnings

import numpy as np
import pytest
import sklearn.model_selection as skms
import sklearn.neighbors as skn
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import knncluster
from knncluster import KNeighborsClassifier, KNeighborsRegressor, NearestNeighbors, _cluster
from oracle import Case, contract_neighbors, train_neighbors


def digits_split():
    d = load_digits()
    return skms.train_test_split(d.data, d.target, test_size=0.2, random_state=1337)


def gauss():
    rng = np.random.RandomState(11)
    X = rng.normal(size=(300, 5)) * np.array([1.0, 3.0, 0.5, 10.0, 1.0])
    y = rng.choice([-2, 0, 3, 7], size=300)
    return X[:240], X[240:], y[:240], y[240:]


def ints():
    rng = np.random.RandomState(5)
    X = rng.randint(0, 4, size=(220, 3)).astype(float)  # ties, duplicates, exact matches
    y = rng.randint(0, 3, size=220)
    return X[:170], X[170:], y[:170], y[170:]


DATASETS = {"digits": digits_split, "gauss": gauss, "ints": ints}
ALGORITHMS = ["kd_tree", "ball_tree", "brute", "auto"]


def metric_params(p):
    return {"metric": "chebyshev"} if np.isinf(p) else {"p": p}


@pytest.mark.parametrize("name", list(DATASETS))
@pytest.mark.parametrize("p", [1, 2, 3, np.inf])
def test_every_method_equals_sklearn(cluster, name, p):
    X_train, X_test, y_train, y_test = DATASETS[name]()
    y_reg = y_train * 1.5 + np.arange(len(y_train)) % 3
    y_reg_test = y_test * 1.5 + np.arange(len(y_test)) % 3
    for i, (k, weights) in enumerate([(1, "uniform"), (5, "distance"), (12, "uniform"),
                                      (12, "distance")]):
        algorithm = ALGORITHMS[(i + int(min(p, 4))) % 4]
        case = Case(X_train, y_train, y_reg, X_test, p, k, weights)
        ctx = "%s p=%s k=%d %s %s" % (name, p, k, weights, algorithm)
        params = dict(n_neighbors=k, weights=weights, algorithm=algorithm, **metric_params(p))

        clf = KNeighborsClassifier(**params).fit(X_train, y_train)
        dist, ind = clf.kneighbors(X_test)
        assert ind.dtype == np.int64 and dist.dtype == np.float64, ctx
        np.testing.assert_array_equal(ind, case.ind, ctx)
        np.testing.assert_array_equal(dist, case.dist, ctx)  # bit for bit
        np.testing.assert_array_equal(clf.kneighbors(X_test, return_distance=False), case.ind)
        pred = clf.predict(X_test)
        assert pred.dtype == case.sk_predict.dtype, ctx
        np.testing.assert_array_equal(pred, case.clf.predict(X_test), ctx)
        np.testing.assert_array_equal(clf.predict_proba(X_test), case.clf.predict_proba(X_test),
                                      ctx)
        assert clf.score(X_test, y_test) == case.clf.score(X_test, y_test), ctx
        np.testing.assert_array_equal(clf.classes_, case.sk_classes)
        assert clf.n_features_in_ == X_train.shape[1] and clf.n_samples_fit_ == len(X_train)
        assert (clf.effective_metric_, clf.effective_metric_params_) == case.sk_effective
        # Where no distance ties, scikit-learn's own answers.
        free = ~case.tied
        np.testing.assert_array_equal(ind[free], case.sk_ind[free], ctx)
        if weights == "uniform":
            same = ~case.set_tied
            np.testing.assert_array_equal(pred[same], case.sk_predict[same], ctx)
            np.testing.assert_allclose(clf.predict_proba(X_test)[same], case.sk_proba[same],
                                       rtol=0, atol=1e-15)
        if not case.set_tied.any():
            assert clf.score(X_test, y_test) == np.mean(case.sk_predict == y_test), ctx

        reg = KNeighborsRegressor(**params).fit(X_train, y_reg)
        want = case.reg.predict(X_test)
        np.testing.assert_array_equal(reg.predict(X_test), want, ctx)
        assert reg.score(X_test, y_reg_test) == case.reg.score(X_test, y_reg_test), ctx
        if not case.set_tied.any():
            np.testing.assert_allclose(reg.predict(X_test), case.sk_regress, rtol=1e-12)


def test_kneighbors_of_the_training_set_and_nearest_neighbors(cluster):
    X_train, X_test, _, _ = ints()
    for p in (1, 2, np.inf):
        for k in (1, 3):
            nn = NearestNeighbors(n_neighbors=k, **metric_params(p)).fit(X_train)
            want_dist, want_ind = contract_neighbors(X_train, X_test, p, k)[:2]
            dist, ind = nn.kneighbors(X_test)
            np.testing.assert_array_equal(ind, want_ind)
            np.testing.assert_array_equal(dist, want_dist)
            # X=None: every training row, itself left out (duplicates: scikit-learn's rule).
            dist, ind = nn.kneighbors()
            want_dist, want_ind = train_neighbors(X_train, p, k)
            np.testing.assert_array_equal(ind, want_ind)
            np.testing.assert_array_equal(dist, want_dist)
            graph = nn.kneighbors_graph(X_test, mode="distance")
            assert graph.shape == (len(X_test), len(X_train)) and graph.nnz == len(X_test) * k
    # On data without ties, scikit-learn's NearestNeighbors exactly.
    X_train, X_test, _, _ = gauss()
    ours = NearestNeighbors(n_neighbors=4, algorithm="ball_tree").fit(X_train)
    theirs = skn.NearestNeighbors(n_neighbors=4, algorithm="ball_tree").fit(X_train)
    np.testing.assert_array_equal(ours.kneighbors(X_test)[1], theirs.kneighbors(X_test)[1])
    np.testing.assert_allclose(ours.kneighbors(X_test)[0], theirs.kneighbors(X_test)[0],
                               rtol=1e-12)
    np.testing.assert_array_equal(ours.kneighbors()[1], theirs.kneighbors()[1])
    np.testing.assert_array_equal(ours.kneighbors(n_neighbors=2)[1],
                                  theirs.kneighbors(n_neighbors=2)[1])
    for mode in ("connectivity", "distance"):
        a = ours.kneighbors_graph(X_test, mode=mode).toarray()
        b = theirs.kneighbors_graph(X_test, mode=mode).toarray()
        np.testing.assert_allclose(a, b, rtol=1e-12)
    with pytest.raises(ValueError, match="Expected n_neighbors <= n_samples"):
        ours.kneighbors(X_test, n_neighbors=241)
    with pytest.raises(ValueError, match="Expected n_neighbors > 0"):
        ours.kneighbors(X_test, n_neighbors=0)


@pytest.mark.parametrize("labels", [
    np.array(["setosa", "versicolor", "virginica", "zebra"]),
    np.array(["b", "a", "é", "ä"], dtype=object),
    np.array([-5, 0, 2, 10**12]),
    np.array([0.0, 1.5 * 2, 7.0, -1.0]),
    np.array([True, False, True, False]),
    np.array([2**60, 3, 2**60 + 1, 7]),
])
def test_labels_of_every_kind_come_back_as_sklearn_gives_them(cluster, labels):
    X_train, X_test, y_train, y_test = gauss()
    y = labels[np.searchsorted([-2, 0, 3, 7], y_train)]
    yt = labels[np.searchsorted([-2, 0, 3, 7], y_test)]
    ours = KNeighborsClassifier(n_neighbors=7, weights="distance").fit(X_train, y)
    theirs = skn.KNeighborsClassifier(n_neighbors=7, weights="distance").fit(X_train, y)
    assert ours.classes_.dtype == theirs.classes_.dtype
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    pred = ours.predict(X_test)
    assert pred.dtype == theirs.predict(X_test).dtype
    np.testing.assert_array_equal(pred, theirs.predict(X_test))
    np.testing.assert_allclose(ours.predict_proba(X_test), theirs.predict_proba(X_test),
                               rtol=1e-12)
    assert ours.score(X_test, yt) == theirs.score(X_test, yt)
    # Labels it never saw score as wrong; weights go through scikit-learn's formula.
    unseen = np.array(list(yt[:-3]) + [labels[0]] * 3, dtype=yt.dtype)
    assert ours.score(X_test, unseen) == theirs.score(X_test, unseen)
    w = np.linspace(0.1, 2, len(yt))
    assert ours.score(X_test, yt, sample_weight=w) == theirs.score(X_test, yt, sample_weight=w)


def test_lists_dataframe_like_and_column_targets(cluster):
    X_train, X_test, y_train, y_test = gauss()
    ours = KNeighborsClassifier(n_neighbors=3).fit(X_train.tolist(), y_train.tolist())
    theirs = skn.KNeighborsClassifier(n_neighbors=3).fit(X_train, y_train)
    np.testing.assert_array_equal(ours.predict(X_test.tolist()), theirs.predict(X_test))
    # A column y: scikit-learn's warning; the regressor then predicts a column.
    with pytest.warns(Warning, match="column-vector y"):
        KNeighborsClassifier(n_neighbors=3).fit(X_train, y_train.reshape(-1, 1))
    reg = KNeighborsRegressor(n_neighbors=3).fit(X_train, (y_train * 1.0).reshape(-1, 1))
    sk_reg = skn.KNeighborsRegressor(n_neighbors=3).fit(X_train, (y_train * 1.0).reshape(-1, 1))
    assert reg.predict(X_test).shape == sk_reg.predict(X_test).shape == (len(X_test), 1)
    np.testing.assert_allclose(reg.predict(X_test), sk_reg.predict(X_test), rtol=1e-12)
    assert reg.score(X_test, y_test * 1.0) == pytest.approx(sk_reg.score(X_test, y_test * 1.0),
                                                            rel=1e-12)


def test_errors_carry_the_servers_message(cluster):
    X = np.arange(6, dtype=float).reshape(3, 2)
    # The cluster refuses n_neighbors above the training rows: ValueError, its message.
    with pytest.raises(ValueError, match="params.n_neighbors: must be at most the training "
                                         "set's 3 rows, got 5") as e:
        KNeighborsClassifier().fit(X, [0, 1, 1])
    assert isinstance(e.value, knncluster.InvalidArgumentError)
    assert e.value.code == "INVALID_ARGUMENT"
    clf = KNeighborsClassifier(n_neighbors=1).fit(X, [0, 1, 1])
    with pytest.raises(ValueError, match="X has 3 features, but KNeighborsClassifier is "
                                         "expecting 2 features as input"):
        clf.predict(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        clf.predict([[np.nan, 1.0]])
    # The server's own check of a query's width, past the client's.
    with pytest.raises(ValueError, match="expected 2 features, got 3"):
        cluster.predict(clf.model_name_, np.zeros((1, 3)))
    # A model the cluster does not have (deleted) is a NotFittedError, with the server's text.
    clf.delete_model()
    with pytest.raises(knncluster.NotFittedError, match=clf.model_name_) as e:
        clf.predict(X)
    assert isinstance(e.value, (ValueError, AttributeError))


def test_pickles_keep_the_model_name_and_address_not_the_data(cluster):
    X_train, X_test, y_train, _ = digits_split()
    clf = KNeighborsClassifier(n_neighbors=20, algorithm="kd_tree").fit(X_train, y_train)
    blob = pickle.dumps(clf)
    assert len(blob) < 4000  # the model's name, the address, the classes: no training rows
    back = pickle.loads(blob)
    assert back.model_name_ == clf.model_name_
    assert back.cluster_.address == cluster.address
    np.testing.assert_array_equal(back.predict(X_test), clf.predict(X_test))
    assert back.get_params() == clf.get_params()
    # Outside the `with cluster` block too: it remembers where its model lives.
    with knncluster.Cluster("127.0.0.1:1"):
        np.testing.assert_array_equal(back.predict(X_test[:5]), clf.predict(X_test[:5]))


def test_a_local_copy_restores_a_lost_model(cluster):
    X_train, X_test, y_train, _ = digits_split()
    clf = KNeighborsClassifier(n_neighbors=5).fit(X_train, y_train)
    want = clf.predict_proba(X_test)
    clf.keep_local_copy()
    blob = pickle.dumps(clf)
    assert len(blob) > X_train.nbytes  # the training rows travel in the pickle
    clf.delete_model()
    back = pickle.loads(blob)
    np.testing.assert_array_equal(back.predict_proba(X_test), want)  # re-imported on demand
    np.testing.assert_array_equal(back.kneighbors()[1], clf.kneighbors()[1])
    assert cluster.describe_model(clf.model_name_).rows == len(X_train)


def test_same_data_is_uploaded_once(cluster):
    X_train, _, y_train, _ = gauss()
    KNeighborsClassifier(n_neighbors=2).fit(X_train, y_train)
    before = {d.name for d in cluster.status().datasets}
    a = KNeighborsClassifier(n_neighbors=4).fit(X_train.copy(), list(y_train))
    b = KNeighborsRegressor(n_neighbors=4).fit(X_train, y_train)  # numeric labels: the same
    assert {d.name for d in cluster.status().datasets} == before
    assert a.dataset_name_ == b.dataset_name_ and a.model_name_ != b.model_name_


def test_large_inputs_go_in_chunks_with_a_progress_bar(cluster, monkeypatch):
    rng = np.random.RandomState(3)
    X = rng.normal(size=(3000, 8))
    y = rng.randint(0, 5, 3000)
    Q = rng.normal(size=(1500, 8))
    one = KNeighborsClassifier(n_neighbors=9, weights="distance").fit(X, y)
    want = (one.kneighbors(Q), one.predict(Q), one.predict_proba(Q), one.score(Q, y[:1500]))
    # Tiny messages: 40 rows per upload chunk and per query batch.
    monkeypatch.setattr(_cluster, "CHUNK_BYTES", 40 * 8 * 8)
    monkeypatch.setattr(_cluster, "PROGRESS_MIN_BYTES", 0)
    monkeypatch.setattr(knncluster._progress, "DEFAULT_DELAY", 0)
    monkeypatch.setenv("KNNCLUSTER_PROGRESS", "1")
    stream = io.StringIO()
    name = cluster.upload_dataset(X + 1.0, labels=y.astype(float), progress_stream=stream)
    assert "upload [" in stream.getvalue() and "100%" in stream.getvalue()
    assert [d.rows for d in cluster.status().datasets if d.name == name] == [3000]
    many = KNeighborsClassifier(n_neighbors=9, weights="distance").fit(X, y)
    got = (many.kneighbors(Q), many.predict(Q), many.predict_proba(Q), many.score(Q, y[:1500]))
    for a, b in zip(got[0], want[0]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])
    assert got[3] == want[3]  # scored from chunked predictions: the same accuracy


def test_sklearn_pipeline_cross_val_score_and_grid_search_take_our_estimators(cluster):
    X_train, X_test, y_train, y_test = gauss()
    ours = make_pipeline(StandardScaler(), KNeighborsClassifier())
    theirs = make_pipeline(StandardScaler(), skn.KNeighborsClassifier())
    ours.fit(X_train, y_train)
    theirs.fit(X_train, y_train)
    np.testing.assert_array_equal(ours.predict(X_test), theirs.predict(X_test))
    assert ours.score(X_test, y_test) == theirs.score(X_test, y_test)
    a = skms.cross_val_score(KNeighborsClassifier(n_neighbors=3), X_train, y_train, cv=3)
    b = skms.cross_val_score(skn.KNeighborsClassifier(n_neighbors=3), X_train, y_train, cv=3)
    np.testing.assert_array_equal(a, b)
    grid = {"n_neighbors": [1, 4], "weights": ["uniform", "distance"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g1 = skms.GridSearchCV(KNeighborsRegressor(), grid, cv=3).fit(X_train, y_train * 1.0)
        g2 = skms.GridSearchCV(skn.KNeighborsRegressor(), grid, cv=3).fit(X_train, y_train * 1.0)
    np.testing.assert_allclose(g1.cv_results_["mean_test_score"],
                               g2.cv_results_["mean_test_score"], rtol=1e-12)
    assert g1.best_params_ == g2.best_params_
    assert isinstance(g1.best_estimator_, KNeighborsRegressor)
