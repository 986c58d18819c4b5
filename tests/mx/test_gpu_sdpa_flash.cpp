// The tensor-core prefill attention (backend/cuda/sdpa_flash.cu) against the
// CPU backend's scaled_dot_product_attention on the same inputs in float32
// (the CPU kernel is tested against NumPy float64 in test_fast_sdpa.cpp):
// bf16 and f16, head dims 64/128/256, query lengths that do and do not fill
// the 64-row tiles, keys with a cache offset, causal with and without a
// sliding window, grouped-query ratios 1/2/4, batch 2, sinks and transposed
// (strided) projections, and NaN / inf value rows hidden by the masks.
// MLXCPP_SDPA_FLASH_BENCH=1 also prints the kernel's
// speed at Gemma 3 4B shapes (nothing asserts time). Skips without a GPU.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/device.h"
#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/random.h"

using mx::array;

namespace {

const mx::Device kGpu(mx::Device::gpu);
const mx::Device kCpu(mx::Device::cpu);

class GpuSdpaFlash : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  }
};

array rand(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed) {
  array x = mx::random::uniform(-2.0f, 2.0f, shape, mx::float32, mx::random::key(seed), kCpu);
  return mx::astype(x, dtype, kCpu);
}

struct Case {
  int B, Hq, Hkv, L, S, D;
  bool causal;
  int window;  // 0: none
  bool sinks = false;
  bool transposed = false;  // q, k, v as (B, L, H, D) projections viewed as (B, H, L, D)
  float scale_mul = 1.0f;   // times 1/sqrt(D)
};

std::string describe(const Case& c, mx::Dtype d) {
  char buf[200];
  std::snprintf(buf, sizeof(buf), "%s B=%d Hq=%d Hkv=%d L=%d S=%d D=%d causal=%d window=%d%s%s",
                mx::dtype_name(d).c_str(), c.B, c.Hq, c.Hkv, c.L, c.S, c.D, c.causal, c.window,
                c.sinks ? " sinks" : "", c.transposed ? " transposed" : "");
  return buf;
}

array make(const Case& c, int heads, int len, mx::Dtype d, uint64_t seed) {
  if (!c.transposed) return rand({c.B, heads, len, c.D}, d, seed);
  return mx::transpose(rand({c.B, len, heads, c.D}, d, seed), {0, 2, 1, 3}, kCpu);
}

// Runs the case on the GPU in dtype d and on the CPU in float32 from the same
// (d-rounded) inputs; expects |gpu - cpu| <= atol + rtol |cpu| everywhere.
void check_case(const Case& c, mx::Dtype d, double atol, double rtol) {
  const std::string what = describe(c, d);
  SCOPED_TRACE(what);
  const uint64_t seed = static_cast<uint64_t>(c.L * 131 + c.S * 7 + c.D + c.Hkv * 3);
  array q = make(c, c.Hq, c.L, d, seed);
  array k = make(c, c.Hkv, c.S, d, seed + 1);
  array v = make(c, c.Hkv, c.S, d, seed + 2);
  std::optional<array> sinks;
  if (c.sinks) sinks = rand({c.Hq}, d, seed + 3);
  const float scale = c.scale_mul / std::sqrt(static_cast<float>(c.D));
  const std::string mode = c.causal ? "causal" : "";
  std::optional<int> window;
  if (c.window > 0) window = c.window;
  auto f32 = [&](const array& a) { return mx::astype(a, mx::float32, kCpu); };
  std::optional<array> sinks32;
  if (sinks) sinks32 = f32(*sinks);
  array want = mx::fast::scaled_dot_product_attention(f32(q), f32(k), f32(v), scale, mode, {},
                                                      sinks32, window, kCpu);
  array got = mx::fast::scaled_dot_product_attention(q, k, v, scale, mode, {}, sinks, window, kGpu);
  mx::eval({want, got});
  ASSERT_EQ(got.dtype(), d);
  ASSERT_EQ(got.shape(), want.shape());
  const std::vector<double> g = mxtest::to_vector(got);
  const std::vector<double> w = mxtest::to_vector(want);
  size_t bad = 0, worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < w.size(); ++i) {
    const double excess = std::abs(g[i] - w[i]) - (atol + rtol * std::abs(w[i]));
    if (!(excess <= 0)) ++bad;  // NaN counts as bad
    if (!(excess <= worst_excess)) {
      worst_excess = excess;
      worst = i;
    }
  }
  EXPECT_EQ(bad, 0u) << "worst at flat index " << worst << ": gpu " << g[worst] << " cpu "
                     << w[worst];
}

std::vector<Case> cases_for(int D) {
  return {
      {2, 2, 2, 17, 17, D, true, 0},                         // one partial tile, GQA 1
      {2, 4, 2, 64, 100, D, true, 0},                        // cache offset 36, GQA 2
      {2, 4, 1, 300, 300, D, true, 128},                     // window crossing tiles, GQA 4
      {2, 2, 2, 300, 450, D, false, 0},                      // no mask, offset
      {2, 4, 2, 300, 333, D, false, 100},                    // window only
      {2, 2, 1, 1000, 1000, D, true, 0},                     // many tiles, GQA 2
      {2, 4, 1, 1000, 1200, D, true, 256},                   // window + offset, GQA 4
      {2, 2, 2, 64, 64, D, true, 0, true},                   // sinks
      {2, 4, 2, 100, 130, D, true, 0, false, true},          // strided projections
      {2, 2, 2, 130, 130, D, true, 40, false, false, 6.0f},  // sharp softmax
  };
}

TEST_F(GpuSdpaFlash, MatchesCpuBf16) {
  for (int D : {64, 128, 256}) {
    for (const Case& c : cases_for(D)) check_case(c, mx::bfloat16, 2e-2, 2e-2);
  }
}

TEST_F(GpuSdpaFlash, MatchesCpuF16) {
  for (int D : {64, 128, 256}) {
    for (const Case& c : cases_for(D)) check_case(c, mx::float16, 4e-3, 4e-3);
  }
}

// A value row holding NaN or inf must reach only the rows that see its key:
// the rows that the causal or window mask hides it from, in the same 64-key
// tile and the same 64-row block as rows that do see it, stay finite and
// match the CPU (whose kernels skip masked keys; the rows that do see it are
// non-finite on both). Keys: NaN at the last key (only the last row sees it),
// inf inside the diagonal tile, NaN below a sliding window's lower edge.
TEST_F(GpuSdpaFlash, MaskedNonFiniteValuesStayOutOfTheOutput) {
  struct Bad {
    int key;
    float value;
  };
  struct NanCase {
    int L, S, window;
    std::vector<Bad> bad;
  };
  const std::vector<NanCase> cases = {
      {128, 128, 0, {{127, NAN}, {70, INFINITY}}},
      {128, 128, 16, {{10, NAN}, {90, -INFINITY}}},
      {64, 100, 0, {{99, NAN}}},
  };
  for (mx::Dtype d : {mx::bfloat16, mx::float16}) {
    for (int D : {64, 256}) {
      for (const NanCase& c : cases) {
        SCOPED_TRACE(mx::dtype_name(d) + " D=" + std::to_string(D) + " L=" + std::to_string(c.L) +
                     " S=" + std::to_string(c.S) + " window=" + std::to_string(c.window));
        const int H = 2;
        array q = rand({1, H, c.L, D}, d, 900 + D);
        array k = rand({1, H, c.S, D}, d, 901 + D);
        array v = mx::astype(rand({1, H, c.S, D}, d, 902 + D), mx::float32, kCpu);
        array pos = mx::reshape(mx::arange(c.S, kCpu), {1, 1, c.S, 1}, kCpu);
        for (const Bad& b : c.bad) {
          v = mx::where(mx::equal(pos, array(b.key), kCpu), array(b.value), v, kCpu);
        }
        v = mx::astype(v, d, kCpu);
        const float scale = 1.0f / std::sqrt(static_cast<float>(D));
        std::optional<int> window;
        if (c.window > 0) window = c.window;
        auto f32 = [&](const array& a) { return mx::astype(a, mx::float32, kCpu); };
        array want = mx::fast::scaled_dot_product_attention(f32(q), f32(k), f32(v), scale, "causal",
                                                            {}, {}, window, kCpu);
        array got =
            mx::fast::scaled_dot_product_attention(q, k, v, scale, "causal", {}, {}, window, kGpu);
        mx::eval({want, got});
        const std::vector<double> g = mxtest::to_vector(got);
        const std::vector<double> w = mxtest::to_vector(want);
        // Rows (of each head) that see a bad key, from the mask's definition.
        const int off = c.S - c.L;
        size_t finite_rows = 0, bad = 0;
        for (int h = 0; h < H; ++h) {
          for (int i = 0; i < c.L; ++i) {
            bool sees_bad = false;
            for (const Bad& b : c.bad) {
              const int p = i + off;
              sees_bad |= b.key <= p && (c.window == 0 || b.key > p - c.window);
            }
            finite_rows += sees_bad ? 0 : 1;
            for (int e = 0; e < D; ++e) {
              const size_t at = (static_cast<size_t>(h) * c.L + i) * D + e;
              if (sees_bad) {
                if (std::isfinite(g[at]) || std::isfinite(w[at])) ++bad;
              } else if (!(std::abs(g[at] - w[at]) <= 2e-2 + 2e-2 * std::abs(w[at]))) {
                ++bad;
              }
            }
          }
        }
        EXPECT_GT(finite_rows, 0u);
        EXPECT_EQ(bad, 0u);
      }
    }
  }
}

// Speed at Gemma 3 4B shapes (8 query heads, 4 kv heads, head dim 256), only
// when MLXCPP_SDPA_FLASH_BENCH is set: prints TFLOP/s counting the visible
// (unmasked) score entries, 4 * D flops each.
TEST_F(GpuSdpaFlash, Gemma3Timing) {
  if (std::getenv("MLXCPP_SDPA_FLASH_BENCH") == nullptr) GTEST_SKIP() << "timing not requested";
  for (int L : {2048, 8192}) {
    for (int window : {0, 1024}) {
      const int Hq = 8, Hkv = 4, D = 256;
      array q = mx::astype(rand({1, Hq, L, D}, mx::bfloat16, 1), mx::bfloat16, kGpu);
      array k = mx::astype(rand({1, Hkv, L, D}, mx::bfloat16, 2), mx::bfloat16, kGpu);
      array v = mx::astype(rand({1, Hkv, L, D}, mx::bfloat16, 3), mx::bfloat16, kGpu);
      mx::eval({q, k, v});
      std::optional<int> w;
      if (window > 0) w = window;
      auto run = [&] {
        array o =
            mx::fast::scaled_dot_product_attention(q, k, v, 0.0625f, "causal", {}, {}, w, kGpu);
        mx::eval({o});
      };
      run();
      mx::synchronize();
      const int iters = 20;
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) run();
      mx::synchronize();
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
      double visible = 0;  // key-query pairs the masks leave
      for (int64_t i = 0; i < L; ++i)
        visible += window > 0 ? std::min<int64_t>(i + 1, window) : i + 1;
      const double flops = 4.0 * visible * D * Hq;
      std::printf("[flash sdpa] L=S=%d causal window=%d: %.3f ms, %.1f TFLOP/s\n", L, window,
                  s * 1e3, flops / s / 1e12);
    }
  }
}

}  // namespace
