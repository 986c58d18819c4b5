// GPU kernels of fast::rms_norm_f32, fast::gelu_approx_mul and the one-row
// fast::grouped_linear against the CPU kernels on the same inputs (those are
// tested against NumPy in test_fast_fused and test_fast_grouped_linear).
// Skips where no GPU exists (ctest label `gpu`).
#include <gtest/gtest.h>

#include <cmath>
#include <utility>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"

using mx::array;

namespace {

const mx::Device kGpu(mx::Device::gpu);
const mx::Device kCpu(mx::Device::cpu);

array rand(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed) {
  array x = mx::random::uniform(-3.0f, 3.0f, shape, mx::float32, mx::random::key(seed), kCpu);
  return mx::astype(x, dtype, kCpu);
}

TEST(GpuFused, RmsNormF32MatchesTheCpu) {
  if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  for (mx::Dtype d : {mx::bfloat16, mx::float16, mx::float32}) {
    SCOPED_TRACE(mx::dtype_name(d));
    // 24 rows (a block per row for wide rows) and 80 (a warp per row).
    for (auto [dim, heads] :
         std::vector<std::pair<int, int>>{{256, 4}, {2560, 4}, {7, 4}, {2560, 40}, {256, 40}}) {
      array x = rand({2, heads, 3, dim}, d, 1);
      array w = rand({dim}, mx::float32, 2);
      // A transposed view too (the QK-norm's heads), read in place on the GPU.
      for (bool view : {false, true}) {
        array in = view ? mx::transpose(x, {0, 2, 1, 3}) : x;
        array want = mx::fast::rms_norm_f32(in, w, 1e-6f, kCpu);
        array got = mx::fast::rms_norm_f32(in, w, 1e-6f, kGpu);
        ASSERT_EQ(got.dtype(), d);
        double tol = d == mx::float32 ? 1e-5 : (d == mx::bfloat16 ? 8e-3 : 1e-3);
        mxtest::expect_close(got, mxtest::to_vector(want), want.shape(), 1e-6, tol);
      }
    }
  }
}

TEST(GpuFused, GeluApproxMulMatchesTheCpu) {
  if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  for (mx::Dtype d : {mx::bfloat16, mx::float16, mx::float32}) {
    SCOPED_TRACE(mx::dtype_name(d));
    array g = rand({3, 10240}, d, 3);
    array u = rand({3, 10240}, d, 4);
    array want = mx::fast::gelu_approx_mul(g, u, kCpu);
    array got = mx::fast::gelu_approx_mul(g, u, kGpu);
    double tol = d == mx::float32 ? 1e-5 : (d == mx::bfloat16 ? 8e-3 : 1e-3);
    // Both round the activation to the dtype before the product (as the unfused graph does),
    // from tanh values a few float32 ulps apart (the CPU's is a polynomial, the GPU's
    // correctly rounded): where the activation sits at a rounding boundary of the dtype the
    // two land on neighbouring values, which moves the product by |u| times one ulp of the
    // activation. Allowed: that, plus the tolerance of the product itself.
    const double eps = d == mx::float32 ? 0x1p-23 : (d == mx::bfloat16 ? 0x1p-7 : 0x1p-10);
    auto gv = mxtest::to_vector(g), uv = mxtest::to_vector(u);
    auto wv = mxtest::to_vector(want), gotv = mxtest::to_vector(got);
    ASSERT_EQ(got.shape(), want.shape());
    for (size_t i = 0; i < wv.size(); ++i) {
      const double x = gv[i];
      const double act =
          0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
      const double act_ulp =
          std::abs(act) > 0 ? std::exp2(std::floor(std::log2(std::abs(act)))) * eps : 0;
      EXPECT_NEAR(gotv[i], wv[i], 1e-6 + tol * std::abs(wv[i]) + std::abs(uv[i]) * act_ulp)
          << "element " << i << " (g " << x << ", u " << uv[i] << ")";
    }
  }
}

TEST(GpuFused, GroupedLinearOneRowMatchesTheCpu) {
  if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  for (mx::Dtype d : {mx::bfloat16, mx::float16, mx::float32}) {
    SCOPED_TRACE(mx::dtype_name(d));
    // K = 2560: 16-byte loads; K = 77: the scalar path. N values not multiples
    // of the 8 rows of a block.
    for (int K : {2560, 77}) {
      SCOPED_TRACE(K);
      array x = rand({1, 1, K}, d, 5);
      std::vector<array> ws{rand({2048, K}, d, 6), rand({13, K}, d, 7),
                            mx::transpose(rand({K, 5}, d, 8))};
      auto want = mx::fast::grouped_linear(x, ws, kCpu);
      auto got = mx::fast::grouped_linear(x, ws, kGpu);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i].shape(), want[i].shape());
        // Sums of K products of values in [-3, 3]: float32 accumulation in
        // both, different orders; 16-bit results differ by at most an ulp.
        double tol = d == mx::float32 ? 1e-4 : (d == mx::bfloat16 ? 1.6e-2 : 2e-3);
        mxtest::expect_close(got[i], mxtest::to_vector(want[i]), want[i].shape(), 1e-3, tol);
      }
    }
  }
  // A strided row of x (every other element).
  array xs = mx::slice(rand({1, 2 * 64}, mx::float32, 9), {0, 0}, {1, 128}, {1, 2});
  std::vector<array> w{rand({40, 64}, mx::float32, 10)};
  auto want = mx::fast::grouped_linear(xs, w, kCpu);
  auto got = mx::fast::grouped_linear(xs, w, kGpu);
  mxtest::expect_close(got[0], mxtest::to_vector(want[0]), want[0].shape(), 1e-4, 1e-4);
}

}  // namespace
