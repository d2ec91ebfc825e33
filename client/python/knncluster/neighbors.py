"""KNeighborsClassifier, KNeighborsRegressor and NearestNeighbors on a knncluster cluster, with
scikit-learn 1.2's parameters, defaults, methods and fitted attributes.

``fit`` uploads the training rows (once: a dataset is named by a hash of its content) and fits a
model named "py-<uuid>" on the cluster; the estimator keeps that name and its cluster's address,
and every method after it is a call on that model. Neighbours are exact and ordered by
(distance, training index), so answers are scikit-learn's (up to the order scikit-learn leaves
arbitrary among equal distances). Models stay on the cluster until deleted
(``estimator.delete_model()`` or ``Cluster.delete_model``).

Differences from scikit-learn: metrics are Minkowski only (``metric`` 'minkowski' with any p >= 1
or p=inf, 'euclidean', 'manhattan', 'chebyshev' and their aliases); ``weights`` is 'uniform' or
'distance' (no callable); targets are one column; ``n_jobs`` is accepted and ignored (the cluster
decides). The extra parameter ``cluster`` names the cluster (see knncluster.Cluster).
"""
import numbers

import numpy as np

from knncluster.v1 import common_pb2

from . import _metrics
from ._base import BaseEstimator
from ._cluster import resolve_cluster
from ._validation import (check_consistent_length, check_is_fitted, check_n_features, check_X,
                          column_or_1d, feature_names_of, is_int, is_real, param_error)
from .exceptions import ModelNotFoundError

_ALGORITHMS = {"auto": common_pb2.ALGORITHM_AUTO, "kd_tree": common_pb2.ALGORITHM_KD_TREE,
               "ball_tree": common_pb2.ALGORITHM_BALL_TREE, "brute": common_pb2.ALGORITHM_BRUTE}
# metric name -> the Minkowski p it means (None: the `p` parameter's).
_METRICS = {"minkowski": None, "euclidean": 2.0, "l2": 2.0, "manhattan": 1.0, "cityblock": 1.0,
            "l1": 1.0, "chebyshev": np.inf, "infinity": np.inf}
_MAX_EXACT_INT = 2 ** 53


def minkowski_p(owner, metric, p, metric_params):
    """The Minkowski order the parameters mean (np.inf for Chebyshev)."""
    if not isinstance(metric, str) or metric not in _METRICS:
        raise param_error(owner, "metric", metric,
                          "a str among %s (the cluster computes Minkowski distances only)"
                          % sorted(_METRICS))
    if metric_params is not None:
        if not isinstance(metric_params, dict) or set(metric_params) - {"p"}:
            raise param_error(owner, "metric_params", metric_params,
                              "None or {'p': value} (the cluster takes no other metric "
                              "parameters)")
        if "p" in metric_params:
            p = metric_params["p"]
    fixed = _METRICS[metric]
    if fixed is not None:
        return fixed
    if not is_real(p) or not p >= 1:
        raise param_error(owner, "p", p, "a float in the range [1, inf]")
    return float(p)


def effective_metric(metric, p, metric_params):
    """scikit-learn 1.2.1's effective_metric_ and effective_metric_params_ (KNeighborsMixin._fit):
    'minkowski' becomes 'manhattan', 'euclidean' or 'chebyshev' for p = 1, 2, inf, and keeps
    {'p': p, 'w': None} otherwise; any other metric name stays as given."""
    params = dict(metric_params) if metric_params is not None else {}
    if metric != "minkowski":
        return metric, params
    p = params.pop("p", p)
    w = params.pop("w", None)
    if p == 1 and w is None:
        return "manhattan", params
    if p == 2 and w is None:
        return "euclidean", params
    if p == np.inf and w is None:
        return "chebyshev", params
    params["p"] = p
    params["w"] = w
    return "minkowski", params


def neighbors_params(owner, n_neighbors, weights, algorithm, leaf_size, p, metric,
                     metric_params):
    """The wire's NeighborsParams for scikit-learn's parameters, checked as scikit-learn 1.2
    checks them (InvalidParameterError, a ValueError)."""
    if not is_int(n_neighbors) or n_neighbors < 1:
        raise param_error(owner, "n_neighbors", n_neighbors, "an int in the range [1, inf)")
    if weights is None:
        weights = "uniform"
    if weights not in ("uniform", "distance"):
        raise param_error(owner, "weights", weights,
                          "a str among {'uniform', 'distance'} (the cluster takes no callable)")
    if not isinstance(algorithm, str) or algorithm not in _ALGORITHMS:
        raise param_error(owner, "algorithm", algorithm,
                          "a str among {'auto', 'ball_tree', 'kd_tree', 'brute'}")
    if not is_int(leaf_size) or leaf_size < 1:
        raise param_error(owner, "leaf_size", leaf_size, "an int in the range [1, inf)")
    order = minkowski_p(owner, metric, p, metric_params)
    out = common_pb2.NeighborsParams(
        n_neighbors=int(n_neighbors), algorithm=_ALGORITHMS[algorithm], leaf_size=int(leaf_size),
        weights=(common_pb2.WEIGHTS_DISTANCE if weights == "distance"
                 else common_pb2.WEIGHTS_UNIFORM))
    if np.isinf(order):
        out.metric = common_pb2.METRIC_CHEBYSHEV
    else:
        out.metric = common_pb2.METRIC_MINKOWSKI
        out.p = order
    return out


class _ClassLabels:
    """How a classifier's labels travel and come back. ``classes`` is np.unique(y), as
    scikit-learn's classes_. Numbers that doubles hold exactly go as numeric labels, strings as
    string labels (the server sorts them as numpy does); anything else as codes into classes."""

    def __init__(self, y):
        y = np.asarray(y)
        self.classes, codes = np.unique(y, return_inverse=True)
        self.numeric = self.strings = None
        if y.dtype.kind in "biuf" and np.all(np.abs(self.classes.astype(np.float64))
                                             < _MAX_EXACT_INT):
            self.mode = "values"
            self.numeric = y.astype(np.float64)
        elif y.dtype.kind in "U" or (y.dtype.kind == "O" and all(isinstance(c, str)
                                                                  for c in self.classes)):
            self.mode = "strings"
            self.strings = [str(v) for v in y]
        else:
            self.mode = "codes"
            self.numeric = codes.astype(np.float64)

    def bind(self, info):
        """Maps the model's classes (ModelInfo.classes / class_names) onto ours, and forgets the
        training labels (the model on the cluster has them; pickles stay small)."""
        self.numeric = self.strings = None
        if self.mode == "strings":
            index = {str(c): i for i, c in enumerate(self.classes)}
            self.class_map = np.array([index[n] for n in info.class_names], dtype=np.int64)
            self.server_classes = None
        else:
            self.server_classes = np.array(info.classes, dtype=np.float64)
            ours = (self.classes.astype(np.float64) if self.mode == "values"
                    else np.arange(len(self.classes), dtype=np.float64))
            self.class_map = np.searchsorted(ours, self.server_classes)
        if len(self.class_map) != len(self.classes):
            raise RuntimeError("the model's %d classes are not the %d of y" % (
                len(self.class_map), len(self.classes)))
        self.inverse_map = np.empty_like(self.class_map)
        self.inverse_map[self.class_map] = np.arange(len(self.class_map))
        return self

    def decode(self, predictions):
        """The model's predictions (labels, or codes into class_names) as our labels."""
        if self.mode == "strings":
            j = predictions.astype(np.int64)
        else:
            j = np.searchsorted(self.server_classes, predictions)
        return self.classes[self.class_map[j]]

    def server_labels(self, y):
        """y as the model's label values (-1 for a label it does not know), or None when y
        cannot be compared with the classes."""
        y = np.asarray(y)
        if self.mode == "values" and y.dtype.kind in "biuf":
            return y.astype(np.float64)
        try:
            idx = np.clip(np.searchsorted(self.classes, y), 0, len(self.classes) - 1)
            known = self.classes[idx] == y
        except (TypeError, ValueError):
            return None
        if not isinstance(known, np.ndarray) or known.shape != y.shape:
            return None
        server = self.inverse_map[idx]
        if self.mode == "values":
            values = self.server_classes[server]
        else:
            values = server.astype(np.float64)
        return np.where(known, values, -1.0)


class _NeighborsBase(BaseEstimator):
    """What the three estimators share: parameters on the wire, the cluster, the fitted model."""

    _task = None

    def _wire_params(self):
        return neighbors_params(type(self).__name__, self.n_neighbors,
                                getattr(self, "weights", "uniform"), self.algorithm,
                                self.leaf_size, self.p, self.metric, self.metric_params)

    def _check_n_jobs(self):
        if self.n_jobs is not None and not is_int(self.n_jobs):
            raise param_error(type(self).__name__, "n_jobs", self.n_jobs, "an int or None")

    def _fit_on_cluster(self, X, labels=None, string_labels=None, threshold=None):
        """Uploads X (and labels), fits the model, and sets the fitted attributes it shares."""
        params = self._wire_params()
        self._check_n_jobs()
        names = feature_names_of(X)
        X = check_X(X, type(self).__name__)
        check_consistent_length(X, labels if labels is not None else string_labels)
        cluster = resolve_cluster(self.cluster)
        dataset = cluster.upload_dataset(
            X, labels=labels, string_labels=string_labels,
            feature_names=None if names is None else [str(n) for n in names])
        info = cluster.fit(dataset, self._task, params, threshold=threshold)
        self._set_fitted(cluster, info, dataset, X.shape, names)
        return info

    def _set_fitted(self, cluster, info, dataset, shape, feature_names):
        for attr in ("feature_names_in_", "model_bytes_"):
            self.__dict__.pop(attr, None)
        self.cluster_ = cluster
        self.model_name_ = info.name
        self.dataset_name_ = dataset
        self.n_features_in_ = int(shape[1])
        self.n_samples_fit_ = int(shape[0])
        if feature_names is not None:
            self.feature_names_in_ = feature_names
        self.effective_metric_, self.effective_metric_params_ = effective_metric(
            self.metric, self.p, self.metric_params)

    def _cluster_for_calls(self):
        """The fitted model's cluster: the ``cluster`` parameter when set (it may have been
        changed since fit, e.g. after unpickling elsewhere), else the one fitted on."""
        return self.cluster_ if self.cluster is None else resolve_cluster(self.cluster)

    def _on_model(self, call):
        """Runs ``call(cluster, model)``; when the model is missing and the estimator holds a
        local copy (keep_local_copy), restores the model and runs it again."""
        cluster = self._cluster_for_calls()
        try:
            return call(cluster, self.model_name_)
        except ModelNotFoundError:
            data = getattr(self, "model_bytes_", None)
            if data is None:
                raise
            cluster.import_model(self.model_name_, data)
            return call(cluster, self.model_name_)

    def _queries(self, X):
        check_is_fitted(self)
        X = check_X(X, type(self).__name__)
        check_n_features(self, X)
        return X

    def keep_local_copy(self):
        """Downloads the fitted model (training rows, labels, parameters) into the estimator, as
        ``model_bytes_``: a pickle then carries it, and the estimator restores its model on a
        cluster that does not have it (another cluster, or one that lost or deleted it).
        Returns self."""
        check_is_fitted(self)
        self.model_bytes_ = self._on_model(lambda c, m: c.export_model(m))
        return self

    def delete_model(self):
        """Deletes the fitted model from the cluster (the estimator keeps its local copy, if
        any). Models otherwise stay on the cluster, so that pickles keep working."""
        check_is_fitted(self)
        self._cluster_for_calls().delete_model(self.model_name_)

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """scikit-learn's kneighbors: (distances, indices) of the nearest training rows, each
        row ordered by (distance, training index). X=None: the training rows, each without
        itself (scikit-learn's rule)."""
        check_is_fitted(self)
        if n_neighbors is None:
            n_neighbors = self.n_neighbors
        elif not isinstance(n_neighbors, numbers.Integral):
            raise TypeError("n_neighbors does not take %s value, enter integer value"
                            % type(n_neighbors))
        elif n_neighbors <= 0:
            raise ValueError("Expected n_neighbors > 0. Got %d" % n_neighbors)
        n_neighbors = int(n_neighbors)
        query_is_train = X is None
        if query_is_train:
            n_neighbors += 1
        else:
            X = self._queries(X)
        if n_neighbors > self.n_samples_fit_:
            raise ValueError("Expected n_neighbors <= n_samples,  but n_samples = %d, "
                             "n_neighbors = %d" % (self.n_samples_fit_, n_neighbors))

        def search(cluster, model):
            # X=None queries the model's own training rows where they are (the dataset it was
            # fitted on, or the one an import from a local copy made).
            queries = cluster.describe_model(model).dataset if query_is_train else X
            return cluster.kneighbors(model, queries, n_neighbors)

        dist, ind = self._on_model(search)
        if query_is_train:
            n_queries = ind.shape[0]
            sample_mask = ind != np.arange(n_queries)[:, None]
            dup_gr_nbrs = np.all(sample_mask, axis=1)
            sample_mask[:, 0][dup_gr_nbrs] = False
            ind = np.reshape(ind[sample_mask], (n_queries, n_neighbors - 1))
            dist = np.reshape(dist[sample_mask], (n_queries, n_neighbors - 1))
        return (dist, ind) if return_distance else ind

    def kneighbors_graph(self, X=None, n_neighbors=None, mode="connectivity"):
        """scikit-learn's kneighbors_graph: a CSR matrix (needs scipy)."""
        from scipy.sparse import csr_matrix

        if n_neighbors is None:
            n_neighbors = self.n_neighbors
        if mode == "connectivity":
            ind = self.kneighbors(X, n_neighbors, return_distance=False)
            data = np.ones(ind.size)
        elif mode == "distance":
            dist, ind = self.kneighbors(X, n_neighbors, return_distance=True)
            data = np.ravel(dist)
        else:
            raise ValueError('Unsupported mode, must be one of "connectivity", or "distance" '
                             'but got "%s" instead' % mode)
        n_queries, k = ind.shape
        indptr = np.arange(0, n_queries * k + 1, k)
        return csr_matrix((data, ind.ravel(), indptr), shape=(n_queries, self.n_samples_fit_))


class KNeighborsClassifier(_NeighborsBase):
    """scikit-learn's KNeighborsClassifier, fitted and queried on a knncluster cluster.

    Parameters are scikit-learn's (n_neighbors=5, weights='uniform', algorithm='auto',
    leaf_size=30, p=2, metric='minkowski', metric_params=None, n_jobs=None), plus ``cluster``
    (a knncluster.Cluster or 'HOST:PORT'; None: the current/default cluster, see
    knncluster.Cluster). Fitted attributes: classes_, n_features_in_, feature_names_in_,
    n_samples_fit_, effective_metric_, effective_metric_params_, outputs_2d_, and model_name_ /
    dataset_name_ / cluster_ (where the model lives).
    """

    _estimator_type = "classifier"
    _task = common_pb2.TASK_CLASSIFIER

    def __init__(self, n_neighbors=5, *, weights="uniform", algorithm="auto", leaf_size=30, p=2,
                 metric="minkowski", metric_params=None, n_jobs=None, cluster=None):
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.p = p
        self.metric = metric
        self.metric_params = metric_params
        self.n_jobs = n_jobs
        self.cluster = cluster

    def fit(self, X, y):
        """Fits the classifier on the cluster from X (n_samples, n_features) and class labels y
        (numbers or strings)."""
        if y is None:
            raise ValueError("KNeighborsClassifier requires y to be passed, but the target y is "
                             "None")
        y = column_or_1d(y, type(self).__name__)
        _check_classification_targets(y)
        labels = _ClassLabels(y)
        info = self._fit_on_cluster(X, labels=labels.numeric, string_labels=labels.strings)
        self._labels = labels.bind(info)
        self.classes_ = labels.classes
        self.outputs_2d_ = False
        return self

    def _bind_refit(self, cluster, info, dataset, shape, feature_names, y):
        """Becomes the fitted estimator of a model the cluster fitted (a grid search's refit)."""
        labels = _ClassLabels(y)
        self._set_fitted(cluster, info, dataset, shape, feature_names)
        self._labels = labels.bind(info)
        self.classes_ = labels.classes
        self.outputs_2d_ = False
        return self

    def predict(self, X):
        """Class labels for X, of y's dtype."""
        X = self._queries(X)
        return self._labels.decode(self._on_model(lambda c, m: c.predict(m, X)))

    def predict_proba(self, X):
        """Class probabilities for X (n_queries, n_classes), columns in classes_ order."""
        X = self._queries(X)
        n = len(self.classes_)
        proba = self._on_model(lambda c, m: c.predict_proba(m, X, n))
        out = np.empty_like(proba)
        out[:, self._labels.class_map] = proba
        return out

    def score(self, X, y, sample_weight=None):
        """Mean accuracy on (X, y), as scikit-learn's ClassifierMixin.score."""
        X = self._queries(X)
        y = np.asarray(y)
        check_consistent_length(X, y)
        if sample_weight is None and y.ndim == 1:
            labels = self._labels.server_labels(y)
            if labels is not None:
                s = self._on_model(lambda c, m: c.score(m, X, labels))
                if s is not None:
                    return np.float64(s)
        return _metrics.accuracy_score(y, self.predict(X), sample_weight=sample_weight)


class KNeighborsRegressor(_NeighborsBase):
    """scikit-learn's KNeighborsRegressor, fitted and queried on a knncluster cluster.

    Parameters as KNeighborsClassifier's. y: one target per sample (shape (n,) or (n, 1); the
    latter predicts shape (n, 1), as scikit-learn does).
    """

    _estimator_type = "regressor"
    _task = common_pb2.TASK_REGRESSOR

    def __init__(self, n_neighbors=5, *, weights="uniform", algorithm="auto", leaf_size=30, p=2,
                 metric="minkowski", metric_params=None, n_jobs=None, cluster=None):
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.p = p
        self.metric = metric
        self.metric_params = metric_params
        self.n_jobs = n_jobs
        self.cluster = cluster

    def fit(self, X, y):
        """Fits the regressor on the cluster from X and numeric targets y."""
        if y is None:
            raise ValueError("KNeighborsRegressor requires y to be passed, but the target y is "
                             "None")
        y_arr = np.asarray(y)
        outputs_2d = y_arr.ndim == 2 and y_arr.shape[1] == 1
        if outputs_2d:
            y_arr = y_arr.ravel()
        y_arr = column_or_1d(y_arr, type(self).__name__)
        y_arr = _numeric_targets(y_arr)
        self._fit_on_cluster(X, labels=y_arr)
        self.outputs_2d_ = outputs_2d
        return self

    def _bind_refit(self, cluster, info, dataset, shape, feature_names, y):
        self._set_fitted(cluster, info, dataset, shape, feature_names)
        self.outputs_2d_ = np.ndim(y) == 2
        return self

    def predict(self, X):
        """Targets for X: the (distance-weighted) mean of the neighbours' targets."""
        X = self._queries(X)
        pred = self._on_model(lambda c, m: c.predict(m, X))
        return pred.reshape(-1, 1) if self.outputs_2d_ else pred

    def score(self, X, y, sample_weight=None):
        """R² on (X, y), as scikit-learn's RegressorMixin.score."""
        X = self._queries(X)
        y_arr = np.asarray(y)
        check_consistent_length(X, y_arr)
        if sample_weight is None and y_arr.ndim == 1 and y_arr.dtype.kind in "biuf":
            labels = y_arr.astype(np.float64)
            if np.isfinite(labels).all():
                s = self._on_model(lambda c, m: c.score(m, X, labels))
                if s is not None:
                    return np.float64(s)
        return _metrics.r2_score(y_arr, self.predict(X), sample_weight=sample_weight)


class NearestNeighbors(_NeighborsBase):
    """scikit-learn's NearestNeighbors (unsupervised neighbour search) on a knncluster cluster:
    fit, kneighbors, kneighbors_graph. ``radius`` is kept for compatibility; radius queries are
    not offered by the cluster."""

    # Held on the cluster as an outlier detector with a fixed threshold (no labels, no fitting
    # pass): the one unlabelled model kind.
    _task = common_pb2.TASK_OUTLIER

    def __init__(self, *, n_neighbors=5, radius=1.0, algorithm="auto", leaf_size=30,
                 metric="minkowski", p=2, metric_params=None, n_jobs=None, cluster=None):
        self.n_neighbors = n_neighbors
        self.radius = radius
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.metric = metric
        self.p = p
        self.metric_params = metric_params
        self.n_jobs = n_jobs
        self.cluster = cluster

    def fit(self, X, y=None):
        """Fits the neighbour index on the cluster from X (y is ignored)."""
        self._fit_on_cluster(X, threshold=0.0)
        return self


def _check_classification_targets(y):
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ValueError("Input y contains NaN." if np.isnan(y).any() else
                             "Input y contains infinity or a value too large for "
                             "dtype('float64').")
        if np.any(y != np.floor(y)):
            raise ValueError("Unknown label type: 'continuous'")
    elif y.dtype.kind not in "biuUSO":
        raise ValueError("Unknown label type: %r" % y.dtype)


def _numeric_targets(y):
    try:
        y = y.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError("y: %s" % e) from None
    if not np.isfinite(y).all():
        raise ValueError("Input y contains NaN." if np.isnan(y).any() else
                         "Input y contains infinity or a value too large for dtype('float64').")
    return y
