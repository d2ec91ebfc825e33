#!/usr/bin/python3
"""Writes the .npy fixtures read by core/datasets/datasets_test.cc.

Run with Debian's numpy: /usr/bin/python3 tests/data/npy/make_fixtures.py (from anywhere).
The outputs are committed; rerunning must reproduce them byte for byte.
"""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def save(name, arr, version=None):
    path = os.path.join(HERE, name)
    if version is None:
        np.save(path, arr)
    else:
        with open(path, "wb") as f:
            np.lib.format.write_array(f, arr, version=version)


base = [[1.5, -2.0, 3.25], [0.0, 0.125, 100.0]]
save("f8_base_2x3.npy", np.array(base, dtype="<f8"))
save("f4_2x3.npy", np.array(base, dtype="<f4"))
save("f8_2x3.npy", np.array([[1.5, -2.0, 3.25], [0.1, 1e-300, -1e300]], dtype="<f8"))
save("i4_2x3.npy", np.array([[1, -7, 2147483647], [-2147483648, 0, 42]], dtype="<i4"))
save("i8_2x3.npy", np.array([[2**53, -5, 0], [-(2**53), 7, 123456789012]], dtype="<i8"))
save("i8_inexact.npy", np.array([[0, 2**53 + 1]], dtype="<i8"))
save("f8_vector.npy", np.array([0.0, 1.0, 2.0, 1.0], dtype="<f8"))
save("f8_column.npy", np.array([[3.0], [4.0]], dtype="<f8"))
save("f8_v2.npy", np.array(base, dtype="<f8"), version=(2, 0))
save("f8_v3.npy", np.array(base, dtype="<f8"), version=(3, 0))
save("f8_fortran.npy", np.asfortranarray(np.array(base, dtype="<f8")))
save("f8_bigendian.npy", np.array(base, dtype=">f8"))
save("f8_nan.npy", np.array([[1.0, 2.0], [3.0, np.nan]], dtype="<f8"))
save("f4_inf.npy", np.array([[1.0, -np.inf]], dtype="<f4"))
save("f8_3d.npy", np.zeros((2, 2, 2), dtype="<f8"))
save("f8_scalar.npy", np.float64(2.5))
save("u1_2x3.npy", np.array(base, dtype="u1"))
save("object.npy", np.array([1, "a"], dtype=object))
