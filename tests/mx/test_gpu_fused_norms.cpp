// GPU kernels of fast::residual_rms_norm and fast::rms_norm_rope against the CPU kernels on
// the same inputs (those are tested against NumPy and the unfused graph in
// test_fast_fused_norms): the register kernel (decode and prefill rows), the loop kernel (odd
// and long rows), float16 saturation; one launch for several inputs (more than one
// launch's worth too), transposed views, per-batch and far offsets, partial and interleaved
// rotations. Skips where no GPU exists (ctest label `gpu`).
#include <gtest/gtest.h>

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
constexpr float kEps = 1e-6f;

array rand(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed) {
  array x = mx::random::uniform(-3.0f, 3.0f, shape, mx::float32, mx::random::key(seed), kCpu);
  return mx::astype(x, dtype, kCpu);
}

double tol_of(mx::Dtype d) { return d == mx::float32 ? 1e-5 : (d == mx::bfloat16 ? 8e-3 : 1e-3); }

TEST(GpuFusedNorms, ResidualRmsNormMatchesTheCpu) {
  if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  for (mx::Dtype d : {mx::bfloat16, mx::float16, mx::float32}) {
    SCOPED_TRACE(mx::dtype_name(d));
    // One row (decode) and many, up to 1024 16-byte vectors (the register kernel); odd and
    // longer rows (the loop kernel).
    for (auto [rows, dim] : std::vector<std::pair<int, int>>{
             {1, 2560}, {37, 2560}, {1, 5376}, {2, 8192}, {3, 16384}, {2, 77}, {1, 70000}}) {
      SCOPED_TRACE(std::to_string(rows) + " x " + std::to_string(dim));
      array res = rand({1, rows, dim}, d, 1);
      array y = rand({1, rows, dim}, d, 2);
      array wy = rand({dim}, mx::float32, 3);
      array wo = rand({dim}, mx::float32, 4);
      auto [h0, n0] = mx::fast::residual_rms_norm(res, y, wy, wo, kEps, kCpu);
      auto [h1, n1] = mx::fast::residual_rms_norm(res, y, wy, wo, kEps, kGpu);
      ASSERT_EQ(h1.dtype(), d);
      mxtest::expect_close(h1, mxtest::to_vector(h0), h0.shape(), 1e-6, tol_of(d));
      mxtest::expect_close(n1, mxtest::to_vector(n0), n0.shape(), 1e-6, tol_of(d));
    }
  }
  // float16 saturation: 65500 + 100 is 65504, not inf.
  array res = mx::astype(array({65500.0f, -65500.0f}, {1, 2}), mx::float16, kCpu);
  array y = mx::astype(array({1.0f, -1.0f}, {1, 2}), mx::float16, kCpu);
  array w({100.0f, 100.0f});
  auto [h, n] =
      mx::fast::residual_rms_norm(res, y, w, mx::ones({2}, mx::float32, kCpu), kEps, kGpu);
  mxtest::expect_close(h, {65504.0, -65504.0}, {1, 2}, 0, 0);
}

TEST(GpuFusedNorms, RmsNormRopeMatchesTheCpu) {
  if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  for (mx::Dtype d : {mx::bfloat16, mx::float16, mx::float32}) {
    SCOPED_TRACE(mx::dtype_name(d));
    for (int L : {1, 37}) {
      // Gemma 3 4B's queries and keys as views of the projections' (B, L, H, D).
      array q = mx::transpose(rand({1, L, 8, 256}, d, 5), {0, 2, 1, 3});
      array k = mx::transpose(rand({1, L, 4, 256}, d, 6), {0, 2, 1, 3});
      array wq = rand({256}, mx::float32, 7);
      array wk = rand({256}, mx::float32, 8);
      for (int offset : {0, 4095, 131000}) {
        for (bool trad : {false, true}) {
          for (int dims : {256, 64}) {
            SCOPED_TRACE("L " + std::to_string(L) + " offset " + std::to_string(offset) + " dims " +
                         std::to_string(dims) + (trad ? " traditional" : ""));
            auto want = mx::fast::rms_norm_rope({q, k}, {wq, wk}, kEps, dims, trad, 1e6f, 1.0f,
                                                offset, kCpu);
            auto got = mx::fast::rms_norm_rope({q, k}, {wq, wk}, kEps, dims, trad, 1e6f, 1.0f,
                                               offset, kGpu);
            for (int i = 0; i < 2; ++i) {
              ASSERT_EQ(got[i].dtype(), d);
              mxtest::expect_close(got[i], mxtest::to_vector(want[i]), want[i].shape(), 1e-5,
                                   tol_of(d));
            }
          }
        }
      }
    }
    // Per-batch offsets and six inputs (two launches of up to four), an odd row length.
    array offsets(std::vector<int32_t>{7, 2000}, {2}, mx::int32);
    std::vector<array> xs, ws;
    for (int i = 0; i < 6; ++i) {
      xs.push_back(rand({2, 1 + i, 5, 70}, d, 10 + i));
      ws.push_back(rand({70}, mx::float32, 20 + i));
    }
    auto want = mx::fast::rms_norm_rope(xs, ws, kEps, 64, false, 10000.0f, 0.5f, offsets, kCpu);
    auto got = mx::fast::rms_norm_rope(xs, ws, kEps, 64, false, 10000.0f, 0.5f, offsets, kGpu);
    ASSERT_EQ(got.size(), 6u);
    for (int i = 0; i < 6; ++i) {
      SCOPED_TRACE(i);
      mxtest::expect_close(got[i], mxtest::to_vector(want[i]), want[i].shape(), 1e-5, tol_of(d));
    }
  }
}

}  // namespace
