"""The exceptions knncluster raises, shaped as a scikit-learn user expects them.

The cluster's gRPC status codes map onto Python's usual exceptions (see ``from_rpc_error``); each
carries the server's message, and every error that came from the cluster is also a
``ClusterError`` with the status code in ``.code``:

=================  ===========================================================================
INVALID_ARGUMENT   ``InvalidArgumentError``: a ``ValueError`` (bad input, as in scikit-learn)
NOT_FOUND (model)  ``ModelNotFoundError``: a ``NotFittedError`` (ValueError, AttributeError)
UNAVAILABLE        ``ClusterUnavailableError``: a ``ConnectionError``
DEADLINE_EXCEEDED  ``ClusterTimeoutError``: a ``TimeoutError``
anything else      ``ClusterError``: a ``RuntimeError``
=================  ===========================================================================
"""
try:  # The very class scikit-learn raises, so that `except NotFittedError` works for both.
    from sklearn.exceptions import NotFittedError
except ImportError:  # pragma: no cover - exercised where scikit-learn is not installed

    class NotFittedError(ValueError, AttributeError):
        """Raised when an estimator is used before it is fitted (scikit-learn's bases)."""


class ClusterError(RuntimeError):
    """An error the cluster returned. ``code`` is the gRPC status code's name (e.g. "INTERNAL"),
    ``details`` the server's message."""

    def __init__(self, details, code="UNKNOWN"):
        super().__init__(details)
        self.details = details
        self.code = code


class InvalidArgumentError(ClusterError, ValueError):
    """The cluster refused the request's data or parameters (INVALID_ARGUMENT)."""


class ModelNotFoundError(ClusterError, NotFittedError):
    """The model an estimator names is not on the cluster (NOT_FOUND): it was deleted, or the
    estimator is used against another cluster than the one it was fitted on."""


class ClusterUnavailableError(ClusterError, ConnectionError):
    """The coordinator, or a worker holding a shard, cannot be reached (UNAVAILABLE)."""


class PartialAnswerWarning(UserWarning):
    """A query answered from some shards only (Cluster(allow_partial=True) while a shard had no
    live copy); the message lists the shards left out."""


class ClusterTimeoutError(ClusterError, TimeoutError):
    """A call ran past its deadline (DEADLINE_EXCEEDED)."""


def from_rpc_error(error, model=None):
    """The exception for a ``grpc.RpcError``. ``model``: the model the call named, so that
    NOT_FOUND becomes ``ModelNotFoundError`` when the missing thing is that model."""
    code = error.code()
    name = getattr(code, "name", str(code))
    details = error.details() or name
    if name == "INVALID_ARGUMENT":
        return InvalidArgumentError(details, name)
    if name == "NOT_FOUND" and model is not None:
        return ModelNotFoundError(details, name)
    if name == "UNAVAILABLE":
        return ClusterUnavailableError(details, name)
    if name == "DEADLINE_EXCEEDED":
        return ClusterTimeoutError(details, name)
    return ClusterError(details, name)
