// The GPU's decode products (quantized_matmul with few rows of x) on Gemma 3
// 4B's weight shapes: q (2048 x 2560), k/v (1024 x 2560), o (2560 x 2048),
// gate/up (10240 x 2560), down (2560 x 10240) and the tied LM head
// (262208 x 2560, tiled from a smaller random matrix), at 4 and 8 bits (2, 3, 6 on one shape: the
// SIMT kernel), groups of 32, 64 and 128, 1 to 8 rows of x and a blocked 20, against two
// references: the CPU backend's quantized_matmul on the same inputs, and a
// float64 dequantize-and-dot written from formats.md section 2 here (codes
// LSB first in the row's uint32 stream, w = scale * q + bias per group).
// Also the grouped launch (several matrices against one x) through
// nn::apply_linears, one row of x far from magnitude 1, and gate/up with the GELU applied as
// the products are stored (quantized_geglu). Every test skips where no GPU exists (ctest label
// `gpu`).
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/fast.h"
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

// gelu_approx(g) * u, the tanh form, in float64.
double gelu_ref(double v) {
  return 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
}

// got = gelu(gate) * up against the float64 references of gate and up, within the products'
// tolerance (check_product's) carried through exactly: the largest change of gelu(g) * u over
// gate and up anywhere in their tolerance intervals (gelu's extremes there: the interval's
// ends and its minimum, near -0.7518), plus one rounding of the result.
void check_geglu(const array& got, const std::vector<double>& gate, const std::vector<double>& up,
                 int K) {
  static const double gelu_min_at = [] {
    double lo = -1.0, hi = -0.5;  // where gelu's derivative changes sign, by bisection
    for (int i = 0; i < 60; ++i) {
      const double mid = 0.5 * (lo + hi);
      (gelu_ref(mid + 1e-9) - gelu_ref(mid - 1e-9) < 0 ? lo : hi) = mid;
    }
    return 0.5 * (lo + hi);
  }();
  const std::vector<double> y = to_vector(got);
  const double rtol = got.dtype() == mx::bfloat16 ? 1.0 / 128 : 1.0 / 512;
  const double atol = 2e-3 * std::sqrt(static_cast<double>(K));
  int bad = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double gv = gate[i], uv = up[i], want = gelu_ref(gv) * uv;
    const double dg = atol + rtol * std::abs(gv), du = atol + rtol * std::abs(uv);
    std::vector<double> acts = {gelu_ref(gv - dg), gelu_ref(gv + dg)};
    if (gv - dg < gelu_min_at && gelu_min_at < gv + dg) acts.push_back(gelu_ref(gelu_min_at));
    double tol = 0;
    for (double a : acts) {
      for (double u : {uv - du, uv + du}) tol = std::max(tol, std::abs(a * u - want));
    }
    tol += rtol * std::abs(want) + 1e-6;
    if (std::abs(y[i] - want) > tol && bad++ < 5) {
      ADD_FAILURE() << "element " << i << ": got " << y[i] << ", want " << want << " (gate " << gv
                    << ", up " << uv << ", tolerance " << tol << ")";
    }
  }
  EXPECT_EQ(bad, 0);
}

// gelu_approx(gate) * up with the activation in the product's epilogue (1, 3 and 8 rows of x,
// 4 and 8 bits, groups of 32 and 64, bfloat16 and float16) against (a) the same products
// stored and fast::gelu_approx_mul on the GPU: the same arithmetic, so equal values; (b) the
// float64 references of gate and up through the activation (check_geglu).
TEST_F(GpuQgemv, GegluMatchesProductsThenActivation) {
  uint64_t seed = 6000;
  const int N = 1040, K = 2560;  // 130 tiles of 8 rows
  for (mx::Dtype dt : {mx::bfloat16, mx::float16}) {
    for (int bits : {4, 8}) {
      for (int g : {32, 64}) {
        std::vector<array> w, s, b;
        std::vector<std::vector<double>> ref;
        array x8 = normal({8, K}, dt, seed++);
        for (int i = 0; i < 2; ++i) {
          auto q = mx::quantize(normal({N, K}, dt, seed++), g, bits, "affine", kCpu);
          mx::eval(q);
          w.push_back(q[0]), s.push_back(q[1]), b.push_back(q[2]);
          ref.push_back(reference(x8, q, bits, g));
        }
        for (int M : {1, 3, 8}) {
          SCOPED_TRACE(mx::dtype_name(dt) + " bits " + std::to_string(bits) + " group " +
                       std::to_string(g) + " M " + std::to_string(M));
          array x = mx::slice(x8, {0, 0}, {M, K}, kCpu);
          array got = mx::quantized_geglu(x, w, s, b, g, bits, kGpu);
          auto gu = mx::grouped_quantized_matmul(x, w, s, b, g, bits, kGpu);
          array plain = mx::fast::gelu_approx_mul(gu[0], gu[1], kGpu);
          ASSERT_EQ(got.dtype(), dt);
          expect_close(got, to_vector(plain), plain.shape(), 0.0, 0.0);
          check_geglu(got, ref[0], ref[1], K);
        }
      }
    }
  }
}

// The sandwich norms computed in the product's prologue (residual_norm_quantized_matmul, one
// row): h against the float64 formula (res + rms_norm(y) * wy, one rounding of the normed y and
// one of the sum), and the products (q/k/v-like three matrices, and gate/up with the GELU)
// against the float64 references of x = rms_norm(h) * wx from the CPU's norms, within the
// products' tolerances.
TEST_F(GpuQgemv, ResidualNormInThePrologue) {
  uint64_t seed = 7000;
  // K 2560: a thread holds its (at most two) chunks of the row in registers; K 5376 (Gemma 3
  // 27B's hidden size, past the whole-chunk loop too): the prologue's three passes over shared
  // memory.
  const std::pair<int, mx::Dtype> cases[] = {
      {2560, mx::bfloat16}, {2560, mx::float16}, {5376, mx::bfloat16}};
  for (const auto& [K, dt] : cases) {
    for (int bits : {4, 8}) {
      SCOPED_TRACE(mx::dtype_name(dt) + " K " + std::to_string(K) + " bits " +
                   std::to_string(bits));
      array res = mx::multiply(normal({1, K}, dt, seed++), mx::array(4.0f, dt), kCpu);
      array y = mx::multiply(normal({1, K}, dt, seed++), mx::array(30.0f, dt), kCpu);
      array wy = mx::add(normal({K}, mx::float32, seed++), mx::array(1.0f), kCpu);
      array wx = mx::add(normal({K}, mx::float32, seed++), mx::array(1.0f), kCpu);
      const float eps = 1e-6f;
      // h in float64.
      const auto rv = to_vector(res), yv = to_vector(y), wyv = to_vector(wy);
      double ss = 0;
      for (double v : yv) ss += v * v;
      const double ny = 1.0 / std::sqrt(ss / K + eps);
      std::vector<double> h_ref(K), a_ref(K);
      for (int k = 0; k < K; ++k) {
        a_ref[k] = yv[k] * ny * wyv[k];
        h_ref[k] = rv[k] + a_ref[k];
      }
      // x from the CPU's norms (the products' reference input).
      array x_cpu = mx::fast::residual_rms_norm(res, y, wy, wx, eps, kCpu).second;
      for (bool geglu : {false, true}) {
        SCOPED_TRACE(geglu ? "gate/up with the GELU" : "three matrices");
        const std::vector<int> rows =
            geglu ? std::vector<int>{1040, 1040} : std::vector<int>{2048, 1024, 1024};
        std::vector<array> w, s, b;
        std::vector<std::vector<double>> ref;
        for (int n : rows) {
          auto q = mx::quantize(normal({n, K}, dt, seed++), 64, bits, "affine", kCpu);
          mx::eval(q);
          w.push_back(q[0]), s.push_back(q[1]), b.push_back(q[2]);
          ref.push_back(reference(x_cpu, q, bits, 64));
        }
        auto got =
            mx::residual_norm_quantized_matmul(res, y, wy, wx, eps, w, s, b, 64, bits, geglu, kGpu);
        ASSERT_EQ(got.size(), geglu ? 2u : 4u);
        const double rt = dt == mx::bfloat16 ? 1.0 / 128 : 1.0 / 512;
        // h is rounded twice: the normed y, then the sum (half an ulp each, of their sizes).
        const std::vector<double> h = to_vector(got[0]);
        ASSERT_EQ(h.size(), size_t(K));
        int bad = 0;
        for (int k = 0; k < K; ++k) {
          const double tol = rt * (std::abs(a_ref[k]) + std::abs(h_ref[k])) + 1e-5;
          if (std::abs(h[k] - h_ref[k]) > tol && bad++ < 5) {
            ADD_FAILURE() << "h[" << k << "]: got " << h[k] << ", want " << h_ref[k]
                          << " (tolerance " << tol << ")";
          }
        }
        EXPECT_EQ(bad, 0);
        if (geglu) {
          check_geglu(got[1], ref[0], ref[1], K);
        } else {
          const double atol = 2e-3 * std::sqrt(static_cast<double>(K));
          for (size_t i = 0; i < rows.size(); ++i) {
            expect_close(got[i + 1], ref[i], {1, rows[i]}, atol, rt);
          }
        }
      }
    }
  }
}
