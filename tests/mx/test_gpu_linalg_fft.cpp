// The GPU's linear algebra (cuSOLVER) and FFT (cuFFT) against the CPU kernels
// of the same ops on the same inputs (the CPU kernels are tested against NumPy
// in test_linalg.cpp and test_fft.cpp): batched and broadcast inputs, strided
// views, every layout case of the kernels, the same error messages, and more
// FFT layouts than the plan cache holds. Skips where no GPU exists (ctest label
// `gpu`).
#include <functional>
#include <string>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/fft.h"
#include "mlxcpp/mx/linalg.h"
#include "mlxcpp/mx/random.h"

using mx::array;
using mx::Shape;
namespace linalg = mx::linalg;
namespace fft = mx::fft;

namespace {

const mx::Device kGpu(mx::Device::gpu);
const mx::Device kCpu(mx::Device::cpu);

class GpuLinalg : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  }
};
using GpuFFT = GpuLinalg;

array normal(const Shape& shape, mx::Dtype dtype, uint64_t seed) {
  array x = mx::random::normal(shape, mx::float32, mx::random::key(seed), kCpu);
  x = mx::astype(x, dtype, kCpu);
  x.eval();
  return x;
}

// Symmetric positive-definite matrices: a a^T + n I.
array spd(const Shape& shape, mx::Dtype dtype, uint64_t seed) {
  array a = normal(shape, dtype, seed);
  int n = shape.back();
  array s = mx::add(
      mx::matmul(a, mx::swapaxes(a, -1, -2, kCpu), kCpu),
      mx::multiply(mx::eye(n, dtype, kCpu), array(static_cast<double>(n), dtype), kCpu), kCpu);
  s.eval();
  return s;
}

double tol(mx::Dtype d) { return d == mx::float64 ? 1e-10 : 2e-4; }

// f on the CPU and on the GPU: the same shapes, dtypes and values.
void expect_same(const std::function<array(mx::StreamOrDevice)>& f, double atol,
                 const std::string& what) {
  SCOPED_TRACE(what);
  array want = f(kCpu);
  array got = f(kGpu);
  mx::eval({want, got});
  ASSERT_EQ(got.dtype(), want.dtype());
  mxtest::expect_close(got, mxtest::to_vector(want), want.shape(), atol, atol);
}

// The message of the exception f throws (empty when it throws none).
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

const std::vector<mx::Dtype> kLinalgTypes = {mx::float32, mx::float64};

}  // namespace

TEST_F(GpuLinalg, InverseSolveCholeskyMatchTheCpu) {
  for (auto d : kLinalgTypes) {
    SCOPED_TRACE(mx::dtype_name(d));
    const double t = tol(d);
    array a = spd({3, 2, 5, 5}, d, 1);  // batched (3, 2)
    expect_same([&](auto s) { return linalg::inv(a, s); }, t, "inv batched");
    // A transposed view: the kernels read strided inputs.
    // Diagonally dominant, so that float32 results are well conditioned.
    array g =
        mx::add(normal({6, 6}, d, 2), mx::multiply(mx::eye(6, d, kCpu), array(4.0, d), kCpu), kCpu);
    expect_same([&](auto s) { return linalg::inv(mx::transpose(g, kCpu), s); }, t * 10, "inv view");
    expect_same([&](auto s) { return linalg::tri_inv(g, false, s); }, t * 10, "tri_inv lower");
    expect_same([&](auto s) { return linalg::tri_inv(g, true, s); }, t * 10, "tri_inv upper");
    array b = normal({3, 2, 5, 3}, d, 3);
    expect_same([&](auto s) { return linalg::solve(a, b, s); }, t, "solve batched");
    // One matrix for a batch of right-hand sides (broadcast), and vectors.
    expect_same(
        [&](auto s) { return linalg::solve(mx::take(mx::take(a, 0, 0, kCpu), 0, 0, kCpu), b, s); },
        t, "solve broadcast");
    expect_same(
        [&](auto s) {
          return linalg::solve(a, normal({3, 2, 5}, d, 4), s);
        },
        t, "solve vectors");
    expect_same([&](auto s) { return linalg::cholesky(a, false, s); }, t, "cholesky lower");
    expect_same([&](auto s) { return linalg::cholesky(a, true, s); }, t, "cholesky upper");
    expect_same(
        [&](auto s) { return linalg::cholesky_inv(linalg::cholesky(a, false, kCpu), false, s); }, t,
        "cholesky_inv");
  }
}

TEST_F(GpuLinalg, FactorizationsMatchTheCpu) {
  for (auto d : kLinalgTypes) {
    SCOPED_TRACE(mx::dtype_name(d));
    const double t = tol(d);
    for (Shape shape : {Shape{2, 3, 7, 4}, Shape{4, 7}, Shape{3, 5, 5}, Shape{1, 1}}) {
      SCOPED_TRACE(mx::shape_str(shape));
      array a = normal(shape, d, 5);
      int m = shape[shape.size() - 2], n = shape.back(), k = std::min(m, n);
      // LAPACK's Householder convention on both devices: the same Q and R.
      expect_same([&](auto s) { return linalg::qr(a, s).first; }, t, "qr q");
      expect_same([&](auto s) { return linalg::qr(a, s).second; }, t, "qr r");
      expect_same([&](auto s) { return linalg::svd(a, false, s)[0]; }, t, "svdvals");
      // Singular vectors are unique up to sign: compare U_k diag(S) Vt_k and
      // the orthogonality of the full U and Vt.
      auto usv = linalg::svd(a, true, kGpu);
      Shape us = usv[0].shape(), vs = usv[2].shape();
      Shape ustop = us, vstop = vs;
      ustop.back() = k;
      vstop[vstop.size() - 2] = k;
      array uk = mx::slice(usv[0], Shape(us.size(), 0), ustop, kCpu);
      array vk = mx::slice(usv[2], Shape(vs.size(), 0), vstop, kCpu);
      array recon = mx::matmul(mx::multiply(uk, mx::expand_dims(usv[1], -2, kCpu), kCpu), vk, kCpu);
      mxtest::expect_close(recon, mxtest::to_vector(a), a.shape(), t * 10, t * 10);
      for (const array& o : {usv[0], mx::swapaxes(usv[2], -1, -2, kCpu)}) {
        int c = o.shape(-1);
        array eye = mx::broadcast_to(
            mx::eye(c, d, kCpu), mx::matmul(mx::swapaxes(o, -1, -2, kCpu), o, kCpu).shape(), kCpu);
        mxtest::expect_close(mx::matmul(mx::swapaxes(o, -1, -2, kCpu), o, kCpu),
                             mxtest::to_vector(eye), eye.shape(), t * 10, 0);
      }
      expect_same([&](auto s) { return linalg::pinv(a, s); }, t * 100, "pinv");
    }
    array sym = spd({2, 3, 6, 6}, d, 6);
    for (std::string uplo : {"L", "U"}) {
      SCOPED_TRACE(uplo);
      // Only the named triangle is read: make the other one garbage.
      array tri = mx::add(uplo == "L" ? mx::tril(sym, 0, kCpu) : mx::triu(sym, 0, kCpu),
                          uplo == "L" ? mx::triu(normal({6, 6}, d, 7), 1, kCpu)
                                      : mx::tril(normal({6, 6}, d, 7), -1, kCpu),
                          kCpu);
      expect_same([&](auto s) { return linalg::eigvalsh(tri, uplo, s); }, t * 10, "eigvalsh");
      auto [w, v] = linalg::eigh(tri, uplo, kGpu);
      expect_same([&](auto s) { return linalg::eigh(tri, uplo, s).first; }, t * 10, "eigh values");
      // A V = V diag(w) with orthonormal V.
      mxtest::expect_close(mx::matmul(sym, v, kCpu),
                           mxtest::to_vector(mx::multiply(v, mx::expand_dims(w, -2, kCpu), kCpu)),
                           sym.shape(), t * 100, t * 100);
    }
  }
}

TEST_F(GpuLinalg, ErrorsReadAsOnTheCpu) {
  array singular = mx::stack(
      {mx::eye(3, mx::float32, kCpu), array({1.f, 2.f, 3.f, 2.f, 4.f, 6.f, 0.f, 1.f, 1.f}, {3, 3})},
      0, kCpu);
  array not_pd =
      mx::stack({mx::eye(2, mx::float32, kCpu), array({1.f, 2.f, 2.f, 1.f}, {2, 2})}, 0, kCpu);
  array zero_diag = array({1.f, 0.f, 0.f, 3.f, 0.f, 0.f, 1.f, 2.f, 5.f}, {3, 3});
  const std::vector<std::pair<std::string, std::function<array(mx::StreamOrDevice)>>> cases = {
      {"inv", [&](auto s) { return linalg::inv(singular, s); }},
      {"solve",
       [&](auto s) {
         return linalg::solve(singular, mx::ones({2, 3}, mx::float32, kCpu), s);
       }},
      {"cholesky", [&](auto s) { return linalg::cholesky(not_pd, false, s); }},
      {"tri_inv", [&](auto s) { return linalg::tri_inv(zero_diag, false, s); }},
  };
  for (const auto& [name, f] : cases) {
    std::string cpu = error_of([&] { f(kCpu).eval(); });
    std::string gpu = error_of([&] { f(kGpu).eval(); });
    EXPECT_FALSE(cpu.empty()) << name;
    EXPECT_EQ(gpu, cpu) << name;
  }
  // The device stays usable after an error.
  expect_same([&](auto s) { return linalg::inv(mx::eye(3, mx::float32, kCpu), s); }, 0, "after");
}

TEST_F(GpuLinalg, EmptyBatches) {
  array e = mx::zeros({0, 3, 3}, mx::float64, kCpu);
  EXPECT_EQ(linalg::inv(e, kGpu).shape(), (Shape{0, 3, 3}));
  EXPECT_EQ(mxtest::to_vector(linalg::inv(e, kGpu)).size(), 0u);
  EXPECT_EQ(mxtest::to_vector(linalg::svd(e, false, kGpu)[0]).size(), 0u);
  EXPECT_EQ(mxtest::to_vector(linalg::eigvalsh(e, "L", kGpu)).size(), 0u);
  EXPECT_EQ(mxtest::to_vector(linalg::qr(e, kGpu).first).size(), 0u);
  EXPECT_EQ(mxtest::to_vector(linalg::cholesky(e, false, kGpu)).size(), 0u);
}

namespace {

array complex_normal(const Shape& shape, uint64_t seed) {
  array re = mx::astype(normal(shape, mx::float32, seed), mx::complex64, kCpu);
  array im = mx::astype(normal(shape, mx::float32, seed + 1), mx::complex64, kCpu);
  array z = mx::add(re, mx::multiply(im, array(mx::complex64_t(0, 1)), kCpu), kCpu);
  z.eval();
  return z;
}

// f on both devices; complex results compare their real and imaginary parts
// (read on the CPU), with a tolerance relative to the largest magnitude.
void expect_same_fft(const std::function<array(mx::StreamOrDevice)>& f, const std::string& what) {
  SCOPED_TRACE(what);
  array want = f(kCpu);
  array got = f(kGpu);
  mx::eval({want, got});
  ASSERT_EQ(got.dtype(), want.dtype());
  ASSERT_EQ(got.shape(), want.shape());
  std::vector<std::pair<array, array>> parts;
  if (want.dtype() == mx::complex64) {
    parts = {{mx::real(got, kCpu), mx::real(want, kCpu)},
             {mx::imag(got, kCpu), mx::imag(want, kCpu)}};
  } else {
    parts = {{got, want}};
  }
  for (auto& [g, w] : parts) {
    auto wv = mxtest::to_vector(w);
    double scale = 1;
    for (double v : wv) scale = std::max(scale, std::abs(v));
    mxtest::expect_close(g, wv, w.shape(), 1e-5 * scale, 0);
  }
}

}  // namespace

TEST_F(GpuFFT, EveryVariantMatchesTheCpu) {
  array z = complex_normal({4, 6, 10}, 1);
  array x = normal({4, 6, 10}, mx::float32, 3);
  for (int axis : {0, 1, 2}) {
    std::string ax = " axis " + std::to_string(axis);
    expect_same_fft([&](auto s) { return fft::fft(z, axis, s); }, "fft" + ax);
    expect_same_fft([&](auto s) { return fft::ifft(z, axis, s); }, "ifft" + ax);
    expect_same_fft([&](auto s) { return fft::rfft(x, axis, s); }, "rfft" + ax);
    array h = fft::rfft(x, axis, kCpu);
    for (int n : {x.shape(axis), x.shape(axis) + 1}) {  // even and odd real lengths
      expect_same_fft([&](auto s) { return fft::irfft(h, n, axis, s); },
                      "irfft" + ax + " n " + std::to_string(n));
    }
  }
  expect_same_fft([&](auto s) { return fft::fftn(z, s); }, "fftn");
  expect_same_fft([&](auto s) { return fft::ifftn(z, std::vector<int>{2, 0}, s); }, "ifftn");
  expect_same_fft([&](auto s) { return fft::rfftn(x, s); }, "rfftn");
  expect_same_fft([&](auto s) { return fft::rfftn(x, std::vector<int>{2, 0}, s); }, "rfftn axes");
  array hn = fft::rfftn(x, kCpu);
  expect_same_fft([&](auto s) { return fft::irfftn(hn, Shape{4, 6, 10}, {0, 1, 2}, s); }, "irfftn");
  array h0 = fft::rfftn(x, std::vector<int>{2, 0}, kCpu);
  expect_same_fft(
      [&](auto s) {
        return fft::irfftn(h0, Shape{10, 5}, {2, 0}, s);
      },
      "irfftn odd last");
  // Strided (transposed) inputs, length 1, a prime and a large power of two.
  expect_same_fft([&](auto s) { return fft::fft(mx::transpose(z, kCpu), 1, s); }, "view");
  expect_same_fft(
      [&](auto s) {
        return fft::rfft(normal({5, 1}, mx::float32, 4), -1, s);
      },
      "rfft n 1");
  expect_same_fft(
      [&](auto s) {
        return fft::irfft(complex_normal({5, 1}, 5), 1, -1, s);
      },
      "irfft n 1");
  expect_same_fft([&](auto s) { return fft::fft(complex_normal({3, 1021}, 6), -1, s); }, "prime");
  expect_same_fft(
      [&](auto s) {
        return fft::rfft(normal({2, 1 << 16}, mx::float32, 7), -1, s);
      },
      "2^16");
}

TEST_F(GpuFFT, MoreLayoutsThanThePlanCacheHolds) {
  // 40 lengths (the cache keeps 32 plans), then the first ones again: plans
  // made, evicted while their work may be queued, and made again.
  std::vector<array> inputs;
  for (int n = 2; n < 42; ++n) inputs.push_back(complex_normal({3, n}, 100 + n));
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < inputs.size(); i += round + 1) {
      expect_same_fft([&](auto s) { return fft::fft(inputs[i], -1, s); },
                      "n " + std::to_string(inputs[i].shape(1)));
    }
  }
}
