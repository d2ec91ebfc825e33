"""The scorers a grid search names, computed in numpy with scikit-learn 1.2.1's formulas and
operation order (so the numbers are scikit-learn's to the last bit): accuracy,
balanced_accuracy, f1_macro, r2, neg_mean_squared_error. Used where the client scores
predictions itself: GridSearchCV.score with a scoring name, sample weights, and query batches
too large for one Score call."""
import warnings

import numpy as np


def _labels_and_codes(y_true, y_pred):
    labels = np.unique(np.concatenate([np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()]))
    return labels, np.searchsorted(labels, y_true), np.searchsorted(labels, y_pred)


def accuracy_score(y_true, y_pred, sample_weight=None):
    return np.average(np.asarray(y_true) == np.asarray(y_pred), weights=sample_weight)


def _confusion(y_true, y_pred, sample_weight=None):
    labels, t, p = _labels_and_codes(y_true, y_pred)
    n = len(labels)
    w = np.ones(len(t), dtype=np.int64) if sample_weight is None else np.asarray(
        sample_weight, dtype=np.float64)
    C = np.zeros((n, n), dtype=w.dtype)
    np.add.at(C, (t, p), w)
    return C


def balanced_accuracy_score(y_true, y_pred, sample_weight=None):
    C = _confusion(y_true, y_pred, sample_weight)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = np.diag(C) / C.sum(axis=1)
    if np.any(np.isnan(per_class)):
        warnings.warn("y_pred contains classes not in y_true")
        per_class = per_class[~np.isnan(per_class)]
    return np.mean(per_class)


def _divide(numerator, denominator):
    mask = denominator == 0.0
    denominator = denominator.copy()
    denominator[mask] = 1
    result = numerator / denominator
    result[mask] = 0.0
    return result


def f1_macro_score(y_true, y_pred, sample_weight=None):
    # multilabel_confusion_matrix's sums (bincount), then precision_recall_fscore_support's
    # tp + fp and tp + fn, as scikit-learn forms them.
    labels, t, p = _labels_and_codes(y_true, y_pred)
    n = len(labels)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    hit = t == p
    tp = np.bincount(t[hit], weights=None if w is None else w[hit], minlength=n)
    fp = np.bincount(p, weights=w, minlength=n) - tp
    fn = np.bincount(t, weights=w, minlength=n) - tp
    precision = _divide(tp, tp + fp)
    recall = _divide(tp, tp + fn)
    denom = precision + recall
    denom[denom == 0.0] = 1
    f_score = 2 * precision * recall / denom
    return np.average(f_score)


def _as_column(y):
    y = np.asarray(y)
    return y.reshape(-1, 1) if y.ndim == 1 else y


def r2_score(y_true, y_pred, sample_weight=None):
    y_true, y_pred = _as_column(y_true), _as_column(y_pred)
    if y_true.shape[0] < 2:
        warnings.warn("R^2 score is not well-defined with less than two samples.")
        return np.float64("nan")
    weight = 1.0 if sample_weight is None else np.asarray(sample_weight)[:, np.newaxis]
    numerator = (weight * (y_true - y_pred) ** 2).sum(axis=0, dtype=np.float64)
    denominator = (weight * (y_true - np.average(y_true, axis=0, weights=sample_weight)) ** 2
                   ).sum(axis=0, dtype=np.float64)
    nonzero_denominator = denominator != 0
    nonzero_numerator = numerator != 0
    valid = nonzero_denominator & nonzero_numerator
    scores = np.ones([y_true.shape[1]])
    scores[valid] = 1 - (numerator[valid] / denominator[valid])
    scores[nonzero_numerator & ~nonzero_denominator] = 0.0
    return np.average(scores)


def neg_mean_squared_error(y_true, y_pred, sample_weight=None):
    y_true, y_pred = _as_column(y_true), _as_column(y_pred)
    errors = np.average((y_true - y_pred) ** 2, axis=0, weights=sample_weight)
    return -np.average(errors)


SCORERS = {
    "accuracy": accuracy_score,
    "balanced_accuracy": balanced_accuracy_score,
    "f1_macro": f1_macro_score,
    "r2": r2_score,
    "neg_mean_squared_error": neg_mean_squared_error,
}
CLASSIFIER_SCORERS = ("accuracy", "balanced_accuracy", "f1_macro")
REGRESSOR_SCORERS = ("r2", "neg_mean_squared_error")
