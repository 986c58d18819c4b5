"""float64 NumPy references for mx::fast::residual_rms_norm and mx::fast::rms_norm_rope.

The inputs are the literals below (exact in float32); the printed values are pasted into
tests/mx/test_fast_fused_norms.cpp.
Run: /usr/bin/python3 tools/reference/fused_norm_refs.py
"""
import numpy as np

EPS = 1e-6


def rms(x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS) * w


def rope(x, pos, dims, base, scale, traditional):
    # x (..., D) rows all at position pos.
    half = dims // 2
    inv = base ** (-2.0 * np.arange(half) / dims)
    th = scale * pos * inv
    c, s = np.cos(th), np.sin(th)
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


def show(name, a):
    print(name + " = {" + ", ".join("%.9g" % v for v in np.asarray(a).ravel()) + "};")


# residual_rms_norm: two rows of 4.
res = np.array([[1.0, -2.0, 0.5, 3.0], [0.25, 0.0, -1.5, 2.0]])
y = np.array([[3.0, 4.0, 0.0, -12.0], [1.0, -1.0, 2.0, 0.5]])
wy = np.array([1.0, 2.0, 0.5, -1.5])
wo = np.array([0.5, 1.0, 1.5, 2.0])
h = res + rms(y, wy)
show("kResidualH", h)
show("kResidualNormed", rms(h, wo))

# rms_norm_rope: x (B=1, H=2, L=2, D=6), weight (6,), rows at offset + l.
x = np.array([1.0, -2.0, 0.5, 3.0, 0.25, -1.0,
              2.0, 1.5, -0.5, 0.75, -3.0, 1.0,
              -1.0, 0.5, 2.5, -2.0, 1.25, 0.0,
              0.5, 0.5, -1.5, 1.0, 2.0, -0.25]).reshape(1, 2, 2, 6)
w = np.array([1.0, 0.5, 2.0, -1.0, 1.5, 0.25])
n = rms(x, w)
for name, offset, dims, base, scale, trad in [
        ("kRopeFull", 3, 6, 10000.0, 1.0, False),
        ("kRopePartialTraditional", 7, 4, 10000.0, 0.5, True),
        ("kRopeFarPosition", 100000, 6, 1000000.0, 1.0, False)]:
    out = np.empty_like(n)
    for l in range(2):
        out[:, :, l, :] = rope(n[:, :, l, :], offset + l, dims, base, scale, trad)
    show(name, out)
