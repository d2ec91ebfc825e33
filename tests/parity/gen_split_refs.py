#!/usr/bin/python3
"""Print scikit-learn / NumPy reference splits as JSON, for core/model_selection/split_parity_test.

Usage: /usr/bin/python3 tests/parity/gen_split_refs.py [SECTION ...]
Sections: rng, tts, kfold, skfold (default: all). Output: one JSON object on stdout,
{"versions": {...}, "<section>": [case, ...]}. A case whose call raises ValueError carries
"error": message instead of its result, and the C++ side must return InvalidArgument for it.
Deterministic: every random_state is an integer seed (None cannot be compared).
"""
import json
import sys
import warnings

import numpy as np
import sklearn
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

SEEDS = [0, 1, 42, 1337, 2024, 4294967295]
# Small, odd, power-of-two-adjacent and large sizes; the mask in random_interval changes at 2^k.
SIZES = [1, 2, 3, 4, 5, 7, 10, 11, 17, 31, 32, 33, 64, 99, 101, 257, 1000, 1797, 3001]
LARGE = 200  # above this, fewer parameter combinations to keep the run short


def ints(a):
    return [int(v) for v in a]


def rng_cases():
    uint32 = []
    for seed in SEEDS + [7, 5489, 123456789, 2**31, 2**32 - 2]:
        rs = np.random.RandomState(seed)
        # randint(0, 2**32) has range 0xffffffff, which NumPy serves with raw next_uint32 outputs.
        values = rs.randint(0, 2**32, size=64, dtype=np.uint64)
        uint32.append({"seed": seed, "values": ints(values)})
    perms = []
    sizes = list(range(0, 21)) + [31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000,
                                  1023, 1024, 1025, 1797, 4095, 4096, 4097, 5000]
    for seed in SEEDS:
        for n in sizes:
            perm = np.random.RandomState(seed).permutation(n)
            perms.append({"seed": seed, "n": n, "perm": ints(perm)})
    extra = np.random.RandomState(99).randint(0, 2**32, size=40, dtype=np.uint64)
    for seed in ints(extra):
        for n in (5, 50, 500, 2500):
            perm = np.random.RandomState(seed).permutation(n)
            perms.append({"seed": seed, "n": n, "perm": ints(perm)})
    # Legacy masked randint(0, max + 1, dtype=int64) is random_interval(max) per draw, including
    # the 64-bit path (two 32-bit outputs, first one high) for max > 0xffffffff.
    intervals = []
    for seed in SEEDS:
        for mx in (1, 2, 3, 6, 1000, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1, 2**32, 2**32 + 1,
                   3 * 2**40 + 5, 2**62 - 1):
            values = np.random.RandomState(seed).randint(0, mx + 1, size=50, dtype=np.int64)
            intervals.append({"seed": seed, "max": mx, "values": ints(values)})
    return {"uint32": uint32, "permutation": perms, "random_interval": intervals}


def tts_cases():
    cases = []
    for n in SIZES + [0]:
        if n > LARGE:
            fractions = [0.2, 0.25, 0.5]
            counts = [1, n // 3, n - 1]
        else:
            fractions = [0.1, 0.2, 0.25, 1 / 3, 0.5, 0.7, 0.9, 0.99, 1e-9, 0.0, 1.0, 1.5, -0.25]
            counts = [1, 2, 3, n // 3, n - 1, n, n + 1, 0, -1]
        sizes = [("fraction", float(f)) for f in fractions] + [("count", int(c)) for c in counts]
        for kind, test_size in sizes:
            for shuffle, seeds in ((True, SEEDS if n <= LARGE else SEEDS[:3]), (False, [0])):
                for seed in seeds:
                    case = {"n": n, kind: test_size, "seed": seed, "shuffle": shuffle}
                    try:
                        train, test = train_test_split(np.arange(n), test_size=test_size,
                                                       random_state=seed, shuffle=shuffle)
                        case["train"], case["test"] = ints(train), ints(test)
                    except ValueError as e:
                        case["error"] = str(e)
                    cases.append(case)
    return cases


def folds(splitter, X, y=None):
    return [{"train": ints(tr), "test": ints(te)} for tr, te in splitter.split(X, y)]


def kfold_cases():
    cases = []
    for n in SIZES + [0]:
        n_splits_list = [2, 7] if n > LARGE else sorted({0, 1, 2, 3, 5, 7, 10, n, n + 1})
        for n_splits in n_splits_list:
            for shuffle, seeds in ((True, SEEDS if n <= LARGE else [1, 4294967295]),
                                   (False, [None, 3] if n <= LARGE else [None])):
                for seed in seeds:
                    case = {"n": n, "n_splits": n_splits, "shuffle": shuffle, "seed": seed}
                    try:
                        case["folds"] = folds(KFold(n_splits, shuffle=shuffle, random_state=seed),
                                              np.zeros(n))
                    except ValueError as e:
                        case["error"] = str(e)
                    cases.append(case)
    return cases


def skfold_cases():
    # Arbitrary codes (negative, huge, unsorted) so that first-appearance encoding matters.
    codes = np.array([17, -5, 1000000007, 0, 42, -2**40, 3, 9, 11, -1])
    label_sets = []
    for n in SIZES:
        for n_classes in (1, 2, 3, 10):
            if n_classes > n:
                continue
            rs = np.random.RandomState(n * 31 + n_classes)
            p = rs.dirichlet(np.full(n_classes, 0.7))  # uneven class sizes
            labels = codes[:n_classes][rs.choice(n_classes, size=n, p=p)]
            label_sets.append(ints(labels))
            if 8 <= n <= LARGE and n_classes == 3:
                label_sets.append(ints(np.sort(labels)))  # classes in contiguous blocks
    from sklearn.datasets import load_digits
    label_sets.append(ints(load_digits().target))
    cases = []
    for labels in label_sets:
        n = len(labels)
        n_splits_list = [3, 5] if n > LARGE else [1, 2, 3, 5, 7, n, n + 1]
        for n_splits in sorted(set(n_splits_list)):
            for shuffle, seeds in ((True, SEEDS if n <= LARGE else [0, 2024]), (False, [None])):
                for seed in seeds:
                    case = {"labels": labels, "n_splits": n_splits, "shuffle": shuffle,
                            "seed": seed}
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", UserWarning)
                            case["folds"] = folds(
                                StratifiedKFold(n_splits, shuffle=shuffle, random_state=seed),
                                np.zeros(n), np.asarray(labels))
                    except ValueError as e:
                        case["error"] = str(e)
                    cases.append(case)
    return cases


SECTIONS = {"rng": rng_cases, "tts": tts_cases, "kfold": kfold_cases, "skfold": skfold_cases}


def main(argv):
    wanted = argv[1:] or list(SECTIONS)
    out = {"versions": {"numpy": np.__version__, "sklearn": sklearn.__version__}}
    for name in wanted:
        out[name] = SECTIONS[name]()
    json.dump(out, sys.stdout, separators=(",", ":"))


if __name__ == "__main__":
    main(sys.argv)
