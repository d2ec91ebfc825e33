#!/usr/bin/python3
# Copied unchanged from the reference benchmark kit that accompanies BENCH.md (the published
# reference speeds); kept here so that nothing in the project reads outside the repository.
"""Anchor 4a: deterministic benchmark datasets (numpy legacy RandomState(0)).

Every dataset = (base X, queries Q), float64, C order.  Recipes (one fresh
RandomState(0) per dataset, draws in exactly this order):

  uniform3d : X = rs.random_sample((1_000_000, 3))      Q = rs.random_sample((10_000, 3))
  blobs16d  : C = rs.uniform(-10, 10, size=(10, 16))     # 10 centres
              lx = rs.randint(0, 10, size=200_000);  X = C[lx] + rs.standard_normal((200_000, 16))
              lq = rs.randint(0, 10, size=10_000);   Q = C[lq] + rs.standard_normal((10_000, 16))
  gauss784d : X = rs.standard_normal((60_000, 784))      Q = rs.standard_normal((10_000, 784))
  digits    : sklearn load_digits(); train_test_split(test_size=0.2, random_state=1337);
              X = X_train (1437 x 64); Q = np.tile(X_test, (28, 1))  (10_080 x 64; 360 test rows x 28)

Usage:
  /usr/bin/python3 make_bench_data.py --write DIR [--format npy|f32|f64|all] [--names a,b]
      writes DIR/<name>_base.<ext>, DIR/<name>_query.<ext>
      .npy : float64 numpy .npy (exact values used by the sklearn benchmark)
      .f32 / .f64 : raw little-endian, 8-byte header = uint32 n_rows, uint32 n_cols,
                    then n_rows*n_cols values row-major (.f32 = float64 values rounded
                    to nearest float32, i.e. numpy astype(float32))
  /usr/bin/python3 make_bench_data.py --manifest      # print checksums of every dataset
      (sha256 of the float64 and float32 little-endian C-order bytes of X and Q, first row,
       so a re-generation or a C++ reader can be checked without storing the data)
load() caches .npy files under $TMPDIR/knn-bench-data (default /tmp).
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ("uniform3d", "blobs16d", "gauss784d", "digits")


def make(name):
    if name == "uniform3d":
        rs = np.random.RandomState(0)
        X = rs.random_sample((1_000_000, 3))
        Q = rs.random_sample((10_000, 3))
    elif name == "blobs16d":
        rs = np.random.RandomState(0)
        C = rs.uniform(-10, 10, size=(10, 16))
        lx = rs.randint(0, 10, size=200_000)
        X = C[lx] + rs.standard_normal((200_000, 16))
        lq = rs.randint(0, 10, size=10_000)
        Q = C[lq] + rs.standard_normal((10_000, 16))
    elif name == "gauss784d":
        rs = np.random.RandomState(0)
        X = rs.standard_normal((60_000, 784))
        Q = rs.standard_normal((10_000, 784))
    elif name == "digits":
        from sklearn import datasets
        from sklearn.model_selection import train_test_split
        d = datasets.load_digits()
        X, X_test = train_test_split(d.data, test_size=0.2, random_state=1337)
        Q = np.tile(X_test, (28, 1))
    else:
        raise ValueError(name)
    return np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(Q, dtype=np.float64)


def load(name, cache=os.path.join(os.environ.get("TMPDIR", "/tmp"), "knn-bench-data")):
    """Load from the .npy cache, generating it on first use."""
    os.makedirs(cache, exist_ok=True)
    px, pq = (os.path.join(cache, f"{name}_{w}.npy") for w in ("base", "query"))
    if os.path.exists(px) and os.path.exists(pq):
        return np.load(px), np.load(pq)
    X, Q = make(name)
    np.save(px, X)
    np.save(pq, Q)
    return X, Q


def write_raw(path, A, dtype):
    A = np.ascontiguousarray(A, dtype=np.dtype(dtype).newbyteorder("<"))
    with open(path, "wb") as f:
        f.write(np.array(A.shape, dtype="<u4").tobytes())
        f.write(A.tobytes())


def read_raw(path, dtype):
    with open(path, "rb") as f:
        n, d = np.frombuffer(f.read(8), dtype="<u4")
        return np.frombuffer(f.read(), dtype=np.dtype(dtype).newbyteorder("<")).reshape(n, d)


def sha(A, dtype):
    return hashlib.sha256(np.ascontiguousarray(A, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", metavar="DIR")
    ap.add_argument("--format", default="npy", choices=("npy", "f32", "f64", "all"))
    ap.add_argument("--names", default=",".join(NAMES))
    ap.add_argument("--manifest", action="store_true")
    a = ap.parse_args()
    names = a.names.split(",")
    if not a.write and not a.manifest:
        ap.print_help()
        sys.exit(1)
    man = {"numpy": np.__version__, "datasets": {}}
    for name in names:
        X, Q = make(name)
        if a.write:
            os.makedirs(a.write, exist_ok=True)
            for part, A in (("base", X), ("query", Q)):
                fmts = ("npy", "f32", "f64") if a.format == "all" else (a.format,)
                for fm in fmts:
                    p = os.path.join(a.write, f"{name}_{part}.{fm}")
                    if fm == "npy":
                        np.save(p, A)
                    else:
                        dt = "f4" if fm == "f32" else "f8"
                        write_raw(p, A, dt)
                        assert np.array_equal(read_raw(p, dt), A.astype(dt))
                    print("wrote", p, os.path.getsize(p), "bytes")
        if a.manifest:
            man["datasets"][name] = {
                part: {"shape": list(A.shape), "sha256_f64_le": sha(A, "f8"),
                       "sha256_f32_le": sha(A, "f4"), "first_row_first8": A[0, :8].tolist(),
                       "sum": float(A.sum()), "min": float(A.min()), "max": float(A.max())}
                for part, A in (("base", X), ("query", Q))}
    if a.manifest:
        print(json.dumps(man, indent=1))


if __name__ == "__main__":
    main()
