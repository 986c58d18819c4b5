// mx::fast::rms_norm_f32 and gelu_approx_mul on the CPU: hand-worked float64
// values (NumPy, in the comments), the unfused graph of ordinary ops they
// replace (bit-for-bit tolerances in 16-bit), and derivatives against the same
// NumPy values.
#include <gtest/gtest.h>

#include <cmath>

#include "common/check.h"
#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/mx/transforms.h"

using mx::array;

namespace {

// g(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), float64 NumPy.
const std::vector<float> kGate{-2.0f, -0.5f, 0.0f, 1.0f, 3.0f};
const std::vector<float> kUp{1.5f, -2.0f, 4.0f, 0.25f, -1.0f};
const std::vector<double> kGeluTimesUp{-0.06810346, 0.30857198, 0.0, 0.210298, -2.99636261};
const std::vector<double> kGelu{-0.04540231, -0.15428599, 0.0, 0.84119199, 2.99636261};
const std::vector<double> kDGateTimesUp{-0.12914888, -0.26526019, 2.0, 0.27074102, -1.01158417};

array rand(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed) {
  return mx::astype(mx::random::uniform(-3.0f, 3.0f, shape, mx::float32, mx::random::key(seed)),
                    dtype);
}

TEST(FastRmsNormF32, HandWorkedValues) {
  // x = [3, 4, 0, -12]: mean(x^2) = 42.25, rsqrt = 1/6.5; w = [1, 2, 0.5, -1.5].
  array x({3.0f, 4.0f, 0.0f, -12.0f});
  array w({1.0f, 2.0f, 0.5f, -1.5f});
  auto y = mx::fast::rms_norm_f32(x, w, 1e-6f);
  mxtest::expect_close(y, {0.46153846, 1.23076922, 0.0, 2.76923074}, {4}, 1e-6, 1e-6);
}

TEST(FastRmsNormF32, EqualsTheFloat32NormRoundedOnce) {
  for (mx::Dtype d : {mx::bfloat16, mx::float16, mx::float32}) {
    SCOPED_TRACE(mx::dtype_name(d));
    array x = rand({3, 5, 96}, d, 1);
    array w = rand({96}, mx::float32, 2);
    auto got = mx::fast::rms_norm_f32(x, w, 1e-6f);
    auto want = mx::astype(mx::fast::rms_norm(mx::astype(x, mx::float32), w, 1e-6f), d);
    ASSERT_EQ(got.dtype(), d);
    // The same float32 value rounded once: at most the float32 summation-order
    // difference, far below a 16-bit ulp (so equal after rounding up to ties).
    double tol = d == mx::float32 ? 1e-5 : (d == mx::bfloat16 ? 8e-3 : 1e-3);
    mxtest::expect_close(got, mxtest::to_vector(want), want.shape(), 0, tol);
  }
}

TEST(FastRmsNormF32, ReadsATransposedView) {
  array x = rand({2, 4, 3, 32}, mx::bfloat16, 3);
  array w = rand({32}, mx::float32, 4);
  array xt = mx::transpose(x, {0, 2, 1, 3});
  auto got = mx::fast::rms_norm_f32(xt, w, 1e-6f);
  auto want = mx::fast::rms_norm_f32(mx::copy(xt), w, 1e-6f);
  mxtest::expect_close(got, mxtest::to_vector(want), want.shape(), 0, 0);
}

TEST(FastRmsNormF32, RejectsBadArguments) {
  array x = rand({2, 8}, mx::bfloat16, 5);
  EXPECT_THROW(mx::fast::rms_norm_f32(x, rand({8}, mx::bfloat16, 6), 1e-6f), std::invalid_argument);
  EXPECT_THROW(mx::fast::rms_norm_f32(x, rand({7}, mx::float32, 6), 1e-6f), std::invalid_argument);
}

TEST(FastRmsNormF32, GradientsMatchTheUnfusedGraph) {
  array x = rand({3, 16}, mx::float32, 7);
  array w = rand({16}, mx::float32, 8);
  array ct = rand({3, 16}, mx::float32, 9);
  auto fused = mx::vjp(
      [](const std::vector<array>& in) {
        return std::vector<array>{mx::fast::rms_norm_f32(in[0], in[1], 1e-5f)};
      },
      {x, w}, {ct});
  // The reference: the same function written out with elementwise ops.
  auto plain = mx::vjp(
      [](const std::vector<array>& in) {
        array ms = mx::mean(mx::square(in[0]), -1, true);
        return std::vector<array>{
            mx::multiply(mx::multiply(in[0], mx::rsqrt(mx::add(ms, array(1e-5f)))), in[1])};
      },
      {x, w}, {ct});
  for (int i = 0; i < 2; ++i) {
    mxtest::expect_close(fused.second[i], mxtest::to_vector(plain.second[i]),
                         plain.second[i].shape(), 1e-5, 1e-4);
  }
}

TEST(FastGeluApproxMul, HandWorkedValues) {
  array g(kGate, {5});
  array u(kUp, {5});
  mxtest::expect_close(mx::fast::gelu_approx_mul(g, u), kGeluTimesUp, {5}, 1e-6, 1e-6);
}

TEST(FastGeluApproxMul, EqualsTheUnfusedGraph) {
  for (mx::Dtype d : {mx::bfloat16, mx::float16, mx::float32}) {
    SCOPED_TRACE(mx::dtype_name(d));
    array g = rand({4, 300}, d, 10);
    array u = rand({4, 300}, d, 11);
    auto got = mx::fast::gelu_approx_mul(g, u);
    array gf = mx::astype(g, mx::float32);
    array inner = mx::multiply(
        array(0.7978845608f),
        mx::add(gf, mx::multiply(mx::multiply(mx::multiply(array(0.044715f), gf), gf), gf)));
    array act = mx::multiply(mx::multiply(array(0.5f), gf), mx::add(array(1.0f), mx::tanh(inner)));
    auto want = mx::multiply(mx::astype(act, d), u);
    ASSERT_EQ(got.dtype(), d);
    double tol = d == mx::float32 ? 1e-5 : (d == mx::bfloat16 ? 8e-3 : 1e-3);
    mxtest::expect_close(got, mxtest::to_vector(want), want.shape(), 1e-6, tol);
  }
}

TEST(FastGeluApproxMul, GradientsMatchNumPy) {
  array g(kGate, {5});
  array u(kUp, {5});
  auto r = mx::vjp(
      [](const std::vector<array>& in) {
        return std::vector<array>{mx::fast::gelu_approx_mul(in[0], in[1])};
      },
      {g, u}, {mx::ones({5})});
  mxtest::expect_close(r.second[0], kDGateTimesUp, {5}, 1e-5, 1e-5);
  mxtest::expect_close(r.second[1], kGelu, {5}, 1e-6, 1e-6);
}

TEST(FastGeluApproxMul, RejectsBadArguments) {
  EXPECT_THROW(mx::fast::gelu_approx_mul(mx::ones({3}), mx::ones({4})), std::invalid_argument);
  EXPECT_THROW(mx::fast::gelu_approx_mul(mx::ones({3}), mx::ones({3}, mx::bfloat16)),
               std::invalid_argument);
  EXPECT_THROW(mx::fast::gelu_approx_mul(mx::ones({3}, mx::int32), mx::ones({3}, mx::int32)),
               std::invalid_argument);
}

}  // namespace

namespace {

// Odd lengths (a partial vector at the end), values out to where tanh
// saturates, every float dtype: against the formula in float64 (std::tanh),
// the activation rounded to the dtype before the product as the op does.
TEST(FastGeluApproxMul, OddSizesAndWideRangeMatchFloat64) {
  for (mx::Dtype d : {mx::bfloat16, mx::float16, mx::float32}) {
    for (int n : {1, 7, 13, 1203}) {
      SCOPED_TRACE(mx::dtype_name(d) + " n " + std::to_string(n));
      array g = mx::astype(
          mx::random::uniform(-12.0f, 12.0f, {n}, mx::float32, mx::random::key(20 + n)), d);
      array u = rand({n}, d, 30 + n);
      const auto gv = mxtest::to_vector(g), uv = mxtest::to_vector(u);
      std::vector<double> want(n);
      for (int i = 0; i < n; ++i) {
        const double x = gv[i];
        const double a =
            0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
        want[i] = mxtest::to_vector(mx::astype(array(static_cast<float>(a)), d))[0] * uv[i];
      }
      auto got = mx::fast::gelu_approx_mul(g, u);
      // float32: a few ulp; 16-bit: the activation may round to the other
      // neighbour, then one rounding of the product.
      double rtol = d == mx::float32 ? 2e-6 : (d == mx::bfloat16 ? 8e-3 : 1e-3);
      mxtest::expect_close(got, want, {n}, 1e-6, rtol);
    }
  }
}

}  // namespace
