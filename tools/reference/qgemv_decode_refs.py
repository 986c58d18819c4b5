#!/usr/bin/python3
"""One bfloat16 row against 4- and 8-bit affine weights (the decode product), in float64.

Writes tests/data/quantized/qgemv_decode_refs.json: random codes packed
LSB-first into uint32 words (element k in word k // (32 / bits) at bit
bits * (k % (32 / bits)), as formats.md section 2.3 describes), bfloat16 scales
and biases shaped like a real quantizer's (bias = group minimum, negative,
scale = range / (2^bits - 1)), a bfloat16 row x, and y = sum_k x_k * (scale *
q_k + bias) in float64 together with sum_k |x_k * (scale * q_k + bias)| per
output (for the tolerance of a float32 sum). Shapes cover K a multiple of 128
(4 bits) or 64 (8 bits), which the AVX-512 one-row kernel takes, K not (the
other kernels), every group size, N = 1 and odd N, rows with more than 32
groups (the kernel's window) and a remainder, and matrices of over 96 KB,
whose rows the CPU splits across threads.
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


def pack(codes, bits):
    rows, k = codes.shape
    per = 32 // bits
    words = np.zeros((rows, k // per), dtype=np.uint64)
    for e in range(per):
        words |= codes[:, e::per].astype(np.uint64) << np.uint64(bits * e)
    return words.astype(np.uint32)


cases = []
# The first twelve (4 bits) keep their values: new cases draw after them.
shapes = [(4, 128, 32, 37), (4, 128, 64, 1), (4, 128, 128, 37), (4, 384, 32, 130),
          (4, 384, 64, 37), (4, 384, 128, 130), (4, 1152, 64, 37), (4, 1152, 128, 5),
          (4, 2560, 32, 9), (4, 96, 32, 37), (4, 192, 64, 37), (4, 320, 64, 11),
          # 4 bits: 36 groups (a window of 32 and 4), 1152 x 64 split across threads.
          (4, 1152, 32, 3), (4, 1152, 64, 301),
          # 8 bits: K a multiple of 64 (the one-row kernel) and not, every group
          # size, odd N, 80 groups (windows 32, 32, 16), a matrix split across threads.
          (8, 64, 32, 37), (8, 64, 64, 1), (8, 128, 128, 37), (8, 192, 32, 5), (8, 192, 64, 130),
          (8, 384, 128, 37), (8, 2560, 32, 9), (8, 1152, 64, 37), (8, 96, 32, 11),
          (8, 1024, 128, 197)]
for bits, k, g, n in shapes:
    top = (1 << bits) - 1
    q = rng.integers(0, top + 1, size=(n, k))
    groups = k // g
    lo = -np.abs(rng.normal(1.0, 0.5, size=(n, groups)))
    scale = bf16((np.abs(rng.normal(0.0, 0.2, size=(n, groups))) + 0.01) * (15 / top))
    bias = bf16(lo * 3)
    x = bf16(rng.normal(0.0, 1.0, size=k))
    w = scale.astype(np.float64).repeat(g, axis=1) * q + bias.astype(np.float64).repeat(g, axis=1)
    terms = w * x.astype(np.float64)[None, :]
    cases.append({
        "bits": bits, "K": k, "N": n, "group_size": g,
        "wq": pack(q, bits).ravel().tolist(),
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
