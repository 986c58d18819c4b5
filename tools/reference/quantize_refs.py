#!/usr/bin/python3
"""Writes tests/data/quantized/quantize_refs.json: an independent NumPy
implementation of MLX's quantization (shared/spec/formats.md section 2), which
tests/mx/test_quantized.cpp checks quantize, dequantize and quantized_matmul
against.

For every affine bit width (2, 3, 4, 5, 6, 8) and group size (32, 64, 128),
plus the fp modes (mxfp4, mxfp8, nvfp4), a random float32 matrix is
quantized here: packed words, scales, biases, the dequantized values (float32,
as the kernels compute them) and quantized matmul results computed in float64
from those dequantized weights, transposed (x @ W.T) and not (x @ W). A few
bfloat16 cases round the input, the scales and the outputs to bfloat16 with the
bit tricks below (NumPy has no bfloat16).

The packing is written as a bit-by-bit loop over the stream (element k's bit
i is stream bit k * bits + i), unlike the word-buffer packer in C++.
Run: /usr/bin/python3 tools/reference/quantize_refs.py
"""
import json
import os

import numpy as np

rng = np.random.default_rng(20261127)
F32 = np.float32


def bf16_round(a):
    """Rounds float32 values to bfloat16 (nearest even) and back to float32."""
    u = np.asarray(a, dtype=F32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(F32)


def pack(codes, bits):
    """codes [rows, n] -> uint32 words [rows, n * bits / 32], LSB-first stream."""
    rows, n = codes.shape
    nwords = n * bits // 32
    words = np.zeros((rows, nwords), dtype=np.uint64)
    for k in range(n):
        for i in range(bits):
            bit = (codes[:, k].astype(np.uint64) >> np.uint64(i)) & np.uint64(1)
            j = k * bits + i
            words[:, j // 32] |= bit << np.uint64(j % 32)
    return words.astype(np.uint32)


def affine(w, g, bits, dtype):
    """MLX's affine quantization (formats.md 2.2), in float32 as the kernels."""
    rows, n = w.shape
    wg = w.reshape(rows, n // g, g).astype(F32)
    n_bins = F32(2**bits - 1)
    wmax = wg.max(axis=2)
    wmin = wg.min(axis=2)
    s = np.maximum((wmax - wmin) / n_bins, F32(1e-7)).astype(F32)
    min_edge = np.abs(wmin) > np.abs(wmax)
    edge = np.where(min_edge, wmin, wmax).astype(F32)
    scale = np.where(min_edge, s, -s).astype(F32)
    q0 = np.rint(edge / scale).astype(F32)
    nz = q0 != 0
    scale = np.where(nz, edge / np.where(nz, q0, F32(1)), scale).astype(F32)
    bias = np.where(nz, edge, F32(0)).astype(F32)
    q = np.rint((wg - bias[..., None]) / scale[..., None]).astype(F32)
    q = np.clip(q, 0, n_bins).astype(np.uint32).reshape(rows, n)
    if dtype == "bfloat16":
        scale, bias = bf16_round(scale), bf16_round(bias)
    # scale * q + bias rounded once (a fused multiply-add): exact in float64
    # for these operand widths, then rounded to float32.
    qg = q.reshape(rows, n // g, g).astype(np.float64)
    deq = scale.astype(np.float64)[..., None] * qg + bias.astype(np.float64)[..., None]
    deq32 = deq.astype(F32).reshape(rows, n)
    # dequantize returns the scales' dtype; the matmul kernels use the float32
    # values and round only their output.
    deq = bf16_round(deq32) if dtype == "bfloat16" else deq32
    return pack(q, bits), scale, bias, deq, deq32


FP4 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=F32)


def e4m3_table():
    t = np.zeros(256, dtype=np.float64)
    for b in range(256):
        e, m = (b >> 3) & 15, b & 7
        if e == 0:
            v = m * 2.0**-9
        elif e == 15 and m == 7:
            v = np.nan
        else:
            v = (1 + m / 8) * 2.0 ** (e - 7)
        t[b] = -v if b & 0x80 else v
    return t


E4M3 = e4m3_table()


def nearest(values, table, tie_even):
    """Index of the nearest finite table entry for each value. Ties: the first
    index, or (tie_even) the code with an even last mantissa bit."""
    finite = np.where(np.isnan(table), np.inf, table)
    d = np.abs(values.astype(np.float64)[..., None] - finite[None, :])
    best = d.min(axis=-1, keepdims=True)
    cand = d == best
    if not tie_even:
        return cand.argmax(axis=-1)
    idx = np.arange(len(table))
    # Among tied codes of the value's sign, prefer an even code.
    sign_ok = (idx[None, :] >= 128) == (np.signbit(values.astype(np.float64))[..., None])
    score = cand * 4 + (cand & sign_ok) * 2 + (cand & ((idx[None, :] & 1) == 0))
    return score.argmax(axis=-1)


def fp_quant(w, mode):
    rows, n = w.shape
    g = 16 if mode == "nvfp4" else 32
    bits = 8 if mode == "mxfp8" else 4
    wg = w.reshape(rows, n // g, g).astype(F32)
    amax = np.abs(wg).max(axis=2)
    if mode == "nvfp4":
        sbyte = nearest(amax / F32(6), E4M3, True).astype(np.uint8)
        sval = E4M3[sbyte].astype(F32)
        inv = np.where(sval > 0, F32(1) / np.where(sval > 0, sval, F32(1)), F32(0)).astype(F32)
    else:
        s = (amax / F32(448 if mode == "mxfp8" else 6)).astype(F32)
        e = np.where(s > 0, np.rint(np.log2(np.where(s > 0, s, F32(1)))), 0).astype(np.int64)
        e = np.clip(e, -127, 127)
        sbyte = (e + 127).astype(np.uint8)
        sval = np.ldexp(np.ones_like(s), e.astype(np.int32)).astype(F32)
        inv = np.ldexp(np.ones_like(s), (-e).astype(np.int32)).astype(F32)
    wp = (wg * inv[..., None]).astype(F32)
    if mode == "mxfp8":
        codes = nearest(wp, E4M3, True)
        vals = E4M3[codes].astype(F32)
    else:
        codes = nearest(wp, FP4.astype(np.float64), False)
        vals = FP4[codes]
    deq = (vals * sval[..., None]).astype(F32).reshape(rows, n)
    deq = bf16_round(deq)  # fp modes dequantize to bfloat16 by default
    return pack(codes.reshape(rows, n).astype(np.uint32), bits), sbyte, deq, g, bits


def flist(a):
    """float32 values in their shortest decimal form (which reads back exactly)."""
    return [float(str(v)) for v in np.asarray(a, dtype=F32).ravel()]


def dlist(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


cases = []


def add_matmuls(case, deq, rows, cols, dtype):
    m = 3
    xt = rng.standard_normal((m, cols)).astype(F32)
    xn = rng.standard_normal((m, rows)).astype(F32)
    if dtype == "bfloat16":
        xt, xn = bf16_round(xt), bf16_round(xn)
    d64 = deq.astype(np.float64)
    case["x_t"] = flist(xt)
    case["out_t"] = dlist(xt.astype(np.float64) @ d64.T)
    case["x_n"] = flist(xn)
    case["out_n"] = dlist(xn.astype(np.float64) @ d64)
    case["m"] = m


for bits in (2, 3, 4, 5, 6, 8):
    for g in (32, 64, 128):
        rows, cols = 5, 256
        w = (rng.standard_normal((rows, cols)) * rng.uniform(0.02, 2.0)).astype(F32)
        # A group of one repeated value (q0 = 0 or a zero-width range) and an
        # all-zero group exercise the step-4 branches.
        w[1, :g] = F32(0.25)
        w[2, g : 2 * g] = F32(0)
        dtypes = ["float32"] + (["bfloat16"] if g == 64 or bits in (3, 6) else [])
        for dtype in dtypes:
            wd = bf16_round(w) if dtype == "bfloat16" else w
            packed, scale, bias, deq, deq32 = affine(wd, g, bits, dtype)
            case = {
                "mode": "affine",
                "bits": bits,
                "group_size": g,
                "dtype": dtype,
                "shape": [rows, cols],
                "w": flist(wd),
                "wq": [int(v) for v in packed.ravel()],
                "scales": flist(scale),
                "biases": flist(bias),
                "dequantized": flist(deq),
            }
            add_matmuls(case, deq32, rows, cols, dtype)
            cases.append(case)

for mode in ("mxfp4", "mxfp8", "nvfp4"):
    rows, cols = 4, 128
    w = (rng.standard_normal((rows, cols)) * 0.7).astype(F32)
    w[1, :32] = F32(0)
    packed, sbyte, deq, g, bits = fp_quant(w, mode)
    case = {
        "mode": mode,
        "bits": bits,
        "group_size": g,
        "dtype": "float32",
        "shape": [rows, cols],
        "w": flist(w),
        "wq": [int(v) for v in packed.ravel()],
        "scales": [int(v) for v in sbyte.ravel()],
        "dequantized": flist(deq),
    }
    add_matmuls(case, deq, rows, cols, "bfloat16")
    cases.append(case)

out = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "quantized")
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "quantize_refs.json"), "w") as f:
    json.dump({"cases": cases}, f, separators=(",", ":"))
print(len(cases), "cases")
