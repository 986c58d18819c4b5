#!/usr/bin/env python3
"""Reference values for lm sampling and logits processors (tests/lm/test_sample.cpp).

Written in float64 NumPy from the definitions in cli-and-server.md §2.3-2.4
(mlx-lm's sample_utils semantics), independently of mlxcpp:

  top_p:  sort ascending, keep tokens whose cumulative probability > 1 - p
  min_p:  drop tokens with logp < max logp + log(min_p), but keep the
          min_tokens_to_keep most likely
  top_k:  keep the k most likely
  xtc:    (applied) drop every token with p > threshold except the least likely
          of those, never the special tokens
  sampling: categorical(softmax(filtered / temp)); filters run top_p -> min_p
          -> xtc -> top_k
  processors, in order: logit bias (added); repetition penalty over the last
          ctx tokens, once per distinct token: logit < 0 -> * penalty, else
          / penalty; presence: - penalty once per distinct token; frequency:
          - penalty * count

Inputs are rounded to float32 (what the C++ test feeds); each threshold
comparison is checked to have a margin so float32 arithmetic cannot flip it.

Run: /usr/bin/python3 tools/reference/sample_refs.py > tests/data/lm/sample_refs.json
"""
import json
import math
import sys

import numpy as np

rng = np.random.default_rng(777)
NEG = -np.inf
MARGIN = 1e-4


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def top_p(lp, p):
    out = np.full_like(lp, NEG)
    thr = 1.0 - float(np.float32(p))
    for b in range(lp.shape[0]):
        order = np.argsort(lp[b], kind="stable")
        cum = np.cumsum(np.exp(lp[b][order]))
        assert np.all(np.abs(cum - thr) > MARGIN), (p, cum, thr)
        keep = order[cum > thr]
        out[b, keep] = lp[b, keep]
    return out


def min_p(lp, mp, keep_n):
    out = lp.copy()
    for b in range(lp.shape[0]):
        cut = lp[b].max() + (math.log(float(np.float32(mp))) if mp > 0 else NEG)
        finite = np.isfinite(lp[b])
        assert np.all(np.abs(lp[b][finite] - cut) > MARGIN)
        remove = lp[b] < cut
        top = np.argsort(-lp[b], kind="stable")[: min(keep_n, lp.shape[1])]
        if keep_n > 1:
            remove[top] = False
        out[b, remove] = NEG
    return out


def top_k(lp, k):
    out = np.full_like(lp, NEG)
    for b in range(lp.shape[0]):
        top = np.argsort(-lp[b], kind="stable")[:k]
        out[b, top] = lp[b, top]
    return out


def xtc(lp, thr, special):
    out = lp.copy()
    t = float(np.float32(thr))
    for b in range(lp.shape[0]):
        p = np.exp(log_softmax(lp[b : b + 1])[0])
        assert np.all(np.abs(p - t) > MARGIN)
        above = p > t
        if above.sum() == 0:
            continue
        least = p[above].min()
        drop = p > least
        drop[special] = False
        out[b, drop] = NEG
    return out


def softmax_t(x, temp):
    y = x / temp
    m = y[np.isfinite(y)].max()
    e = np.where(np.isfinite(y), np.exp(y - m), 0.0)
    return e / e.sum()


def enc(a):
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a).ravel()]


lp = f32(log_softmax(rng.standard_normal((3, 12)) * 2.0))
filters = []
for p in [0.3, 0.75, 0.9, 0.99]:
    filters.append({"op": "top_p", "p": p, "out": enc(top_p(lp, p))})
for mp, keep_n in [(0.05, 1), (0.2, 1), (0.2, 4), (0.6, 2), (0.0, 1)]:
    filters.append({"op": "min_p", "p": mp, "keep": keep_n, "out": enc(min_p(lp, mp, keep_n))})
for k in [1, 3, 11]:
    filters.append({"op": "top_k", "k": k, "out": enc(top_k(lp, k))})
row0_top = int(np.argmax(lp[0]))
for thr, special in [(0.05, []), (0.1, []), (0.2, []), (0.5, []), (0.05, [row0_top]),
                     (0.1, [row0_top, 3])]:
    filters.append({"op": "xtc", "threshold": thr, "special": special,
                    "out": enc(xtc(lp, thr, special))})

# Logits processors.
logits = f32(rng.standard_normal((2, 10)) * 3.0)
tokens = [int(t) for t in rng.integers(0, 10, size=25)]


def bias(x, toks, b):
    x = x.copy()
    for t, v in b.items():
        x[:, t] += float(np.float32(v))
    return x


def repetition(x, toks, pen, ctx):
    x = x.copy()
    pen = float(np.float32(pen))
    for t in sorted(set(toks[-ctx:])):
        x[:, t] = np.where(x[:, t] < 0, x[:, t] * pen, x[:, t] / pen)
    return x


def presence(x, toks, pen, ctx):
    x = x.copy()
    for t in sorted(set(toks[-ctx:])):
        x[:, t] -= float(np.float32(pen))
    return x


def frequency(x, toks, pen, ctx):
    x = x.copy()
    for t in toks[-ctx:]:
        x[:, t] -= float(np.float32(pen))
    return x


processors = []
def add(opts, fn, toks=tokens):
    processors.append({"options": opts, "tokens": toks, "out": enc(fn(logits, toks))})


add({"logit_bias": {"2": 1.5, "5": -3.0}}, lambda x, t: bias(x, t, {2: 1.5, 5: -3.0}))
add({"repetition_penalty": 1.3}, lambda x, t: repetition(x, t, 1.3, 20))
add({"repetition_penalty": 1.3, "repetition_context_size": 5}, lambda x, t: repetition(x, t, 1.3, 5))
add({"repetition_penalty": 0.8}, lambda x, t: repetition(x, t, 0.8, 20))
add({"repetition_penalty": 1.3}, lambda x, t: repetition(x, t, 1.3, 20), toks=[])
add({"presence_penalty": 0.7}, lambda x, t: presence(x, t, 0.7, 20))
add({"presence_penalty": 0.7, "presence_context_size": 3}, lambda x, t: presence(x, t, 0.7, 3))
add({"frequency_penalty": 0.4}, lambda x, t: frequency(x, t, 0.4, 20))
add({"frequency_penalty": 0.4, "frequency_context_size": 6}, lambda x, t: frequency(x, t, 0.4, 6))
add({"logit_bias": {"7": 2.0}, "repetition_penalty": 1.2, "repetition_context_size": 10,
     "presence_penalty": 0.5, "frequency_penalty": 0.3, "frequency_context_size": 15},
    lambda x, t: frequency(presence(repetition(bias(x, t, {7: 2.0}), t, 1.2, 10), t, 0.5, 20),
                           t, 0.3, 15))

# Sampling distributions for one row.
row = f32(log_softmax(rng.standard_normal((1, 6)) * 1.5))
dists = []
def dist(opts):
    x = row.copy()
    if 0 < opts.get("top_p", 0) < 1:
        x = top_p(x, opts["top_p"])
    if opts.get("min_p", 0) != 0:
        x = min_p(x, opts["min_p"], opts.get("min_tokens_to_keep", 1))
    if opts.get("xtc_probability", 0) > 0:
        assert opts["xtc_probability"] == 1.0
        x = xtc(x, opts.get("xtc_threshold", 0.1), [])
    if opts.get("top_k", 0) > 0:
        x = top_k(x, opts["top_k"])
    dists.append({"options": opts, "probs": softmax_t(x[0], float(np.float32(opts["temp"]))).tolist()})


dist({"temp": 1.0})
dist({"temp": 0.5})
dist({"temp": 1.0, "top_k": 3})
dist({"temp": 0.8, "top_p": 0.8})
dist({"temp": 1.0, "min_p": 0.3})
dist({"temp": 1.0, "top_p": 0.9, "min_p": 0.1, "top_k": 2})
dist({"temp": 1.0, "xtc_probability": 1.0, "xtc_threshold": 0.1})

json.dump({
    "logprobs": enc(lp), "shape": list(lp.shape), "argmax": [int(i) for i in np.argmax(lp, axis=1)],
    "filters": filters,
    "logits": enc(logits), "logits_shape": list(logits.shape), "processors": processors,
    "row": enc(row), "distributions": dists,
}, sys.stdout, indent=1)
