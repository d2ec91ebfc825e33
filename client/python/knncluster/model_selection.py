"""scikit-learn 1.2.1's train_test_split, KFold, StratifiedKFold and ParameterGrid (in numpy,
the same algorithms and legacy RandomState draws, so the same seeds give the same indices), and
GridSearchCV run as one job on the cluster."""
import numbers
import uuid
from collections.abc import Iterable, Mapping, Sequence
from functools import reduce
from itertools import chain, compress, product
from math import ceil, floor

import numpy as np

from knncluster.v1 import common_pb2, coordinator_pb2, grid_search_pb2

from . import _metrics
from ._base import BaseEstimator, clone
from ._cluster import resolve_cluster
from ._progress import Progress
from ._validation import (NotFittedError, check_consistent_length, check_X, column_or_1d,
                          feature_names_of, is_int, is_real, num_samples, param_error)
from .neighbors import (KNeighborsClassifier, KNeighborsRegressor, _ALGORITHMS, _ClassLabels,
                        _check_classification_targets, _numeric_targets)

__all__ = ["train_test_split", "KFold", "StratifiedKFold", "ParameterGrid", "GridSearchCV",
           "check_random_state"]


# ---- randomness and indexing -------------------------------------------------------------------

def check_random_state(seed):
    """scikit-learn's check_random_state: None -> numpy's global RandomState, an int -> a new
    RandomState(seed), a RandomState -> itself."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError("%r cannot be used to seed a numpy.random.RandomState instance" % seed)


def _indexable(x):
    if hasattr(x, "toarray") and hasattr(x, "format"):
        return x.tocsr()
    if hasattr(x, "__getitem__") or hasattr(x, "iloc") or x is None:
        return x
    return np.array(x)


def _safe_indexing(x, indices):
    if hasattr(x, "iloc"):
        return x.take(np.asarray(indices), axis=0)
    if hasattr(x, "shape"):
        return x[indices]
    if np.asarray(indices).dtype.kind == "b":
        return list(compress(x, indices))
    return [x[i] for i in indices]


def _build_repr(obj, names):
    return "%s(%s)" % (type(obj).__name__,
                       ", ".join("%s=%r" % (n, getattr(obj, n)) for n in sorted(names)))


# ---- train_test_split --------------------------------------------------------------------------

def _validate_shuffle_split(n_samples, test_size, train_size, default_test_size=None):
    if test_size is None and train_size is None:
        test_size = default_test_size
    test_kind = np.asarray(test_size).dtype.kind
    train_kind = np.asarray(train_size).dtype.kind
    if (test_kind == "i" and (test_size >= n_samples or test_size <= 0)
            or test_kind == "f" and (test_size <= 0 or test_size >= 1)):
        raise ValueError("test_size={0} should be either positive and smaller than the number "
                         "of samples {1} or a float in the (0, 1) range".format(test_size,
                                                                                n_samples))
    if (train_kind == "i" and (train_size >= n_samples or train_size <= 0)
            or train_kind == "f" and (train_size <= 0 or train_size >= 1)):
        raise ValueError("train_size={0} should be either positive and smaller than the number "
                         "of samples {1} or a float in the (0, 1) range".format(train_size,
                                                                                n_samples))
    if train_size is not None and train_kind not in ("i", "f"):
        raise ValueError("Invalid value for train_size: {}".format(train_size))
    if test_size is not None and test_kind not in ("i", "f"):
        raise ValueError("Invalid value for test_size: {}".format(test_size))
    if train_kind == "f" and test_kind == "f" and train_size + test_size > 1:
        raise ValueError("The sum of test_size and train_size = {}, should be in the (0, 1) "
                         "range. Reduce test_size and/or train_size.".format(train_size
                                                                             + test_size))
    if test_kind == "f":
        n_test = ceil(test_size * n_samples)
    elif test_kind == "i":
        n_test = float(test_size)
    if train_kind == "f":
        n_train = floor(train_size * n_samples)
    elif train_kind == "i":
        n_train = float(train_size)
    if train_size is None:
        n_train = n_samples - n_test
    elif test_size is None:
        n_test = n_samples - n_train
    if n_train + n_test > n_samples:
        raise ValueError("The sum of train_size and test_size = %d, should be smaller than the "
                         "number of samples %d. Reduce test_size and/or train_size."
                         % (n_train + n_test, n_samples))
    n_train, n_test = int(n_train), int(n_test)
    if n_train == 0:
        raise ValueError("With n_samples={}, test_size={} and train_size={}, the resulting "
                         "train set will be empty. Adjust any of the aforementioned "
                         "parameters.".format(n_samples, test_size, train_size))
    return n_train, n_test


def _approximate_mode(class_counts, n_draws, rng):
    rng = check_random_state(rng)
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        values = np.sort(np.unique(remainder))[::-1]
        for value in values:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            inds = rng.choice(inds, size=add_now, replace=False)
            floored[inds] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def _shuffle_split_indices(n_samples, n_train, n_test, random_state):
    permutation = check_random_state(random_state).permutation(n_samples)
    return permutation[n_test:(n_test + n_train)], permutation[:n_test]


def _stratified_shuffle_split_indices(y, n_train, n_test, random_state):
    y = np.asarray(y)
    if y.ndim == 2:
        y = np.array([" ".join(row.astype("str")) for row in y])
    classes, y_indices = np.unique(y, return_inverse=True)
    n_classes = classes.shape[0]
    class_counts = np.bincount(y_indices)
    if np.min(class_counts) < 2:
        raise ValueError("The least populated class in y has only 1 member, which is too few. "
                         "The minimum number of groups for any class cannot be less than 2.")
    if n_train < n_classes:
        raise ValueError("The train_size = %d should be greater or equal to the number of "
                         "classes = %d" % (n_train, n_classes))
    if n_test < n_classes:
        raise ValueError("The test_size = %d should be greater or equal to the number of "
                         "classes = %d" % (n_test, n_classes))
    class_indices = np.split(np.argsort(y_indices, kind="mergesort"),
                             np.cumsum(class_counts)[:-1])
    rng = check_random_state(random_state)
    n_i = _approximate_mode(class_counts, n_train, rng)
    class_counts_remaining = class_counts - n_i
    t_i = _approximate_mode(class_counts_remaining, n_test, rng)
    train, test = [], []
    for i in range(n_classes):
        permutation = rng.permutation(class_counts[i])
        perm_indices_class_i = class_indices[i].take(permutation, mode="clip")
        train.extend(perm_indices_class_i[:n_i[i]])
        test.extend(perm_indices_class_i[n_i[i]:n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def train_test_split(*arrays, test_size=None, train_size=None, random_state=None, shuffle=True,
                     stratify=None):
    """scikit-learn's train_test_split: the same rows for the same arguments and seed (numpy
    arrays, lists, DataFrames and sparse matrices, each returned as its own type)."""
    if len(arrays) == 0:
        raise ValueError("At least one array required as input")
    arrays = [_indexable(a) for a in arrays]
    check_consistent_length(*arrays)
    n_samples = num_samples(arrays[0])
    n_train, n_test = _validate_shuffle_split(n_samples, test_size, train_size,
                                              default_test_size=0.25)
    if shuffle is False:
        if stratify is not None:
            raise ValueError("Stratified train/test split is not implemented for shuffle=False")
        train = np.arange(n_train)
        test = np.arange(n_train, n_train + n_test)
    elif stratify is not None:
        # StratifiedShuffleSplit(test_size=n_test, train_size=n_train) validates again.
        n_train, n_test = _validate_shuffle_split(n_samples, n_test, n_train)
        train, test = _stratified_shuffle_split_indices(stratify, n_train, n_test, random_state)
    else:
        n_train, n_test = _validate_shuffle_split(n_samples, n_test, n_train)
        train, test = _shuffle_split_indices(n_samples, n_train, n_test, random_state)
    return list(chain.from_iterable((_safe_indexing(a, train), _safe_indexing(a, test))
                                    for a in arrays))


train_test_split.__test__ = False  # not a test (for test collectors)


# ---- K-fold ------------------------------------------------------------------------------------

def _type_of_target(y):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return "multiclass-multioutput"
    if y.dtype.kind == "f" and np.any(y != y.astype(int)):
        return "continuous"
    return "multiclass" if len(np.unique(y)) > 2 else "binary"


class _BaseKFold:
    def __init__(self, n_splits, *, shuffle, random_state):
        if not isinstance(n_splits, numbers.Integral):
            raise ValueError("The number of folds must be of Integral type. %s of type %s was "
                             "passed." % (n_splits, type(n_splits)))
        n_splits = int(n_splits)
        if n_splits <= 1:
            raise ValueError("k-fold cross-validation requires at least one train/test split by "
                             "setting n_splits=2 or more, got n_splits={0}.".format(n_splits))
        if not isinstance(shuffle, bool):
            raise TypeError("shuffle must be True or False; got {0}".format(shuffle))
        if not shuffle and random_state is not None:
            raise ValueError("Setting a random_state has no effect since shuffle is False. You "
                             "should leave random_state to its default (None), or set "
                             "shuffle=True.")
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state

    def split(self, X, y=None, groups=None):
        """Yields (train indices, test indices) for each fold."""
        X = _indexable(X)
        n_samples = num_samples(X)
        if self.n_splits > n_samples:
            raise ValueError("Cannot have number of splits n_splits={0} greater than the number "
                             "of samples: n_samples={1}.".format(self.n_splits, n_samples))
        indices = np.arange(n_samples)
        for test_mask in self._iter_test_masks(n_samples, y):
            yield indices[np.logical_not(test_mask)], indices[test_mask]

    def get_n_splits(self, X=None, y=None, groups=None):
        return self.n_splits

    def __repr__(self):
        return _build_repr(self, ["n_splits", "shuffle", "random_state"])


class KFold(_BaseKFold):
    """scikit-learn's KFold: consecutive folds (shuffled first with shuffle=True), the first
    n_samples % n_splits one row larger."""

    def __init__(self, n_splits=5, *, shuffle=False, random_state=None):
        super().__init__(n_splits, shuffle=shuffle, random_state=random_state)

    def _iter_test_masks(self, n_samples, y):
        indices = np.arange(n_samples)
        if self.shuffle:
            check_random_state(self.random_state).shuffle(indices)
        fold_sizes = np.full(self.n_splits, n_samples // self.n_splits, dtype=int)
        fold_sizes[:n_samples % self.n_splits] += 1
        current = 0
        for fold_size in fold_sizes:
            mask = np.zeros(n_samples, dtype=bool)
            mask[indices[current:current + fold_size]] = True
            yield mask
            current += fold_size


class StratifiedKFold(_BaseKFold):
    """scikit-learn's StratifiedKFold: folds that keep each class's share."""

    def __init__(self, n_splits=5, *, shuffle=False, random_state=None):
        super().__init__(n_splits, shuffle=shuffle, random_state=random_state)

    def split(self, X, y, groups=None):
        return super().split(X, np.asarray(y), groups)

    def _make_test_folds(self, y):
        rng = check_random_state(self.random_state)
        y = np.asarray(y)
        kind = _type_of_target(y)
        if kind not in ("binary", "multiclass"):
            raise ValueError("Supported target types are: {}. Got {!r} instead.".format(
                ("binary", "multiclass"), kind))
        y = y.ravel() if y.ndim == 2 else y
        _, y_idx, y_inv = np.unique(y, return_index=True, return_inverse=True)
        _, class_perm = np.unique(y_idx, return_inverse=True)
        y_encoded = class_perm[y_inv]
        n_classes = len(y_idx)
        y_counts = np.bincount(y_encoded)
        min_groups = np.min(y_counts)
        if np.all(self.n_splits > y_counts):
            raise ValueError("n_splits=%d cannot be greater than the number of members in each "
                             "class." % self.n_splits)
        if self.n_splits > min_groups:
            import warnings
            warnings.warn("The least populated class in y has only %d members, which is less "
                          "than n_splits=%d." % (min_groups, self.n_splits), UserWarning)
        y_order = np.sort(y_encoded)
        allocation = np.asarray([np.bincount(y_order[i::self.n_splits], minlength=n_classes)
                                 for i in range(self.n_splits)])
        test_folds = np.empty(len(y), dtype="i")
        for k in range(n_classes):
            folds_for_class = np.arange(self.n_splits).repeat(allocation[:, k])
            if self.shuffle:
                rng.shuffle(folds_for_class)
            test_folds[y_encoded == k] = folds_for_class
        return test_folds

    def _iter_test_masks(self, n_samples, y):
        test_folds = self._make_test_folds(y)
        for i in range(self.n_splits):
            yield test_folds == i


# ---- ParameterGrid -----------------------------------------------------------------------------

class ParameterGrid:
    """scikit-learn's ParameterGrid: the candidates of a dict (or list of dicts) of value lists,
    each dict's keys sorted, the last varying fastest."""

    def __init__(self, param_grid):
        if not isinstance(param_grid, (Mapping, Iterable)):
            raise TypeError("Parameter grid should be a dict or a list, got: %r of type %s"
                            % (param_grid, type(param_grid).__name__))
        if isinstance(param_grid, Mapping):
            param_grid = [param_grid]
        for grid in param_grid:
            if not isinstance(grid, dict):
                raise TypeError("Parameter grid is not a dict (%r)" % (grid,))
            for key, value in grid.items():
                if isinstance(value, np.ndarray) and value.ndim > 1:
                    raise ValueError("Parameter array for %r should be one-dimensional, got: %r "
                                     "with shape %s" % (key, value, value.shape))
                if isinstance(value, str) or not isinstance(value, (np.ndarray, Sequence)):
                    raise TypeError(
                        "Parameter grid for parameter %r needs to be a list or a numpy array, "
                        "but got %r (of type %s) instead. Single values need to be wrapped in a "
                        "list with one element." % (key, value, type(value).__name__))
                if len(value) == 0:
                    raise ValueError("Parameter grid for parameter %r need to be a non-empty "
                                     "sequence, got: %r" % (key, value))
        self.param_grid = param_grid

    def __iter__(self):
        for p in self.param_grid:
            items = sorted(p.items())
            if not items:
                yield {}
            else:
                keys, values = zip(*items)
                for v in product(*values):
                    yield dict(zip(keys, v))

    def __len__(self):
        return sum(reduce(lambda a, b: a * b, (len(v) for v in p.values()), 1)
                   for p in self.param_grid)


# ---- GridSearchCV ------------------------------------------------------------------------------

_GRID_KEYS = ("algorithm", "leaf_size", "n_neighbors", "p", "weights")


def _wire_grid(owner, base, grid):
    """One param_grid dict as the wire's ParamGrid, each value checked."""
    out = grid_search_pb2.ParamGrid()
    for key, values in grid.items():
        if key not in _GRID_KEYS:
            raise ValueError("param_grid: the cluster searches over %s; got %r (use scikit-learn's "
                             "GridSearchCV for other parameters)" % (", ".join(_GRID_KEYS), key))
        for v in values:
            if key == "n_neighbors":
                if not is_int(v) or v < 1:
                    raise param_error(owner, key, v, "an int in the range [1, inf)")
                out.n_neighbors.append(int(v))
            elif key == "leaf_size":
                if not is_int(v) or v < 1:
                    raise param_error(owner, key, v, "an int in the range [1, inf)")
                out.leaf_size.append(int(v))
            elif key == "algorithm":
                if not isinstance(v, str) or v not in _ALGORITHMS:
                    raise param_error(owner, key, v,
                                      "a str among {'auto', 'ball_tree', 'kd_tree', 'brute'}")
                out.algorithm.append(_ALGORITHMS[v])
            elif key == "weights":
                if v is not None and v not in ("uniform", "distance"):
                    raise param_error(owner, key, v, "a str among {'uniform', 'distance'} (the "
                                      "cluster takes no callable)")
                out.weights.append(common_pb2.WEIGHTS_DISTANCE if v == "distance"
                                   else common_pb2.WEIGHTS_UNIFORM)
            elif key == "p":
                if base.metric != "minkowski" or (base.metric_params or {}).get("p") is not None:
                    raise ValueError("param_grid: 'p' is searched with metric='minkowski' and no "
                                     "metric_params p; the estimator has metric=%r, "
                                     "metric_params=%r" % (base.metric, base.metric_params))
                if not is_real(v) or not v >= 1:
                    raise param_error(owner, key, v, "a float in the range [1, inf]")
                out.p.append(float(v))  # +inf: Chebyshev
    return out


def _folds(cv, X, y, groups):
    """(cv as a fold count for the cluster, or None; explicit folds, or None)."""
    if cv is None:
        return 5, None
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        if cv < 2:
            raise ValueError("cv: k-fold cross-validation requires at least one train/test "
                             "split, got cv=%d" % cv)
        return int(cv), None
    if hasattr(cv, "split") and not isinstance(cv, str):
        splits = list(cv.split(X, y, groups))
    elif isinstance(cv, Iterable) and not isinstance(cv, str):
        splits = list(cv)
    else:
        raise ValueError("Expected cv as an integer, cross-validation object (from "
                         "sklearn.model_selection) or an iterable. Got %r." % (cv,))
    n = X.shape[0]
    folds = []
    for i, split in enumerate(splits):
        try:
            train, test = split
        except (TypeError, ValueError):
            raise ValueError("cv: split %d is not a (train, test) pair" % i) from None
        fold = grid_search_pb2.Fold()
        for part, dest in ((train, fold.train), (test, fold.test)):
            idx = np.asarray(part)
            if idx.dtype.kind == "b":
                idx = np.flatnonzero(idx)
            if idx.dtype.kind not in "iu" and idx.size:
                raise ValueError("cv: split %d holds non-integer indices" % i)
            idx = idx.astype(np.int64).ravel()
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError("cv: split %d holds indices outside [0, %d)" % (i, n))
            dest.extend(idx.tolist())
        folds.append(fold)
    if not folds:
        raise ValueError("cv: no splits")
    return None, folds


def _scoring_name(scoring, classifier):
    if scoring is None:
        return ""
    names = _metrics.CLASSIFIER_SCORERS if classifier else _metrics.REGRESSOR_SCORERS
    if not isinstance(scoring, str) or scoring not in names:
        raise ValueError("scoring: the cluster scores %s with one of %s (or None: the "
                         "estimator's score); got %r" % (
                             "classifiers" if classifier else "regressors", list(names), scoring))
    return scoring


class _NamedScorer:
    """scorer_: called as scorer(estimator, X, y), as scikit-learn's scorers are."""

    def __init__(self, name):
        self.name = name

    def __call__(self, estimator, X, y, sample_weight=None):
        if not self.name:
            return estimator.score(X, y, sample_weight=sample_weight)
        return _metrics.SCORERS[self.name](y, estimator.predict(X), sample_weight=sample_weight)

    def __repr__(self):
        return "make_scorer(%s)" % (self.name or "score")


class GridSearchCV(BaseEstimator):
    """scikit-learn's GridSearchCV over a knncluster KNeighborsClassifier or
    KNeighborsRegressor, run as one job on the cluster: every fold and candidate is scored
    there, and the best candidate refitted there.

    Takes scikit-learn's arguments. ``param_grid`` keys: n_neighbors, weights, algorithm,
    leaf_size, p. ``cv``: None (5), a fold count (stratified for classifiers), a splitter with
    ``split`` (scikit-learn's or ours), or an iterable of (train, test). ``scoring``: None,
    'accuracy', 'balanced_accuracy', 'f1_macro' (classifiers), 'r2', 'neg_mean_squared_error'
    (regressors). ``refit``: bool or a callable of cv_results_ returning best_index_. ``n_jobs``,
    ``pre_dispatch`` and ``error_score`` are accepted and moot (the cluster schedules the jobs;
    a failing fit fails the search); ``verbose`` > 0 prints scikit-learn's "Fitting ..." line;
    ``return_train_score=True`` is refused. A progress bar shows on a terminal.

    Fitted attributes: cv_results_ (a dict of numpy arrays as scikit-learn's), best_index_,
    best_score_, best_params_, best_estimator_ (bound to the refitted model on the cluster),
    n_splits_, scorer_, multimetric_, classes_, n_features_in_, search_id_.
    """

    def __init__(self, estimator, param_grid, *, scoring=None, n_jobs=None, refit=True, cv=None,
                 verbose=0, pre_dispatch="2*n_jobs", error_score=np.nan,
                 return_train_score=False):
        self.estimator = estimator
        self.param_grid = param_grid
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.refit = refit
        self.cv = cv
        self.verbose = verbose
        self.pre_dispatch = pre_dispatch
        self.error_score = error_score
        self.return_train_score = return_train_score

    @property
    def _estimator_type(self):
        return self.estimator._estimator_type

    def fit(self, X, y=None, *, groups=None, progress_stream=None, **fit_params):
        """Runs the search on the cluster; with refit, best_estimator_ is the best candidate
        fitted on all of (X, y)."""
        est = self.estimator
        if not isinstance(est, (KNeighborsClassifier, KNeighborsRegressor)):
            raise ValueError("GridSearchCV runs on the cluster and searches a knncluster "
                             "KNeighborsClassifier or KNeighborsRegressor; got %r (use "
                             "scikit-learn's GridSearchCV for other estimators)" % (est,))
        if fit_params:
            raise ValueError("fit parameters %s: the cluster's estimators take none"
                             % sorted(fit_params))
        if self.return_train_score:
            raise ValueError("return_train_score=True: the cluster scores the validation folds "
                             "only")
        if not (isinstance(self.refit, bool) or callable(self.refit)):
            raise ValueError("refit: expected True, False or a callable of cv_results_ (the "
                             "cluster runs single-metric searches); got %r" % (self.refit,))
        owner = type(est).__name__
        classifier = isinstance(est, KNeighborsClassifier)
        base = est._wire_params()
        est._check_n_jobs()
        grids = ParameterGrid(self.param_grid).param_grid
        wire_grids = [_wire_grid(owner, est, g) for g in grids]
        candidates = list(ParameterGrid(grids))
        scoring = _scoring_name(self.scoring, classifier)

        names = feature_names_of(X)
        X_arr = check_X(X, owner)
        if y is None:
            raise ValueError("%s requires y to be passed, but the target y is None" % owner)
        y_arr = np.asarray(y)
        y_flat = column_or_1d(y_arr.ravel() if (y_arr.ndim == 2 and y_arr.shape[1] == 1)
                              else y_arr, owner)
        check_consistent_length(X_arr, y_flat)
        if classifier:
            _check_classification_targets(y_flat)
            labels = _ClassLabels(y_flat)
            numeric, strings = labels.numeric, labels.strings
        else:
            numeric, strings = _numeric_targets(y_flat), None
        cv, folds = _folds(self.cv, X_arr, y_flat, groups)

        cluster = resolve_cluster(est.cluster)
        dataset = cluster.upload_dataset(
            X_arr, labels=numeric, string_labels=strings,
            feature_names=None if names is None else [str(n) for n in names],
            progress_stream=progress_stream)
        refit_on_cluster = self.refit is True
        request = coordinator_pb2.StartGridSearchRequest(
            dataset=dataset, task=est._task, base=base, param_grid=wire_grids,
            cv=cv or 0, folds=folds or [], scoring=scoring, refit=refit_on_cluster)
        if refit_on_cluster:
            request.refit_model = "py-" + uuid.uuid4().hex
        n_splits = cv if cv is not None else len(folds)
        if self.verbose > 0:
            print("Fitting {0} folds for each of {1} candidates, totalling {2} fits".format(
                n_splits, len(candidates), n_splits * len(candidates)))
        result = self._run(cluster, request, progress_stream)

        self._set_results(result, candidates)
        self.scorer_ = _NamedScorer(scoring)
        self.multimetric_ = False
        self.n_splits_ = int(result.info.n_splits)
        self.search_id_ = result.info.id
        self.n_features_in_ = X_arr.shape[1]
        if names is not None:
            self.feature_names_in_ = names
        else:
            self.__dict__.pop("feature_names_in_", None)
        self.__dict__.pop("best_estimator_", None)
        if callable(self.refit):
            self.best_index_ = int(self.refit(self.cv_results_))
            self.best_params_ = candidates[self.best_index_]
            del self.best_score_  # scikit-learn sets none with a callable refit
        if self.refit:
            best = clone(est).set_params(**self.best_params_)
            if refit_on_cluster:
                info = cluster.describe_model(result.refit_model)
                best._bind_refit(cluster, info, dataset, X_arr.shape, names, y_arr)
            else:
                best.fit(X, y)  # the same rows: no upload, one Fit call
            self.best_estimator_ = best
        return self

    def _run(self, cluster, request, progress_stream):
        info = cluster.call("StartGridSearch", request)
        try:
            with Progress("grid search", info.jobs_total, unit="jobs",
                          stream=progress_stream) as bar:
                for info in cluster.watch_grid_search(info.id):
                    extra = ""
                    if info.eta_seconds >= 0 and info.state == coordinator_pb2.GRID_SEARCH_RUNNING:
                        extra = "eta %ds" % round(info.eta_seconds)
                    elif info.state == coordinator_pb2.GRID_SEARCH_REFITTING:
                        extra = "refitting"
                    bar.update(info.jobs_done, info.jobs_total, extra=extra)
        except KeyboardInterrupt:
            try:
                cluster.call("CancelGridSearch",
                             coordinator_pb2.CancelGridSearchRequest(id=info.id), timeout=15)
            except Exception:  # the interrupt is what matters; the search ends on its own
                pass
            raise
        return cluster.call("GetGridSearchResult",
                            coordinator_pb2.GetGridSearchResultRequest(id=info.id))

    def _set_results(self, result, candidates):
        cvr = result.cv_results
        n = len(candidates)
        if len(cvr.mean_test_score) != n:
            raise RuntimeError("the cluster scored %d candidates, the grid has %d"
                               % (len(cvr.mean_test_score), n))
        results = {
            "mean_fit_time": np.array(cvr.mean_fit_time, dtype=np.float64),
            "std_fit_time": np.array(cvr.std_fit_time, dtype=np.float64),
            "mean_score_time": np.array(cvr.mean_score_time, dtype=np.float64),
            "std_score_time": np.array(cvr.std_score_time, dtype=np.float64),
        }
        param_results = {}
        for i, params in enumerate(candidates):
            for name, value in params.items():
                if name not in param_results:
                    param_results[name] = np.ma.MaskedArray(np.empty(n), mask=True, dtype=object)
                param_results[name][i] = value
        for name, arr in param_results.items():
            results["param_" + name] = arr
        results["params"] = candidates
        for i, split in enumerate(cvr.split_test_scores):
            results["split%d_test_score" % i] = np.array(split.scores, dtype=np.float64)
        results["mean_test_score"] = np.array(cvr.mean_test_score, dtype=np.float64)
        results["std_test_score"] = np.array(cvr.std_test_score, dtype=np.float64)
        results["rank_test_score"] = np.array(cvr.rank_test_score, dtype=np.int32)
        self.cv_results_ = results
        self.best_index_ = int(result.best_index)
        self.best_score_ = results["mean_test_score"][self.best_index_]
        self.best_params_ = candidates[self.best_index_]

    # ---- the refit model -----------------------------------------------------------------------

    def _best(self, method):
        if not hasattr(self, "cv_results_"):
            raise NotFittedError("This GridSearchCV instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")
        if not self.refit:
            raise NotFittedError(
                "This GridSearchCV instance was initialized with `refit=False`. %s is available "
                "only after refitting on the best parameters. You can refit an estimator "
                "manually using the `best_params_` attribute" % method)
        return self.best_estimator_

    def predict(self, X):
        return self._best("predict").predict(X)

    def predict_proba(self, X):
        return self._best("predict_proba").predict_proba(X)

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self._best("predict_log_proba").predict_proba(X))

    def score(self, X, y=None):
        """The scoring's value for the refitted model on (X, y) (the estimator's score when
        scoring is None), as scikit-learn's GridSearchCV.score."""
        best = self._best("score")
        return self.scorer_(best, X, y)

    @property
    def classes_(self):
        return self._best("classes_").classes_
