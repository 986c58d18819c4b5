#!/usr/bin/python3
"""Writes the expected values of mx::logsumexp over one axis with NumPy in float64 (the reference).

Run from the repository root:

    /usr/bin/python3 tools/reference/logsumexp_refs.py > tests/data/mx/logsumexp_refs.json

Long rows (up to a vocabulary of 262208) are not stored: their inputs come from a counter-based
hash that tests/mx/test_logsumexp.cpp recomputes bit for bit, and each case records the float64
sum of its inputs so that the test can confirm it built the same array. "values" cases carry
their (small) inputs inline, already rounded to the input dtype; non-finite values are written as the strings "nan", "inf", "-inf".

Generated inputs ("gen"): element i (row-major) of a case with seed s has h = hash32(s, i) and
  float32:  (h >> 8) - 2**23, times 2**(e - 23)   (every float32 in [-2**e, 2**e) on a 2**-20 grid)
  bfloat16: (h >> 24) - 128,  times 2**(e - 7)    (exactly representable in bfloat16)
so the values are exact in the input dtype and NumPy reads the same numbers the test builds.
"""
import json

import numpy as np

M32 = 0xFFFFFFFF


def hash32(seed, count):
    x = (np.arange(count, dtype=np.uint64) * 0x9E3779B1 + seed * 0x85EBCA77 + 1) & M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    x ^= x >> 16
    return x


def generated(dtype, seed, shape, e):
    count = int(np.prod(shape))
    h = hash32(seed, count)
    if dtype == "float32":
        v = ((h >> 8).astype(np.int64) - 2**23).astype(np.float64) * 2.0 ** (e - 23)
    else:
        v = ((h >> 24).astype(np.int64) - 128).astype(np.float64) * 2.0 ** (e - 7)
    return v.reshape(shape)


def lse(x, axis, keepdims):
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.max(x, axis=axis, keepdims=True)
        s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    s = np.where(np.isinf(m), m, s)
    return s if keepdims else np.squeeze(s, axis=axis)


def enc(x):
    out = []
    for v in np.asarray(x, dtype=np.float64).reshape(-1).tolist():
        if np.isnan(v):
            out.append("nan")
        elif np.isinf(v):
            out.append("inf" if v > 0 else "-inf")
        else:
            out.append(v)
    return out


cases = []


def gen_case(name, dtype, seed, shape, e, axis, keepdims):
    x = generated(dtype, seed, shape, e)
    y = lse(x, axis, keepdims)
    cases.append({"name": name, "dtype": dtype, "gen": {"seed": seed, "shape": list(shape), "e": e},
                  "input_sum": float(np.sum(x)), "axis": axis, "keepdims": keepdims,
                  "expected": {"data": enc(y), "shape": list(y.shape)}})


def round_to(dtype, x):
    """x rounded to float32, then (round to nearest even) to bfloat16, as the test's astype does."""
    f = np.asarray(x, dtype=np.float32)
    if dtype == "float32":
        return f.astype(np.float64)
    bits = f.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    out = (rounded & M32).astype(np.uint32).view(np.float32).astype(np.float64)
    return np.where(np.isfinite(f), out, f.astype(np.float64))


def values_case(name, dtype, x, axis, keepdims):
    x = round_to(dtype, x)
    y = lse(x, axis, keepdims)
    cases.append({"name": name, "dtype": dtype, "values": {"data": enc(x), "shape": list(x.shape)},
                  "axis": axis, "keepdims": keepdims,
                  "expected": {"data": enc(y), "shape": list(y.shape)}})


seed = 1
for dtype in ("float32", "bfloat16"):
    for n, rows in ((1, 5), (7, 3), (1000, 4), (262208, 1), (262208, 3)):
        for keepdims in (False, True):
            gen_case(f"{dtype}_{rows}x{n}_keep{int(keepdims)}", dtype, seed, (rows, n), 4, -1,
                     keepdims)
            seed += 1
    # Several leading dims, a wider spread of values, and a single row without leading dims.
    gen_case(f"{dtype}_2x3x4x33", dtype, seed, (2, 3, 4, 33), 6, 3, False)
    gen_case(f"{dtype}_2x3x4x33_keep", dtype, seed, (2, 3, 4, 33), 6, -1, True)
    gen_case(f"{dtype}_vector", dtype, seed + 1, (5000,), 4, 0, False)
    # One axis that is not the last one.
    gen_case(f"{dtype}_axis0", dtype, seed + 2, (300, 5), 4, 0, False)
    gen_case(f"{dtype}_axis1_keep", dtype, seed + 3, (3, 70, 5), 4, 1, True)
    seed += 4

inf, nan = np.inf, np.nan
special = [
    [-inf] * 9,                                 # all -inf -> -inf
    [1.0, -inf, 2.0, -inf, -inf, 0.5, 3.0, -inf, -1.0],
    [1.0, inf, 2.0, -3.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # +inf -> +inf
    [inf, -inf, inf, -inf, 0.0, 0.0, 0.0, 0.0, 0.0],
    [1.0, 2.0, nan, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0],   # NaN -> NaN
    [nan, inf, -inf, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # NaN beats +inf
    [1e4, 1e4 - 1, -1e4, 1e4, 0.0, 0.0, 0.0, 0.0, 0.0],  # no overflow
    [-1e4, -1e4 - 2, -1e4, -1e4 - 50, -1e4 - 1, -2e4, -1e4, -1e4, -1e4],  # no underflow
]
for dtype in ("float32", "bfloat16"):
    values_case(f"{dtype}_special", dtype, special, -1, False)
    values_case(f"{dtype}_special_keep", dtype, special, 1, True)

print(json.dumps({"cases": cases}, separators=(",", ":")))
