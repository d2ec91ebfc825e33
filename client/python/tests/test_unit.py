"""Tests of the Python client that need no cluster: scikit-learn's splitters reproduced
(train_test_split, KFold, StratifiedKFold, ParameterGrid), estimator conventions, scorers,
Cluster options (token metadata and TLS credentials), error mapping through a fake coordinator
served by grpcio in-process, and the progress bar."""
import io
import os
import pickle
import warnings
from concurrent import futures

import grpc
import numpy as np
import pytest
import sklearn
import sklearn.metrics
import sklearn.model_selection as skms
import sklearn.neighbors
from sklearn.base import clone as sk_clone

import knncluster
from knncluster import _cluster, _metrics, _progress
from knncluster.model_selection import KFold, ParameterGrid, StratifiedKFold, train_test_split
from knncluster.neighbors import _ClassLabels
from knncluster.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc


@pytest.fixture(autouse=True)
def no_cluster_env(monkeypatch):
    for name in ("KNNCLUSTER_ADDRESS", "KNNCLUSTER_TOKEN", "KNNCLUSTER_TLS", "KNNCLUSTER_TIMEOUT",
                 "KNNCLUSTER_PROGRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_cluster, "_default", None)


def assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def raises_same(f, g):
    """f and g raise the same exception type with the same message."""
    with pytest.raises(Exception) as ours:
        f()
    with pytest.raises(Exception) as theirs:
        g()
    assert type(ours.value).__name__ == type(theirs.value).__name__
    assert str(ours.value) == str(theirs.value)


# ---- train_test_split / KFold / StratifiedKFold / ParameterGrid --------------------------------

SIZES = [2, 3, 5, 10, 17, 64, 101, 1797]


@pytest.mark.parametrize("n", SIZES)
def test_train_test_split_equals_sklearn(n):
    X = np.arange(n * 3, dtype=float).reshape(n, 3)
    y = np.arange(n) % 3
    for seed in range(12):
        for kwargs in ({}, {"test_size": 0.2}, {"test_size": 0.33}, {"test_size": 1},
                       {"train_size": 0.5}, {"test_size": 0.25, "train_size": 0.5},
                       {"train_size": 1}, {"shuffle": False, "test_size": 0.3}):
            if n == 2 and kwargs.get("train_size") == 0.5 and "test_size" in kwargs:
                continue
            args = dict(kwargs, random_state=None if kwargs.get("shuffle") is False else seed)
            try:
                want = skms.train_test_split(X, y, list(y), **args)
            except ValueError:
                raises_same(lambda: train_test_split(X, y, list(y), **args),
                            lambda: skms.train_test_split(X, y, list(y), **args))
                continue
            got = train_test_split(X, y, list(y), **args)
            assert len(got) == len(want) == 6
            for a, b in zip(got, want):
                assert_same(a, b)


@pytest.mark.parametrize("n", [6, 10, 31, 100, 1797])
def test_stratified_train_test_split_equals_sklearn(n):
    rng = np.random.RandomState(n)
    for labels in (rng.randint(0, 3, n), np.array(["b", "a"])[rng.randint(0, 2, n)],
                   np.repeat([0, 1, 2], [n // 2, n // 3, n - n // 2 - n // 3])):
        for seed in range(8):
            for test_size in (0.5, 0.25, 3):
                args = dict(test_size=test_size, random_state=seed, stratify=labels)
                try:
                    want = skms.train_test_split(np.arange(n), labels, **args)
                except ValueError:
                    raises_same(lambda: train_test_split(np.arange(n), labels, **args),
                                lambda: skms.train_test_split(np.arange(n), labels, **args))
                    continue
                for a, b in zip(train_test_split(np.arange(n), labels, **args), want):
                    assert_same(a, b)


def test_train_test_split_takes_a_random_state_instance_and_rejects_bad_sizes():
    X = np.arange(40).reshape(20, 2)
    got = train_test_split(X, random_state=np.random.RandomState(3))
    want = skms.train_test_split(X, random_state=np.random.RandomState(3))
    for a, b in zip(got, want):
        assert_same(a, b)
    for kwargs in ({"test_size": 0.0}, {"test_size": 20}, {"test_size": 1.5},
                   {"train_size": 0.8, "test_size": 0.3}, {"test_size": "x"},
                   {"shuffle": False, "stratify": np.zeros(20)}):
        raises_same(lambda: train_test_split(X, **kwargs),
                    lambda: skms.train_test_split(X, **kwargs))
    raises_same(lambda: train_test_split(X, np.arange(19)),
                lambda: skms.train_test_split(X, np.arange(19)))
    raises_same(lambda: train_test_split(), lambda: skms.train_test_split())


def test_train_test_split_of_the_tutorial():
    from sklearn.datasets import load_digits
    digits = load_digits()
    got = train_test_split(digits.data, digits.target, test_size=0.2, random_state=1337)
    want = skms.train_test_split(digits.data, digits.target, test_size=0.2, random_state=1337)
    for a, b in zip(got, want):
        assert_same(a, b)


@pytest.mark.parametrize("n", [4, 7, 12, 50, 101])
def test_kfold_equals_sklearn(n):
    X = np.zeros((n, 2))
    for n_splits in (2, 3, 4, 5, 7):
        for shuffle, seeds in ((False, [None]), (True, [None, 0, 1, 7, 42, 1337])):
            for seed in seeds:
                if seed is None and shuffle:
                    continue
                ours = KFold(n_splits, shuffle=shuffle, random_state=seed)
                theirs = skms.KFold(n_splits, shuffle=shuffle, random_state=seed)
                assert repr(ours) == repr(theirs)
                assert ours.get_n_splits() == theirs.get_n_splits()
                if n_splits > n:
                    raises_same(lambda: list(ours.split(X)), lambda: list(theirs.split(X)))
                    continue
                for (a_tr, a_te), (b_tr, b_te) in zip(ours.split(X), theirs.split(X),
                                                      strict=True):
                    assert_same(a_tr, b_tr)
                    assert_same(a_te, b_te)


@pytest.mark.parametrize("n", [10, 23, 60, 150])
def test_stratified_kfold_equals_sklearn(n):
    rng = np.random.RandomState(n)
    X = np.zeros((n, 2))
    for y in (rng.randint(0, 2, n), rng.randint(0, 4, n), np.array(["x", "y", "z"])[
            rng.randint(0, 3, n)], np.repeat([5, -1], [n - 3, 3]), rng.randint(0, 3, n) * 1.0):
        for n_splits in (2, 3, 5):
            for shuffle, seed in ((False, None), (True, 0), (True, 5), (True, 1337)):
                ours = StratifiedKFold(n_splits, shuffle=shuffle, random_state=seed)
                theirs = skms.StratifiedKFold(n_splits, shuffle=shuffle, random_state=seed)
                assert repr(ours) == repr(theirs)
                try:
                    list(theirs.split(X, y))
                except ValueError:
                    raises_same(lambda: list(ours.split(X, y)), lambda: list(theirs.split(X, y)))
                    continue
                with warnings.catch_warnings(record=True) as w_ours:
                    warnings.simplefilter("always")
                    got = list(ours.split(X, y))
                with warnings.catch_warnings(record=True) as w_theirs:
                    warnings.simplefilter("always")
                    want = list(theirs.split(X, y))
                assert [str(w.message) for w in w_ours] == [str(w.message) for w in w_theirs]
                assert len(got) == len(want)
                for (a_tr, a_te), (b_tr, b_te) in zip(got, want):
                    assert_same(a_tr, b_tr)
                    assert_same(a_te, b_te)


def test_kfold_errors_equal_sklearn():
    for args, kwargs in (((1,), {}), ((2.5,), {}), ((3,), {"shuffle": 1}),
                         ((3,), {"random_state": 0})):
        raises_same(lambda: KFold(*args, **kwargs), lambda: skms.KFold(*args, **kwargs))
        raises_same(lambda: StratifiedKFold(*args, **kwargs),
                    lambda: skms.StratifiedKFold(*args, **kwargs))
    X = np.zeros((6, 1))
    for y in (np.array([0.5, 1, 2, 3, 4, 5]), np.array([0, 0, 0, 1, 1, 2])):
        raises_same(lambda: list(StratifiedKFold(4).split(X, y)),
                    lambda: list(skms.StratifiedKFold(4).split(X, y)))


def test_parameter_grid_equals_sklearn():
    for grid in ({"n_neighbors": range(2, 20, 2), "p": [1, 2, 3]},
                 [{"weights": ["uniform", "distance"], "n_neighbors": np.array([1, 5])},
                  {"p": [1.5]}, {}],
                 {"algorithm": ("kd_tree", "brute")}):
        assert list(ParameterGrid(grid)) == list(skms.ParameterGrid(grid))
        assert len(ParameterGrid(grid)) == len(skms.ParameterGrid(grid))
    for grid in ({"p": 2}, {"p": []}, {"p": "abc"}, [1], 3, {"p": np.zeros((2, 2))}):
        raises_same(lambda: ParameterGrid(grid), lambda: skms.ParameterGrid(grid))


# ---- estimator conventions ---------------------------------------------------------------------

ESTIMATORS = [(knncluster.KNeighborsClassifier, sklearn.neighbors.KNeighborsClassifier),
              (knncluster.KNeighborsRegressor, sklearn.neighbors.KNeighborsRegressor),
              (knncluster.NearestNeighbors, sklearn.neighbors.NearestNeighbors)]


@pytest.mark.parametrize("ours,theirs", ESTIMATORS)
def test_parameters_and_defaults_are_sklearns(ours, theirs):
    got = ours().get_params()
    want = theirs().get_params()
    assert got.pop("cluster") is None
    assert got == want
    assert ours._get_param_names() == sorted(list(want) + ["cluster"])


@pytest.mark.parametrize("ours,theirs", ESTIMATORS)
def test_get_set_params_clone_and_pickle_without_a_cluster(ours, theirs):
    # No KNNCLUSTER_ADDRESS and an unreachable cluster: nothing here may connect.
    est = ours(n_neighbors=7, algorithm="kd_tree", cluster="127.0.0.1:1")
    assert est.get_params()["n_neighbors"] == 7
    assert est.set_params(n_neighbors=3, p=1) is est
    assert est.n_neighbors == 3 and est.p == 1
    with pytest.raises(ValueError, match="Invalid parameter 'nope'"):
        est.set_params(nope=1)
    est.set_params(n_neighbors="bad")  # stored, checked at fit (as scikit-learn 1.2 does)
    est.set_params(n_neighbors=3)
    for c in (sk_clone(est), knncluster.clone(est), pickle.loads(pickle.dumps(est))):
        assert type(c) is ours
        assert c.get_params() == est.get_params()
    from sklearn.utils.estimator_checks import (check_get_params_invariance,
                                                check_no_attributes_set_in_init,
                                                check_parameters_default_constructible)
    check_get_params_invariance(ours.__name__, est)
    check_no_attributes_set_in_init(ours.__name__, ours())
    check_parameters_default_constructible(ours.__name__, ours())
    assert repr(ours(n_neighbors=20, algorithm="kd_tree")) == repr(
        theirs(n_neighbors=20, algorithm="kd_tree"))


def test_estimator_type_and_sklearn_helpers():
    from sklearn.base import is_classifier, is_regressor
    assert is_classifier(knncluster.KNeighborsClassifier())
    assert is_regressor(knncluster.KNeighborsRegressor())
    gs = knncluster.GridSearchCV(knncluster.KNeighborsClassifier(), {"n_neighbors": [1]})
    assert is_classifier(gs)
    c = sk_clone(gs)
    assert c.get_params(deep=False)["param_grid"] == {"n_neighbors": [1]}
    assert gs.get_params()["estimator__n_neighbors"] == 5
    gs.set_params(estimator__n_neighbors=3, cv=4, n_jobs=-1)
    assert gs.estimator.n_neighbors == 3 and gs.cv == 4


@pytest.mark.parametrize("ours,theirs", ESTIMATORS)
def test_unfitted_methods_raise_sklearns_not_fitted_error(ours, theirs):
    from sklearn.exceptions import NotFittedError
    assert knncluster.NotFittedError is NotFittedError
    est = ours()
    calls = [lambda: est.kneighbors([[0.0]])]
    if ours is not knncluster.NearestNeighbors:
        calls += [lambda: est.predict([[0.0]]), lambda: est.score([[0.0]], [0])]
    if ours is knncluster.KNeighborsClassifier:
        calls.append(lambda: est.predict_proba([[0.0]]))
    for call in calls:
        with pytest.raises(NotFittedError, match="is not fitted yet"):
            call()
    gs = knncluster.GridSearchCV(ours(), {"n_neighbors": [1]}) if ours is not \
        knncluster.NearestNeighbors else None
    if gs is not None:
        with pytest.raises(NotFittedError):
            gs.predict([[0.0]])


def test_fit_without_a_cluster_says_how_to_name_one():
    with pytest.raises(ValueError, match="KNNCLUSTER_ADDRESS"):
        knncluster.KNeighborsClassifier().fit([[0.0], [1.0]], [0, 1])


@pytest.mark.parametrize("params,match", [
    ({"n_neighbors": 0}, "'n_neighbors' parameter of KNeighborsClassifier must be an int"),
    ({"n_neighbors": 2.5}, "'n_neighbors' parameter"),
    ({"weights": "linear"}, "'weights' parameter"),
    ({"weights": lambda d: d}, "no callable"),
    ({"algorithm": "hnsw"}, "'algorithm' parameter"),
    ({"leaf_size": 0}, "'leaf_size' parameter"),
    ({"p": 0.5}, "'p' parameter"),
    ({"metric": "cosine"}, "Minkowski distances only"),
    ({"metric_params": {"w": 1}}, "metric_params"),
    ({"n_jobs": "all"}, "'n_jobs' parameter"),
])
def test_bad_parameters_raise_value_errors_before_any_call(params, match):
    # The cluster address is unreachable: the checks come first.
    est = knncluster.KNeighborsClassifier(cluster="127.0.0.1:1", **params)
    with pytest.raises(ValueError, match=match):
        est.fit([[0.0], [1.0]], [0, 1])


@pytest.mark.parametrize("X,match", [
    ([1.0, 2.0], "Expected 2D array, got 1D array"),
    ([[np.nan], [1.0]], "Input X contains NaN"),
    ([[np.inf], [1.0]], "Input X contains infinity"),
    (np.zeros((0, 2)), "0 sample"),
    ([["a"], ["b"]], "could not convert string to float"),
])
def test_bad_input_raises_sklearns_value_errors(X, match):
    est = knncluster.KNeighborsClassifier(n_neighbors=1, cluster="127.0.0.1:1")
    with pytest.raises(ValueError, match=match):
        est.fit(X, [0, 1][:len(X)] if len(X) else [])
    with pytest.raises(ValueError, match="Unknown label type: 'continuous'"):
        est.fit([[0.0], [1.0]], [0.5, 1.0])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit([[0.0], [1.0]], [0, 1, 1])


# ---- labels ------------------------------------------------------------------------------------

def test_class_labels_travel_as_values_strings_or_codes():
    ints = _ClassLabels(np.array([3, -1, 3, 7]))
    assert ints.mode == "values" and ints.numeric.tolist() == [3.0, -1.0, 3.0, 7.0]
    strs = _ClassLabels(np.array(["b", "a", "b"], dtype=object))
    assert strs.mode == "strings" and strs.strings == ["b", "a", "b"]
    assert strs.classes.tolist() == ["a", "b"]
    big = _ClassLabels(np.array([2 ** 60, 1, 2 ** 60 + 1]))
    assert big.mode == "codes" and big.numeric.tolist() == [1.0, 0.0, 2.0]
    info = coordinator_pb2.ModelInfo(classes=[0.0, 1.0, 2.0])
    big.bind(info)
    assert big.decode(np.array([2.0, 0.0])).tolist() == [2 ** 60 + 1, 1]
    assert big.server_labels(np.array([1, 5, 2 ** 60])).tolist() == [0.0, -1.0, 1.0]
    strs.bind(coordinator_pb2.ModelInfo(class_names=["a", "b"]))
    assert strs.decode(np.array([1.0, 0.0])).tolist() == ["b", "a"]
    assert strs.server_labels(np.array(["b", "zz"])).tolist() == [1.0, -1.0]


# ---- scorers -----------------------------------------------------------------------------------

def test_scorers_equal_sklearns_bit_for_bit():
    rng = np.random.RandomState(0)
    for trial in range(20):
        n = rng.randint(2, 60)
        t = rng.randint(0, 4, n)
        p = np.where(rng.rand(n) < 0.6, t, rng.randint(0, 5, n))
        w = rng.rand(n) if trial % 2 else None
        assert _metrics.accuracy_score(t, p, w) == sklearn.metrics.accuracy_score(t, p,
                                                                                  sample_weight=w)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert _metrics.balanced_accuracy_score(t, p, w) == \
                sklearn.metrics.balanced_accuracy_score(t, p, sample_weight=w)
            assert _metrics.f1_macro_score(t, p, w) == sklearn.metrics.f1_score(
                t, p, average="macro", sample_weight=w)
        yt, yp = rng.randn(n) * 10, rng.randn(n) * 10
        assert _metrics.r2_score(yt, yp, w) == sklearn.metrics.r2_score(yt, yp, sample_weight=w)
        assert _metrics.neg_mean_squared_error(yt, yp, w) == \
            -sklearn.metrics.mean_squared_error(yt, yp, sample_weight=w)
    assert _metrics.r2_score(np.ones(3), np.ones(3)) == sklearn.metrics.r2_score(np.ones(3),
                                                                                np.ones(3))
    assert _metrics.r2_score(np.ones(3), np.zeros(3)) == sklearn.metrics.r2_score(np.ones(3),
                                                                                 np.zeros(3))


# ---- Cluster options ---------------------------------------------------------------------------

def test_cluster_address_token_and_tls_from_arguments_and_environment(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="KNNCLUSTER_ADDRESS"):
        knncluster.Cluster()
    c = knncluster.Cluster("10.0.0.1:5000", token="s3cret", tls=True, timeout=7)
    assert (c.address, c.token, c.tls, c.timeout) == ("10.0.0.1:5000", "s3cret", True, 7.0)
    assert c.metadata() == (("authorization", "Bearer s3cret"),)
    assert "s3cret" not in repr(c)
    assert knncluster.Cluster("h:1").metadata() == ()

    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("KNNCLUSTER_ADDRESS", "env-host:6000")
    monkeypatch.setenv("KNNCLUSTER_TOKEN", "envtok")
    monkeypatch.setenv("KNNCLUSTER_TLS", str(ca))
    monkeypatch.setenv("KNNCLUSTER_TIMEOUT", "12.5")
    e = knncluster.Cluster()
    assert (e.address, e.token, e.tls, e.timeout) == ("env-host:6000", "envtok", str(ca), 12.5)
    # The environment's token and TLS go with the environment's address only.
    other = knncluster.Cluster("other:1")
    assert other.token is None and other.tls is None
    assert knncluster.Cluster("env-host:6000").token == "envtok"
    assert knncluster.Cluster(tls=False).tls is False
    monkeypatch.setenv("KNNCLUSTER_TLS", "1")
    assert knncluster.Cluster().tls is True
    monkeypatch.setenv("KNNCLUSTER_TLS", "0")
    assert knncluster.Cluster().tls is None
    # An unpickled Cluster carries no token but takes the environment's for its address.
    monkeypatch.setenv("KNNCLUSTER_TOKEN", "later")
    back = pickle.loads(pickle.dumps(c))
    assert back.address == c.address and back.tls is True and back.token is None
    assert b"s3cret" not in pickle.dumps(c)
    assert pickle.loads(pickle.dumps(knncluster.Cluster())).token == "later"
    for bad in ({"address": ""}, {"address": "h:1", "tls": 3}, {"address": "h:1", "token": ""}):
        with pytest.raises(ValueError):
            knncluster.Cluster(**bad)


def test_tls_options_build_ssl_channel_credentials(monkeypatch, tmp_path):
    calls = []
    real = grpc.ssl_channel_credentials
    monkeypatch.setattr(grpc, "ssl_channel_credentials",
                        lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    channels = []
    monkeypatch.setattr(grpc, "secure_channel",
                        lambda target, creds, options=None: channels.append((target, creds))
                        or grpc.insecure_channel(target))
    assert knncluster.Cluster("h:1").channel_credentials() is None
    assert knncluster.Cluster("h:1", tls=False).channel_credentials() is None
    assert isinstance(knncluster.Cluster("h:1", tls=True).channel_credentials(),
                      grpc.ChannelCredentials)
    assert calls[-1] == ((), {})  # the system's roots
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    path = tmp_path / "ca.pem"
    path.write_bytes(pem)
    knncluster.Cluster("h:1", tls=str(path)).channel_credentials()
    assert calls[-1] == ((), {"root_certificates": pem})
    knncluster.Cluster("h:1", tls=path).channel_credentials()  # a PathLike
    assert calls[-1] == ((), {"root_certificates": pem})
    knncluster.Cluster("h:1", tls=pem).channel_credentials()
    assert calls[-1] == ((), {"root_certificates": pem})
    # A TLS cluster opens a secure channel; a plaintext one does not.
    knncluster.Cluster("tls-host:1", tls=True)._get_stub()
    knncluster.Cluster("plain-host:1")._get_stub()
    assert [t for t, _ in channels] == ["tls-host:1"]


def test_default_cluster_resolution(monkeypatch):
    a, b = knncluster.Cluster("a:1"), knncluster.Cluster("b:1")
    resolve = _cluster.resolve_cluster
    with pytest.raises(ValueError, match="no cluster to fit on"):
        resolve(None)
    monkeypatch.setenv("KNNCLUSTER_ADDRESS", "env:1")
    assert resolve(None).address == "env:1"
    assert resolve(None) is resolve(None)  # one Cluster (one channel) per address
    knncluster.set_default_cluster(a)
    assert resolve(None) is a
    with b:
        assert resolve(None) is b
        with a:
            assert resolve(None) is a
        assert resolve(None) is b
    assert resolve(None) is a
    assert resolve(b) is b and resolve("c:1").address == "c:1"
    knncluster.set_default_cluster(None)
    assert resolve(None).address == "env:1"
    with pytest.raises(ValueError):
        resolve(42)


# ---- a fake coordinator: metadata and error mapping through real gRPC --------------------------

class FakeCoordinator(coordinator_pb2_grpc.CoordinatorServicer):
    def __init__(self):
        self.metadata = []
        self.error = None

    def _fail(self, context):
        self.metadata.append(dict(context.invocation_metadata()))
        if self.error is not None:
            context.abort(*self.error)

    def GetClusterStatus(self, request, context):
        self._fail(context)
        return coordinator_pb2.ClusterStatus()

    def Predict(self, request, context):
        self._fail(context)
        return coordinator_pb2.PredictResponse(predictions=[1.0] * request.queries.matrix.rows)


@pytest.fixture
def fake():
    servicer = FakeCoordinator()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, "127.0.0.1:%d" % port
    server.stop(None)


def test_every_call_carries_the_bearer_token(fake):
    servicer, address = fake
    knncluster.Cluster(address, token="tok-123").status()
    knncluster.Cluster(address).status()
    assert servicer.metadata[0]["authorization"] == "Bearer tok-123"
    assert "authorization" not in servicer.metadata[1]


@pytest.mark.parametrize("code,expected,bases", [
    (grpc.StatusCode.INVALID_ARGUMENT, knncluster.InvalidArgumentError, (ValueError,)),
    (grpc.StatusCode.NOT_FOUND, knncluster.ModelNotFoundError,
     (knncluster.NotFittedError, ValueError, AttributeError)),
    (grpc.StatusCode.UNAVAILABLE, knncluster.ClusterUnavailableError, (ConnectionError,)),
    (grpc.StatusCode.DEADLINE_EXCEEDED, knncluster.ClusterTimeoutError, (TimeoutError,)),
    (grpc.StatusCode.FAILED_PRECONDITION, knncluster.ClusterError, (RuntimeError,)),
    (grpc.StatusCode.INTERNAL, knncluster.ClusterError, (RuntimeError,)),
])
def test_grpc_errors_become_the_exceptions_sklearn_users_expect(fake, code, expected, bases):
    servicer, address = fake
    servicer.error = (code, "queries: expected 64 features, got 63")
    c = knncluster.Cluster(address)
    with pytest.raises(expected) as e:
        c.predict("some-model", np.zeros((2, 63)))
    assert isinstance(e.value, bases) and isinstance(e.value, knncluster.ClusterError)
    assert "queries: expected 64 features, got 63" in str(e.value)
    assert e.value.code == code.name
    if code != grpc.StatusCode.NOT_FOUND:
        return
    # NOT_FOUND of something other than a model is a plain ClusterError.
    with pytest.raises(knncluster.ClusterError) as e:
        c.status()
    assert not isinstance(e.value, knncluster.NotFittedError)


def test_an_unreachable_coordinator_is_a_connection_error():
    c = knncluster.Cluster("127.0.0.1:1", timeout=5)
    with pytest.raises(ConnectionError, match="coordinator 127.0.0.1:1"):
        c.status()


def test_query_batches_split_and_keep_their_order(fake, monkeypatch):
    servicer, address = fake
    monkeypatch.setattr(_cluster, "CHUNK_BYTES", 8 * 3 * 10)  # 10 rows of 3 per message
    c = knncluster.Cluster(address)
    out = c.predict("m", np.zeros((95, 3)))
    assert out.shape == (95,)
    assert len(servicer.metadata) == 10


def test_wire_matrix_bytes_equal_the_protobuf_encoding():
    block = np.arange(12, dtype=float).reshape(4, 3) / 7
    m = common_pb2.Matrix.FromString(_cluster._matrix_bytes(block))
    assert (m.rows, m.cols) == (4, 3) and list(m.values) == block.ravel().tolist()
    assert m == common_pb2.Matrix(rows=4, cols=3, values=block.ravel().tolist())
    empty = common_pb2.Matrix.FromString(_cluster._matrix_bytes(np.zeros((0, 5))))
    assert (empty.rows, empty.cols, len(empty.values)) == (0, 5, 0)
    big = 300
    assert _cluster._varint(big) == b"\xac\x02"


def test_dataset_names_are_content_hashes():
    X = np.arange(6, dtype=float).reshape(3, 2)
    name = _cluster.dataset_name(X, labels=np.array([0.0, 1.0, 1.0]))
    assert name.startswith("py-") and len(name) == 43
    assert name == _cluster.dataset_name(X.copy(), labels=np.array([0, 1, 1]))
    assert name != _cluster.dataset_name(X, labels=np.array([0.0, 1.0, 2.0]))
    assert name != _cluster.dataset_name(X)
    assert name != _cluster.dataset_name(X, string_labels=["0", "1", "1"])
    assert _cluster.dataset_name(X) != _cluster.dataset_name(X, feature_names=["a", "b"])


# ---- progress bar ------------------------------------------------------------------------------

class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_draws_on_a_terminal_only(monkeypatch):
    out = Tty()
    with _progress.Progress("upload", 100, unit="MB", stream=out, delay=0) as bar:
        bar.update(50)
    assert "upload [" in out.getvalue() and "100%" in out.getvalue()
    assert out.getvalue().endswith("\n")
    plain = io.StringIO()
    with _progress.Progress("upload", 100, stream=plain, delay=0) as bar:
        bar.update(50)
    assert plain.getvalue() == ""
    slow = Tty()
    with _progress.Progress("upload", 100, stream=slow, delay=60) as bar:
        bar.update(50)  # shorter than its delay: nothing drawn
    assert slow.getvalue() == ""
    monkeypatch.setenv("KNNCLUSTER_PROGRESS", "0")
    off = Tty()
    with _progress.Progress("x", 1, stream=off, delay=0) as bar:
        bar.update(1)
    assert off.getvalue() == ""
    monkeypatch.setenv("KNNCLUSTER_PROGRESS", "1")
    forced = io.StringIO()
    with _progress.Progress("x", 4, stream=forced, delay=0) as bar:
        bar.update(1, extra="eta 3s")
    assert "25%" in forced.getvalue() and "eta 3s" in forced.getvalue()


def test_package_imports_from_the_build_tree():
    assert os.path.isfile(os.path.join(os.path.dirname(knncluster.__file__), "v1",
                                       "coordinator_pb2_grpc.py"))
    assert knncluster.__version__
    assert sklearn.__version__ == "1.2.1"


# ---- channel limits: retries of idempotent calls only, keepalive, message size -----------------

class FlakyCoordinator(coordinator_pb2_grpc.CoordinatorServicer):
    """Answers UNAVAILABLE to the first `failures` calls of each method."""

    def __init__(self, failures):
        self.failures = failures
        self.calls = {}

    def _count(self, name, context):
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.calls[name] <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "flaky")

    def Predict(self, request, context):
        self._count("Predict", context)
        return coordinator_pb2.PredictResponse(predictions=[1.0] * request.queries.matrix.rows)

    def Fit(self, request, context):
        self._count("Fit", context)
        return coordinator_pb2.ModelInfo(name=request.model)


@pytest.fixture
def flaky():
    servicer = FlakyCoordinator(failures=2)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, "127.0.0.1:%d" % port
    server.stop(None)


def test_idempotent_calls_are_retried_and_fit_is_not(flaky):
    servicer, address = flaky
    c = knncluster.Cluster(address, timeout=20)
    assert len(c.predict("m", np.zeros((3, 4)))) == 3
    assert servicer.calls["Predict"] == 3  # two UNAVAILABLE, retried with backoff
    with pytest.raises(knncluster.ClusterUnavailableError):
        c.call("Fit", coordinator_pb2.FitRequest(model="m", dataset="d"))
    assert servicer.calls["Fit"] == 1  # never retried


def test_channel_options_set_limits_keepalive_and_retry_only_reads():
    import json
    options = dict(_cluster.channel_options())
    assert options["grpc.max_send_message_length"] == 64 << 20
    assert options["grpc.max_receive_message_length"] == 64 << 20
    assert options["grpc.keepalive_time_ms"] == 20000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    config = json.loads(options["grpc.service_config"])
    methods = {n["method"] for mc in config["methodConfig"] for n in mc["name"]}
    assert {"Predict", "KNeighbors", "Score"} <= methods
    assert not methods & {"Fit", "UploadDataset", "ImportModel", "StartGridSearch",
                          "DeleteModel", "DeleteDataset", "SplitDataset"}
    policy = config["methodConfig"][0]["retryPolicy"]
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
