#!/usr/bin/env python3
"""Reference attention outputs for the KV-cache tests (tests/lm/test_cache.cpp).

Attention over a whole sequence at once, in float64 NumPy, with an explicit
visibility mask written from the cache semantics (independently of mlxcpp):

  out[p] = softmax(scale * q[p] . k[j]^T over visible j) v      (grouped-query heads:
           query head h uses key/value head h // (Hq / Hkv))

  KVCache, layer window W (or none):      j <= p and (W is none or j > p - W)
  RotatingKVCache(max_size M, keep K):    j <= p and (j < K or j > p - (M - K))
                                          and (W is none or j > p - W)

i.e. a query sees the K pinned first positions plus the M - K most recent ones
(itself included), cut further by the layer's sliding window. The C++ test feeds
the same q/k/v through a cache in chunks of various sizes and must reproduce
these outputs whatever the chunking.

Inputs are multiples of 1/64 in [-4, 4] (exact in float32), stored as value * 64.

Run: /usr/bin/python3 tools/reference/cache_refs.py > tests/data/lm/cache_refs.json
"""
import json
import math
import sys

import numpy as np

rng = np.random.default_rng(4242)
B, HQ, HKV, N, D = 1, 4, 2, 40, 8


def grid(shape):
    return np.clip(np.round(rng.standard_normal(shape) * 64), -256, 256) / 64.0


q = grid((B, HQ, N, D))
k = grid((B, HKV, N, D))
v = grid((B, HKV, N, D))
scale = float(np.float32(1.0 / math.sqrt(D)))


def visible(kind, M, K, W):
    m = np.zeros((N, N), dtype=bool)
    for p in range(N):
        for j in range(N):
            ok = j <= p
            if kind == "rotating":
                ok = ok and (j < K or j > p - (M - K))
            if W is not None:
                ok = ok and j > p - W
            m[p, j] = ok
    return m


def attention(mask):
    rep = HQ // HKV
    out = np.zeros((B, HQ, N, D))
    for b in range(B):
        for h in range(HQ):
            s = scale * q[b, h] @ k[b, h // rep].T
            s = np.where(mask, s, -np.inf)
            s = s - s.max(axis=1, keepdims=True)
            e = np.exp(s)
            out[b, h] = (e / e.sum(axis=1, keepdims=True)) @ v[b, h // rep]
    return out


cases = []
for kind, M, K, W in [
    ("kv", 0, 0, None),
    ("kv", 0, 0, 6),
    ("rotating", 8, 0, 8),
    ("rotating", 8, 0, None),
    ("rotating", 8, 0, 5),
    ("rotating", 8, 0, 12),
    ("rotating", 8, 4, None),
    ("rotating", 10, 2, 6),
    ("rotating", 6, 3, None),
    ("rotating", 1, 0, None),
    ("rotating", 5, 4, 3),
]:
    cases.append({
        "kind": kind, "max_size": M, "keep": K, "window": W,
        "expected": [float("%.10g" % x) for x in attention(visible(kind, M, K, W)).ravel()],
    })

json.dump({
    "shape_q": [B, HQ, N, D], "shape_kv": [B, HKV, N, D], "scale": scale,
    # inputs as integers: value * 64
    "q64": (q * 64).astype(int).ravel().tolist(), "k64": (k * 64).astype(int).ravel().tolist(),
    "v64": (v * 64).astype(int).ravel().tolist(),
    "cases": cases,
}, sys.stdout)
