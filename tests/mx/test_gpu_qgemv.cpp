// The GPU's decode products (quantized_matmul with few rows of x) on Gemma 3
// 4B's weight shapes: q (2048 x 2560), k/v (1024 x 2560), o (2560 x 2048),
// gate/up (10240 x 2560), down (2560 x 10240) and the tied LM head
// (262208 x 2560, tiled from a smaller random matrix), at 4 and 8 bits (2, 3, 6 on one shape: the
// SIMT kernel), groups of 32, 64 and 128, 1 to 8 rows of x and a blocked 20, against two
// references: the CPU backend's quantized_matmul on the same inputs, and a
// float64 dequantize-and-dot written from formats.md section 2 here (codes
// LSB first in the row's uint32 stream, w = scale * q + bias per group).
// Also the grouped launch (several matrices against one x) through
// nn::apply_linears, and one row of x far from magnitude 1. Every test skips where no GPU exists
// (ctest label `gpu`).
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/nn/layers.h"
#include "mlxcpp/nn/quantized.h"

using mx::array;
using mxtest::expect_close;
using mxtest::to_vector;

namespace {

const mx::Device kGpu(mx::Device::gpu);
const mx::Device kCpu(mx::Device::cpu);

class GpuQgemv : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  }
};

array normal(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed) {
  return mx::astype(mx::random::normal(shape, mx::float32, mx::random::key(seed), kCpu), dtype,
                    kCpu);
}

// x (M, K) @ dequantize(W).T in float64, from the packed words (formats.md 2.1).
std::vector<double> reference(const array& x, const std::vector<array>& q, int bits, int g) {
  const int N = q[0].shape(0), K = q[0].shape(1) * 32 / bits, M = static_cast<int>(x.size()) / K;
  const std::vector<double> xv = to_vector(x), wv = to_vector(q[0]), sv = to_vector(q[1]),
                            bv = to_vector(q[2]);
  const int words = K * bits / 32, groups = K / g;
  std::vector<double> out(static_cast<size_t>(M) * N, 0.0), row(K);
  for (int n = 0; n < N; ++n) {
    for (int k = 0; k < K; ++k) {
      const int64_t bit = int64_t{k} * bits;
      uint64_t pair = static_cast<uint64_t>(wv[size_t(n) * words + bit / 32]);
      if (bit / 32 + 1 < words) {
        pair |= static_cast<uint64_t>(wv[size_t(n) * words + bit / 32 + 1]) << 32;
      }
      const double code = static_cast<double>((pair >> (bit % 32)) & ((1u << bits) - 1));
      row[k] = sv[size_t(n) * groups + k / g] * code + bv[size_t(n) * groups + k / g];
    }
    for (int m = 0; m < M; ++m) {
      double acc = 0;
      for (int k = 0; k < K; ++k) acc += xv[size_t(m) * K + k] * row[k];
      out[size_t(m) * N + n] = acc;
    }
  }
  return out;
}

// Both references for one product; tolerances of one bfloat16 / float16
// rounding of the output plus float32 sums (y has a magnitude of ~sqrt(K)).
// `want` is the float64 reference of x's rows (or of more rows, of which x's
// come first).
void check_product(const array& x, const std::vector<array>& q, int bits, int g,
                   const std::vector<double>& want) {
  const int K = x.shape(-1);
  const mx::Dtype dt = mx::promote_types(x.dtype(), q[1].dtype());
  array got = mx::quantized_matmul(x, q[0], q[1], q[2], true, g, bits, "affine", kGpu);
  array cpu = mx::quantized_matmul(x, q[0], q[1], q[2], true, g, bits, "affine", kCpu);
  ASSERT_EQ(got.dtype(), cpu.dtype());
  const double rtol = dt == mx::bfloat16 ? 1.0 / 128 : 1.0 / 512;
  const double atol = 2e-3 * std::sqrt(static_cast<double>(K));
  {
    SCOPED_TRACE("against the CPU backend");
    expect_close(got, to_vector(cpu), cpu.shape(), 2 * atol, 2 * rtol);
  }
  {
    SCOPED_TRACE("against the float64 reference");
    expect_close(got, std::vector<double>(want.begin(), want.begin() + got.size()), cpu.shape(),
                 atol, rtol);
  }
}

void check_product(const array& x, const std::vector<array>& q, int bits, int g) {
  check_product(x, q, bits, g, reference(x, q, bits, g));
}

struct Shape2 {
  const char* what;
  int N, K;
};

const Shape2 kShapes[] = {{"q_proj", 2048, 2560},
                          {"k/v_proj", 1024, 2560},
                          {"o_proj", 2560, 2048},
                          {"gate/up_proj", 10240, 2560},
                          {"down_proj", 2560, 10240}};

}  // namespace

TEST_F(GpuQgemv, DecodeShapesMatchReferences) {
  uint64_t seed = 1000;
  for (const Shape2& s : kShapes) {
    array w = normal({s.N, s.K}, mx::bfloat16, seed++);
    for (int bits : {4, 8}) {
      for (int g : {32, 64, 128}) {
        auto q = mx::quantize(w, g, bits, "affine", kCpu);
        mx::eval(q);
        // 1, 3 and 8 rows: the first rows of one x (one reference for all three).
        array x8 = normal({8, s.K}, mx::bfloat16, seed++);
        const std::vector<double> want = reference(x8, q, bits, g);
        for (int M : {1, 3, 8}) {
          SCOPED_TRACE(std::string(s.what) + " bits " + std::to_string(bits) + " group " +
                       std::to_string(g) + " M " + std::to_string(M));
          check_product(mx::slice(x8, {0, 0}, {M, s.K}, kCpu), q, bits, g, want);
        }
      }
    }
  }
}

// One row of x far from magnitude 1 (the whole-chunk 8-bit path multiplies in float16 after
// scaling each group by a power of two: values past float16's 65504, values under its normal
// range, and groups of very different magnitudes in one row), against the float64 reference
// with the tolerances above scaled by x's largest magnitude.
TEST_F(GpuQgemv, OneRowFarFromUnitMagnitude) {
  const int N = 2048, K = 2560;
  array w = normal({N, K}, mx::bfloat16, 77);
  array z = normal({1, K}, mx::float32, 78);
  // Group i of 64 values scaled by 10^((i mod 13) - 6): 1e-6 .. 1e6 in one row.
  std::vector<float> mixed_scale(static_cast<size_t>(K));
  for (int k = 0; k < K; ++k)
    mixed_scale[k] = std::pow(10.0f, static_cast<float>((k / 64) % 13 - 6));
  array mixed = mx::array(mixed_scale.data(), {1, K}, mx::float32);
  struct Case {
    const char* what;
    array x;
    double largest;
  };
  const Case cases[] = {
      {"all near 3e5 (past float16's range)", mx::multiply(z, mx::array(3e5f), kCpu), 3e5},
      {"all near 1e-6 (under float16's normal range)", mx::multiply(z, mx::array(1e-6f), kCpu),
       1e-6},
      {"groups from 1e-6 to 1e6", mx::multiply(z, mixed, kCpu), 1e6}};
  for (int bits : {4, 8}) {
    for (int g : {32, 64}) {
      auto q = mx::quantize(w, g, bits, "affine", kCpu);
      mx::eval(q);
      for (const Case& c : cases) {
        SCOPED_TRACE(std::string(c.what) + " bits " + std::to_string(bits) + " group " +
                     std::to_string(g));
        array x = mx::astype(c.x, mx::bfloat16, kCpu);
        array got = mx::quantized_matmul(x, q[0], q[1], q[2], true, g, bits, "affine", kGpu);
        // x's scale: 3 standard deviations of its largest groups.
        const double atol = 2e-3 * std::sqrt(static_cast<double>(K)) * 3 * c.largest;
        expect_close(got, reference(x, q, bits, g), {1, N}, atol, 1.0 / 128);
      }
    }
  }
}

// One, two and twenty rows of x (the blocked path) of float16 x, float32 scales
// (x promoted to float32: the SIMT kernel), and two rows of the down
// projection's K (x staged in more than 48 KB of shared memory with the
// partial sums).
TEST_F(GpuQgemv, RowBlocksHalfAndFloatScales) {
  uint64_t seed = 2000;
  for (int bits : {4, 8}) {
    array w = normal({2560, 2560}, mx::float16, seed++);
    auto q = mx::quantize(w, 64, bits, "affine", kCpu);
    for (int M : {1, 2, 20}) {  // 1: the whole-chunk one-row loop with float16 x
      SCOPED_TRACE("float16 bits " + std::to_string(bits) + " M " + std::to_string(M));
      check_product(normal({M, 2560}, mx::float16, seed++), q, bits, 64);
    }
    array wb = normal({1024, 2560}, mx::bfloat16, seed++);
    auto qb = mx::quantize(wb, 64, bits, "affine", kCpu);
    std::vector<array> q32 = {qb[0], mx::astype(qb[1], mx::float32, kCpu),
                              mx::astype(qb[2], mx::float32, kCpu)};
    {
      SCOPED_TRACE("float32 scales bits " + std::to_string(bits));
      check_product(normal({1, 2560}, mx::bfloat16, seed++), q32, bits, 64);
    }
    array wd = normal({256, 10240}, mx::bfloat16, seed++);
    auto qd = mx::quantize(wd, 64, bits, "affine", kCpu);
    for (int M : {2, 4}) {
      SCOPED_TRACE("K 10240 bits " + std::to_string(bits) + " M " + std::to_string(M));
      check_product(normal({M, 10240}, mx::bfloat16, seed++), qd, bits, 64);
    }
  }
}

// The other widths (the SIMT kernel) on one decode shape.
TEST_F(GpuQgemv, OtherBitWidths) {
  uint64_t seed = 3000;
  array w = normal({1024, 2560}, mx::bfloat16, seed++);
  for (int bits : {2, 3, 6}) {
    auto q = mx::quantize(w, 64, bits, "affine", kCpu);
    for (int M : {1, 4}) {
      SCOPED_TRACE("bits " + std::to_string(bits) + " M " + std::to_string(M));
      check_product(normal({M, 2560}, mx::bfloat16, seed++), q, bits, 64);
    }
  }
}

// The tied LM head's shape (262208 x 2560), one row: the packed rows of a
// 4099-row matrix tiled 64 times (the kernel addresses every row; the
// expected values tile alike).
TEST_F(GpuQgemv, LmHead) {
  const int rows = 4099, reps = 262208 / 4099 + 1;
  array w = normal({rows, 2560}, mx::bfloat16, 4000);
  for (int bits : {4, 8}) {
    SCOPED_TRACE("bits " + std::to_string(bits));
    auto small = mx::quantize(w, 64, bits, "affine", kCpu);
    std::vector<array> q;
    for (const array& a : small) {
      q.push_back(mx::slice(mx::tile(a, {reps, 1}, kCpu), {0, 0}, {262208, a.shape(1)}, kCpu));
      q.back() = mx::copy(q.back(), kCpu);
    }
    mx::eval(q);
    array x = normal({1, 2560}, mx::bfloat16, 4001 + bits);
    const std::vector<double> one = reference(x, small, bits, 64);
    std::vector<double> want(262208);
    for (size_t i = 0; i < want.size(); ++i) want[i] = one[i % rows];
    check_product(x, q, bits, 64, want);
  }
}

// q/k/v and gate/up as quantized layers through apply_linears (one launch
// for all of them on the GPU) against each layer alone on the CPU.
TEST_F(GpuQgemv, GroupedLayersMatchSeparateProducts) {
  uint64_t seed = 5000;
  for (int bits : {4, 8}) {
    const mx::nn::QuantizationSpec spec{64, bits, "affine"};
    std::vector<std::shared_ptr<mx::nn::QuantizedLinear>> layers;
    for (int n : {2048, 1024, 1024}) {
      mx::nn::Linear lin(2560, n, false, mx::bfloat16);
      lin.update({{"weight", normal({n, 2560}, mx::bfloat16, seed++)}});
      layers.push_back(mx::nn::QuantizedLinear::from_linear(lin, spec));
    }
    for (int M : {1, 2, 8}) {
      SCOPED_TRACE("bits " + std::to_string(bits) + " M " + std::to_string(M));
      array x = normal({1, M, 2560}, mx::bfloat16, seed++);
      // Layers apply on the default device: the GPU for this call.
      const mx::Device before = mx::default_device();
      mx::set_default_device(kGpu);
      std::vector<array> got =
          mx::nn::apply_linears({layers[0].get(), layers[1].get(), layers[2].get()}, x);
      mx::eval(got);
      mx::set_default_device(before);
      ASSERT_EQ(got.size(), 3u);
      for (size_t i = 0; i < 3; ++i) {
        const auto& p = layers[i];
        array want = mx::quantized_matmul(x, p->param("weight"), p->param("scales"),
                                          p->param("biases"), true, 64, bits, "affine", kCpu);
        expect_close(got[i], to_vector(want), want.shape(), 2e-3 * std::sqrt(2560.0) * 2,
                     2.0 / 128);
      }
    }
  }
}
