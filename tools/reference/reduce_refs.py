#!/usr/bin/python3
"""Writes the expected values of the reductions, scans and softmax with NumPy (the reference).

Run from the repository root:

    /usr/bin/python3 tools/reference/reduce_refs.py > tests/data/mx/reduce_refs.json

Each case names the mlxcpp op, its input (data, shape, dtype), its parameters and the expected
output. The expected dtype follows MLX's rules (which differ from NumPy's: sums of small integers
widen to int32/uint32 rather than int64, argmax returns uint32, mean of integers is float32); the
values are computed by NumPy in a dtype that reproduces MLX's arithmetic (e.g. an int32 sum wraps).
bfloat16 inputs are values exactly representable in bfloat16, with references computed in float64.
Non-finite values are written as the strings "nan", "inf", "-inf".
"""
import json

import numpy as np

np.seterr(all="ignore")

rng = np.random.default_rng(20261127)
cases = []


def enc(x, dtype=None):
    x = np.asarray(x)
    vals = []
    for v in x.reshape(-1).tolist():
        if isinstance(v, float) and not np.isfinite(v):
            vals.append("nan" if np.isnan(v) else ("inf" if v > 0 else "-inf"))
        else:
            vals.append(v)
    return {"data": vals, "shape": list(x.shape), "dtype": dtype or str(x.dtype)}


def add(name, op, a, expected, out_dtype, a_dtype=None, **kw):
    c = {"name": name, "op": op, "a": enc(a, a_dtype), "expected": enc(expected, out_dtype)}
    c.update(kw)
    cases.append(c)


def norm_axes(axes, nd):
    return None if axes is None else tuple(sorted(ax % nd for ax in axes))


def mlx_sum_dtype(d):
    d = np.dtype(d)
    if d == np.bool_:
        return "int32"
    if d.kind == "i":
        return "int32" if d.itemsize <= 4 else "int64"
    if d.kind == "u":
        return "uint32" if d.itemsize <= 4 else "uint64"
    return str(d)


def reduce_case(name, op, a, axes, keepdims=False, a_dtype=None, **kw):
    nd = a.ndim
    ax = norm_axes(axes, nd)
    params = {"axes": axes, "keepdims": keepdims}
    dt = a_dtype or str(a.dtype)
    if op == "sum":
        out_dtype = mlx_sum_dtype(a.dtype) if a_dtype is None else a_dtype
        acc = np.float64 if a.dtype.kind == "f" else out_dtype
        exp = np.sum(a, axis=ax, keepdims=keepdims, dtype=acc)
    elif op == "prod":
        out_dtype = mlx_sum_dtype(a.dtype) if a_dtype is None else a_dtype
        acc = np.float64 if a.dtype.kind == "f" else out_dtype
        exp = np.prod(a, axis=ax, keepdims=keepdims, dtype=acc)
    elif op in ("max", "min"):
        out_dtype = dt
        f = np.max if op == "max" else np.min
        exp = f(a, axis=ax, keepdims=keepdims)
    elif op in ("all", "any"):
        out_dtype = "bool"
        f = np.all if op == "all" else np.any
        exp = f(a, axis=ax, keepdims=keepdims)
    elif op == "mean":
        out_dtype = dt if a.dtype.kind == "f" else "float32"
        exp = np.mean(a.astype(np.float64), axis=ax, keepdims=keepdims)
    elif op in ("var", "std"):
        out_dtype = dt if a.dtype.kind == "f" else "float32"
        ddof = kw.get("ddof", 0)
        f = np.var if op == "var" else np.std
        exp = f(a.astype(np.float64), axis=ax, keepdims=keepdims, ddof=ddof)
        params["ddof"] = ddof
    elif op == "logsumexp":
        out_dtype = dt if a.dtype.kind == "f" else "float32"
        x = a.astype(np.float64)
        m = np.max(x, axis=ax, keepdims=True)
        with np.errstate(invalid="ignore"):
            s = np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m
        s = np.where(np.isinf(m), m, s)
        exp = s if keepdims else np.squeeze(s, axis=ax if ax is not None else None)
    else:
        raise ValueError(op)
    add(name, op, a, np.asarray(exp), out_dtype, a_dtype, **params)


def arg_case(name, op, a, axis, keepdims=False):
    f = np.argmax if op == "argmax" else np.argmin
    exp = f(a, axis=axis, keepdims=keepdims)
    add(name, op, a, np.asarray(exp).astype(np.uint32), "uint32", axis=axis, keepdims=keepdims)


def scan_ref(op, a, axis, reverse, inclusive):
    if axis is None:
        a = a.reshape(-1)
        axis = 0
    x = np.flip(a, axis) if reverse else a
    if a.dtype == np.float16:
        # mlxcpp accumulates 16-bit floats in float32 and rounds each output once.
        return scan_ref(op, a.astype(np.float64), axis, reverse, inclusive).astype(np.float16)
    if op == "cumsum":
        y = np.cumsum(x, axis=axis, dtype=np.int32 if a.dtype == np.bool_ else a.dtype)
        ident = 0
    elif op == "cumprod":
        y = np.cumprod(x, axis=axis, dtype=a.dtype)
        ident = 1
    elif op == "cummax":
        y = np.maximum.accumulate(x, axis=axis)
        ident = -np.inf if a.dtype.kind == "f" else np.iinfo(a.dtype).min
    else:
        y = np.minimum.accumulate(x, axis=axis)
        ident = np.inf if a.dtype.kind == "f" else np.iinfo(a.dtype).max
    if not inclusive:
        y = np.moveaxis(y, axis, 0)
        first = np.full_like(y[:1], ident)
        y = np.moveaxis(np.concatenate([first, y[:-1]], axis=0), 0, axis)
    return np.flip(y, axis) if reverse else y


def scan_case(name, op, a, axis, reverse=False, inclusive=True):
    exp = scan_ref(op, a, axis, reverse, inclusive)
    out_dtype = "int32" if (op == "cumsum" and a.dtype == np.bool_) else str(a.dtype)
    add(name, op, a, exp, out_dtype, axis=axis, reverse=reverse, inclusive=inclusive)


def softmax_case(name, a, axes, precise=False, a_dtype=None):
    x = a.astype(np.float64)
    ax = norm_axes(axes, a.ndim)
    m = np.max(x, axis=ax, keepdims=True)
    e = np.exp(x - m)
    exp = e / np.sum(e, axis=ax, keepdims=True)
    dt = a_dtype or (str(a.dtype) if a.dtype.kind == "f" else "float32")
    add(name, "softmax", a, exp, dt, a_dtype, axes=axes, precise=precise)


# ---------------------------------------------------------------- sum
x = rng.standard_normal((3, 4, 5)).astype(np.float32)
for axes in ([0], [1], [2], [-1], [0, 2], [1, 2], [0, 1], None):
    for keep in (False, True):
        tag = "all" if axes is None else "_".join(str(a) for a in axes)
        reduce_case(f"sum_f32_{tag}_keep{int(keep)}", "sum", x, axes, keep)
reduce_case("sum_f64_rows", "sum", rng.standard_normal((7, 33)), [1])
reduce_case("sum_f64_cols", "sum", rng.standard_normal((33, 7)), [0])
reduce_case("sum_bool", "sum", rng.random((4, 6)) > 0.5, [1])
reduce_case("sum_bool_all", "sum", rng.random((4, 6)) > 0.3, None)
reduce_case("sum_int8_wraps_into_int32", "sum", np.full((3, 100), 100, np.int8), [1])
reduce_case("sum_int16", "sum", rng.integers(-30000, 30000, (5, 7)).astype(np.int16), [0])
reduce_case("sum_uint8_to_uint32", "sum", np.full((2, 300), 255, np.uint8), [1])
reduce_case("sum_int32_overflow_wraps", "sum", np.full((3,), 2**30 + 7, np.int32), [0])
reduce_case("sum_int64", "sum", rng.integers(-2**40, 2**40, (4, 5)), [0, 1])
reduce_case("sum_float16", "sum", rng.standard_normal((6, 50)).astype(np.float16), [1])
xb = (rng.integers(-64, 64, (4, 40)) / 8.0).astype(np.float32)  # exact in bfloat16
reduce_case("sum_bfloat16", "sum", xb, [1], a_dtype="bfloat16")
reduce_case("sum_empty_axis", "sum", np.zeros((3, 0), np.float32), [1])
reduce_case("sum_nan_inf", "sum", np.array([[1, np.nan, 2], [np.inf, 1, 2], [np.inf, -np.inf, 0]],
                                           np.float32), [1])
# Reductions along leading and middle axes take the row-accumulate and strided paths.
reduce_case("sum_leading_axes", "sum", rng.standard_normal((12, 10, 17)).astype(np.float32), [0, 1])
reduce_case("sum_middle_axis", "sum", rng.standard_normal((6, 50, 9)).astype(np.float32), [1])

# ---------------------------------------------------------------- prod
reduce_case("prod_f32_axis1", "prod", rng.uniform(0.5, 1.5, (4, 6)).astype(np.float32), [1])
reduce_case("prod_f32_all", "prod", rng.uniform(0.8, 1.2, (3, 5)).astype(np.float32), None)
reduce_case("prod_int8_to_int32", "prod", np.array([[2, 3, 4, 5, 6, 7]], np.int8), [1])
reduce_case("prod_int32_wraps", "prod", np.full((1, 3), 1 << 11, np.int32), [1])
reduce_case("prod_bool", "prod", np.array([[True, True], [True, False]]), [1])
reduce_case("prod_empty", "prod", np.zeros((2, 0), np.float32), [1])
reduce_case("prod_leading", "prod", rng.uniform(0.9, 1.1, (5, 8, 4)).astype(np.float32), [0])

# ---------------------------------------------------------------- max / min
x = rng.standard_normal((4, 5, 6)).astype(np.float32)
for op in ("max", "min"):
    for axes in ([0], [1], [-1], [0, 2], None):
        tag = "all" if axes is None else "_".join(str(a) for a in axes)
        reduce_case(f"{op}_f32_{tag}", op, x, axes, keepdims=(axes == [1]))
    reduce_case(f"{op}_nan_propagates", op,
                np.array([[1, np.nan, 3], [4, 5, 6], [np.nan, 0, 1]], np.float32), [1])
    reduce_case(f"{op}_nan_leading", op,
                np.array([[1, np.nan, 3], [4, 5, 6], [0, 2, np.nan]], np.float32), [0])
    reduce_case(f"{op}_int8", op, np.array([[-128, 5, 127], [3, -3, 0]], np.int8), [1])
    reduce_case(f"{op}_uint32", op, np.array([[0, 4000000000, 7]], np.uint32), [1])
    reduce_case(f"{op}_bool", op, np.array([[True, False], [False, False]]), [1])
    reduce_case(f"{op}_float16", op, rng.standard_normal((3, 20)).astype(np.float16), [1])
    reduce_case(f"{op}_inf", op, np.array([[-np.inf, -np.inf], [np.inf, 1]], np.float32), [1])
    reduce_case(f"{op}_cols", op, rng.standard_normal((50, 12)).astype(np.float32), [0])

# ---------------------------------------------------------------- all / any
b = rng.random((3, 4, 5)) > 0.2
for op in ("all", "any"):
    for axes in ([0], [2], [0, 1], None):
        tag = "all" if axes is None else "_".join(str(a) for a in axes)
        reduce_case(f"{op}_bool_{tag}", op, b if op == "all" else ~b, axes)
    reduce_case(f"{op}_float", op, np.array([[0.0, 1.5, np.nan], [0.0, 0.0, 0.0]], np.float32),
                [1])
    reduce_case(f"{op}_int", op, np.array([[0, 3], [2, 1]], np.int32), [0])
    reduce_case(f"{op}_empty", op, np.zeros((2, 0), np.bool_), [1])

# ---------------------------------------------------------------- mean / var / std
x = rng.standard_normal((4, 6, 5)).astype(np.float32)
for axes in ([0], [1, 2], [-1], None):
    tag = "all" if axes is None else "_".join(str(a) for a in axes)
    reduce_case(f"mean_f32_{tag}", "mean", x, axes)
    reduce_case(f"var_f32_{tag}", "var", x, axes)
    reduce_case(f"std_f32_{tag}_ddof1", "std", x, axes, ddof=1, keepdims=True)
reduce_case("mean_int32_is_float32", "mean", np.array([[1, 2], [3, 5]], np.int32), [1])
reduce_case("mean_int8_no_overflow", "mean", np.full((1, 50), 120, np.int8), [1])
reduce_case("mean_bool", "mean", np.array([True, False, True, True]), [0])
reduce_case("mean_float16", "mean", rng.standard_normal((4, 30)).astype(np.float16), [1])
reduce_case("mean_empty_is_nan", "mean", np.zeros((2, 0), np.float32), [1])
reduce_case("var_int", "var", np.array([[1, 2, 3, 4], [2, 2, 2, 2]], np.int32), [1])
reduce_case("var_ddof2", "var", rng.standard_normal((3, 7)), [1], ddof=2)
reduce_case("std_f64", "std", rng.standard_normal((5, 9)), [0])

# ---------------------------------------------------------------- logsumexp
x = rng.standard_normal((3, 4, 5)).astype(np.float32) * 3
for axes in ([0], [2], [1, 2], None):
    tag = "all" if axes is None else "_".join(str(a) for a in axes)
    reduce_case(f"logsumexp_{tag}", "logsumexp", x, axes, keepdims=(axes == [0]))
reduce_case("logsumexp_large", "logsumexp", np.array([[1000, 1000], [-1000, -1001]], np.float32),
            [1])
reduce_case("logsumexp_inf", "logsumexp",
            np.array([[np.inf, 1], [-np.inf, -np.inf], [-np.inf, 2]], np.float32), [1])
reduce_case("logsumexp_int", "logsumexp", np.array([[0, 1, 2]], np.int32), [1])
reduce_case("logsumexp_float16", "logsumexp", rng.standard_normal((2, 40)).astype(np.float16), [1])

# ---------------------------------------------------------------- argmax / argmin
x = rng.standard_normal((4, 5, 6)).astype(np.float32)
for op in ("argmax", "argmin"):
    for axis in (0, 1, -1):
        arg_case(f"{op}_axis{axis}", op, x, axis, keepdims=(axis == 1))
    arg_case(f"{op}_flat", op, x, None)
    arg_case(f"{op}_ties_first", op, np.array([[1, 3, 3, 0, 0], [2, 2, 2, 2, 2]], np.int32), 1)
    arg_case(f"{op}_nan_first", op, np.array([[1, np.nan, 5, np.nan], [4, 3, 2, 1]], np.float32), 1)
    arg_case(f"{op}_uint8", op, np.array([[200, 3, 255], [0, 9, 9]], np.uint8), 1)
    arg_case(f"{op}_bool", op, np.array([[False, True, True], [True, False, False]]), 1)
    arg_case(f"{op}_float16", op, rng.standard_normal((3, 17)).astype(np.float16), 1)

# ---------------------------------------------------------------- softmax
x = rng.standard_normal((3, 4, 5)).astype(np.float32) * 2
softmax_case("softmax_last", x, [-1])
softmax_case("softmax_axis0", x, [0])
softmax_case("softmax_axis1_precise", x, [1], precise=True)
softmax_case("softmax_two_axes", x, [1, 2])
softmax_case("softmax_all", x, None)
softmax_case("softmax_large_values", np.array([[1000, 1001, 1002], [-1000, 0, 1000]], np.float32),
             [-1])
softmax_case("softmax_neg_inf", np.array([[-np.inf, 0, 1], [2, -np.inf, -np.inf]], np.float32), [-1])
softmax_case("softmax_float16", rng.standard_normal((4, 33)).astype(np.float16), [-1])
softmax_case("softmax_float16_precise", rng.standard_normal((4, 33)).astype(np.float16), [-1],
             precise=True)
softmax_case("softmax_bfloat16", (rng.integers(-32, 32, (3, 16)) / 8.0).astype(np.float32), [-1],
             a_dtype="bfloat16")
softmax_case("softmax_f64", rng.standard_normal((2, 7)), [-1])
softmax_case("softmax_int", np.array([[1, 2, 3]], np.int32), [-1])
softmax_case("softmax_long_row", rng.standard_normal((2, 600)).astype(np.float32), [-1])

# ---------------------------------------------------------------- scans
x = rng.standard_normal((3, 4, 5)).astype(np.float32)
for op in ("cumsum", "cumprod", "cummax", "cummin"):
    for axis in (0, 1, -1):
        for reverse in (False, True):
            for inclusive in (True, False):
                scan_case(f"{op}_axis{axis}_rev{int(reverse)}_inc{int(inclusive)}", op, x, axis,
                          reverse, inclusive)
    scan_case(f"{op}_flat", op, x, None)
    scan_case(f"{op}_int32", op, rng.integers(-5, 6, (4, 6)).astype(np.int32), 1)
    scan_case(f"{op}_int32_excl_rev", op, rng.integers(-5, 6, (4, 6)).astype(np.int32), 0,
              True, False)
scan_case("cumsum_bool_is_int32", "cumsum", rng.random((3, 5)) > 0.5, 1)
scan_case("cumsum_int8_wraps", "cumsum", np.full((1, 4), 100, np.int8), 1)
scan_case("cumprod_zeros", "cumprod", np.array([[2, 0, 3, 0, 4], [1, 2, 3, 4, 5]], np.float32), 1)
scan_case("cummax_nan", "cummax", np.array([1, 3, np.nan, 5, 2], np.float32), 0)
scan_case("cummin_nan", "cummin", np.array([1, 3, np.nan, 0, 2], np.float32), 0)
scan_case("cumsum_float16", "cumsum", rng.standard_normal((2, 30)).astype(np.float16), 1)
scan_case("cumsum_f64_long", "cumsum", rng.standard_normal((2, 600)), 1)
scan_case("cumsum_wide_inner", "cumsum", rng.standard_normal((2, 3, 520)).astype(np.float32), 1)
scan_case("cummax_wide_inner_rev", "cummax", rng.standard_normal((2, 3, 520)).astype(np.float32), 1,
          True, False)

print(json.dumps({"cases": cases}, separators=(",", ":")))
