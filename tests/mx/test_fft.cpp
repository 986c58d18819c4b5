// mx::fft against numpy.fft (tools/reference/fft_refs.py →
// tests/data/mx/fft_refs.json), a direct O(n^2) DFT in long double for large
// lengths, round trips, errors, and derivatives against central differences.
#include <cmath>
#include <complex>
#include <fstream>
#include <functional>
#include <numbers>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "mlxcpp/mx/fft.h"

namespace {

using mx::array;
using mx::Shape;
namespace fft = mx::fft;
using mxtest::expect_close;
using mxtest::to_vector;

const nlohmann::json& refs() {
  static nlohmann::json j = [] {
    std::ifstream f(std::string(MLXCPP_TEST_DATA) + "/mx/fft_refs.json");
    return nlohmann::json::parse(f);
  }();
  return j;
}

array complex_array(const std::vector<double>& re, const std::vector<double>& im, Shape shape) {
  std::vector<mx::complex64_t> v(re.size());
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = {static_cast<float>(re[i]), static_cast<float>(im[i])};
  return array(v, std::move(shape), mx::complex64);
}

array case_input(const nlohmann::json& c, bool as_complex) {
  const auto& in = c["input"];
  Shape shape = in["shape"].get<Shape>();
  auto re = in["re"].get<std::vector<double>>();
  if (!as_complex) return array(re.begin(), shape, mx::float32);
  return complex_array(re, in["im"].get<std::vector<double>>(), shape);
}

void expect_complex(const array& got, const std::vector<double>& re, const std::vector<double>& im,
                    const Shape& shape, double tol) {
  expect_close(mx::real(got), re, shape, tol, tol);
  expect_close(mx::imag(got), im, shape, tol, tol);
}

void expect_case(const array& got, const nlohmann::json& c, double tol = 2e-5) {
  const auto& o = c["output"];
  Shape shape = o["shape"].get<Shape>();
  auto re = o["re"].get<std::vector<double>>();
  if (got.dtype() == mx::complex64) {
    expect_complex(got, re, o["im"].get<std::vector<double>>(), shape, tol);
  } else {
    expect_close(got, re, shape, tol, tol);
  }
}

// Runs one reference case through the matching mx::fft call.
array run_case(const nlohmann::json& c) {
  std::string fn = c["fn"];
  const auto& p = c["params"];
  bool real_in =
      fn == "rfft" || fn == "rfft2" || fn == "rfftn" || fn == "fftshift" || fn == "ifftshift";
  array x = case_input(c, !real_in);
  int axis = p.contains("axis") ? p["axis"].get<int>() : -1;
  if (fn == "fft") return p.contains("n") ? fft::fft(x, p["n"], axis) : fft::fft(x, axis);
  if (fn == "ifft") return p.contains("n") ? fft::ifft(x, p["n"], axis) : fft::ifft(x, axis);
  if (fn == "rfft") return p.contains("n") ? fft::rfft(x, p["n"], axis) : fft::rfft(x, axis);
  if (fn == "irfft") return p.contains("n") ? fft::irfft(x, p["n"], axis) : fft::irfft(x, axis);
  std::vector<int> axes;
  if (p.contains("axes")) axes = p["axes"].get<std::vector<int>>();
  bool has_s = p.contains("s");
  Shape s = has_s ? p["s"].get<Shape>() : Shape{};
  if (fn == "fft2") return has_s ? fft::fft2(x, s, {-2, -1}) : fft::fft2(x);
  if (fn == "ifft2") return fft::ifft2(x);
  if (fn == "rfft2") return fft::rfft2(x);
  if (fn == "irfft2") return has_s ? fft::irfft2(x, s, {-2, -1}) : fft::irfft2(x);
  if (fn == "fftn") return axes.empty() ? fft::fftn(x) : fft::fftn(x, axes);
  if (fn == "ifftn") return fft::ifftn(x, s, axes);
  if (fn == "rfftn") return axes.empty() ? fft::rfftn(x) : fft::rfftn(x, axes);
  if (fn == "irfftn") return fft::irfftn(x, s, axes);
  if (fn == "fftshift") return axes.empty() ? fft::fftshift(x) : fft::fftshift(x, axes);
  if (fn == "ifftshift") return fft::ifftshift(x);
  throw std::runtime_error("unknown reference function " + fn);
}

TEST(FFT, MatchesNumpy) {
  for (auto& [name, c] : refs()["cases"].items()) {
    SCOPED_TRACE(name);
    array got = run_case(c);
    // Values grow like sqrt(n) * |x|; the largest cases reach ~30.
    expect_case(got, c, 5e-5);
  }
}

TEST(FFT, OutputDtypesAndShapes) {
  array x = mx::ones({4, 6});
  EXPECT_EQ(fft::fft(x).dtype(), mx::complex64);
  EXPECT_EQ(fft::rfft(x).shape(), (Shape{4, 4}));
  EXPECT_EQ(fft::irfft(fft::rfft(x)).shape(), (Shape{4, 6}));
  EXPECT_EQ(fft::irfft(fft::rfft(x)).dtype(), mx::float32);
  EXPECT_EQ(fft::irfft(mx::astype(mx::ones({3, 5}), mx::complex64)).shape(), (Shape{3, 8}));
  // Integer, bfloat16 and float64 inputs are converted.
  expect_complex(fft::fft(array({1, 2, 3, 4})), {10, -2, -2, -2}, {0, 2, 0, -2}, {4}, 1e-6);
  expect_complex(fft::fft(mx::astype(array({1.f, 2.f, 3.f, 4.f}), mx::bfloat16)), {10, -2, -2, -2},
                 {0, 2, 0, -2}, {4}, 1e-6);
  expect_complex(fft::rfft(mx::astype(array({1.f, 0.f, -1.f, 0.f}), mx::float64)), {0, 2, 0},
                 {0, 0, 0}, {3}, 1e-6);
}

// X_k = sum_j x_j e^{-2 pi i jk / n}, summed directly in long double.
std::vector<std::complex<long double>> naive_dft(const std::vector<double>& re,
                                                 const std::vector<double>& im) {
  size_t n = re.size();
  std::vector<std::complex<long double>> w(n), out(n);
  for (size_t t = 0; t < n; ++t) {
    w[t] = std::polar(1.0L, -2.0L * std::numbers::pi_v<long double> * t / n);
  }
  for (size_t k = 0; k < n; ++k) {
    std::complex<long double> s = 0;
    for (size_t j = 0; j < n; ++j) s += std::complex<long double>(re[j], im[j]) * w[(j * k) % n];
    out[k] = s;
  }
  return out;
}

TEST(FFT, LargeLengthsAgainstDirectDFT) {
  for (int n : {1000, 1021, 2048}) {  // composite, prime (Bluestein), power of two
    auto x = mx::random::normal({2, n}, mx::float32, mx::random::key(n));
    auto xv = to_vector(x);
    std::vector<double> re(xv.begin(), xv.begin() + n), im(xv.begin() + n, xv.end());
    auto ref = naive_dft(re, im);
    array z = complex_array(re, im, {n});
    array got = fft::fft(z);
    auto gr = to_vector(mx::real(got)), gi = to_vector(mx::imag(got));
    double worst = 0;
    for (int k = 0; k < n; ++k) {
      worst = std::max(
          worst, static_cast<double>(std::abs(std::complex<long double>(gr[k], gi[k]) - ref[k])));
    }
    // float32 inputs and outputs: |X| ~ sqrt(2n), so ~1e-6 relative.
    EXPECT_LT(worst, 1e-4 * std::sqrt(n)) << n;
  }
}

TEST(FFT, RoundTrips) {
  for (int n : {4096, 4099, 6}) {
    auto x = mx::random::normal({3, n}, mx::float32, mx::random::key(3));
    auto back = fft::irfft(fft::rfft(x), n, -1);
    expect_close(back, to_vector(x), x.shape(), 1e-5, 1e-5);
    auto z = mx::astype(x, mx::complex64);
    expect_close(mx::real(fft::ifft(fft::fft(z))), to_vector(x), x.shape(), 1e-5, 1e-5);
  }
  auto x = mx::random::normal({3, 5, 6}, mx::float32, mx::random::key(5));
  expect_close(fft::irfftn(fft::rfftn(x), {3, 5, 6}, {0, 1, 2}), to_vector(x), x.shape(), 1e-5,
               1e-5);
  expect_close(mx::real(fft::ifftn(fft::fftn(x))), to_vector(x), x.shape(), 1e-5, 1e-5);
}

TEST(FFT, EmptyArrays) {
  array e = mx::zeros({0, 8});
  EXPECT_EQ(fft::fft(e).shape(), (Shape{0, 8}));
  EXPECT_EQ(to_vector(mx::real(fft::fft(e))).size(), 0u);
  EXPECT_EQ(fft::rfft(e).shape(), (Shape{0, 5}));
  EXPECT_EQ(to_vector(fft::irfft(fft::rfft(e))).size(), 0u);
}

TEST(FFT, Errors) {
  array x = mx::ones({4, 6});
  EXPECT_THROW(fft::fft(x, 2), std::invalid_argument);
  EXPECT_THROW(fft::fft(x, 0, -1), std::invalid_argument);
  EXPECT_THROW(fft::fftn(x, {4}, {0, 1}), std::invalid_argument);
  try {
    fft::fftn(x, {0, -2});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("repeated axis"), std::string::npos) << e.what();
  }
  EXPECT_THROW(fft::rfft(mx::astype(x, mx::complex64)), std::invalid_argument);
}

// ---------------------------------------------------------------- derivatives
// Complex cotangents follow JAX's convention: for L = Re(sum(w * y)) the
// cotangent of y is w, and the cotangent of a complex input z is
// dL/dRe z - i dL/dIm z.

using Fn = std::function<array(const array&)>;

// L = Re(sum(w * f(x))) for complex outputs, sum(w * f(x)) for real ones.
double loss(const Fn& f, const array& x, const array& w) {
  array y = f(x);
  array p = mx::multiply(y, w);
  auto v = to_vector(mx::real(p));
  double s = 0;
  for (double e : v) s += e;
  return s;
}

void check_vjp(const Fn& f, const array& x, uint64_t seed) {
  array y = f(x);
  array w = mx::random::normal(y.shape(), mx::float32, mx::random::key(seed));
  if (y.dtype() == mx::complex64) {
    array wi = mx::random::normal(y.shape(), mx::float32, mx::random::key(seed + 1000));
    w = mx::add(mx::astype(w, mx::complex64),
                mx::multiply(mx::astype(wi, mx::complex64), array(mx::complex64_t(0, 1))));
  }
  auto [out, g] = mx::vjp(f, x, w);
  bool cplx = x.dtype() == mx::complex64;
  auto xr = to_vector(mx::real(x));
  auto xi = cplx ? to_vector(mx::imag(x)) : std::vector<double>(xr.size(), 0.0);
  const double eps = 1e-2;  // the maps are linear, so large steps are exact
  std::vector<double> dre(xr.size()), dim(xr.size());
  auto make = [&](const std::vector<double>& re, const std::vector<double>& im) {
    return cplx ? complex_array(re, im, x.shape()) : array(re.begin(), x.shape(), mx::float32);
  };
  for (size_t i = 0; i < xr.size(); ++i) {
    auto p = xr, m = xr;
    p[i] += eps;
    m[i] -= eps;
    dre[i] = (loss(f, make(p, xi), w) - loss(f, make(m, xi), w)) / (2 * eps);
    if (cplx) {
      auto pi = xi, mi = xi;
      pi[i] += eps;
      mi[i] -= eps;
      dim[i] = (loss(f, make(xr, pi), w) - loss(f, make(xr, mi), w)) / (2 * eps);
    }
  }
  expect_close(mx::real(g), dre, x.shape(), 1e-3, 1e-3);
  if (cplx) {
    for (double& d : dim) d = -d;
    expect_close(mx::imag(g), dim, x.shape(), 1e-3, 1e-3);
  }
}

TEST(FFTGrad, VjpMatchesFiniteDifferences) {
  array z = mx::astype(mx::random::normal({2, 6}, mx::float32, mx::random::key(1)), mx::complex64);
  z = mx::add(
      z, mx::multiply(
             mx::astype(mx::random::normal({2, 6}, mx::float32, mx::random::key(2)), mx::complex64),
             array(mx::complex64_t(0, 1))));
  array r = mx::random::normal({2, 6}, mx::float32, mx::random::key(3));
  check_vjp([](const array& x) { return fft::fft(x); }, z, 10);
  check_vjp([](const array& x) { return fft::ifft(x, 0); }, z, 11);
  check_vjp([](const array& x) { return fft::fft2(x); }, z, 12);
  check_vjp([](const array& x) { return fft::fft(x, 9, -1); }, z, 13);  // padded
  check_vjp([](const array& x) { return fft::rfft(x); }, r, 14);
  check_vjp([](const array& x) { return fft::rfft(x, 5, -1); }, r, 15);  // odd, cropped
  check_vjp([](const array& x) { return fft::rfft2(x); }, r, 16);
  array h = fft::rfft(r);  // (2, 4) half-spectrum
  check_vjp([](const array& x) { return fft::irfft(x); }, h, 17);
  check_vjp([](const array& x) { return fft::irfft(x, 7, -1); }, h, 18);  // odd length
  check_vjp([](const array& x) { return fft::irfft2(x); }, h, 19);
}

TEST(FFTGrad, JvpIsTheTransformOfTheTangent) {
  array r = mx::random::normal({2, 6}, mx::float32, mx::random::key(4));
  array t = mx::random::normal({2, 6}, mx::float32, mx::random::key(5));
  auto [y, dy] = mx::jvp([](const array& x) { return fft::rfft(x); }, r, t);
  array expected = fft::rfft(t);
  expect_close(mx::real(dy), to_vector(mx::real(expected)), expected.shape(), 1e-6);
  expect_close(mx::imag(dy), to_vector(mx::imag(expected)), expected.shape(), 1e-6);
}

TEST(FFTGrad, Vmap) {
  array x = mx::random::normal({3, 8}, mx::float32, mx::random::key(6));
  auto f = mx::vmap([](const array& v) { return fft::rfft(v); }, 1, 0);
  array got = f(mx::transpose(x));
  array expected = fft::rfft(x);
  expect_close(mx::real(got), to_vector(mx::real(expected)), expected.shape(), 1e-6);
  expect_close(mx::imag(got), to_vector(mx::imag(expected)), expected.shape(), 1e-6);
}

}  // namespace
