"""Input checks with scikit-learn 1.2's messages, for what must be right before it goes on the
wire (2-D, numeric, finite, consistent lengths). The cluster checks the rest and its message is
passed on (see exceptions.py)."""
import numbers
import warnings

import numpy as np

from .exceptions import NotFittedError

try:
    from sklearn.exceptions import DataConversionWarning
except ImportError:  # pragma: no cover
    class DataConversionWarning(UserWarning):
        """A column-vector y was passed where a 1-D array was expected."""

try:
    from sklearn.utils._param_validation import InvalidParameterError
except ImportError:  # pragma: no cover
    class InvalidParameterError(ValueError, TypeError):
        """A constructor parameter has a value the estimator does not accept."""


def _is_sparse(X):
    return hasattr(X, "toarray") and hasattr(X, "format")


def num_samples(x):
    if hasattr(x, "shape") and len(x.shape) > 0:
        return x.shape[0]
    return len(x)


def feature_names_of(X):
    """scikit-learn's feature_names_in_: the column names of a DataFrame when all are strings."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = np.asarray(columns, dtype=object)
    if len(names) and all(isinstance(n, str) for n in names):
        return names
    return None


def check_X(X, estimator_name, input_name="X"):
    """X as a C-contiguous float64 2-D array with at least one row and one column, finite."""
    if _is_sparse(X):
        X = X.toarray()
    try:
        arr = np.asarray(X)
    except ValueError as e:
        raise ValueError("%s: %s" % (input_name, e)) from None
    if arr.dtype.kind == "c":
        raise ValueError("Complex data not supported\n%r\n" % (arr,))
    if arr.ndim == 0:
        raise ValueError(
            "Expected 2D array, got scalar array instead:\narray={}.\nReshape your data either "
            "using array.reshape(-1, 1) if your data has a single feature or array.reshape(1, "
            "-1) if it contains a single sample.".format(arr))
    if arr.ndim == 1:
        raise ValueError(
            "Expected 2D array, got 1D array instead:\narray={}.\nReshape your data either "
            "using array.reshape(-1, 1) if your data has a single feature or array.reshape(1, "
            "-1) if it contains a single sample.".format(arr))
    if arr.ndim > 2:
        raise ValueError("Found array with dim %d. %s expected <= 2." % (arr.ndim, estimator_name))
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(str(e)) from None
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.shape[0] < 1:
        raise ValueError("Found array with 0 sample(s) (shape=%r) while a minimum of 1 is "
                         "required by %s." % (arr.shape, estimator_name))
    if arr.shape[1] < 1:
        raise ValueError("Found array with 0 feature(s) (shape=%r) while a minimum of 1 is "
                         "required by %s." % (arr.shape, estimator_name))
    if not np.isfinite(arr).all():
        if np.isnan(arr).any():
            msg = "Input %s contains NaN." % input_name
            if input_name == "X":
                msg += ("\n%s does not accept missing values encoded as NaN natively. For "
                        "supervised learning, you might want to consider "
                        "sklearn.ensemble.HistGradientBoostingClassifier and Regressor which "
                        "accept missing values encoded as NaNs natively. Alternatively, it is "
                        "possible to preprocess the data, for instance by using an imputer "
                        "transformer in a pipeline or drop samples with missing values. See "
                        "https://scikit-learn.org/stable/modules/impute.html You can find a list "
                        "of all estimators that handle NaN values at the following page: "
                        "https://scikit-learn.org/stable/modules/impute.html"
                        "#estimators-that-handle-nan-values" % estimator_name)
        else:
            msg = "Input %s contains infinity or a value too large for dtype('float64')." % (
                input_name)
        raise ValueError(msg)
    return arr


def column_or_1d(y, estimator_name):
    """y as a 1-D array (a column vector is raveled with scikit-learn's warning)."""
    y = np.asarray(y)
    if y.ndim == 1:
        return y
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected. Please change "
                      "the shape of y to (n_samples,), for example using ravel().",
                      DataConversionWarning, stacklevel=3)
        return y.ravel()
    raise ValueError("y: %s on a cluster takes one target per sample (shape (n_samples,)), got "
                     "shape %r" % (estimator_name, y.shape))


def check_consistent_length(*arrays):
    lengths = [num_samples(a) for a in arrays if a is not None]
    if len(set(lengths)) > 1:
        raise ValueError("Found input variables with inconsistent numbers of samples: %r"
                         % [int(n) for n in lengths])


def check_is_fitted(estimator, attribute="model_name_"):
    if not hasattr(estimator, attribute):
        raise NotFittedError(
            "This %s instance is not fitted yet. Call 'fit' with appropriate arguments before "
            "using this estimator." % type(estimator).__name__)


def check_n_features(estimator, X):
    n = estimator.n_features_in_
    if X.shape[1] != n:
        raise ValueError("X has %d features, but %s is expecting %d features as input."
                         % (X.shape[1], type(estimator).__name__, n))


def param_error(owner, name, value, expected):
    return InvalidParameterError("The %r parameter of %s must be %s. Got %r instead."
                                 % (name, owner, expected, value))


def is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)
