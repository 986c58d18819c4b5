#!/usr/bin/env python3
"""Reference values for mx::fast (rms_norm, layer_norm, rope, attention).

Written from the published formulas and MLX's documentation, in float64 NumPy,
independently of mlxcpp's kernels:

  rms_norm:   y = x / sqrt(mean(x^2) + eps) * w                 (Zhang & Sennrich 2019)
  layer_norm: y = (x - mean(x)) / sqrt(var(x) + eps) * w + b     (Ba et al. 2016)
  rope:       rotate feature pairs by theta_i = scale * pos * base^(-2i/dims) (Su et al. 2021),
              pairs (2i, 2i+1) when traditional, else (i, i + dims/2); pos = offset + l
  attention:  softmax(scale * q k^T + mask) v (Vaswani et al. 2017), grouped-query heads
              (query head h uses key/value head h // (Hq / Hkv)); masked scores take the
              lowest finite value (MLX), "causal" is aligned to the end: query i sees
              keys j <= i + Lk - Lq; a sliding window W also requires j > i + Lk - Lq - W;
              sinks add one logit per head to the softmax denominator.

Inputs are multiples of 1/64 in [-4, 4], exactly representable in bfloat16,
float16, float32 and float64, so every dtype starts from the same values; the
tests store them as integers (value * 64). Float parameters (eps, scale, base,
freqs) are rounded to float32 here, because the C++ API takes float.

Run: /usr/bin/python3 tools/reference/fast_refs.py > tests/data/mx/fast_refs.json
"""
import json
import sys

import numpy as np

rng = np.random.default_rng(20261127)


def grid(shape, spread=1.0):
    """Random values on the 1/64 grid, clipped to [-4, 4]."""
    q = np.clip(np.round(rng.standard_normal(shape) * spread * 64), -256, 256)
    return q / 64.0


def enc(a):
    a = np.asarray(a, dtype=np.float64)
    q = a * 64
    assert np.all(q == np.round(q)), "input off the 1/64 grid"
    return {"shape": list(a.shape), "q64": [int(v) for v in q.ravel()]}


def out(a):
    a = np.asarray(a, dtype=np.float64)
    return {"shape": list(a.shape), "data": [float(v) for v in a.ravel()]}


def f32(v):
    return float(np.float32(v))


# ---------------------------------------------------------------- norms

def rms_norm(x, w, eps):
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return y * w if w is not None else y


def layer_norm(x, w, b, eps):
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


def norm_cases():
    rms, ln = [], []
    for name, shape, has_w, eps in [
        ("weighted_2d", (3, 16), True, 1e-5),
        ("plain_3d", (2, 3, 7), False, 1e-5),
        ("wide_row", (2, 300), True, 1e-6),
        ("one_element_rows", (4, 1), True, 1e-5),
    ]:
        x = grid(shape)
        w = grid(shape[-1:]) if has_w else None
        eps = f32(eps)
        rms.append({"name": name, "x": enc(x), "weight": enc(w) if has_w else None, "eps": eps,
                    "out": out(rms_norm(x, w, eps))})
    for name, shape, has_w, has_b, eps in [
        ("weight_and_bias", (3, 16), True, True, 1e-5),
        ("weight_only", (2, 2, 9), True, False, 1e-5),
        ("bias_only", (5, 8), False, True, 1e-5),
        ("plain", (2, 300), False, False, 1e-6),
    ]:
        x = grid(shape) + 0.5  # a non-zero mean exercises the centring
        w = grid(shape[-1:]) if has_w else None
        b = grid(shape[-1:]) if has_b else None
        eps = f32(eps)
        ln.append({"name": name, "x": enc(x), "weight": enc(w) if has_w else None,
                   "bias": enc(b) if has_b else None, "eps": eps,
                   "out": out(layer_norm(x, w, b, eps))})
    return rms, ln


# ---------------------------------------------------------------- rope

def rope(x, dims, traditional, base, scale, offset, freqs):
    x = np.asarray(x, dtype=np.float64)
    L = x.shape[-2]
    half = dims // 2
    offs = np.broadcast_to(np.asarray(offset, dtype=np.float64).reshape(-1), (x.shape[0],))
    # positions per (batch, l): shape (B, 1, ..., 1, L, 1)
    pos = offs.reshape((-1,) + (1,) * (x.ndim - 1)) + np.arange(L).reshape(L, 1)
    i = np.arange(half)
    inv = 1.0 / np.asarray(freqs, dtype=np.float64) if freqs is not None else \
        base ** (-2.0 * i / dims)
    theta = scale * pos * inv  # (B, ..., L, half)
    c, s = np.cos(theta), np.sin(theta)
    y = x.copy()
    if traditional:
        x1, x2 = x[..., 0:dims:2], x[..., 1:dims:2]
        y[..., 0:dims:2] = x1 * c - x2 * s
        y[..., 1:dims:2] = x1 * s + x2 * c
    else:
        x1, x2 = x[..., :half], x[..., half:dims]
        y[..., :half] = x1 * c - x2 * s
        y[..., half:dims] = x1 * s + x2 * c
    return y


def rope_cases():
    cases = []
    for name, shape, dims, trad, base, scale, offset, use_freqs in [
        ("halves_full", (2, 3, 5, 8), 8, False, 10000.0, 1.0, 0, False),
        ("pairs_full", (2, 3, 5, 8), 8, True, 10000.0, 1.0, 0, False),
        ("halves_partial_offset", (1, 2, 6, 10), 4, False, 10000.0, 0.5, 7, False),
        ("pairs_partial_offset", (2, 1, 4, 8), 6, True, 500.0, 1.0, 3, False),
        ("batch_offsets", (3, 2, 4, 8), 8, False, 10000.0, 1.0, [0, 5, 11], False),
        ("freqs", (1, 2, 3, 8), 8, False, None, 1.0, 2, True),
        ("five_dims", (2, 2, 2, 3, 8), 8, True, 10000.0, 1.0, 1, False),
        ("far_position", (1, 1, 3, 16), 16, False, 1000000.0, 1.0, 4000, False),
    ]:
        x = grid(shape)
        freqs = [f32(v) for v in 1.0 + 3.0 * rng.random(dims // 2)] if use_freqs else None
        base_f = f32(base) if base is not None else None
        scale_f = f32(scale)
        y = rope(x, dims, trad, base_f, scale_f, offset, freqs)
        cases.append({"name": name, "x": enc(x), "dims": dims, "traditional": trad,
                      "base": base_f, "scale": scale_f, "offset": offset, "freqs": freqs,
                      "out": out(y)})
    return cases


# ---------------------------------------------------------------- attention

def attention(q, k, v, scale, causal=False, window=None, mask=None, sinks=None):
    B, Hq, Lq, _ = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    rep = Hq // Hkv
    lowest = np.finfo(np.float64).min
    o = np.zeros((B, Hq, Lq, v.shape[3]))
    qpos = np.arange(Lq)[:, None] + (Lk - Lq)
    kpos = np.arange(Lk)[None, :]
    keep = np.ones((Lq, Lk), dtype=bool)
    if causal:
        keep &= kpos <= qpos
    if window is not None:
        keep &= kpos > qpos - window
    if mask is not None:
        mask = np.broadcast_to(mask, (B, Hq, Lq, Lk))
    for b in range(B):
        for h in range(Hq):
            s = scale * q[b, h] @ k[b, h // rep].T
            kp = keep.copy()
            if mask is not None:
                if mask.dtype == bool:
                    kp &= mask[b, h]
                else:
                    s = s + mask[b, h]
            s = np.where(kp, s, lowest)
            if sinks is not None:
                s = np.concatenate([np.full((Lq, 1), sinks[h]), s], axis=1)
            m = s.max(axis=1, keepdims=True)
            p = np.exp(s - m)
            p /= p.sum(axis=1, keepdims=True)
            if sinks is not None:
                p = p[:, 1:]
            o[b, h] = p @ v[b, h // rep]
    return o


def sdpa_cases():
    cases = []
    specs = [
        # name, B, Hq, Hkv, Lq, Lk, D, Dv, mode, window, mask kind, sinks
        ("no_mask", 2, 4, 4, 5, 7, 8, 8, "", None, None, False),
        ("gqa_causal_square", 1, 6, 2, 4, 4, 16, 16, "causal", None, None, False),
        ("causal_short_queries", 2, 4, 2, 3, 10, 8, 8, "causal", None, None, False),
        ("sliding_window", 1, 2, 1, 9, 9, 8, 8, "causal", 3, None, False),
        ("sliding_window_cache", 1, 4, 2, 4, 12, 8, 8, "causal", 5, None, False),
        ("bool_mask", 2, 2, 1, 4, 6, 4, 4, "array", None, "bool", False),
        ("additive_mask", 1, 4, 2, 3, 5, 8, 8, "array", None, "additive", False),
        ("decode_long", 1, 8, 1, 1, 300, 32, 32, "", None, None, False),
        ("decode_causal", 2, 4, 1, 1, 20, 16, 16, "causal", None, None, False),
        ("many_blocks_causal", 1, 2, 1, 70, 70, 32, 32, "causal", None, None, False),
        ("head_dim_256", 1, 2, 1, 3, 5, 256, 256, "", None, None, False),
        ("value_dim_differs", 1, 2, 2, 3, 4, 8, 12, "", None, None, False),
        ("sinks_causal", 1, 4, 2, 3, 5, 8, 8, "causal", None, None, True),
        ("causal_more_queries_than_keys", 1, 1, 1, 4, 2, 4, 4, "causal", None, None, False),
        ("window_and_bool_mask", 1, 2, 1, 5, 8, 8, 8, "array", 3, "bool", False),
        ("decode_few_heads_long", 1, 2, 1, 1, 300, 16, 16, "causal", 200, None, False),
        # Gemma 3's decode shape (4 query heads on one KV head) with 128-255
        # keys, split over the threads: a window masks the first keys.
        ("decode_split_window", 1, 4, 1, 1, 150, 256, 256, "causal", 100, None, False),
        ("decode_split_keys", 1, 4, 1, 1, 131, 64, 64, "", None, None, False),
        ("decode_split_additive", 1, 4, 1, 1, 200, 32, 32, "array", None, "additive", False),
    ]
    for name, B, Hq, Hkv, Lq, Lk, D, Dv, mode, window, mkind, use_sinks in specs:
        q, k, v = grid((B, Hq, Lq, D)), grid((B, Hkv, Lk, D)), grid((B, Hkv, Lk, Dv))
        scale = f32(1.0 / np.sqrt(D))
        mask = None
        case = {"name": name, "q": enc(q), "k": enc(k), "v": enc(v), "scale": scale,
                "mask_mode": mode, "window": window, "mask": None, "sinks": None}
        if mkind == "bool":
            mask = rng.random((B, 1, Lq, Lk)) < 0.6
            mask[0, 0, 1, :] = False  # a row that sees nothing: uniform weights
            case["mask"] = {"dtype": "bool", "shape": list(mask.shape),
                            "data": [int(m) for m in mask.ravel()]}
        elif mkind == "additive":
            mask = grid((Lq, Lk), spread=2.0)
            case["mask"] = {"dtype": "float", **enc(mask)}
        sinks = None
        if use_sinks:
            sinks = grid((Hq,))
            case["sinks"] = enc(sinks)
        case["out"] = out(attention(q, k, v, scale, causal=mode == "causal", window=window,
                                    mask=mask, sinks=sinks))
        cases.append(case)
    return cases


def main():
    rms, ln = norm_cases()
    refs = {"generator": "tools/reference/fast_refs.py", "rms_norm": rms, "layer_norm": ln,
            "rope": rope_cases(), "sdpa": sdpa_cases()}
    json.dump(refs, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
