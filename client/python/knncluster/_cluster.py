"""Cluster: the connection to a knncluster coordinator, and the calls the estimators make on it.

A ``Cluster`` holds an address, an optional bearer token and TLS setting, and (created on first
use, once per process) a gRPC channel. Every call carries a deadline and the token, streams what
may be large (dataset uploads in row chunks; query batches split so that no message nears gRPC's
4 MiB limit, several in flight at once), and turns gRPC errors into the Python exceptions of
``knncluster.exceptions``.

Which cluster an estimator uses is decided when it is fitted: its ``cluster`` parameter when set
(a ``Cluster`` or an address), else the current one (``with Cluster(...):``), else the default
(``set_default_cluster``), else the environment (KNNCLUSTER_ADDRESS, with KNNCLUSTER_TOKEN and
KNNCLUSTER_TLS).

Thread safety: a Cluster may be used from several threads at once (gRPC stubs are thread-safe).
"""
import contextvars
import hashlib
import os
import struct
import threading
import time
import uuid
import warnings

import grpc
import numpy as np

from knncluster.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc

from . import exceptions
from ._progress import Progress

ENV_ADDRESS = "KNNCLUSTER_ADDRESS"
ENV_TOKEN = "KNNCLUSTER_TOKEN"
ENV_TLS = "KNNCLUSTER_TLS"
ENV_TIMEOUT = "KNNCLUSTER_TIMEOUT"

# Channel limits, as rpc/limits.h sets them for the C++ client: the coordinator's default message
# limit (--max-message-mb), keepalive pings after 20 s idle (the servers accept one every 10 s),
# and retries with exponential backoff and jitter on UNAVAILABLE for the idempotent methods only.
MAX_MESSAGE_BYTES = 64 << 20
IDEMPOTENT_METHODS = ("KNeighbors", "Predict", "PredictProba", "Score", "ListDatasets",
                      "DescribeDataset", "ListModels", "DescribeModel", "GetClusterStatus",
                      "ListGridSearches", "GetGridSearchResult")


def channel_options():
    """The gRPC channel options of every Cluster channel."""
    import json
    retry = {"methodConfig": [{
        "name": [{"service": "knncluster.v1.Coordinator", "method": m}
                 for m in IDEMPOTENT_METHODS],
        "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "2s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}
    return [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 20000),
            ("grpc.keepalive_timeout_ms", 10000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(retry))]


# Request budget per message: upload chunks and inline query batches (the server accepts 4 MiB).
CHUNK_BYTES = 1 << 20
# Response budget per query batch (distances + indices, or probabilities).
RESPONSE_BYTES = 8 << 20
# Query batches in flight at once.
MAX_IN_FLIGHT = 4
# Uploads larger than this show a progress bar (on a terminal).
PROGRESS_MIN_BYTES = 8 << 20

_TRUE = ("1", "true", "yes", "on", "system")
_FALSE = ("", "0", "false", "no", "off")


def _tls_from_env(value):
    v = value.strip()
    if v.lower() in _FALSE:
        return None
    if v.lower() in _TRUE:
        return True
    return v  # a CA bundle's path


class Cluster:
    """A knncluster coordinator.

    Parameters
    ----------
    address : str, default=None
        ``HOST:PORT`` of the coordinator; None takes ``KNNCLUSTER_ADDRESS``.
    token : str, default=None
        Bearer token sent on every call as ``authorization: Bearer <token>``. None takes
        ``KNNCLUSTER_TOKEN`` when the address is the environment's.
    tls : None, bool, str or bytes, default=None
        None or False: a plaintext channel. True: TLS with the system's root certificates. A
        path (or PEM bytes): TLS trusting that CA bundle. None takes ``KNNCLUSTER_TLS`` ("1" for
        system roots, or a path) when the address is the environment's.
    timeout : float, default=None
        Deadline of each call in seconds; None takes ``KNNCLUSTER_TIMEOUT``, else 300.
    allow_partial : bool, default=False
        False: a query needing a shard with no live copy fails (ClusterUnavailableError naming
        the shard). True: it is answered from the other shards, with a PartialAnswerWarning
        listing the shards left out (also kept in ``last_missing_shards``). Not pickled.

    Creating a Cluster does not connect; the first call does. ``with Cluster(...):`` makes it
    the current cluster of estimators fitted inside the block. A Cluster pickles as its address
    and TLS setting; the token is never pickled (an unpickled Cluster takes KNNCLUSTER_TOKEN when
    its address is the environment's).
    """

    def __init__(self, address=None, token=None, tls=None, *, timeout=None, allow_partial=False):
        env_address = os.environ.get(ENV_ADDRESS, "").strip()
        if address is None:
            if not env_address:
                raise ValueError("no cluster address: pass Cluster('HOST:PORT') or set "
                                 "%s=HOST:PORT" % ENV_ADDRESS)
            address = env_address
        if not isinstance(address, str) or not address.strip():
            raise ValueError("address: expected 'HOST:PORT', got %r" % (address,))
        address = address.strip()
        from_env = address == env_address
        if token is None and from_env:
            token = os.environ.get(ENV_TOKEN) or None
        if tls is None and from_env:
            tls = _tls_from_env(os.environ.get(ENV_TLS, ""))
        if isinstance(tls, os.PathLike):
            tls = os.fspath(tls)
        if tls is not None and not isinstance(tls, (bool, str, bytes)):
            raise ValueError("tls: expected None, True/False, a CA bundle's path or PEM bytes, "
                             "got %r" % (tls,))
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError("token: expected a non-empty string")
        if timeout is None:
            timeout = float(os.environ.get(ENV_TIMEOUT) or 300.0)
        self.address = address
        self.token = token
        self.tls = tls
        self.timeout = float(timeout)
        self.allow_partial = bool(allow_partial)
        self.last_missing_shards = []
        self._lock = threading.Lock()
        self._channel = None
        self._stub = None
        self._pid = None
        self._context_tokens = []

    # ---- identity, pickling, context ---------------------------------------------------------

    def __repr__(self):
        extra = ""
        if self.tls:
            extra += ", tls=%r" % (self.tls if not isinstance(self.tls, bytes) else "<PEM>",)
        if self.token:
            extra += ", token=<set>"
        return "Cluster(%r%s)" % (self.address, extra)

    def __reduce__(self):
        return (_unpickle_cluster, (self.address, self.tls, self.timeout))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self  # configuration only; copies share the channel (sklearn's clone deep-copies)

    def __enter__(self):
        self._context_tokens.append(_current.set(self))
        return self

    def __exit__(self, exc_type, exc, tb):
        _current.reset(self._context_tokens.pop())
        return False

    def close(self):
        """Closes the channel (a later call opens a new one)."""
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._stub = self._pid = None

    # ---- credentials and calls ---------------------------------------------------------------

    def channel_credentials(self):
        """The channel's ``grpc.ChannelCredentials``, or None for a plaintext channel."""
        if self.tls is None or self.tls is False:
            return None
        if self.tls is True:
            return grpc.ssl_channel_credentials()
        if isinstance(self.tls, bytes):
            pem = self.tls
        else:
            with open(self.tls, "rb") as f:
                pem = f.read()
        return grpc.ssl_channel_credentials(root_certificates=pem)

    def metadata(self):
        """The metadata every call carries (the bearer token, when there is one)."""
        return (("authorization", "Bearer " + self.token),) if self.token else ()

    def _get_stub(self):
        pid = os.getpid()
        with self._lock:
            if self._stub is None or self._pid != pid:  # a forked child opens its own channel
                options = channel_options()
                creds = self.channel_credentials()
                if creds is None:
                    channel = grpc.insecure_channel(self.address, options=options)
                else:
                    channel = grpc.secure_channel(self.address, creds, options=options)
                self._channel, self._pid = channel, pid
                self._stub = coordinator_pb2_grpc.CoordinatorStub(channel)
            return self._stub

    def _error(self, error, model=None):
        e = exceptions.from_rpc_error(error, model=model)
        if isinstance(e, exceptions.ClusterUnavailableError):
            e.args = ("coordinator %s: %s" % (self.address, e.details),)
        return e

    def call(self, method, request, model=None, timeout=None):
        """Calls the unary Coordinator ``method`` (e.g. "DescribeModel"). ``model``: the model the
        request names, so that NOT_FOUND raises ModelNotFoundError."""
        stub = self._get_stub()
        try:
            return getattr(stub, method)(request, timeout=timeout or self.timeout,
                                         metadata=self.metadata())
        except grpc.RpcError as e:
            raise self._error(e, model) from None

    def _map(self, method, requests, model=None):
        """Calls ``method`` for each request, up to MAX_IN_FLIGHT at once; responses in order."""
        if len(requests) == 1:
            return [self.call(method, requests[0], model=model)]
        stub_method = getattr(self._get_stub(), method)
        out = [None] * len(requests)
        pending = []
        try:
            for i, request in enumerate(requests):
                pending.append((i, stub_method.future(request, timeout=self.timeout,
                                                      metadata=self.metadata())))
                if len(pending) >= MAX_IN_FLIGHT:
                    j, f = pending.pop(0)
                    out[j] = f.result()
            for j, f in pending:
                out[j] = f.result()
        except grpc.RpcError as e:
            for _, f in pending:
                f.cancel()
            raise self._error(e, model) from None
        return out

    # ---- cluster-wide calls (public helpers) -------------------------------------------------

    def status(self):
        """The cluster's workers, datasets and models (a ``ClusterStatus`` message)."""
        return self.call("GetClusterStatus", coordinator_pb2.GetClusterStatusRequest())

    def delete_model(self, name):
        """Deletes a model from the cluster (models persist until deleted)."""
        self.call("DeleteModel", coordinator_pb2.DeleteModelRequest(model=name), model=name)

    # ---- datasets ----------------------------------------------------------------------------

    def has_dataset(self, name):
        try:
            self.call("DescribeDataset", coordinator_pb2.DescribeDatasetRequest(name=name))
            return True
        except exceptions.ClusterError as e:
            if e.code == "NOT_FOUND":
                return False
            raise

    def upload_dataset(self, X, labels=None, string_labels=None, feature_names=None,
                       progress_stream=None):
        """Uploads rows (and numeric ``labels`` or ``string_labels``) unless the cluster already
        has them; returns the dataset's name, a content hash, so that the same data is sent
        once. X: float64, 2-D, finite (checked by the caller)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        name = dataset_name(X, labels, string_labels, feature_names)
        if self.has_dataset(name):
            return name
        kind = (coordinator_pb2.LABELS_STRING if string_labels is not None
                else coordinator_pb2.LABELS_NUMERIC if labels is not None
                else coordinator_pb2.LABELS_NONE)
        header = coordinator_pb2.UploadDatasetRequest(header=coordinator_pb2.DatasetHeader(
            name=name, cols=X.shape[1], rows=X.shape[0], labels=kind,
            feature_names=list(feature_names or [])))
        rows_per_chunk = max(1, CHUNK_BYTES // (8 * X.shape[1]))
        n = X.shape[0]
        total_bytes = X.nbytes
        bar = Progress("upload", total_bytes, unit="MB", scale=1e6, stream=progress_stream)
        if total_bytes < PROGRESS_MIN_BYTES:
            bar.enabled = False

        def requests():
            yield header
            for begin in range(0, n, rows_per_chunk):
                end = min(n, begin + rows_per_chunk)
                chunk = _len_field(1, _matrix_bytes(X[begin:end]))
                if labels is not None:
                    chunk += _len_field(2, np.ascontiguousarray(labels[begin:end], "<f8").tobytes())
                request = coordinator_pb2.UploadDatasetRequest.FromString(_len_field(2, chunk))
                if string_labels is not None:
                    request.chunk.string_labels.extend(string_labels[begin:end])
                yield request
                bar.update(end * X.shape[1] * 8)

        stub = self._get_stub()
        try:
            with bar:
                stub.UploadDataset(requests(), timeout=self.timeout, metadata=self.metadata())
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.ALREADY_EXISTS:  # uploaded meanwhile by another client
                return name
            raise self._error(e) from None
        return name

    # ---- models ------------------------------------------------------------------------------

    def fit(self, dataset, task, params, threshold=None):
        """Fits a new model (named "py-<uuid>") on ``dataset``; returns its ModelInfo."""
        request = coordinator_pb2.FitRequest(model="py-" + uuid.uuid4().hex, dataset=dataset,
                                             task=task, params=params)
        if threshold is not None:
            request.threshold = threshold
        return self.call("Fit", request)

    def describe_model(self, model):
        return self.call("DescribeModel", coordinator_pb2.DescribeModelRequest(model=model),
                         model=model)

    def _batches(self, X, response_row_bytes):
        n, d = X.shape
        rows = max(1, min(CHUNK_BYTES // (8 * max(d, 1)),
                          RESPONSE_BYTES // max(1, response_row_bytes)))
        return [(b, min(n, b + rows)) for b in range(0, n, rows)] or [(0, 0)]

    def _query(self, method, requests, model):
        """_map for the queries: sets allow_partial, and warns of the shards a partial answer
        left out."""
        for r in requests:
            r.allow_partial = self.allow_partial
        responses = self._map(method, requests, model=model)
        missing = sorted({s for r in responses for s in r.missing_shards})
        self.last_missing_shards = missing
        if missing:
            warnings.warn(exceptions.PartialAnswerWarning(
                "%s on model %r answered without shards %s (no live copy)"
                % (method, model, ", ".join(missing))), stacklevel=3)
        return responses

    def kneighbors(self, model, X, k):
        """(distances, indices) of the k nearest training rows of each row of X; X may be the
        name of a dataset on the cluster instead of an array."""
        # compact_indices: the answer's indices come as 32-bit values when they fit.
        if isinstance(X, str):
            requests = [coordinator_pb2.KNeighborsRequest(
                model=model, queries=coordinator_pb2.Queries(dataset=X), k=k,
                compact_indices=True)]
        else:
            requests = [coordinator_pb2.KNeighborsRequest(
                model=model, queries=_queries(X[b:e]), k=k, compact_indices=True)
                for b, e in self._batches(X, 20 * k)]
        responses = self._query("KNeighbors", requests, model)
        dist = np.concatenate([np.array(r.neighbors.distances, dtype=np.float64)
                               for r in responses])
        ind = np.concatenate([
            np.array(r.neighbors.indices32 if len(r.neighbors.indices32) else r.neighbors.indices,
                     dtype=np.int64) for r in responses])
        return dist.reshape(-1, k), ind.reshape(-1, k)

    def predict(self, model, X):
        """PredictResponse.predictions for the rows of X: labels (codes into the model's
        class_names when it has string classes) or regression targets."""
        requests = [coordinator_pb2.PredictRequest(model=model, queries=_queries(X[b:e]))
                    for b, e in self._batches(X, 64)]
        responses = self._query("Predict", requests, model)
        return np.concatenate([np.array(r.predictions, dtype=np.float64) for r in responses])

    def predict_proba(self, model, X, n_classes):
        requests = [coordinator_pb2.PredictProbaRequest(model=model, queries=_queries(X[b:e]))
                    for b, e in self._batches(X, 9 * max(1, n_classes))]
        responses = self._query("PredictProba", requests, model)
        return np.concatenate([np.array(r.probabilities.values, dtype=np.float64)
                               .reshape(-1, n_classes) for r in responses])

    def score(self, model, X, labels):
        """The server's score (accuracy or R²) of the model on X against numeric labels, or
        None when X is too large for one message (the caller then scores predictions)."""
        if len(self._batches(X, 64)) != 1:
            return None
        request = coordinator_pb2.ScoreRequest(model=model, queries=_queries(X))
        request.labels.extend(labels)
        return self._query("Score", [request], model)[0].score

    def export_model(self, model):
        """The model file's bytes."""
        stub = self._get_stub()
        try:
            chunks = stub.ExportModel(coordinator_pb2.ExportModelRequest(model=model),
                                      timeout=self.timeout, metadata=self.metadata())
            return b"".join(c.data for c in chunks)
        except grpc.RpcError as e:
            raise self._error(e, model) from None

    def import_model(self, model, data):
        def requests():
            yield coordinator_pb2.ImportModelRequest(model=model)
            for begin in range(0, len(data), CHUNK_BYTES):
                yield coordinator_pb2.ImportModelRequest(data=data[begin:begin + CHUNK_BYTES])

        stub = self._get_stub()
        try:
            return stub.ImportModel(requests(), timeout=self.timeout, metadata=self.metadata())
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.ALREADY_EXISTS:  # imported meanwhile
                return self.describe_model(model)
            raise self._error(e) from None

    # ---- grid search -------------------------------------------------------------------------

    def watch_grid_search(self, search_id, interval_ms=250):
        """Yields GridSearchInfo as the search progresses, until it ends. The stream is opened
        again when one call's deadline passes (a search may run longer)."""
        stub = self._get_stub()
        while True:
            last = None
            try:
                stream = stub.WatchGridSearch(
                    coordinator_pb2.WatchGridSearchRequest(id=search_id, interval_ms=interval_ms),
                    timeout=min(self.timeout, 60.0), metadata=self.metadata())
                for info in stream:
                    last = info
                    yield info
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise self._error(e) from None
            if last is not None and last.state >= coordinator_pb2.GRID_SEARCH_SUCCEEDED:
                return
            time.sleep(0.05)  # a stream that ended early: open it again, without spinning


# ---- wire helpers ------------------------------------------------------------------------------

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(field, payload):
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _matrix_bytes(block):
    """A serialized knncluster.v1.Matrix, its values packed straight from numpy's buffer (much
    faster than adding doubles one by one to the repeated field)."""
    rows, cols = block.shape
    out = _varint(1 << 3) + _varint(rows) + _varint(2 << 3) + _varint(cols)
    if block.size:
        out += _len_field(3, np.ascontiguousarray(block, dtype="<f8").tobytes())
    return out


def _queries(block):
    return coordinator_pb2.Queries(matrix=common_pb2.Matrix.FromString(_matrix_bytes(block)))


def dataset_name(X, labels=None, string_labels=None, feature_names=None):
    """"py-" and 40 hex digits of a SHA-256 over the rows, labels and feature names."""
    h = hashlib.sha256(b"knncluster-python-dataset-v1\0")
    h.update(struct.pack("<QQ", *X.shape))
    h.update(np.ascontiguousarray(X, dtype="<f8").tobytes())
    if labels is not None:
        h.update(b"numeric\0")
        h.update(np.ascontiguousarray(labels, dtype="<f8").tobytes())
    if string_labels is not None:
        h.update(b"string\0")
        for s in string_labels:
            b = s.encode("utf-8")
            h.update(struct.pack("<Q", len(b)) + b)
    for f in feature_names or []:
        b = f.encode("utf-8")
        h.update(b"feature\0" + struct.pack("<Q", len(b)) + b)
    return "py-" + h.hexdigest()[:40]


# ---- which cluster -----------------------------------------------------------------------------

_current = contextvars.ContextVar("knncluster_current_cluster", default=None)
_state_lock = threading.Lock()
_default = None
_by_address = {}  # (address, tls, token) -> Cluster, so that estimators share channels


def _cached(address, tls=None, timeout=None):
    probe = Cluster(address, tls=tls, timeout=timeout)
    key = (probe.address, probe.tls, probe.token, probe.timeout)
    with _state_lock:
        return _by_address.setdefault(key, probe)


def _unpickle_cluster(address, tls, timeout):
    return _cached(address, tls, timeout)


def set_default_cluster(cluster):
    """Makes ``cluster`` (a Cluster, an address, or None to clear) the default of estimators
    fitted without a ``cluster`` parameter outside any ``with Cluster(...)`` block."""
    global _default
    if isinstance(cluster, str):
        cluster = _cached(cluster)
    if cluster is not None and not isinstance(cluster, Cluster):
        raise TypeError("expected a knncluster.Cluster, an address or None, got %r" % (cluster,))
    with _state_lock:
        _default = cluster


def get_default_cluster():
    """The cluster an estimator without a ``cluster`` parameter uses: the current one
    (``with Cluster(...)``), else the default (``set_default_cluster``), else KNNCLUSTER_ADDRESS."""
    current = _current.get()
    if current is not None:
        return current
    with _state_lock:
        default = _default
    if default is not None:
        return default
    if not os.environ.get(ENV_ADDRESS, "").strip():
        raise ValueError(
            "no cluster to fit on: pass cluster=knncluster.Cluster('HOST:PORT') (or an address), "
            "fit inside `with knncluster.Cluster('HOST:PORT'):`, call "
            "knncluster.set_default_cluster(...), or set %s=HOST:PORT" % ENV_ADDRESS)
    return _cached(os.environ[ENV_ADDRESS])


def resolve_cluster(cluster):
    """An estimator's ``cluster`` parameter as a Cluster."""
    if cluster is None:
        return get_default_cluster()
    if isinstance(cluster, Cluster):
        return cluster
    if isinstance(cluster, str):
        return _cached(cluster)
    raise ValueError("cluster: expected a knncluster.Cluster, an address 'HOST:PORT' or None, "
                     "got %r" % (cluster,))
