#!/usr/bin/python3
"""Reference values for tests/mx/test_linalg.cpp, computed with numpy.linalg.

Writes tests/data/mx/linalg_refs.json: for each case, the input arrays and the
expected outputs (flattened row-major, with shapes). Run from the repository
root: python3 tools/reference/linalg_refs.py
"""
import json
import math
import os

import numpy as np

rng = np.random.default_rng(20261127)


def arr(x):
    x = np.asarray(x, dtype=np.float64)
    return {"shape": list(x.shape), "data": [float(v) for v in x.ravel()]}


def spd(n, batch=()):
    m = rng.standard_normal(batch + (n, n))
    return m @ np.swapaxes(m, -1, -2) + n * np.eye(n)


cases = {}


def case(name, inputs, outputs, **params):
    cases[name] = {
        "inputs": [arr(x) for x in inputs],
        "outputs": [arr(y) for y in outputs],
        "params": params,
    }


# Norms: vector ords, matrix ords, axes and keepdims.
v = rng.standard_normal(7)
v[2] = 0.0
for ord_ in [2, 1, math.inf, -math.inf, 0, 3, 0.5, -1]:
    case(f"norm_vec_{ord_}", [v], [np.linalg.norm(v, ord_)], ord=str(ord_))
m = rng.standard_normal((4, 5))
for ord_ in [1, -1, 2, -2, math.inf, -math.inf, "fro", "nuc"]:
    case(f"norm_mat_{ord_}", [m], [np.linalg.norm(m, ord_)], ord=str(ord_))
t = rng.standard_normal((2, 3, 4))
case("norm_default_3d", [t], [np.linalg.norm(t)])
case("norm_default_keepdims", [t], [np.linalg.norm(t.ravel()).reshape(1, 1, 1)])
case("norm_axis1", [t], [np.linalg.norm(t, axis=1)])
case("norm_axis_m1_keep", [t], [np.linalg.norm(t, axis=-1, keepdims=True)])
case("norm_axes_02_fro", [t], [np.linalg.norm(t, axis=(0, 2))])
case("norm_ord3_axis0", [t], [np.linalg.norm(t, 3, axis=0)])
case("norm_inf_axes_20", [t], [np.linalg.norm(t, math.inf, axis=(2, 0))])
case("norm_1_axes_12_keep", [t], [np.linalg.norm(t, 1, axis=(1, 2), keepdims=True)])
case("norm_m1_axes_21", [t], [np.linalg.norm(t, -1, axis=(2, 1))])
case("norm_2_axes_12_keep", [t], [np.linalg.norm(t, 2, axis=(1, 2), keepdims=True)])
case("norm_nuc_axes_01", [t], [np.linalg.norm(t, "nuc", axis=(0, 1))])
case("norm_m2_axes_21", [t], [np.linalg.norm(t, -2, axis=(2, 1))])

# Factorizations and solvers, batched.
a = rng.standard_normal((3, 4, 4)) + 4 * np.eye(4)
case("inv_batched", [a], [np.linalg.inv(a)])
b = rng.standard_normal((3, 4, 2))
case("solve_matrix", [a, b], [np.linalg.solve(a, b)])
bv = rng.standard_normal((3, 4))
case("solve_vector", [a, bv], [np.linalg.solve(a, bv[..., None])[..., 0]])
a2 = a[0]
bb = rng.standard_normal((2, 4, 3))
case("solve_broadcast", [a2, bb], [np.linalg.solve(a2[None], bb)])
s = spd(4, (2,))
case("cholesky_lower", [s], [np.linalg.cholesky(s)])
case("cholesky_upper", [s], [np.swapaxes(np.linalg.cholesky(s), -1, -2)])
lo = np.tril(rng.standard_normal((2, 4, 4))) + 3 * np.eye(4)
case("tri_inv_lower", [lo], [np.linalg.inv(lo)])
up = np.swapaxes(lo, -1, -2)
case("tri_inv_upper", [up], [np.linalg.inv(up)])
case("cholesky_inv", [np.linalg.cholesky(s)], [np.linalg.inv(s)])
for shape in [(5, 3), (3, 5), (2, 4, 4)]:
    x = rng.standard_normal(shape)
    q, r = np.linalg.qr(x)
    name = "x".join(str(d) for d in shape)
    case(f"qr_{name}", [x], [q, r])
    case(f"svdvals_{name}", [x], [np.linalg.svd(x, compute_uv=False)])
    case(f"pinv_{name}", [x], [np.linalg.pinv(x)])
sym = spd(5, (2,)) - 6 * np.eye(5)  # indefinite
w, vec = np.linalg.eigh(sym)
case("eigh_L", [sym], [w, vec])
junk = sym + np.triu(rng.standard_normal((5, 5)), 1)  # only the lower triangle is symmetric
case("eigvalsh_L_reads_lower", [junk], [np.linalg.eigvalsh(junk, "L")])
case("eigvalsh_U", [junk], [np.linalg.eigvalsh(junk, "U")])
ca = rng.standard_normal((2, 3))
cb = rng.standard_normal((3,))
case("cross", [ca, cb], [np.cross(ca, cb)])
cc = rng.standard_normal((3, 2))
cd = rng.standard_normal((3, 2))
case("cross_axis0", [cc, cd], [np.cross(cc, cd, axis=0)])

out = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "mx", "linalg_refs.json")
with open(out, "w") as f:
    json.dump({"generator": "tools/reference/linalg_refs.py", "numpy": np.__version__,
               "cases": cases}, f, indent=None, separators=(",", ":"))
print(f"wrote {len(cases)} cases to {os.path.normpath(out)}")
