// The GPU paths a long prompt takes, against the CPU kernels on the same inputs (those are
// tested against NumPy in test_fast_rope and test_matmul): RoPE over many heads (one angle per
// head group), and GEMMs large enough that cuBLASLt's candidate algorithms are timed and the
// fastest kept. Skips where no GPU exists (ctest label `gpu`).
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
  array x = mx::random::uniform(-2.0f, 2.0f, shape, mx::float32, mx::random::key(seed), kCpu);
  return mx::astype(x, dtype, kCpu);
}

TEST(GpuPrefillKernels, RopeOverHeadsMatchesTheCpu) {
  if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  for (mx::Dtype d : {mx::bfloat16, mx::float32}) {
    SCOPED_TRACE(mx::dtype_name(d));
    // (B, H, L, D) as a transposed view of (B, L, H, D), as attention applies it; a second
    // batch row with its own offset; rotated dims fewer than D; both pair layouts.
    array x = mx::transpose(rand({2, 37, 8, 256}, d, 1), {0, 2, 1, 3});
    array offsets = mx::array(std::vector<int32_t>{5, 1000}, {2}, mx::int32);
    for (bool traditional : {false, true}) {
      for (int dims : {256, 64}) {
        SCOPED_TRACE("dims " + std::to_string(dims) + (traditional ? " traditional" : ""));
        array want = mx::fast::rope(x, dims, traditional, 10000.0f, 1.0f, offsets, {}, kCpu);
        array got = mx::fast::rope(x, dims, traditional, 10000.0f, 1.0f, offsets, {}, kGpu);
        double tol = d == mx::float32 ? 1e-5 : 8e-3;
        mxtest::expect_close(got, mxtest::to_vector(want), want.shape(), 1e-5, tol);
        array want1 = mx::fast::rope(x, dims, traditional, 1e6f, 0.125f, 2047, {}, kCpu);
        array got1 = mx::fast::rope(x, dims, traditional, 1e6f, 0.125f, 2047, {}, kGpu);
        mxtest::expect_close(got1, mxtest::to_vector(want1), want1.shape(), 1e-5, tol);
      }
    }
  }
}

TEST(GpuPrefillKernels, TunedGemmsMatchTheCpu) {
  if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  // x @ W^T with W (N, K) row-major, as a linear layer runs it; 2 M N K >= 2e9, so the first
  // call times the candidate algorithms (writing the output several times) and the second
  // uses the one it kept: both must give the product.
  const int M = 1024, N = 1536, K = 1024;
  for (mx::Dtype d : {mx::bfloat16, mx::float16}) {
    SCOPED_TRACE(mx::dtype_name(d));
    array x = rand({1, M, K}, d, 3);
    array w = rand({N, K}, d, 4);
    array want = mx::matmul(mx::astype(x, mx::float32, kCpu),
                            mx::transpose(mx::astype(w, mx::float32, kCpu)), kCpu);
    auto expected = mxtest::to_vector(want);
    for (int call = 0; call < 2; ++call) {
      array got = mx::matmul(x, mx::transpose(w), kGpu);
      ASSERT_EQ(got.dtype(), d);
      // One rounding of sums of K products of size <= 4: the 16-bit output's half-ulp.
      mxtest::expect_close(got, expected, want.shape(), 0.05, d == mx::bfloat16 ? 8e-3 : 1e-3);
    }
  }
}

}  // namespace
