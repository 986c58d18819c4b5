#!/usr/bin/python3
"""Reference values for tests/mx/test_fft.cpp, computed with numpy.fft.

Writes tests/data/mx/fft_refs.json: for each case the input (real and
imaginary parts, row-major, with its shape), the call's parameters and the
expected output. Run from the repository root: python3 tools/reference/fft_refs.py
"""
import json
import os

import numpy as np

rng = np.random.default_rng(1127)


def arr(x):
    x = np.asarray(x)
    return {
        "shape": list(x.shape),
        "re": [float(v) for v in np.real(x).ravel()],
        "im": [float(v) for v in np.imag(x).ravel()],
    }


def cplx(*shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def real(*shape):
    return rng.standard_normal(shape)


cases = {}


def case(name, fn, x, out, **params):
    cases[name] = {"fn": fn, "input": arr(x), "output": arr(out), "params": params}


# 1-D: powers of two, primes, composites, length 1; batched along the last axis.
for n in [1, 2, 8, 64, 7, 13, 97, 12, 100]:
    x = cplx(n)
    case(f"fft_{n}", "fft", x, np.fft.fft(x))
    case(f"ifft_{n}", "ifft", x, np.fft.ifft(x))
x = cplx(3, 7)
case("fft_batched", "fft", x, np.fft.fft(x))
case("fft_axis0", "fft", x, np.fft.fft(x, axis=0), axis=0)
case("fft_pad", "fft", x, np.fft.fft(x, n=10), n=10)
case("fft_crop", "fft", x, np.fft.fft(x, n=4), n=4)
case("ifft_pad_axis0", "ifft", x, np.fft.ifft(x, n=5, axis=0), n=5, axis=0)
for n in [8, 9, 1, 31]:
    x = real(2, n)
    case(f"rfft_{n}", "rfft", x, np.fft.rfft(x))
x8 = real(8)
case("rfft_pad", "rfft", x8, np.fft.rfft(x8, n=12), n=12)
case("rfft_crop", "rfft", x8, np.fft.rfft(x8, n=5), n=5)
for m in [5, 2, 17]:
    spec = cplx(3, m)
    case(f"irfft_{m}", "irfft", spec, np.fft.irfft(spec))
spec = cplx(5)
case("irfft_odd_n", "irfft", spec, np.fft.irfft(spec, n=9), n=9)
case("irfft_crop_n", "irfft", spec, np.fft.irfft(spec, n=4), n=4)
case("irfft_pad_n", "irfft", spec, np.fft.irfft(spec, n=14), n=14)
spec_t = cplx(4, 3)
case("irfft_axis0", "irfft", spec_t, np.fft.irfft(spec_t, axis=0), axis=0)

# 2-D and n-D.
x = cplx(4, 6)
case("fft2", "fft2", x, np.fft.fft2(x))
case("ifft2", "ifft2", x, np.fft.ifft2(x))
case("fft2_s", "fft2", x, np.fft.fft2(x, s=(5, 3)), s=[5, 3])
xr = real(5, 6)
case("rfft2", "rfft2", xr, np.fft.rfft2(xr))
sp = np.fft.rfft2(real(5, 6))
case("irfft2_s", "irfft2", sp, np.fft.irfft2(sp, s=(5, 6)), s=[5, 6])
case("irfft2_default", "irfft2", sp, np.fft.irfft2(sp))
x3 = cplx(2, 3, 4)
case("fftn", "fftn", x3, np.fft.fftn(x3))
case("fftn_axes", "fftn", x3, np.fft.fftn(x3, axes=(0, 2)), axes=[0, 2])
case("fftn_axes_rev", "fftn", x3, np.fft.fftn(x3, axes=(2, 0)), axes=[2, 0])
case("ifftn_s", "ifftn", x3, np.fft.ifftn(x3, s=(3, 5), axes=(1, 2)), s=[3, 5], axes=[1, 2])
x3r = real(3, 4, 5)
case("rfftn", "rfftn", x3r, np.fft.rfftn(x3r))
case("rfftn_axes", "rfftn", x3r, np.fft.rfftn(x3r, axes=(2, 0)), axes=[2, 0])
sp3 = np.fft.rfftn(real(3, 4, 6))
case("irfftn_s", "irfftn", sp3, np.fft.irfftn(sp3, s=(3, 4, 6)), s=[3, 4, 6], axes=[0, 1, 2])
sp3b = cplx(3, 4, 4)  # not Hermitian along the other axes: numpy still defines the result
case("irfftn_general", "irfftn", sp3b, np.fft.irfftn(sp3b, s=(3, 4, 7)), s=[3, 4, 7],
     axes=[0, 1, 2])
xs = real(4, 5)
case("fftshift", "fftshift", xs, np.fft.fftshift(xs))
case("ifftshift", "ifftshift", xs, np.fft.ifftshift(xs))
case("fftshift_axis1", "fftshift", xs, np.fft.fftshift(xs, axes=(1,)), axes=[1])

out = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "mx", "fft_refs.json")
with open(out, "w") as f:
    json.dump({"generator": "tools/reference/fft_refs.py", "numpy": np.__version__,
               "cases": cases}, f, separators=(",", ":"))
print(f"wrote {len(cases)} cases to {os.path.normpath(out)}")
