#!/usr/bin/python3
"""Writes the expected values of the indexing ops with NumPy (the reference).

Run from the repository root:

    /usr/bin/python3 tools/reference/indexing_refs.py > tests/data/mx/indexing_refs.json

Each case names the mlxcpp op, its inputs (data, shape, dtype) and the expected output computed by
np.take, np.take_along_axis, np.put_along_axis, np.add.at / np.multiply.at / np.maximum.at /
np.minimum.at, fancy assignment, or explicit NumPy slicing for gather windows. Non-finite values are
written as the strings "nan", "inf", "-inf" (JSON has no literal for them).
"""
import json

import numpy as np

rng = np.random.default_rng(20261127)
cases = []


def enc(x):
    x = np.asarray(x)
    vals = []
    for v in x.reshape(-1).tolist():
        if isinstance(v, float) and not np.isfinite(v):
            vals.append("nan" if np.isnan(v) else ("inf" if v > 0 else "-inf"))
        else:
            vals.append(v)
    return {"data": vals, "shape": list(x.shape), "dtype": str(x.dtype)}


def arr(x, dtype=None):
    """Encodes x; `dtype` overrides the dtype mlxcpp builds the input with (e.g. bfloat16)."""
    d = enc(x)
    if dtype:
        d["dtype"] = dtype
    return d


def add(name, op, expected, **kw):
    c = {"name": name, "op": op, "expected": enc(expected)}
    c.update(kw)
    cases.append(c)


# ---------------------------------------------------------------- take
a = np.arange(12, dtype=np.float32).reshape(4, 3)
i = np.array([[3, -1], [0, 2]], dtype=np.int32)
add("take_axis0_2d_indices", "take", np.take(a, i, axis=0), a=arr(a), indices=arr(i), axis=0)

a = rng.standard_normal((2, 3, 4)).astype(np.float32)
i = np.array([2, 0, -4, 3], dtype=np.int64)
add("take_last_axis_negative", "take", np.take(a, i, axis=-1), a=arr(a), indices=arr(i), axis=-1)

a = rng.standard_normal((2, 5, 3))
i = np.array([[4, 1], [0, 4]], dtype=np.uint32)
add("take_middle_axis_uint32", "take", np.take(a, i, axis=1), a=arr(a), indices=arr(i), axis=1)

a = np.arange(12, dtype=np.int32).reshape(3, 4) * 7 - 20
i = np.array([[0, 11], [-1, 5]], dtype=np.int16)
add("take_flattened", "take_flat", np.take(a, i), a=arr(a), indices=arr(i))

a = rng.standard_normal((3, 4)).astype(np.float32)
i = np.array(-2, dtype=np.int32)
add("take_scalar_index_array", "take", np.take(a, i, axis=1), a=arr(a), indices=arr(i), axis=1)

a = np.array([1.5, -2.0, 3.25, 0.5, -0.75, 8.0], dtype=np.float32).reshape(2, 3)
i = np.array([2, 2, 0, 1, 0], dtype=np.int8)
add("take_bfloat16", "take", np.take(a, i, axis=1), a=arr(a, "bfloat16"), indices=arr(i), axis=1)

a = np.array([[True, False, True], [False, False, True]])
i = np.array([1, 0, 1], dtype=np.int32)
add("take_bool", "take", np.take(a, i, axis=0), a=arr(a), indices=arr(i), axis=0)

a = rng.standard_normal((3, 4)).astype(np.float32)
i = np.zeros((0,), dtype=np.int32)
add("take_empty_indices", "take", np.take(a, i, axis=1), a=arr(a), indices=arr(i), axis=1)

# ---------------------------------------------------------------- take_along_axis
a = rng.standard_normal((3, 5)).astype(np.float32)
i = np.argsort(a, axis=1)
add("take_along_argsort_axis1", "take_along_axis", np.take_along_axis(a, i, axis=1), a=arr(a),
    indices=arr(i), axis=1)
i = np.argsort(a, axis=0).astype(np.int32)
add("take_along_argsort_axis0", "take_along_axis", np.take_along_axis(a, i, axis=0), a=arr(a),
    indices=arr(i), axis=0)

a = rng.standard_normal((2, 3, 4))
i = np.array([[[0, -1]], [[3, 2]]], dtype=np.int32)  # (2, 1, 2): broadcasts over axis 1
add("take_along_broadcast_negative", "take_along_axis", np.take_along_axis(a, i, axis=-1),
    a=arr(a), indices=arr(i), axis=-1)

a = rng.standard_normal((1, 4)).astype(np.float32)
i = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 1, 1]], dtype=np.int32).T  # (4, 3)
add("take_along_array_broadcasts", "take_along_axis", np.take_along_axis(a, i, axis=1), a=arr(a),
    indices=arr(i), axis=1)

a = np.array([[5, 1, 9], [2, 8, 3]], dtype=np.int64) * 1000003
i = np.array([[2], [0]], dtype=np.uint8)
add("take_along_int64", "take_along_axis", np.take_along_axis(a, i, axis=1), a=arr(a),
    indices=arr(i), axis=1)

# ---------------------------------------------------------------- put_along_axis
a = rng.standard_normal((3, 4)).astype(np.float32)
i = np.array([[1, 3], [0, 2], [3, 0]], dtype=np.int32)
v = rng.standard_normal((3, 2)).astype(np.float32)
e = a.copy()
np.put_along_axis(e, i, v, axis=1)
add("put_along_axis1", "put_along_axis", e, a=arr(a), indices=arr(i), values=arr(v), axis=1)

a = np.arange(12, dtype=np.float32).reshape(4, 3)
i = np.array([[0, 3, -1]], dtype=np.int64)
e = a.copy()
np.put_along_axis(e, i, np.float32(-7.5), axis=0)
add("put_along_axis0_scalar", "put_along_axis", e, a=arr(a), indices=arr(i),
    values=arr(np.float32(-7.5)), axis=0)

a = np.zeros((2, 3, 4), dtype=np.int32)
i = np.array([[[1], [3], [0]], [[2], [2], [-1]]], dtype=np.int32)
v = np.array([[[10], [20], [30]]], dtype=np.int32)  # broadcasts over axis 0
e = a.copy()
np.put_along_axis(e, i, v, axis=2)
add("put_along_broadcast_values", "put_along_axis", e, a=arr(a), indices=arr(i), values=arr(v),
    axis=2)

a = np.array([[0.5, 1.0, 1.5], [2.0, 2.5, 3.0]], dtype=np.float32)
i = np.array([[2], [0]], dtype=np.int32)
e = a.copy()
np.put_along_axis(e, i, np.array([[-4.0], [6.0]], dtype=np.float32), axis=1)
add("put_along_bfloat16", "put_along_axis", e, a=arr(a, "bfloat16"), indices=arr(i),
    values=arr(np.array([[-4.0], [6.0]], dtype=np.float32), "bfloat16"), axis=1)

# ---------------------------------------------------------------- scatter with reductions
def scatter_case(name, op, ufunc, a, idx, upd, axes, a_dtype=None, upd_dtype=None):
    """upd has shape idx.shape + window; the NumPy reference applies ufunc.at element by element
    of the window (window dims on indexed axes are 1)."""
    e = a.copy()
    ishape = np.broadcast_shapes(*[x.shape for x in idx])
    bidx = [np.broadcast_to(x, ishape) for x in idx]
    window = upd.shape[len(ishape):]
    # Positions inside the window on the non-indexed axes.
    for pos in np.ndindex(*window):
        sel = []
        k = 0
        for d in range(a.ndim):
            if d in axes:
                sel.append(bidx[axes.index(d)].reshape(-1) + pos[d])
            else:
                sel.append(np.full(int(np.prod(ishape)), pos[d]))
        u = upd[(Ellipsis,) + tuple(pos)].reshape(-1)
        if ufunc is None:
            e[tuple(sel)] = u  # fancy assignment (no duplicates in these cases)
        else:
            ufunc.at(e, tuple(sel), u)
    add(name, op, e, a=arr(a, a_dtype), indices=[arr(x) for x in idx], updates=arr(upd, upd_dtype),
        axes=axes)


a = np.arange(5, dtype=np.float32)
i = np.array([0, 1, 0, 4, 0, -1], dtype=np.int32)
u = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 0.5], dtype=np.float32).reshape(6, 1)
scatter_case("scatter_add_duplicates_1d", "scatter_add", np.add, a, [i], u, [0])

a = rng.standard_normal((4, 3))
i = np.array([0, 2, 0, -4], dtype=np.int64)
u = rng.standard_normal((4, 1, 3))
scatter_case("scatter_add_rows", "scatter_add", np.add, a, [i], u, [0])

a = rng.standard_normal((4, 5)).astype(np.float32)
i0 = np.array([[0, 3, 1], [0, 3, 3]], dtype=np.int32)
i1 = np.array([4, 0, 2], dtype=np.uint16)  # broadcasts against i0
u = rng.standard_normal((2, 3, 1, 1)).astype(np.float32)
scatter_case("scatter_add_two_axes_broadcast", "scatter_add", np.add, a, [i0, i1], u, [0, 1])

a = np.array([1.0, 2.0, 3.0, -1.0], dtype=np.float64)
i = np.array([1, 1, 3, 2, 1], dtype=np.int32)
u = np.array([5.0, -2.0, np.nan, 0.5, 7.0]).reshape(5, 1)
scatter_case("scatter_max_duplicates_nan", "scatter_max", np.maximum, a, [i], u, [0])
scatter_case("scatter_min_duplicates_nan", "scatter_min", np.minimum, a, [i], u, [0])

a = rng.integers(-50, 50, (3, 4)).astype(np.int32)
i = np.array([2, 0, 2, 2], dtype=np.int32)
u = rng.integers(-60, 60, (4, 1, 4)).astype(np.int32)
scatter_case("scatter_max_int_rows", "scatter_max", np.maximum, a, [i], u, [0])
scatter_case("scatter_min_int_rows", "scatter_min", np.minimum, a, [i], u, [0])

a = np.array([1.0, 2.0, 3.0], dtype=np.float32)
i = np.array([0, 2, 0, 0], dtype=np.int32)
u = np.array([2.0, -1.5, 3.0, 0.5], dtype=np.float32).reshape(4, 1)
scatter_case("scatter_prod_duplicates", "scatter_prod", np.multiply, a, [i], u, [0])

a = np.array([120, -100, 0], dtype=np.int8)
i = np.array([0, 0, 1, 1], dtype=np.int32)
u = np.array([5, 5, -20, -20], dtype=np.int8).reshape(4, 1)
scatter_case("scatter_add_int8_wraps", "scatter_add", np.add, a, [i], u, [0])

a = np.array([250, 3], dtype=np.uint8)
i = np.array([0, 0, 1], dtype=np.int64)
u = np.array([4, 4, 200], dtype=np.uint8).reshape(3, 1)
scatter_case("scatter_add_uint8_wraps", "scatter_add", np.add, a, [i], u, [0])

a = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
i = np.array([2, 0, 2], dtype=np.int32)
u = np.array([[[1.0, 0.5]], [[-2.0, 8.0]], [[3.0, 1.0]]], dtype=np.float32)
scatter_case("scatter_add_bfloat16", "scatter_add", np.add, a, [i], u, [0], "bfloat16", "bfloat16")

a = rng.standard_normal((3, 6)).astype(np.float32)
i = np.array([5, 0, -3], dtype=np.int32)
u = rng.standard_normal((3, 3, 1)).astype(np.float32)
scatter_case("scatter_columns_no_duplicates", "scatter", None, a, [i], u, [1])

# Window smaller than the array on a non-indexed axis: only the first 2 columns are updated.
a = np.zeros((3, 4), dtype=np.float32)
i = np.array([1, 1, 2], dtype=np.int32)
u = np.arange(6, dtype=np.float32).reshape(3, 1, 2) + 1
scatter_case("scatter_add_partial_window", "scatter_add", np.add, a, [i], u, [0])

# ---------------------------------------------------------------- gather windows
a = rng.standard_normal((4, 5, 6)).astype(np.float32)
i0 = np.array([3, 0, -1], dtype=np.int32)
i1 = np.array([[4], [1]], dtype=np.int64)  # broadcast with i0 to (2, 3)
sizes = [1, 5, 2]
I0, I1 = np.broadcast_arrays(i0, i1)
out = np.empty(I0.shape + tuple(sizes), dtype=a.dtype)
for idx in np.ndindex(*I0.shape):
    r, c = int(I0[idx]) % 4, int(I1[idx]) % 6
    out[idx] = a[r:r + 1, 0:5, c:c + 2]
add("gather_two_axes_windows", "gather", out, a=arr(a), indices=[arr(i0), arr(i1)], axes=[0, 2],
    slice_sizes=sizes)

a = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
i = np.array([1, 0], dtype=np.int32)
sizes = [1, 2, 3]
out = np.stack([a[k:k + 1, 0:2, 0:3] for k in i])
add("gather_partial_window", "gather", out, a=arr(a), indices=[arr(i)], axes=[0],
    slice_sizes=sizes)

print(json.dumps({"cases": cases}, indent=None, separators=(",", ":")))
