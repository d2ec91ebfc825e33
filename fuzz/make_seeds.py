#!/usr/bin/python3
"""Writes the seed corpora in fuzz/corpus/<target>/ (run with Debian's /usr/bin/python3).

Seeds are small valid inputs and slightly broken ones. .npy seeds are written by numpy itself,
model files follow core/estimators/model_io.h byte for byte (the fuzz target checks that they
parse and serialize back to the same bytes), and request seeds are serialized protos (protoc
generates the Python modules into a temporary directory). The output is deterministic; crash
inputs found later are added by hand as regress-*, and this script never removes them.

Usage: /usr/bin/python3 fuzz/make_seeds.py
"""
import hashlib
import io
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- CSV -----------------------------------------------------------------------------------------

def csv_seeds():
    w = lambda n, t: write("fuzz_csv", n, t)
    w("header-numeric-labels.csv", "x,y,label\n1.5,2,0\n3,4e-2,1\n-5,+6,1\n")
    w("header-string-labels.csv", "sepal,petal,label\n5.1,3.5,setosa\n6.2,2.9,virginica\n5.9,3.0,setosa\n")
    w("no-header.csv", "1,2,3\n4,5,6\n7,8,9\n")
    w("quoted-crlf-bom.csv", '\ufeff"a,b","say ""hi""",label\r\n1,2,"x\ny"\r\n3,4,z\r\n')
    w("semicolon-label-first.csv", "0;1.5;2.5\n1; 3 ;\t4\n\n0;nan;inf\n")
    w("blank-lines-and-spaces.csv", "\n  a , b \n\n 1 , 2 \n   \n3,4\n")
    w("nonfinite.csv", "a,b\nNaN,-Infinity\n1,2\n")
    w("ragged-broken.csv", "a,b,c\n1,2,3\n4,5\n")
    w("unterminated-quote-broken.csv", 'a,b\n1,"2\n')
    w("not-a-number-broken.csv", "a,b\n1,two\n1e999,3\n")


# ---- .npy ----------------------------------------------------------------------------------------

def npy_bytes(arr, version=None):
    buf = io.BytesIO()
    if version is None:
        np.save(buf, arr, allow_pickle=False)
    else:
        np.lib.format.write_array(buf, arr, version=version, allow_pickle=False)
    return buf.getvalue()


def npy_seeds():
    w = lambda n, b: write("fuzz_npy", n, b)
    f8 = np.arange(6, dtype="<f8").reshape(3, 2) / 4
    w("f8-3x2.npy", npy_bytes(f8))
    w("f4-vector.npy", npy_bytes(np.array([1.5, -2, 3], dtype="<f4")))
    w("i4-2x3.npy", npy_bytes(np.arange(6, dtype="<i4").reshape(2, 3)))
    w("i8-column.npy", npy_bytes(np.array([[1], [2], [2**53]], dtype="<i8")))
    w("v2-f8.npy", npy_bytes(f8, version=(2, 0)))
    w("v3-f8.npy", npy_bytes(f8, version=(3, 0)))
    w("empty-0x3.npy", npy_bytes(np.zeros((0, 3))))
    w("nan-inf.npy", npy_bytes(np.array([np.nan, np.inf, 0.0])))
    w("fortran-broken.npy", npy_bytes(np.asfortranarray(f8)))
    w("big-endian-broken.npy", npy_bytes(f8.astype(">f8")))
    w("3d-broken.npy", npy_bytes(np.zeros((2, 2, 2))))
    w("i8-too-large-broken.npy", npy_bytes(np.array([2**53 + 1], dtype="<i8")))
    w("truncated-broken.npy", npy_bytes(f8)[:-5])
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 2), }"
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    w("huge-shape-broken.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header)


# ---- model files (core/estimators/model_io.h) ----------------------------------------------------

def model_file(task=0, n_neighbors=3, weights=0, algorithm=0, leaf_size=30, p=2.0,
               contamination=0.1, threshold=None, dataset_name="tiny", X=None, y=None,
               class_names=(), feature_names=()):
    X = [[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, 1.5]] if X is None else X
    y = [0.0, 1.0, 1.0, 0.0] if y is None else y
    s = lambda b: struct.pack("<Q", len(b)) + b
    p_ = struct.pack("<BiBBidd", task, n_neighbors, weights, algorithm, leaf_size, p, contamination)
    p_ += struct.pack("<Bd", 0 if threshold is None else 1, threshold or 0.0)
    p_ += s(dataset_name.encode())
    p_ += struct.pack("<QQ", len(X), len(X[0]) if X else 0)
    p_ += b"".join(struct.pack("<d", v) for row in X for v in row)
    p_ += struct.pack("<Q", len(y)) + b"".join(struct.pack("<d", v) for v in y)
    p_ += struct.pack("<Q", len(class_names)) + b"".join(s(n.encode()) for n in class_names)
    p_ += struct.pack("<Q", len(feature_names)) + b"".join(s(n.encode()) for n in feature_names)
    head = b"KNNMODEL" + struct.pack("<IQ", 1, len(p_)) + p_
    return head + struct.pack("<I", zlib.crc32(head))


def model_seeds():
    w = lambda n, b: write("fuzz_model_file", n, b)
    w("classifier.knnmodel", model_file(feature_names=("a", "b")))
    w("classifier-names.knnmodel", model_file(class_names=("cat", "dog"), algorithm=1, weights=1))
    w("regressor-ball-tree.knnmodel", model_file(task=1, algorithm=2, leaf_size=1, p=3.0,
                                                 y=[0.5, -1.0, 2.0, 4.0]))
    w("outlier-threshold.knnmodel", model_file(task=2, n_neighbors=1, y=[], threshold=0.75))
    w("outlier-contamination.knnmodel", model_file(task=2, n_neighbors=2, y=[], contamination=0.25,
                                                   algorithm=3, p=float("inf")))
    good = model_file()
    w("bad-crc-broken.knnmodel", good[:-1] + bytes([good[-1] ^ 1]))
    w("truncated-broken.knnmodel", good[:40])
    w("bad-k-broken.knnmodel", model_file(n_neighbors=0))
    w("huge-rows-broken.knnmodel", model_file(X=[[1.0, 2.0]], y=[0.0])
      .replace(struct.pack("<QQ", 1, 2), struct.pack("<QQ", 2**62, 2)))


# ---- requests (fuzz_requests.cc: byte 0 picks the RPC) ------------------------------------------

def request_seeds():
    tmp = tempfile.mkdtemp()
    proto = os.path.join(ROOT, "proto")
    subprocess.check_call(["protoc", f"--proto_path={proto}", f"--python_out={tmp}"] +
                          [f"knncluster/v1/{p}.proto" for p in
                           ("common", "grid_search", "worker", "coordinator")])
    sys.path.insert(0, tmp)
    from knncluster.v1 import common_pb2 as c, coordinator_pb2 as co, grid_search_pb2 as g
    from knncluster.v1 import worker_pb2 as wk

    def unary(name, rpc, msg):
        write("fuzz_requests", name, bytes([rpc]) + msg.SerializeToString())

    def stream(name, rpc, msgs):
        out = bytes([rpc])
        for m in msgs:
            b = m.SerializeToString()
            out += struct.pack("<H", len(b)) + b
        write("fuzz_requests", name, out)

    def matrix(rows):
        return c.Matrix(rows=len(rows), cols=len(rows[0]) if rows else 0,
                        values=[v for r in rows for v in r])

    q = co.Queries(matrix=matrix([[0.5, 1.0], [2.0, 0.0]]))
    unary("00-describe-dataset", 0, co.DescribeDatasetRequest(name="d"))
    unary("01-delete-dataset", 1, co.DeleteDatasetRequest(name="nope"))
    unary("02-split-fraction", 2, co.SplitDatasetRequest(dataset="d", test_fraction=0.25,
                                                          random_state=7, return_indices=True))
    unary("02-split-count", 2, co.SplitDatasetRequest(dataset="d", test_count=3, no_shuffle=True))
    unary("03-fit", 3, co.FitRequest(model="m2", dataset="d", task=c.TASK_CLASSIFIER,
                                     params=c.NeighborsParams(n_neighbors=3, leaf_size=2, p=1.5)))
    unary("03-fit-outlier", 3, co.FitRequest(model="o", dataset="d", task=c.TASK_OUTLIER,
                                             contamination=0.2, threshold=1.0))
    unary("04-kneighbors", 4, co.KNeighborsRequest(model="m", queries=q, k=2))
    unary("05-predict", 5, co.PredictRequest(model="m", queries=q))
    unary("05-predict-dataset", 5, co.PredictRequest(model="m", queries=co.Queries(dataset="d")))
    unary("06-predict-proba", 6, co.PredictProbaRequest(model="m", queries=q))
    unary("07-score", 7, co.ScoreRequest(model="m", queries=q, labels=[0, 1]))
    unary("08-describe-model", 8, co.DescribeModelRequest(model="m"))
    unary("09-delete-model", 9, co.DeleteModelRequest(model="nope"))
    grid = g.ParamGrid(n_neighbors=[1, 3], p=[1.0, 2.0], weights=[c.WEIGHTS_DISTANCE],
                       algorithm=[c.ALGORITHM_KD_TREE, c.ALGORITHM_BRUTE], leaf_size=[1, 30])
    unary("10-grid-search", 10, co.StartGridSearchRequest(
        dataset="d", task=c.TASK_CLASSIFIER, param_grid=[grid], cv=3, shuffle=True,
        random_state=1, scoring="accuracy", refit=False))
    unary("10-grid-search-folds", 10, co.StartGridSearchRequest(
        dataset="d", task=c.TASK_REGRESSOR, param_grid=[g.ParamGrid(n_neighbors=[2])],
        folds=[g.Fold(train=list(range(6)), test=list(range(6, 12)))], scoring="r2"))
    unary("11-cancel-grid-search", 11, co.CancelGridSearchRequest(id="gs-000000000000"))
    unary("12-grid-search-result", 12, co.GetGridSearchResultRequest(id="gs-000000000000"))
    unary("13-heartbeat", 13, co.HeartbeatRequest(worker_id="w", shard_ids=["a"], rss_bytes=1))
    unary("14-search-shards", 14, wk.SearchShardsRequest(
        shard_ids=["s0"], queries=matrix([[1.0, 0.5]]), k=3))
    unary("14-search-shards-subset", 14, wk.SearchShardsRequest(
        shard_ids=["s0"], queries=matrix([[1.0, 0.5]]), k=2,
        subset=wk.FoldSubset(key="k", excluded=[0, 5], index_params=c.NeighborsParams(
            algorithm=c.ALGORITHM_BALL_TREE, leaf_size=2))))
    unary("15-drop-shard", 15, wk.DropShardRequest(shard_id="x"))
    unary("16-run-fold-job", 16, wk.RunFoldJobRequest(content_hash="0" * 64, job=g.FoldJobSpec(
        classifier=True, fold=g.Fold(train=[0, 1, 2], test=[3]), search=c.NeighborsParams(),
        max_neighbors=2, candidates=[c.NeighborsParams(n_neighbors=2)], scoring="accuracy")))
    unary("17-worker-status", 17, wk.GetWorkerStatusRequest())

    header = co.DatasetHeader(name="up", cols=2, labels=co.LABELS_STRING, feature_names=["a", "b"])
    stream("18-upload-dataset", 18, [
        co.UploadDatasetRequest(header=header),
        co.UploadDatasetRequest(chunk=co.DatasetChunk(rows=matrix([[1, 2], [3, 4]]),
                                                      string_labels=["x", "y"]))])
    stream("18-upload-numeric", 18, [
        co.UploadDatasetRequest(header=co.DatasetHeader(name="up2", cols=1, labels=co.LABELS_NUMERIC)),
        co.UploadDatasetRequest(chunk=co.DatasetChunk(rows=matrix([[1], [2]]), labels=[0, 1]))])
    data = model_file()
    stream("19-import-model", 19, [co.ImportModelRequest(model="imp"),
                                   co.ImportModelRequest(data=data[:30]),
                                   co.ImportModelRequest(data=data[30:])])
    stream("19-import-model-bad-k", 19, [co.ImportModelRequest(model="imp"),
                                         co.ImportModelRequest(data=model_file(n_neighbors=0))])
    stream("20-load-shard", 20, [
        wk.LoadShardRequest(header=wk.ShardHeader(shard_id="s1", rows=3, cols=2,
                                                  first_global_index=10,
                                                  index_params=c.NeighborsParams(leaf_size=1))),
        wk.LoadShardRequest(rows=matrix([[1, 2], [3, 4]])),
        wk.LoadShardRequest(rows=matrix([[5, 6]]))])
    stream("20-load-shard-ids", 20, [
        wk.LoadShardRequest(header=wk.ShardHeader(shard_id="s2", rows=2, cols=1,
                                                  global_indices=[4, 2])),
        wk.LoadShardRequest(rows=matrix([[1], [3]]))])
    rows = [[1.0, 2.0], [3.0, 4.0]]
    labels = [0.0, 1.0]
    h = hashlib.sha256(b"knncluster-dataset-v1" + struct.pack("<QQQ", 2, 2, 1) +
                       b"".join(struct.pack("<d", v) for r in rows for v in r) +
                       b"".join(struct.pack("<d", v) for v in labels)).hexdigest()
    stream("21-put-dataset", 21, [
        wk.PutDatasetRequest(header=wk.PutDatasetHeader(content_hash=h, rows=2, cols=2,
                                                        has_labels=True)),
        wk.PutDatasetRequest(rows=matrix(rows)),
        wk.PutDatasetRequest(labels=wk.DoubleChunk(values=labels))])


if __name__ == "__main__":
    csv_seeds()
    npy_seeds()
    model_seeds()
    request_seeds()
