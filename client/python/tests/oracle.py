"""The oracle the client's answers are checked against.

scikit-learn is the oracle wherever it is well defined. Where equal distances tie, scikit-learn's
order (and at the k-th neighbour, its choice) is left to its algorithm, and the cluster's rule
(distance, training index) is computed here in numpy: the distances in core's summation order
(tests/parity/gen_estimator_refs.py, the project's reference generator), a stable sort by
(reduced distance, index), and then scikit-learn's own predict / predict_proba code run on those
neighbours. For queries without ties this *is* scikit-learn's answer, which ``Case`` asserts.
"""
import os
import sys

import numpy as np
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

sys.path.insert(0, os.path.join(os.environ.get("KNN_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "..")), "tests", "parity"))
from gen_estimator_refs import (core_rdist, rdist_to_dist, sk_metric_kwargs,  # noqa: E402
                                with_neighbors)


def contract_neighbors(X_train, X_test, p, k):
    """(distances, indices, tied, set_tied): the k nearest by (reduced distance, index);
    tied[i]: equal reduced distances among query i's first k + 1 (scikit-learn's order may
    differ); set_tied[i]: a tie at the k-th (scikit-learn's neighbour set may differ)."""
    rd = core_rdist(np.asarray(X_test, float), np.asarray(X_train, float), p)
    n = rd.shape[1]
    order = np.lexsort((np.broadcast_to(np.arange(n), rd.shape), rd), axis=-1)
    ind = order[:, :k]
    ranked = np.take_along_axis(rd, order[:, :min(k + 1, n)], axis=1)
    tied = np.any(ranked[:, 1:] == ranked[:, :-1], axis=1)
    set_tied = ranked[:, k - 1] == ranked[:, k] if k < n else np.zeros(len(rd), bool)
    dist = rdist_to_dist(np.take_along_axis(rd, ind, axis=1), p)
    return dist, ind, tied, set_tied


def train_neighbors(X_train, p, k):
    """kneighbors(X=None) under the contract: each training row's k + 1 nearest, itself removed
    by scikit-learn's rule (the first duplicate when it is not among them)."""
    dist, ind, _, _ = contract_neighbors(X_train, X_train, p, k + 1)
    n = ind.shape[0]
    mask = ind != np.arange(n)[:, None]
    dup = np.all(mask, axis=1)
    mask[:, 0][dup] = False
    return dist[mask].reshape(n, k), ind[mask].reshape(n, k)


class Case:
    """The oracle for one (training set, queries, p, k, weights): ``clf`` / ``reg`` are
    scikit-learn's estimators answering from the contract's neighbours; ``sk_*`` are scikit-learn
    on its own (KD tree: per-coordinate distances, no GEMM shortcut), searched once."""

    def __init__(self, X_train, y_class, y_reg, X_test, p, k, weights):
        self.dist, self.ind, self.tied, self.set_tied = contract_neighbors(X_train, X_test, p, k)
        params = dict(n_neighbors=k, weights=weights, algorithm="brute", **sk_metric_kwargs(p))
        self.clf = with_neighbors(KNeighborsClassifier, self.dist, self.ind)(**params).fit(
            X_train, y_class)
        self.reg = with_neighbors(KNeighborsRegressor, self.dist, self.ind)(**params).fit(
            X_train, y_reg)
        params["algorithm"] = "kd_tree"
        sk = KNeighborsClassifier(**params).fit(X_train, y_class)
        self.sk_dist, self.sk_ind = sk.kneighbors(X_test)
        self.sk_effective = (sk.effective_metric_, sk.effective_metric_params_)
        self.sk_classes = sk.classes_
        # scikit-learn's predict code on scikit-learn's own neighbours is what its predict does.
        own_clf = with_neighbors(KNeighborsClassifier, self.sk_dist, self.sk_ind)(**params)
        own_clf.fit(X_train, y_class)
        own_reg = with_neighbors(KNeighborsRegressor, self.sk_dist, self.sk_ind)(**params)
        own_reg.fit(X_train, y_reg)
        self.sk_predict = own_clf.predict(X_test)
        self.sk_proba = own_clf.predict_proba(X_test)
        self.sk_regress = own_reg.predict(X_test)
        free = ~self.tied
        # Without ties the contract is scikit-learn's answer.
        assert np.array_equal(self.sk_ind[free], self.ind[free])
        assert np.allclose(self.sk_dist, self.dist, rtol=1e-12, atol=0)
        if weights == "uniform":  # the same neighbour set votes the same
            same = ~self.set_tied
            assert np.array_equal(self.sk_predict[same], self.clf.predict(X_test)[same])


def cv_split_scores(X, y, candidates, folds, classifier, scorer):
    """split{i}_test_score of each candidate (n_candidates x n_splits) under the contract:
    per fold and p, one neighbour search (the largest k; a smaller k takes its prefix), then
    scikit-learn's predict code and ``scorer(y_true, y_pred)`` per candidate."""
    cls = KNeighborsClassifier if classifier else KNeighborsRegressor
    out = np.empty((len(candidates), len(folds)))
    for f, (train, test) in enumerate(folds):
        searched = {}
        for c, params in enumerate(candidates):
            p = params.get("p", 2)
            k = params.get("n_neighbors", 5)
            if p not in searched:
                kmax = max(q.get("n_neighbors", 5) for q in candidates if q.get("p", 2) == p)
                searched[p] = contract_neighbors(X[train], X[test], p, kmax)[:2]
            dist, ind = (a[:, :k] for a in searched[p])
            est = with_neighbors(cls, dist, ind)(n_neighbors=k,
                                                 weights=params.get("weights", "uniform"),
                                                 **sk_metric_kwargs(p))
            est.fit(X[train], y[train])
            out[c, f] = scorer(y[test], est.predict(X[test]))
    return out


def format_test_scores(scores):
    """mean / std / rank_test_score from split scores, as scikit-learn 1.2.1's
    BaseSearchCV._format_results computes them."""
    from scipy.stats import rankdata
    means = np.average(scores, axis=1)
    stds = np.sqrt(np.average((scores - means[:, np.newaxis]) ** 2, axis=1))
    ranks = rankdata(-means, method="min").astype(np.int32, copy=False)
    return means, stds, ranks
