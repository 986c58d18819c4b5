#!/usr/bin/python3
"""One bfloat16 row against 4-bit affine weights (the decode product), in float64.

Writes tests/data/quantized/qgemv_decode_refs.json: random codes packed
LSB-first into uint32 words (element k in word k // 8 at bit 4 * (k % 8), as
formats.md section 2.3 describes), bfloat16 scales and biases shaped like a
real quantizer's (bias = group minimum, negative, scale = range / 15), a
bfloat16 row x, and y = sum_k x_k * (scale * q_k + bias) in float64 together
with sum_k |x_k * (scale * q_k + bias)| per output (for the tolerance of a
float32 sum). Shapes cover K a multiple of 128 (the shuffle-free kernel), K
not (the other one), every group size, N = 1 and odd N.
"""
import json
import os

import numpy as np

rng = np.random.default_rng(20261128)


def bf16(a):
    """Round float32 values to bfloat16 (nearest even), returned as float32."""
    u = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(np.float32)


def pack4(codes):
    rows, k = codes.shape
    words = np.zeros((rows, k // 8), dtype=np.uint64)
    for e in range(8):
        words |= codes[:, e::8].astype(np.uint64) << np.uint64(4 * e)
    return words.astype(np.uint32)


cases = []
for k, g, n in [(128, 32, 37), (128, 64, 1), (128, 128, 37), (384, 32, 130), (384, 64, 37),
                (384, 128, 130), (1152, 64, 37), (1152, 128, 5), (2560, 32, 9), (96, 32, 37),
                (192, 64, 37), (320, 64, 11)]:
    q = rng.integers(0, 16, size=(n, k))
    groups = k // g
    lo = -np.abs(rng.normal(1.0, 0.5, size=(n, groups)))
    scale = bf16(np.abs(rng.normal(0.0, 0.2, size=(n, groups))) + 0.01)
    bias = bf16(lo * 3)
    x = bf16(rng.normal(0.0, 1.0, size=k))
    w = scale.astype(np.float64).repeat(g, axis=1) * q + bias.astype(np.float64).repeat(g, axis=1)
    terms = w * x.astype(np.float64)[None, :]
    cases.append({
        "K": k, "N": n, "group_size": g,
        "wq": pack4(q).ravel().tolist(),
        "scales": scale.ravel().astype(float).tolist(),
        "biases": bias.ravel().astype(float).tolist(),
        "x": x.astype(float).tolist(),
        "y": terms.sum(axis=1).tolist(),
        "abs_sum": np.abs(terms).sum(axis=1).tolist(),
    })

out = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "quantized",
                   "qgemv_decode_refs.json")
with open(out, "w") as f:
    json.dump({"cases": cases}, f, separators=(",", ":"))
print(out, len(cases), "cases")
