// The split-KV decode attention (backend/cuda/sdpa_decode.cu) against the CPU
// backend's scaled_dot_product_attention on the same inputs in float32 (the
// CPU kernel is tested against NumPy float64 in test_fast_sdpa.cpp): one to
// eight queries per head, grouped-query ratios 1, 2 and 4, head dims 64, 128
// and 256, key lengths 1 to 5000, batch 1 and 8 with the per-row bool masks of
// the server's batched decode (left padding, sliding window), the rotating
// cache's end-aligned window, causal windows, additive masks, sinks, value
// head dims unlike the key's, K/V read as views of a larger cache whose unused
// slots hold NaN, transposed query projections, a row that sees no key, and
// every float dtype the kernel takes, on many streams. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
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

class GpuSdpaDecode : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  }
};

array rand(const mx::Shape& shape, uint64_t seed) {
  return mx::random::uniform(-2.0f, 2.0f, shape, mx::float32, mx::random::key(seed), kCpu);
}

enum class Mask { none, batch_pad, additive, empty_row };

struct Case {
  int B, Hq, Hkv, Lq, Lk, D;
  std::string mode = "";  // "" or "causal"
  int window = 0;         // 0: none
  Mask mask = Mask::none;
  bool sinks = false;
  int Dv = 0;               // 0: D
  int spare = 0;            // cache slots past Lk (K/V are views; the slots hold NaN)
  bool transposed = false;  // queries as a (B, Lq, Hq, D) projection viewed as (B, Hq, Lq, D)
};

std::string describe(const Case& c, mx::Dtype d) {
  char buf[240];
  std::snprintf(buf, sizeof(buf),
                "%s B=%d Hq=%d Hkv=%d Lq=%d Lk=%d D=%d Dv=%d mode='%s' window=%d mask=%d%s "
                "spare=%d%s",
                mx::dtype_name(d).c_str(), c.B, c.Hq, c.Hkv, c.Lq, c.Lk, c.D, c.Dv ? c.Dv : c.D,
                c.mode.c_str(), c.window, static_cast<int>(c.mask), c.sinks ? " sinks" : "",
                c.spare, c.transposed ? " transposed" : "");
  return buf;
}

// Left padding of batch row b (as BatchKVCache pads shorter prompts): keys
// [0, pad) are hidden from that row.
int pad_of(const Case& c, int b) { return b == 0 ? 0 : (b * 37) % c.Lk; }

// The cache K or V is read from: (B, Hkv, Lk + spare, dim). The spare slots
// and every row's padded slots hold NaN, which the masks hide.
array cache_buffer(const Case& c, int dim, uint64_t seed, bool poison) {
  const int cap = c.Lk + c.spare;
  array x = rand({c.B, c.Hkv, cap, dim}, seed);
  if (!poison) return x;
  std::vector<uint8_t> hidden(static_cast<size_t>(c.B) * cap, 0);
  for (int b = 0; b < c.B; ++b) {
    for (int j = 0; j < cap; ++j) {
      const bool padded = c.mask == Mask::batch_pad && j < pad_of(c, b);
      hidden[static_cast<size_t>(b) * cap + j] = j >= c.Lk || padded;
    }
  }
  array h = mx::astype(array(hidden.begin(), {c.B, 1, cap, 1}, mx::uint8), mx::bool_, kCpu);
  return mx::where(h, array(NAN), x, kCpu);
}

std::optional<array> mask_of(const Case& c, uint64_t seed) {
  switch (c.mask) {
    case Mask::none:
      return std::nullopt;
    case Mask::batch_pad:
    case Mask::empty_row: {
      // What BatchKVCache::make_mask builds for one query per row: keys from the
      // row's padding (and the window's lower edge) to the end.
      std::vector<uint8_t> m(static_cast<size_t>(c.B) * c.Lk, 0);
      for (int b = 0; b < c.B; ++b) {
        int lo = c.mask == Mask::batch_pad ? pad_of(c, b) : 0;
        if (c.window > 0) lo = std::max(lo, c.Lk - c.window);
        const bool empty = c.mask == Mask::empty_row && b == c.B - 1;
        for (int j = lo; j < c.Lk && !empty; ++j) m[static_cast<size_t>(b) * c.Lk + j] = 1;
      }
      return mx::astype(array(m.begin(), {c.B, 1, 1, c.Lk}, mx::uint8), mx::bool_, kCpu);
    }
    case Mask::additive: {
      // Random biases with every third key of each head masked by -inf.
      array bias = rand({c.B, c.Hq, c.Lq, c.Lk}, seed);
      array j = mx::reshape(mx::arange(c.Lk, kCpu), {1, 1, 1, c.Lk}, kCpu);
      array h = mx::reshape(mx::arange(c.Hq, kCpu), {1, c.Hq, 1, 1}, kCpu);
      array hide = mx::equal(mx::remainder(mx::add(j, h, kCpu), array(3), kCpu), array(0), kCpu);
      return mx::where(hide, array(-INFINITY), bias, kCpu);
    }
  }
  return std::nullopt;
}

// Runs the case on the GPU in dtype d and on the CPU in float32 from the same
// (d-rounded) inputs; expects |gpu - cpu| <= atol + rtol |cpu| everywhere.
void check_case(const Case& c, mx::Dtype d, double atol, double rtol,
                mx::StreamOrDevice gpu = kGpu) {
  SCOPED_TRACE(describe(c, d));
  const int Dv = c.Dv ? c.Dv : c.D;
  const uint64_t seed = static_cast<uint64_t>(c.Lk * 131 + c.D * 7 + c.Hkv * 3 + c.B + c.Lq);
  auto in = [&](const array& a) { return mx::astype(a, d, kCpu); };
  auto f32 = [&](const array& a) { return mx::astype(a, mx::float32, kCpu); };
  // Inputs in dtype d as the model holds them: K/V views of the cache buffer,
  // queries perhaps a transposed projection; the CPU gets the same values.
  array qd = c.transposed
                 ? mx::transpose(in(rand({c.B, c.Lq, c.Hq, c.D}, seed)), {0, 2, 1, 3}, kCpu)
                 : in(rand({c.B, c.Hq, c.Lq, c.D}, seed));
  const bool poison = c.mask != Mask::empty_row;  // a row seeing nothing averages every slot
  auto view = [&](const array& buf, int dim) {
    return mx::slice(buf, {0, 0, 0, 0}, {c.B, c.Hkv, c.Lk, dim}, kCpu);
  };
  array kd = view(in(cache_buffer(c, c.D, seed + 1, poison)), c.D);
  array vd = view(in(cache_buffer(c, Dv, seed + 2, poison)), Dv);
  std::optional<array> mask = mask_of(c, seed + 3), mask_d, mask_32;
  if (mask) {
    mask_d = mask->dtype() == mx::bool_ ? *mask : in(*mask);
    mask_32 = mask->dtype() == mx::bool_ ? *mask : f32(*mask_d);
  }
  std::optional<array> sinks, sinks_d, sinks_32;
  if (c.sinks) {
    sinks = rand({c.Hq}, seed + 4);
    sinks_d = in(*sinks);
    sinks_32 = f32(*sinks_d);
  }
  std::optional<int> window;
  if (c.window > 0 && !mask) window = c.window;  // an array mask holds its window itself
  const std::string mode = mask ? "array" : c.mode;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
  array want = mx::fast::scaled_dot_product_attention(f32(qd), f32(kd), f32(vd), scale, mode,
                                                      mask_32, sinks_32, window, kCpu);
  array got =
      mx::fast::scaled_dot_product_attention(qd, kd, vd, scale, mode, mask_d, sinks_d, window, gpu);
  mx::eval({want, got});
  ASSERT_EQ(got.dtype(), d);
  ASSERT_EQ(got.shape(), (mx::Shape{c.B, c.Hq, c.Lq, Dv}));
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

TEST_F(GpuSdpaDecode, SingleQueryEveryRatioDimAndLength) {
  for (int D : {64, 128, 256}) {
    for (auto [Hq, Hkv] : {std::pair{4, 4}, std::pair{8, 4}, std::pair{8, 2}}) {
      for (int Lk : {1, 7, 33, 600, 5000}) {
        check_case({1, Hq, Hkv, 1, Lk, D}, mx::bfloat16, 2e-2, 2e-2);
      }
    }
  }
}

TEST_F(GpuSdpaDecode, BatchedRowsWithPaddingMasks) {
  for (int D : {64, 128, 256}) {
    for (int Lk : {7, 33, 600, 5000}) {
      Case c{8, 8, 4, 1, Lk, D};
      c.mask = Mask::batch_pad;
      c.spare = 40;
      check_case(c, mx::bfloat16, 2e-2, 2e-2);
      c.window = 24;  // a sliding-window layer of the same batch
      check_case(c, mx::bfloat16, 2e-2, 2e-2);
    }
  }
}

TEST_F(GpuSdpaDecode, SlidingWindows) {
  for (int D : {128, 256}) {
    // The rotating cache's decode step: no mask mode, an end-aligned window.
    Case ring{1, 8, 4, 1, 5000, D, "", 1024};
    check_case(ring, mx::bfloat16, 2e-2, 2e-2);
    Case causal{2, 8, 4, 1, 600, D, "causal", 16};
    causal.spare = 100;
    check_case(causal, mx::bfloat16, 2e-2, 2e-2);
    Case several{2, 8, 2, 4, 600, D, "causal", 50};  // four queries, each its own window
    check_case(several, mx::bfloat16, 2e-2, 2e-2);
  }
}

TEST_F(GpuSdpaDecode, MasksSinksAndLayouts) {
  for (int D : {64, 256}) {
    Case additive{2, 8, 4, 1, 600, D};
    additive.mask = Mask::additive;
    check_case(additive, mx::bfloat16, 2e-2, 2e-2);
    Case sinks{1, 8, 2, 1, 600, D, "causal"};
    sinks.sinks = true;
    check_case(sinks, mx::bfloat16, 2e-2, 2e-2);
    Case empty{4, 4, 4, 1, 33, D};
    empty.mask = Mask::empty_row;
    check_case(empty, mx::bfloat16, 2e-2, 2e-2);
    Case views{2, 8, 4, 1, 600, D, "causal"};
    views.transposed = true;
    views.spare = 7 * 8;
    check_case(views, mx::bfloat16, 2e-2, 2e-2);
    Case eight{1, 4, 1, 8, 600, D, "causal"};  // 32 query rows per key/value head
    check_case(eight, mx::bfloat16, 2e-2, 2e-2);
  }
  Case narrow_v{1, 8, 4, 1, 600, 128};
  narrow_v.Dv = 64;
  check_case(narrow_v, mx::bfloat16, 2e-2, 2e-2);
}

TEST_F(GpuSdpaDecode, Float16AndFloat32) {
  for (int D : {64, 128, 256}) {
    for (int Lk : {1, 33, 600, 5000}) {
      Case c{2, 8, 4, 1, Lk, D};
      c.mask = Mask::batch_pad;
      check_case(c, mx::float16, 4e-3, 4e-3);
      check_case(c, mx::float32, 2e-5, 2e-5);
      Case s{1, 4, 1, 3, Lk, D, "causal", 200};
      s.sinks = true;
      check_case(s, mx::float32, 2e-5, 2e-5);
    }
  }
}

// Calls on many streams (each CUDA stream its own scratch and launches) give
// the same answers as on the default one.
TEST_F(GpuSdpaDecode, ManyStreams) {
  for (int i = 0; i < 20; ++i) {
    SCOPED_TRACE("stream " + std::to_string(i));
    Case c{2, 8, 4, 1, 600 + i, 128};
    c.mask = Mask::batch_pad;
    check_case(c, mx::bfloat16, 2e-2, 2e-2, mx::new_stream(kGpu));
  }
}

}  // namespace
