"""scikit-learn's estimator conventions, without depending on scikit-learn.

``BaseEstimator`` gives ``get_params`` / ``set_params`` (parameters are exactly the keyword
arguments of ``__init__``, stored unchanged, so that ``sklearn.base.clone`` works), a
scikit-learn-like ``repr`` that lists the parameters that differ from their defaults, and
``clone`` for our own use. Neither touches the cluster.
"""
import copy
import inspect
from collections import defaultdict


def _is_estimator(value):
    return hasattr(value, "get_params") and not isinstance(value, type)


def clone(estimator):
    """A new, unfitted estimator with deep copies of ``estimator``'s parameters (as
    ``sklearn.base.clone`` does for estimators)."""
    if isinstance(estimator, (list, tuple, set, frozenset)):
        return type(estimator)(clone(e) for e in estimator)
    if not _is_estimator(estimator):
        return copy.deepcopy(estimator)
    params = {k: clone(v) for k, v in estimator.get_params(deep=False).items()}
    return type(estimator)(**params)


def _changed(value, default):
    """scikit-learn's print_changed_only rule: the reprs differ (NaN equals NaN)."""
    def is_nan(v):
        return isinstance(v, float) and v != v
    return repr(value) != repr(default) and not (is_nan(value) and is_nan(default))


class BaseEstimator:
    """get_params / set_params / repr in the manner of ``sklearn.base.BaseEstimator``."""

    @classmethod
    def _get_param_names(cls):
        init = cls.__init__
        if init is object.__init__:
            return []
        params = [p for p in inspect.signature(init).parameters.values()
                  if p.name != "self" and p.kind != p.VAR_KEYWORD]
        for p in params:
            if p.kind == p.VAR_POSITIONAL:
                raise RuntimeError("%s should not take *args in __init__" % cls.__name__)
        return sorted(p.name for p in params)

    def get_params(self, deep=True):
        """The estimator's parameters (with ``deep``, also those of contained estimators as
        ``<name>__<param>``)."""
        out = {}
        for key in self._get_param_names():
            value = getattr(self, key)
            if deep and _is_estimator(value):
                out.update((key + "__" + k, v) for k, v in value.get_params().items())
            out[key] = value
        return out

    def set_params(self, **params):
        """Sets parameters (``<name>__<param>`` for contained estimators); returns self. It
        only stores the values: checks happen at ``fit``."""
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested = defaultdict(dict)
        for key, value in params.items():
            key, delim, sub_key = key.partition("__")
            if key not in valid:
                raise ValueError("Invalid parameter %r for estimator %s. Valid parameters are: "
                                 "%r." % (key, self, self._get_param_names()))
            if delim:
                nested[key][sub_key] = value
            else:
                setattr(self, key, value)
                valid[key] = value
        for key, sub_params in nested.items():
            valid[key].set_params(**sub_params)
        return self

    def __repr__(self):
        sig = inspect.signature(type(self).__init__)
        shown = []
        for name in self._get_param_names():
            value = getattr(self, name, None)
            default = sig.parameters[name].default
            if _changed(value, default):
                shown.append("%s=%r" % (name, value))
        return "%s(%s)" % (type(self).__name__, ", ".join(shown))

    def __getstate__(self):
        return dict(self.__dict__)

    def __setstate__(self, state):
        self.__dict__.update(state)
