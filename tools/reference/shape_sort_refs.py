#!/usr/bin/env python3
"""Writes tests/data/mx/shape_sort_refs.json: NumPy results for the shape,
creation and sorting ops that tests/mx/test_shape_ops.cpp and
tests/mx/test_sort.cpp check.

Each case holds its inputs and NumPy's outputs; the C++ tests know, by case
name, which op (and parameters) to apply. NaN and infinities are written as
the strings "nan", "inf" and "-inf" (JSON has no literal for them).

Run: /usr/bin/python3 tools/reference/shape_sort_refs.py
"""
import json
import math
import os

import numpy as np
from numpy.lib.stride_tricks import as_strided

rng = np.random.default_rng(20261127)


def enc(a):
    a = np.asarray(a)
    if a.dtype.kind in "iub":
        data = [int(v) for v in a.reshape(-1)]
    else:
        data = []
        for v in a.reshape(-1):
            v = float(v)
            if math.isnan(v):
                data.append("nan")
            elif math.isinf(v):
                data.append("inf" if v > 0 else "-inf")
            else:
                data.append(v)
    return {"data": data, "shape": list(a.shape), "dtype": str(a.dtype)}


cases = {}


def case(name, inputs, outputs):
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    cases[name] = {"inputs": [enc(x) for x in inputs], "outputs": [enc(y) for y in outputs]}


def randf(*shape):
    return rng.standard_normal(shape).round(3).astype(np.float32)


# ---------------------------------------------------------------- concatenate / stack / split
a, b = randf(2, 3), randf(2, 2)
case("concat_axis1", [a, b], np.concatenate([a, b], axis=1))
a, b, c = randf(2, 1, 3), randf(2, 2, 3), randf(2, 3, 3)
case("concat_axis_neg2", [a, b, c], np.concatenate([a, b, c], axis=-2))
a, b = np.array([1, -2], np.int32), randf(3)
# MLX promotes int32 with float32 to float32 (NumPy would give float64).
case("concat_promote", [a, b], np.concatenate([a, b]).astype(np.float32))
a, b = randf(2, 2), randf(3)
case("concat_flat", [a, b], np.concatenate([a.ravel(), b]))
a, b = np.arange(6, dtype=np.float32).reshape(2, 3), randf(3, 1)
case("concat_transposed", [a, b], np.concatenate([a.T, b], axis=1))
a, b, c = randf(2, 3), randf(2, 3), randf(2, 3)
case("stack_axis1", [a, b, c], np.stack([a, b, c], axis=1))
case("stack_axis_neg1", [a, b, c], np.stack([a, b, c], axis=-1))
a = randf(6, 4)
case("split_3_axis0", [a], np.split(a, 3, axis=0))
case("split_idx_axis1", [a], np.split(a, [1, 3], axis=1))
case("split_idx_neg", [a], np.split(a, [-1], axis=0))
case("split_idx_decreasing", [a], np.split(a, [3, 1], axis=1))
x, y, z = randf(3), randf(2), randf(4)
case("meshgrid_xy", [x, y], np.meshgrid(x, y, indexing="xy"))
case("meshgrid_ij3", [x, y, z], np.meshgrid(x, y, z, indexing="ij"))
case("meshgrid_xy3_sparse", [x, y, z], np.meshgrid(x, y, z, indexing="xy", sparse=True))

# ---------------------------------------------------------------- repeat / tile / pad
a = np.arange(6, dtype=np.int32).reshape(2, 3)
case("repeat_axis1", [a], np.repeat(a, 2, axis=1))
case("repeat_axis_neg2", [a], np.repeat(a, 3, axis=-2))
case("repeat_flat", [a], np.repeat(a, 2))
case("repeat_zero", [a], np.repeat(a, 0, axis=1))
case("tile_2", [a], np.tile(a, 2))
case("tile_2_1_2", [a], np.tile(a, (2, 1, 2)))
v = np.array([1, 2, 3], np.int16)
case("tile_1d_2_2", [v], np.tile(v, (2, 2)))
f = randf(2, 3)
case("pad_const", [f], np.pad(f, ((1, 2), (0, 1)), constant_values=5.0))
case("pad_edge", [f], np.pad(f, ((2, 1), (1, 3)), mode="edge"))
case("pad_int1", [f], np.pad(f, 1))
g = randf(2, 3, 2)
case("pad_axes", [g], np.pad(g, ((0, 0), (0, 0), (2, 1)), constant_values=-1.0))

# ---------------------------------------------------------------- diagonals
v = randf(3)
for k in (0, 2, -1):
    case(f"diag1d_k{k}".replace("-", "m"), [v], np.diag(v, k))
m = randf(3, 4)
for k in (0, 1, -2, 5):
    case(f"diag2d_k{k}".replace("-", "m"), [m], np.diag(m, k))
t = randf(2, 3, 4)
case("diagonal_o1_a2_a0", [t], np.diagonal(t, 1, 2, 0))
case("diagonal_om1_a1_a2", [t], np.diagonal(t, -1, 1, 2))
s3 = randf(3, 3)
case("diagonal_om1", [s3], np.diagonal(s3, -1))

# ---------------------------------------------------------------- roll
r = np.arange(12, dtype=np.float32).reshape(3, 4)
case("roll_1_axis1", [r], np.roll(r, 1, axis=1))
case("roll_m5_axis0", [r], np.roll(r, -5, axis=0))
case("roll_flat_7", [r], np.roll(r, 7))
case("roll_multi", [r], np.roll(r, (1, -2), axis=(0, 1)))

# ---------------------------------------------------------------- creation
case("eye_3_4_k1", [], np.eye(3, 4, 1, dtype=np.float32))
case("eye_4_3_km2", [], np.eye(4, 3, -2, dtype=np.float32))
case("tri_4_3_km1", [], np.tri(4, 3, -1, dtype=np.float32))
case("tri_3_5_k2", [], np.tri(3, 5, 2, dtype=np.float32))
m = randf(3, 4)
case("tril_k0", [m], np.tril(m))
case("tril_k1", [m], np.tril(m, 1))
case("triu_km1", [m], np.triu(m, -1))
case("triu_k2", [m], np.triu(m, 2))
bt = randf(2, 3, 3)
case("tril_batched", [bt], np.tril(bt))

# ---------------------------------------------------------------- as_strided / view
base = np.arange(12, dtype=np.float32)
isz = base.itemsize
case("as_strided_windows", [base],
     as_strided(base[2:], shape=(4, 3), strides=(2 * isz, isz)))  # offset 2
case("as_strided_bcast", [base], as_strided(base[5:], shape=(2, 3), strides=(0, 3 * isz)))
vf = np.array([[1.0, -2.0, 0.5], [3.25, -0.0, 1e-3]], np.float32)
case("view_f32_i32", [vf], vf.view(np.int32))
case("view_f32_u8", [vf], vf.view(np.uint8))
vi = np.array([[1, -1, 258, 7], [0, 32767, -32768, 3]], np.int16)
case("view_i16_i32", [vi], vi.view(np.int32))
case("view_i16_f16", [vi], vi.view(np.float16))

# ---------------------------------------------------------------- sorting
x = randf(3, 5)
x[0, 1] = np.nan
x[1, 3] = np.inf
x[2, 0] = -np.inf
x[2, 4] = np.nan
case("sort_axis_m1", [x], np.sort(x, axis=-1))
case("sort_axis0", [x], np.sort(x, axis=0))
case("sort_flat", [x], np.sort(x, axis=None))
case("argsort_axis_m1", [x], np.argsort(x, axis=-1, kind="stable").astype(np.uint32))
case("argsort_axis0", [x], np.argsort(x, axis=0, kind="stable").astype(np.uint32))
ties = np.array([3, 1, 2, 1, 3, 0, 2, 1], np.int32)
case("argsort_ties", [ties], np.argsort(ties, kind="stable").astype(np.uint32))
t3 = rng.integers(-5, 5, size=(2, 3, 4)).astype(np.int64) * 1000000000007
case("sort_int64_axis1", [t3], np.sort(t3, axis=1))
case("argsort_int64_axis1", [t3], np.argsort(t3, axis=1, kind="stable").astype(np.uint32))
u8 = rng.integers(0, 256, size=(17,)).astype(np.uint8)
case("sort_uint8", [u8], np.sort(u8))
bl = np.array([True, False, True, False, False])
case("sort_bool", [bl], np.sort(bl))
case("argsort_bool", [bl], np.argsort(bl, kind="stable").astype(np.uint32))
big = randf(7, 130)
case("sort_big_axis1", [big], np.sort(big, axis=1))
case("argsort_big_axis0", [big], np.argsort(big, axis=0, kind="stable").astype(np.uint32))
# partition/topk are checked by property; the reference is the full sort.
p = randf(4, 9)
p[1, 2] = np.nan
case("partition_ref", [p], [np.sort(p, axis=-1), np.sort(p, axis=0)])
case("topk_ref", [p], [np.sort(p, axis=-1)[:, -3:], np.sort(p.ravel())[-5:]])

out = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "mx",
                   "shape_sort_refs.json")
with open(out, "w") as fh:
    json.dump({"numpy": np.__version__, "cases": cases}, fh, separators=(",", ":"))
print(f"wrote {len(cases)} cases to {os.path.normpath(out)}")
