// GPU kernels of fast::residual_rms_norm and fast::rms_norm_rope against the CPU kernels on
// the same inputs (those are tested against NumPy and the unfused graph in
// test_fast_fused_norms): the register kernel (decode and prefill rows), the loop kernel (odd
// and long rows), float16 saturation; one launch for several inputs (more than one
// launch's worth too), transposed views, per-batch and far offsets, partial and interleaved
// rotations. Skips where no GPU exists (ctest label `gpu`).
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
constexpr float kEps = 1e-6f;

array rand(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed) {
  array x = mx::random::uniform(-3.0f, 3.0f, shape, mx::float32, mx::random::key(seed), kCpu);
  return mx::astype(x, dtype, kCpu);
}

double tol_of(mx::Dtype d) { return d == mx::float32 ? 1e-5 : (d == mx::bfloat16 ? 8e-3 : 1e-3); }

// One unit in the last place of `d` at magnitude m (m a power of two).
double ulp_at(mx::Dtype d, double m) {
  return m * (d == mx::float32 ? 0x1p-23 : (d == mx::bfloat16 ? 0x1p-7 : 0x1p-10));
}

// Both ops round an intermediate to the dtype (the normalized rows; the sum), as the unfused
// graph does; the GPU and the CPU sum a row's squares in different orders, so a rounding of
// that intermediate may land on the neighbouring value, which the rest of the computation
// carries (a rotation or a sum can cancel the rest of the value, leaving it larger than the
// relative tolerance). So: every element within `atol` (one ulp of the intermediate's
// magnitude, carried), and at most 1% of them beyond the tight tolerance of the ops
// themselves (a wrong angle, weight or sum would move nearly all of them).
void expect_gpu_matches(const array& got, const array& want, mx::Dtype d, double atol) {
  ASSERT_EQ(got.shape(), want.shape());
  ASSERT_EQ(got.dtype(), d);
  auto g = mxtest::to_vector(got);
  auto w = mxtest::to_vector(want);
  const double tol = tol_of(d);
  size_t loose = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double err = std::abs(g[i] - w[i]);
    ASSERT_LE(err, atol + tol * std::abs(w[i]))
        << "element " << i << ": " << g[i] << " vs " << w[i];
    if (err > 1e-6 + tol * std::abs(w[i])) ++loose;
  }
  EXPECT_LE(loose, g.size() / 100) << loose << " of " << g.size() << " elements off by an ulp";
}

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
      // |normed y * w| < 8 and |residual| <= 3: h is off by at most an ulp at 16; the
      // normed h (|h| / rms(h) * |w| < 16 as well) by about as much.
      expect_gpu_matches(h1, h0, d, 2 * ulp_at(d, 16));
      expect_gpu_matches(n1, n0, d, 4 * ulp_at(d, 16));
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
            // |x / rms(x) * w| < 8 for x, w in [-3, 3] at this width: each normalized value is
            // off by at most an ulp at 8, the rotation of a pair by about twice that.
            for (int i = 0; i < 2; ++i) expect_gpu_matches(got[i], want[i], d, 2 * ulp_at(d, 8));
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
      expect_gpu_matches(got[i], want[i], d, 2 * ulp_at(d, 8));
    }
  }
}

// A decode step's attention inputs in Gemma 3 4B's heads (8 query, 4 key/value heads of 256) for
// B rows, as views of the projections' (B, 1, H, D), with the QK-norm weights.
struct StepInputs {
  array q, k, v, wq, wk;
};
StepInputs step_inputs(int B, mx::Dtype d, uint64_t seed) {
  auto heads = [&](int h, uint64_t s) {
    return mx::transpose(rand({B, 1, h, 256}, d, s), {0, 2, 1, 3});
  };
  return {heads(8, seed), heads(4, seed + 1), heads(4, seed + 2),
          rand({256}, mx::float32, seed + 3), rand({256}, mx::float32, seed + 4)};
}

// The GPU's {q, k_cache, v_cache} against the CPU's: the rotations within the norm-rope bound, the
// copied values exactly.
void expect_kv_write_matches(const std::vector<array>& got, const std::vector<array>& want,
                             mx::Dtype d) {
  expect_gpu_matches(got[0], want[0], d, 2 * ulp_at(d, 8));
  expect_gpu_matches(got[1], want[1], d, 2 * ulp_at(d, 8));
  EXPECT_EQ(mxtest::to_vector(got[2]), mxtest::to_vector(want[2]));
}

// The fused QK-norm + RoPE + cache writes of a decode step on the GPU, with the slot computed on
// the device as a step computes it, against the CPU kernel: the caches are written in place and
// only at the slot.
TEST(GpuFusedNorms, RmsNormRopeKVWriteMatchesTheCpu) {
  if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  for (mx::Dtype d : {mx::bfloat16, mx::float32}) {
    SCOPED_TRACE(mx::dtype_name(d));
    const StepInputs in = step_inputs(1, d, 61);
    for (int position : {0, 517, 1100, -3}) {
      SCOPED_TRACE(position);
      array kc0 = rand({1, 4, 1024, 256}, d, 66), vc0 = rand({1, 4, 1024, 256}, d, 67);
      mx::eval({kc0, vc0});
      array pos(position, mx::int32);
      auto run = [&](const mx::Device& dev) {
        array kc = mx::copy(kc0, dev), vc = mx::copy(vc0, dev);
        array slot = mx::remainder(pos, array(1024, mx::int32), dev);
        auto out =
            mx::fast::rms_norm_rope_kv_write(in.q, in.k, in.v, in.wq, in.wk, kEps, 256, false, 1e6f,
                                             1.0f, pos, kc, vc, slot, true, dev);
        mx::eval(out);
        return out;
      };
      expect_kv_write_matches(run(kGpu), run(kCpu), d);
    }
  }
}

// A server batch's step: 3 rows of a 5-row buffer at a host-made slot, with per-row positions,
// not in place: the buffer is still held (by the test), so the result is a written copy and
// the buffer keeps its values.
TEST(GpuFusedNorms, RmsNormRopeKVWriteIntoABatchBufferMatchesTheCpu) {
  if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  const mx::Dtype d = mx::bfloat16;
  const StepInputs in = step_inputs(3, d, 71);
  array rows(std::vector<int32_t>{40, 3, 17}, {3}, mx::int32);
  array kc = rand({5, 4, 64, 256}, d, 76), vc = rand({5, 4, 64, 256}, d, 77);
  mx::eval({kc, vc});
  const auto kc_before = mxtest::to_vector(kc);
  auto run = [&](const mx::Device& dev) {
    auto out =
        mx::fast::rms_norm_rope_kv_write(in.q, in.k, in.v, in.wq, in.wk, kEps, 256, false, 1e6f,
                                         1.0f, rows, kc, vc, array(41, mx::int32), false, dev);
    mx::eval(out);
    return out;
  };
  expect_kv_write_matches(run(kGpu), run(kCpu), d);
  EXPECT_EQ(mxtest::to_vector(kc), kc_before);
}

}  // namespace
