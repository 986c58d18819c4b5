#!/usr/bin/python3
"""Writes tests/data/mx/matmul_refs.json: NumPy results for matmul, addmm,
outer, inner, tensordot and einsum, which tests/mx/test_matmul.cpp checks.

Inputs of the float16/bfloat16 cases are multiples of 1/8 below 2 in
magnitude, exactly representable in both, so the only rounding in those cases
is the output's. Run: /usr/bin/python3 tools/reference/matmul_refs.py
"""
import json
import os

import numpy as np

rng = np.random.default_rng(20261127)
cases = []


def real(shape):
    return rng.standard_normal(shape).round(4)


def exact(shape):
    return rng.integers(-15, 16, size=shape) / 8.0


def ints(shape, lo=-20, hi=20):
    return rng.integers(lo, hi, size=shape)


def add(name, op, dtype, inputs, expected, **params):
    expected = np.asarray(expected)
    if expected.dtype == bool:
        expected = expected.astype(np.int64)
    case = {
        "name": name,
        "op": op,
        "dtype": dtype,
        "inputs": [{"shape": list(x.shape), "data": np.asarray(x).ravel().tolist()} for x in inputs],
        "expected": {"shape": list(expected.shape), "data": expected.ravel().tolist()},
    }
    case.update(params)
    cases.append(case)


# ---- matmul: NumPy promotion of 1-D operands and batch broadcasting
shapes = [
    ("2d", (3, 4), (4, 5)),
    ("1d_2d", (4,), (4, 5)),
    ("2d_1d", (3, 4), (4,)),
    ("1d_1d", (4,), (4,)),
    ("batch_broadcast", (2, 1, 3, 4), (5, 4, 2)),
    ("batch_and_1d", (2, 3, 4), (4,)),
    ("1d_and_batch", (4,), (2, 4, 3)),
    ("batch_rank_mismatch", (3, 2, 4), (4, 6)),
    ("gemv_row", (1, 37), (37, 29)),
    ("gemv_col", (29, 37), (37, 1)),
    ("empty_k", (3, 0), (0, 2)),
    ("empty_m", (0, 3), (3, 2)),
]
for dtype in ["float32", "float64", "float16", "bfloat16"]:
    gen = exact if dtype in ("float16", "bfloat16") else real
    for name, sa, sb in shapes:
        a, b = gen(sa), gen(sb)
        add(f"matmul_{name}_{dtype}", "matmul", dtype, [a, b], np.matmul(a, b))

# complex64: real and imaginary parts interleaved as [re, im] pairs
a = real((3, 4)) + 1j * real((3, 4))
b = real((4, 2)) + 1j * real((4, 2))
c = a @ b
cases.append({
    "name": "matmul_complex64",
    "op": "matmul_complex",
    "dtype": "complex64",
    "inputs": [{"shape": [3, 4], "data": np.stack([a.real, a.imag], -1).ravel().tolist()},
               {"shape": [4, 2], "data": np.stack([b.real, b.imag], -1).ravel().tolist()}],
    "expected": {"shape": [3, 2], "data": np.stack([c.real, c.imag], -1).ravel().tolist()},
})

# integers wrap like NumPy's fixed-width arithmetic
a, b = ints((4, 5)), ints((2, 5, 3))
add("matmul_int32", "matmul", "int32", [a, b], np.matmul(a.astype(np.int32), b.astype(np.int32)))
a, b = ints((3, 4), 0, 128), ints((4, 2), 0, 128)
add("matmul_int8_wraps", "matmul", "int8", [a, b],
    np.matmul(a.astype(np.int8), b.astype(np.int8)))
a, b = ints((3, 4), 0, 60000), ints((4, 2), 0, 60000)
add("matmul_uint16_wraps", "matmul", "uint16", [a, b],
    np.matmul(a.astype(np.uint16), b.astype(np.uint16)))
a, b = ints((3, 4), 0, 2), ints((4, 2), 0, 2)
add("matmul_bool", "matmul", "bool", [a, b], np.matmul(a.astype(bool), b.astype(bool)))

# ---- addmm: beta * c + alpha * a @ b, c broadcast to the product
for dtype in ["float32", "float64", "bfloat16"]:
    gen = exact if dtype == "bfloat16" else real
    a, b, c = gen((3, 4)), gen((4, 5)), gen((5,))
    add(f"addmm_{dtype}", "addmm", dtype, [c, a, b], 0.5 * (a @ b) + 2.0 * c,
        alpha=0.5, beta=2.0)
    a, b, c = gen((2, 3, 4)), gen((4, 2)), gen((3, 1))
    add(f"addmm_batch_{dtype}", "addmm", dtype, [c, a, b], -1.0 * (a @ b) + 0.25 * c,
        alpha=-1.0, beta=0.25)
a, b, c = real((4,)), real((4, 3)), real((3,))
add("addmm_1d_float32", "addmm", "float32", [c, a, b], a @ b + c, alpha=1.0, beta=1.0)

# ---- outer, inner, tensordot
a, b = real((3,)), real((2, 2))
add("outer", "outer", "float32", [a, b], np.outer(a, b))
a, b = real((2, 3)), real((4, 3))
add("inner", "inner", "float32", [a, b], np.inner(a, b))
a, b = real((3, 4, 5)), real((4, 5, 2))
add("tensordot_int", "tensordot", "float32", [a, b], np.tensordot(a, b, 2), axis=2)
a, b = real((3, 4, 5)), real((5, 2))
add("tensordot_int1", "tensordot", "float32", [a, b], np.tensordot(a, b, 1), axis=1)
a, b = real((3, 4, 5)), real((4, 3, 2))
add("tensordot_axes", "tensordot", "float32", [a, b],
    np.tensordot(a, b, axes=([1, 0], [0, 1])), axes_a=[1, 0], axes_b=[0, 1])
a, b = real((2, 3)), real((3, 2))
add("tensordot_negative_axes", "tensordot", "float32", [a, b],
    np.tensordot(a, b, axes=([-1], [0])), axes_a=[-1], axes_b=[0])

# ---- einsum
einsums = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk", [(2, 3, 4), (4, 5)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("i,i->", [(6,), (6,)]),
    ("i,i", [(6,), (6,)]),
    ("ij->ji", [(3, 4)]),
    ("ji", [(3, 4)]),
    ("ij", [(3, 4)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("i,j->ij", [(3,), (4,)]),
    ("bij->b", [(2, 3, 4)]),
    ("ij->", [(3, 4)]),
    ("iij->ji", [(3, 3, 2)]),
    ("iji->j", [(3, 2, 3)]),
    ("ij,ij->ij", [(3, 4), (3, 4)]),
    ("ij,ij->i", [(3, 4), (3, 4)]),
    ("ij,kj->ik", [(3, 4), (5, 4)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("...i,...i->...", [(2, 1, 3), (4, 3)]),
    ("i,i", [(1,), (5,)]),
    ("Ba,ab", [(2, 3), (3, 4)]),
    ("ab,bc,ca->", [(2, 3), (3, 4), (4, 2)]),
    ("ijk,jl->ilk", [(2, 3, 4), (3, 5)]),
    ("i...->...", [(3, 2, 2)]),
    (" ij , jk -> ik ", [(2, 3), (3, 2)]),
]
for k, (spec, shapes_) in enumerate(einsums):
    ops = [real(s) for s in shapes_]
    add(f"einsum_{k}", "einsum", "float64", ops, np.einsum(spec, *ops), spec=spec)

here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "..", "..", "tests", "data", "mx", "matmul_refs.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump({"numpy_version": np.__version__, "cases": cases}, f, separators=(",", ":"))
print(f"wrote {len(cases)} cases to {os.path.normpath(path)}")
