#!/usr/bin/env python3
"""Reference values for mx::nn (layers, activations, cross entropy, a Linear trained by SGD).

Written from the published formulas in float64 NumPy (math.erf for the exact GELU),
independently of mlxcpp:

  linear:      y = x W^T + b
  embedding:   y = W[indices];  as_linear: y = x W^T
  rms_norm:    y = x / sqrt(mean(x^2) + eps) * w
  layer_norm:  y = (x - mean) / sqrt(var + eps) * w + b
  gelu:        x * (1 + erf(x / sqrt 2)) / 2          (Hendrycks & Gimpel 2016)
  gelu_approx: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  gelu_fast:   x * sigmoid(1.702 x)
  selu:        1.05070098 * elu(x, 1.67326324)          (Klambauer et al. 2017)
  cross_entropy: logsumexp(z) - z[t]; smoothed: (1-s)(lse - z[t]) + s(lse - mean(z))
  sgd:         Linear (W, b) on mse loss mean((x W^T + b - y)^2); dL/dW = 2/N (p - y)^T x,
               dL/db = 2/N sum_rows(p - y) (N = number of elements of y); W <- W - lr dW.

Inputs are multiples of 1/64 in [-4, 4], exactly representable in bfloat16 and float32,
stored as integers (value * 64), so every dtype starts from the same values.

Run: /usr/bin/python3 tools/reference/nn_refs.py > tests/data/nn/nn_refs.json
"""
import json
import math

import numpy as np

rng = np.random.default_rng(20261201)


def grid(shape, spread=1.0):
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


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    return np.logaddexp(x, 0.0)


def elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(x))


refs = {}

# ---------------------------------------------------------------- activations
x = np.concatenate([np.array([-4.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 4.0]), grid(23, 1.5)])
erf = np.vectorize(math.erf)
acts = {
    "gelu": x * (1 + erf(x / math.sqrt(2))) / 2,
    "gelu_approx": 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    "gelu_fast_approx": x * sigmoid(1.702 * x),
    "silu": x * sigmoid(x),
    "relu": np.maximum(x, 0),
    "relu6": np.minimum(np.maximum(x, 0), 6),
    "relu_squared": np.maximum(x, 0) ** 2,
    "leaky_relu": np.where(x > 0, x, 0.01 * x),
    "elu": elu(x),
    "celu": np.maximum(x, 0) + np.minimum(0, np.expm1(x)),
    "selu": 1.05070098 * elu(x, 1.67326324),
    "softplus": softplus(x),
    "softsign": x / (1 + np.abs(x)),
    "mish": x * np.tanh(softplus(x)),
    "sigmoid": sigmoid(x),
    "tanh": np.tanh(x),
    "log_sigmoid": -softplus(-x),
    "hardswish": x * np.clip(x + 3, 0, 6) / 6,
    "hard_tanh": np.clip(x, -1, 1),
}
refs["activations"] = {"x": enc(x), "out": {k: out(v) for k, v in acts.items()}}

g = grid((3, 8))
a, b = g[:, :4], g[:, 4:]
refs["glu"] = {"x": enc(g), "y": out(a * sigmoid(b))}
s = grid((2, 5), 2.0)
e = np.exp(s - s.max(-1, keepdims=True))
refs["softmax"] = {"x": enc(s), "y": out(e / e.sum(-1, keepdims=True)),
                   "log_y": out(s - s.max(-1, keepdims=True) - np.log(e.sum(-1, keepdims=True)))}

# ---------------------------------------------------------------- layers
xl = grid((2, 3, 4))
W = grid((5, 4), 0.5)
bl = grid((5,), 0.5)
refs["linear"] = {"x": enc(xl), "w": enc(W), "b": enc(bl), "y": out(xl @ W.T + bl),
                  "y_nobias": out(xl @ W.T)}

E = grid((6, 4))
idx = np.array([[0, 5, 2], [3, 3, 1]])
xe = grid((2, 4))
refs["embedding"] = {"w": enc(E), "indices": {"shape": [2, 3], "data": idx.ravel().tolist()},
                     "y": out(E[idx]), "x": enc(xe), "as_linear": out(xe @ E.T)}

eps = float(np.float32(1e-5))
xn = grid((3, 8))
wn = grid((8,), 0.5) + 1.0
bn = grid((8,), 0.5)
ms = np.mean(xn * xn, -1, keepdims=True)
mu = xn.mean(-1, keepdims=True)
var = xn.var(-1, keepdims=True)
refs["norms"] = {
    "eps": eps, "x": enc(xn), "w": enc(wn), "b": enc(bn),
    "rms": out(xn / np.sqrt(ms + eps) * wn),
    "layer": out((xn - mu) / np.sqrt(var + eps) * wn + bn),
    "layer_plain": out((xn - mu) / np.sqrt(var + eps)),
}

# ---------------------------------------------------------------- cross entropy
z = grid((4, 6), 2.0)
t = np.array([0, 5, 2, 2])
lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
ce = lse - z[np.arange(4), t]
sm = 0.1
ce_s = (1 - sm) * ce + sm * (lse - z.mean(-1))
p = np.abs(grid((4, 6))) + 1.0 / 64
p = p / p.sum(-1, keepdims=True)
logp = z - lse[:, None]
wts = np.array([1.0, 0.0, 0.5, 2.0])
refs["cross_entropy"] = {
    "logits": enc(z), "targets": t.tolist(), "none": out(ce), "mean": float(ce.mean()),
    "sum": float(ce.sum()), "smoothed": out(ce_s), "weights": wts.tolist(),
    "weighted_sum": float((ce * wts).sum()),
    "probs": out(p), "probs_loss": out(-(p * logp).sum(-1)),
    # axis 0: classes down the columns
    "axis0_targets": [1, 0, 3, 2, 1, 0], "axis0": out(
        np.log(np.exp(z).sum(0)) - z[[1, 0, 3, 2, 1, 0], np.arange(6)]),
}

# ---------------------------------------------------------------- SGD on a Linear
# A 3 -> 2 regression whose targets come from a known map; the first gradient is
# checked exactly and the loss trajectory after a few steps.
xs = grid((8, 3))
W_true = np.array([[1.0, -2.0, 0.5], [0.25, 0.75, -1.0]])
b_true = np.array([0.5, -0.25])
ys = xs @ W_true.T + b_true
W0 = grid((2, 3), 0.5)
b0 = np.zeros(2)
lr = 0.1
Wk, bk = W0.copy(), b0.copy()
losses, grads = [], None
for step in range(5):
    pred = xs @ Wk.T + bk
    r = pred - ys
    N = r.size
    losses.append(float(np.mean(r * r)))
    gW = 2.0 / N * r.T @ xs
    gb = 2.0 / N * r.sum(0)
    if grads is None:
        grads = (gW, gb)
    Wk = Wk - lr * gW
    bk = bk - lr * gb
pred = xs @ Wk.T + bk
losses.append(float(np.mean((pred - ys) ** 2)))
refs["sgd"] = {"x": enc(xs), "y": out(ys), "w0": enc(W0), "b0": enc(b0), "lr": lr,
               "grad_w": out(grads[0]), "grad_b": out(grads[1]), "losses": losses,
               "w_final": out(Wk), "b_final": out(bk)}

print(json.dumps(refs, indent=1))
