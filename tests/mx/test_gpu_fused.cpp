// GPU kernels of fast::rms_norm_f32 and fast::gelu_approx_mul against the CPU
// kernels on the same inputs (those are tested against NumPy in
// test_fast_fused). Skips where no GPU exists (ctest label `gpu`).
#include <gtest/gtest.h>

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
    for (int dim : {256, 2560, 7}) {
      array x = rand({2, 4, 3, dim}, d, 1);
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
    mxtest::expect_close(got, mxtest::to_vector(want), want.shape(), 1e-6, tol);
  }
}

}  // namespace
