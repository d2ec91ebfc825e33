#!/usr/bin/python3
"""Writes scikit-learn reference outputs for tests/parity/estimators_parity_test.cc.

Usage: /usr/bin/python3 gen_estimator_refs.py OUTDIR [DATASET ...]   (default: all datasets)

For each dataset (gaussian features; small-integer features full of distance ties, duplicate rows
and exact matches; the digits train/test split of the tutorial) and each Minkowski p in 1, 2, 3,
inf and each k, it writes OUTDIR/<dataset>.json with:
  * sklearn's kneighbors (algorithm="kd_tree": per-coordinate distances, no GEMM shortcut);
  * the neighbours under knncluster's ordering contract, (reduced distance, training index)
    ascending, found with a stable np.lexsort, and a per-query flag `tied` telling whether equal
    reduced distances among the first k + 1 make sklearn's own order arbitrary;
  * KNeighborsClassifier.predict / predict_proba and KNeighborsRegressor.predict for uniform and
    distance weights, computed by scikit-learn's own code on the contract neighbours (a subclass
    overrides only kneighbors()). For every query without ties the script asserts that this agrees
    with what sklearn computes on its own neighbours (labels exactly, probabilities and regression
    values to 1e-12; sklearn's neighbours themselves exactly), so the references are
    scikit-learn's answers.
The distances fed to scikit-learn are computed in the order core/index/metric.h documents (four
interleaved partial sums, then ((s0 + s1) + (s2 + s3)) + tail; |x|^3 as (|x| * |x|) * |x|), so
the C++ side can be compared bit for bit; the p-th root is C's pow (math.pow), as in core and in
scikit-learn's trees. OUTDIR/index.json lists the datasets and versions.
"""
import json
import math
import os
import sys

import numpy as np
import sklearn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

PS = [1.0, 2.0, 3.0, np.inf]


def core_rdist(Q, X, p):
    """Reduced distances in core/index/metric.h's summation order (num_queries x n_train)."""

    def term(j):
        x = np.abs(Q[:, j][:, None] - X[:, j][None, :])
        if np.isinf(p) or p == 1:
            return x
        t = x
        for _ in range(int(p) - 1):  # integer p: repeated multiplication
            t = t * x
        return t

    d = Q.shape[1]
    if np.isinf(p):
        return np.maximum.reduce([term(j) for j in range(d)])
    s = [np.zeros((Q.shape[0], X.shape[0])) for _ in range(4)]
    j = 0
    while j + 4 <= d:
        for lane in range(4):
            s[lane] = s[lane] + term(j + lane)
        j += 4
    total = (s[0] + s[1]) + (s[2] + s[3])
    while j < d:
        total = total + term(j)
        j += 1
    return total


def rdist_to_dist(r, p):
    if np.isinf(p) or p == 1:
        return r
    if p == 2:
        return np.sqrt(r)
    # C's pow, as core and scikit-learn's trees call it: np.power may use a vectorised (SVML)
    # power that differs from libm in the last bit.
    return np.vectorize(lambda x: math.pow(x, 1.0 / p), otypes=[float])(r)


def sk_metric_kwargs(p):
    return {"metric": "chebyshev"} if np.isinf(p) else {"metric": "minkowski", "p": p}


def with_neighbors(cls, dist, ind):
    """An instance of `cls` whose kneighbors() returns the given neighbours."""

    class Fixed(cls):
        def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
            return (dist, ind) if return_distance else ind

    Fixed.__name__ = cls.__name__
    return Fixed


def case(X_train, y_class, y_reg, X_test, p, k):
    rd = core_rdist(X_test, X_train, p)
    n_train = X_train.shape[0]
    # By reduced distance, then training index (the last key is the primary one).
    order = np.lexsort((np.broadcast_to(np.arange(n_train), rd.shape), rd), axis=-1)
    ind = order[:, :k]
    rsorted = np.take_along_axis(rd, order[:, : min(k + 1, n_train)], axis=1)
    # Equal reduced distances among the first k + 1: sklearn may order (or, at the k-th, pick)
    # neighbours differently. Only at the k-th can the neighbour *set* differ.
    tied = np.any(rsorted[:, 1:] == rsorted[:, :-1], axis=1)
    set_tied = rsorted[:, k - 1] == rsorted[:, k] if k < n_train else np.zeros(len(rd), bool)
    dist = rdist_to_dist(np.take_along_axis(rd, ind, axis=1), p)

    sk = KNeighborsClassifier(n_neighbors=k, algorithm="kd_tree", **sk_metric_kwargs(p))
    sk.fit(X_train, y_class)
    sk_dist, sk_ind = sk.kneighbors(X_test)
    free = ~tied
    assert np.array_equal(sk_ind[free], ind[free]), "sklearn's neighbours differ without ties"
    same_set = ~set_tied
    assert np.array_equal(np.sort(sk_ind[same_set], axis=1), np.sort(ind[same_set], axis=1))
    assert np.allclose(sk_dist, dist, rtol=1e-12, atol=0), "sklearn's distances differ"

    out = {
        "p": "inf" if np.isinf(p) else repr(float(p)),
        "k": k,
        "indices": ind.tolist(),
        "distances": dist.tolist(),
        "sk_indices": sk_ind.tolist(),
        "sk_distances": sk_dist.tolist(),
        "tied": tied.tolist(),
    }
    for weights in ["uniform", "distance"]:
        params = dict(n_neighbors=k, weights=weights, algorithm="kd_tree", **sk_metric_kwargs(p))
        clf = with_neighbors(KNeighborsClassifier, dist, ind)(**params).fit(X_train, y_class)
        reg = with_neighbors(KNeighborsRegressor, dist, ind)(**params).fit(X_train, y_reg)
        predict, proba = clf.predict(X_test), clf.predict_proba(X_test)
        regress = reg.predict(X_test)
        # On queries without ties, scikit-learn's own pipeline (its predict code on its own
        # kneighbors answer, computed once above) gives the same answers.
        own_clf = with_neighbors(KNeighborsClassifier, sk_dist, sk_ind)(**params)
        own_reg = with_neighbors(KNeighborsRegressor, sk_dist, sk_ind)(**params)
        own_clf.fit(X_train, y_class)
        own_reg.fit(X_train, y_reg)
        assert np.array_equal(own_clf.predict(X_test)[free], predict[free])
        assert np.allclose(own_clf.predict_proba(X_test)[free], proba[free], rtol=1e-12, atol=1e-15)
        assert np.allclose(own_reg.predict(X_test)[free], regress[free], rtol=1e-12, atol=1e-12)
        out[weights] = {
            "predict": predict.tolist(),
            "proba": proba.tolist(),
            "regress": regress.tolist(),
        }
    return out


def dataset(name, X_train, y_class, y_reg, X_test, ks):
    classes = np.unique(y_class)
    return {
        "name": name,
        "X_train": X_train.tolist(),
        "X_test": X_test.tolist(),
        "y_class": y_class.tolist(),
        "y_reg": y_reg.tolist(),
        "classes": classes.tolist(),
        "cases": [case(X_train, y_class, y_reg, X_test, p, k) for p in PS for k in ks],
    }


def make_gauss(rng):
    # Continuous features: no ties, k up to 12 so that numpy's pairwise sums matter.
    X = rng.normal(size=(260, 5)) * np.array([1.0, 3.0, 0.5, 10.0, 1.0])
    y_class = rng.choice([-2.0, 0.0, 3.0, 7.0], size=260)
    y_reg = rng.normal(size=260) * 100 + X[:, 0]
    return dataset("gauss", X[:200], y_class[:200], y_reg[:200], X[200:], [1, 5, 12])


def make_ints(rng):
    # Small integers: many equal distances, duplicate training rows, queries equal to training
    # rows (the distance-weight zero rule), vote ties.
    X = rng.randint(0, 4, size=(200, 3)).astype(float)
    y_class = rng.randint(0, 3, size=200).astype(float)
    y_reg = rng.randint(-5, 6, size=200).astype(float) / 4
    return dataset("ints", X[:150], y_class[:150], y_reg[:150], X[150:], [1, 4, 9])


def make_digits(rng):
    # The tutorial's digits split; its targets (times 1.5) double as regression targets.
    digits = load_digits()
    X_train, X_test, y_train, _ = train_test_split(
        digits.data, digits.target, test_size=0.2, random_state=1337)
    return dataset("digits", X_train, y_train.astype(float), y_train.astype(float) * 1.5,
                   X_test, [5, 20])


MAKERS = {"gauss": make_gauss, "ints": make_ints, "digits": make_digits}


def main():
    if len(sys.argv) < 2 or any(name not in MAKERS for name in sys.argv[2:]):
        sys.exit("usage: gen_estimator_refs.py OUTDIR [%s ...]" % "|".join(MAKERS))
    outdir = sys.argv[1]
    names = sys.argv[2:] or list(MAKERS)
    os.makedirs(outdir, exist_ok=True)
    for name in names:
        # One seed per dataset, so that each can be generated alone.
        rng = np.random.RandomState(sum(map(ord, name)) + 20240601)
        with open(os.path.join(outdir, name + ".json"), "w") as f:
            json.dump(MAKERS[name](rng), f)
    with open(os.path.join(outdir, "index.json"), "w") as f:
        json.dump({"datasets": names,
                   "versions": {"sklearn": sklearn.__version__, "numpy": np.__version__}}, f)


if __name__ == "__main__":
    main()
