#!/usr/bin/env python3
"""NumPy references for mx's elementwise ops: writes tests/data/mx/elementwise_refs.json.

Run from the repository root: /usr/bin/python3 tools/reference/elementwise_refs.py
Each case holds float64 inputs (exactly representable in float32) and NumPy's float64 output.
"""
import json
import math
import os

import numpy as np

rng = np.random.default_rng(1234)


def f32(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def domain(lo, hi, n=24):
    return f32(rng.uniform(lo, hi, n))


erfinv = np.vectorize(lambda y: _erfinv(y))


def _erfinv(y):
    # Bisection on math.erf: independent of any erfinv approximation.
    lo, hi = -6.0, 6.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if math.erf(mid) < y:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


unary = {
    "abs": (domain(-5, 5), np.abs),
    "negative": (domain(-5, 5), np.negative),
    "sign": (np.concatenate([domain(-5, 5, 10), [0.0]]), np.sign),
    "square": (domain(-5, 5), np.square),
    "sqrt": (domain(0, 10), np.sqrt),
    "rsqrt": (domain(0.1, 10), lambda x: 1 / np.sqrt(x)),
    "exp": (domain(-5, 5), np.exp),
    "expm1": (domain(-1, 1), np.expm1),
    "log": (domain(0.1, 10), np.log),
    "log2": (domain(0.1, 10), np.log2),
    "log10": (domain(0.1, 10), np.log10),
    "log1p": (domain(-0.5, 3), np.log1p),
    "sin": (domain(-4, 4), np.sin),
    "cos": (domain(-4, 4), np.cos),
    "tan": (domain(-1.2, 1.2), np.tan),
    "arcsin": (domain(-0.95, 0.95), np.arcsin),
    "arccos": (domain(-0.95, 0.95), np.arccos),
    "arctan": (domain(-5, 5), np.arctan),
    "sinh": (domain(-3, 3), np.sinh),
    "cosh": (domain(-3, 3), np.cosh),
    "tanh": (domain(-3, 3), np.tanh),
    "arcsinh": (domain(-5, 5), np.arcsinh),
    "arccosh": (domain(1.1, 5), np.arccosh),
    "arctanh": (domain(-0.9, 0.9), np.arctanh),
    "sigmoid": (domain(-6, 6), lambda x: 1 / (1 + np.exp(-x))),
    "erf": (domain(-2.5, 2.5), np.vectorize(math.erf)),
    "erfinv": (domain(-0.99, 0.99), erfinv),
    "floor": (domain(-5, 5), np.floor),
    "ceil": (domain(-5, 5), np.ceil),
    "round": (np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, 1.51, -3.7]), np.round),
    "degrees": (domain(-4, 4), np.degrees),
    "radians": (domain(-360, 360), np.radians),
}

binary = {
    "add": (domain(-5, 5), domain(-5, 5), np.add),
    "subtract": (domain(-5, 5), domain(-5, 5), np.subtract),
    "multiply": (domain(-5, 5), domain(-5, 5), np.multiply),
    "divide": (domain(-5, 5), domain(0.5, 5), np.divide),
    "floor_divide": (domain(-9, 9), domain(-3, 3), np.floor_divide),
    "remainder": (domain(-9, 9), domain(-3, 3), np.remainder),
    "power": (domain(0.1, 3), domain(-2, 2), np.power),
    "maximum": (domain(-5, 5), domain(-5, 5), np.maximum),
    "minimum": (domain(-5, 5), domain(-5, 5), np.minimum),
    "arctan2": (domain(-5, 5), domain(-5, 5), np.arctan2),
    "logaddexp": (domain(-5, 5), domain(-5, 5), np.logaddexp),
}

int_binary = {
    "floor_divide": (np.floor_divide,),
    "remainder": (np.remainder,),
    "power": (np.power,),
}

out = {"unary": {}, "binary": {}, "int_binary": {}}
for name, (x, fn) in unary.items():
    out["unary"][name] = {"x": list(map(float, x)), "y": list(map(float, fn(x)))}
for name, (x, y, fn) in binary.items():
    out["binary"][name] = {"x": list(map(float, x)), "y": list(map(float, y)),
                           "z": list(map(float, fn(x, y)))}
xi = np.array([-7, -7, 7, 7, 0, 5, -1, 9, 2, -3], dtype=np.int32)
yi = np.array([2, -2, 2, -2, 3, 1, 3, 4, 10, 3], dtype=np.int32)
for name, (fn,) in int_binary.items():
    if name == "power":
        xs, ys = np.array([2, 3, -2, 5, 0, 1, 7], dtype=np.int32), np.array([3, 4, 3, 0, 5, 9, 2], dtype=np.int32)
    else:
        xs, ys = xi, yi
    out["int_binary"][name] = {"x": xs.tolist(), "y": ys.tolist(), "z": fn(xs, ys).tolist()}

path = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "mx", "elementwise_refs.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", os.path.normpath(path))
