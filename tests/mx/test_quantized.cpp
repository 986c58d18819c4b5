// quantize, dequantize and quantized_matmul against an independent NumPy
// implementation of formats.md section 2 (tools/reference/quantize_refs.py ->
// tests/data/quantized/quantize_refs.json), hand-packed words with known
// values, round-trip error bounds, matmul with the dequantized weights on
// every ISA, and derivatives against float64 central differences.
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "common/check.h"
#include "mlxcpp/mx/backend/cpu/isa.h"

namespace {

using mx::array;
using mx::Shape;
using mxtest::expect_close;
using mxtest::to_vector;
namespace cpu = mx::cpu;

const nlohmann::json& refs() {
  static nlohmann::json j = [] {
    std::ifstream f(std::string(MLXCPP_TEST_DATA) + "/quantized/quantize_refs.json");
    if (!f) throw std::runtime_error("cannot open quantized/quantize_refs.json");
    return nlohmann::json::parse(f);
  }();
  return j;
}

std::vector<cpu::Isa> isas() {
  std::vector<cpu::Isa> out;
  for (cpu::Isa i : {cpu::Isa::none, cpu::Isa::avx2, cpu::Isa::avx512}) {
    if (cpu::isa_supported(i)) out.push_back(i);
  }
  return out;
}

struct IsaGuard {
  cpu::Isa saved = cpu::isa();
  ~IsaGuard() { cpu::set_isa(saved); }
};

array floats(const nlohmann::json& v, Shape shape, mx::Dtype dtype) {
  return mx::astype(array(v.get<std::vector<double>>(), std::move(shape), mx::float64), dtype);
}

array words(const nlohmann::json& v, Shape shape) {
  return array(v.get<std::vector<uint32_t>>(), std::move(shape), mx::uint32);
}

std::vector<double> as_doubles(const nlohmann::json& v) { return v.get<std::vector<double>>(); }

// float32 values the reference wrote in their shortest decimal form.
std::vector<double> as_floats(const nlohmann::json& v) {
  std::vector<double> out;
  for (double d : v.get<std::vector<double>>()) out.push_back(static_cast<float>(d));
  return out;
}

std::string case_name(const nlohmann::json& c) {
  return c["mode"].get<std::string>() + " bits " + std::to_string(c["bits"].get<int>()) +
         " group " + std::to_string(c["group_size"].get<int>()) + " " +
         c["dtype"].get<std::string>();
}

// The reference's arrays of one case.
struct RefCase {
  std::string mode;
  int bits, g;
  mx::Dtype dtype;
  int rows, cols;
  array w, wq, scales;
  std::optional<array> biases;
};

RefCase load_case(const nlohmann::json& c) {
  RefCase r{c["mode"],     c["bits"],     c["group_size"], mx::dtype_from_name(c["dtype"]),
            c["shape"][0], c["shape"][1], array(0.0f),     array(0.0f),
            array(0.0f),   std::nullopt};
  r.w = floats(c["w"], {r.rows, r.cols}, r.dtype);
  r.wq = words(c["wq"], {r.rows, r.cols * r.bits / 32});
  if (r.mode == "affine") {
    r.scales = floats(c["scales"], {r.rows, r.cols / r.g}, r.dtype);
    r.biases = floats(c["biases"], {r.rows, r.cols / r.g}, r.dtype);
  } else {
    r.scales = array(c["scales"].get<std::vector<uint8_t>>(), {r.rows, r.cols / r.g}, mx::uint8);
  }
  return r;
}

TEST(Quantized, QuantizeMatchesReferenceBitForBit) {
  for (const auto& c : refs()["cases"]) {
    SCOPED_TRACE(case_name(c));
    RefCase r = load_case(c);
    auto q = mx::quantize(r.w, r.g, r.bits, r.mode);
    ASSERT_EQ(q.size(), r.mode == "affine" ? 3u : 2u);
    EXPECT_EQ(q[0].dtype(), mx::uint32);
    EXPECT_EQ(q[1].dtype(), r.mode == "affine" ? r.dtype : mx::uint8);
    // Exact: packed words, scales and biases are all integers or values of
    // the scales' dtype.
    expect_close(q[0], to_vector(r.wq), r.wq.shape(), 0, 0);
    expect_close(q[1], to_vector(r.scales), r.scales.shape(), 0, 0);
    if (r.biases) {
      EXPECT_EQ(q[2].dtype(), r.dtype);
      expect_close(q[2], to_vector(*r.biases), r.biases->shape(), 0, 0);
    }
  }
}

TEST(Quantized, DequantizeMatchesReference) {
  for (const auto& c : refs()["cases"]) {
    SCOPED_TRACE(case_name(c));
    RefCase r = load_case(c);
    array d = mx::dequantize(r.wq, r.scales, r.biases, r.g, r.bits, r.mode);
    EXPECT_EQ(d.dtype(), r.mode == "affine" ? r.dtype : mx::bfloat16);
    // scale * q then + bias, each rounded to float32, as the reference does.
    expect_close(d, as_floats(c["dequantized"]), {r.rows, r.cols}, 0, 0);
    array d32 = mx::dequantize(r.wq, r.scales, r.biases, r.g, r.bits, r.mode, mx::float32);
    EXPECT_EQ(d32.dtype(), mx::float32);
    double tol = r.dtype == mx::bfloat16 || r.mode != "affine" ? 1.0 / 128 : 0;
    expect_close(d32, as_floats(c["dequantized"]), {r.rows, r.cols}, 0, tol);
  }
}

TEST(Quantized, QuantizedMatmulMatchesReferenceOnEveryIsa) {
  IsaGuard guard;
  for (cpu::Isa isa : isas()) {
    cpu::set_isa(isa);
    for (const auto& c : refs()["cases"]) {
      SCOPED_TRACE(case_name(c) + " isa " + cpu::isa_name(isa));
      RefCase r = load_case(c);
      int m = c["m"];
      // fp modes: x float32 (its values are bfloat16-exact); affine: the case's dtype.
      mx::Dtype xd = r.mode == "affine" ? r.dtype : mx::float32;
      array xt = floats(c["x_t"], {m, r.cols}, xd);
      array xn = floats(c["x_n"], {m, r.rows}, xd);
      array yt = mx::quantized_matmul(xt, r.wq, r.scales, r.biases, true, r.g, r.bits, r.mode);
      array yn = mx::quantized_matmul(xn, r.wq, r.scales, r.biases, false, r.g, r.bits, r.mode);
      EXPECT_EQ(yt.dtype(), xd);
      // float32 accumulation over <= 256 terms of size ~|x||w| (< 10), or one
      // bfloat16 rounding of the output.
      double atol = xd == mx::bfloat16 ? 0.05 : 2e-4, rtol = xd == mx::bfloat16 ? 1.0 / 128 : 1e-5;
      expect_close(yt, as_doubles(c["out_t"]), {m, r.rows}, atol, rtol);
      expect_close(yn, as_doubles(c["out_n"]), {m, r.cols}, atol, rtol);
    }
  }
}

// Words packed by hand from the bit layout of formats.md 2.3.
TEST(Quantized, DequantizeHandPackedWords) {
  auto one = [](std::vector<uint32_t> w, int bits, int g, float scale, float bias,
                const std::vector<double>& codes) {
    SCOPED_TRACE("bits " + std::to_string(bits));
    int n = static_cast<int>(w.size()) * 32 / bits;
    array wq(w, {1, static_cast<int>(w.size())}, mx::uint32);
    array s = mx::full({1, n / g}, scale, mx::float32);
    array b = mx::full({1, n / g}, bias, mx::float32);
    std::vector<double> want;
    for (double q : codes) want.push_back(scale * q + bias);
    expect_close(mx::dequantize(wq, s, b, g, bits), want, {1, n}, 0, 0);
  };
  // 4 bits: element i in bits [4i, 4i + 4) of the word.
  std::vector<double> c4;
  for (int i = 0; i < 32; ++i) c4.push_back(i % 8 + (i >= 8 && i < 16 ? 8 : 0));
  one({0x76543210, 0xfedcba98, 0x76543210, 0x76543210}, 4, 32, 0.5f, -2.0f, c4);
  // 8 bits: the little-endian bytes.
  std::vector<double> c8 = {0x10, 0x32, 0x54, 0x76, 0xff, 0, 1, 0x80};
  for (int i = 8; i < 32; ++i) c8.push_back(0);
  one({0x76543210, 0x800100ff, 0, 0, 0, 0, 0, 0}, 8, 32, -0.25f, 3.0f, c8);
  // 2 bits: 16 per word, 0b11100100 = 0, 1, 2, 3.
  std::vector<double> c2;
  for (int i = 0; i < 32; ++i) c2.push_back(i < 4 ? i : 0);
  one({0xe4, 0}, 2, 32, 1.0f, 0.0f, c2);
  // 3 bits: 0..7 repeated is the byte triple 88 c6 fa.
  std::vector<double> c3;
  for (int i = 0; i < 32; ++i) c3.push_back(i % 8);
  one({0x88fac688, 0xc688fac6, 0xfac688fa}, 3, 32, 2.0f, 1.0f, c3);
  // Values straddling a word boundary: 3-bit element 10 = 6 (bits 30-32),
  // 5-bit element 6 = 23 (bits 30-34), 6-bit element 5 = 45 (bits 30-35).
  std::vector<double> s3(32, 0.0), s5(32, 0.0), s6(32, 0.0);
  s3[10] = 6;
  s5[6] = 23;
  s6[5] = 45;
  one({0x80000000, 0x1, 0}, 3, 32, 1.0f, 0.0f, s3);
  one({0xc0000000, 0x5, 0, 0, 0}, 5, 32, 1.0f, 0.0f, s5);
  one({0x40000000, 0xb, 0, 0x40000000, 0xb, 0}, 6, 32, 1.0f, 0.0f, [&] {
    std::vector<double> v = s6;
    v[21] = 45;  // the second 16-value block repeats the first
    return v;
  }());
}

TEST(Quantized, DequantizeHandPackedFpCodes) {
  // mxfp4 codes 0..15 (the E2M1 table) with scale byte 128 (2^1).
  array wq(std::vector<uint32_t>{0x76543210, 0xfedcba98, 0, 0}, {1, 4}, mx::uint32);
  array s(std::vector<uint8_t>{128}, {1, 1}, mx::uint8);
  std::vector<double> want = {0, 1, 2, 3, 4, 6, 8, 12, -0.0, -1, -2, -3, -4, -6, -8, -12};
  for (int i = 16; i < 32; ++i) want.push_back(0);
  expect_close(mx::dequantize(wq, s, std::nullopt, 32, 4, "mxfp4", mx::float32), want, {1, 32}, 0,
               0);
  // mxfp8: E4M3 0x38 = 1, 0x40 = 2, 0xc4 = -3, 0x01 = 2^-9 (subnormal), times 2^-2.
  array w8(std::vector<uint32_t>{0xc4403801, 0, 0, 0, 0, 0, 0, 0}, {1, 8}, mx::uint32);
  array s8(std::vector<uint8_t>{125}, {1, 1}, mx::uint8);
  std::vector<double> want8 = {std::ldexp(1.0, -11), 0.25, 0.5, -0.75};
  for (int i = 4; i < 32; ++i) want8.push_back(0);
  expect_close(mx::dequantize(w8, s8, std::nullopt, 32, 8, "mxfp8", mx::float32), want8, {1, 32}, 0,
               0);
  // nvfp4: E4M3 scale 0x3c = 1.5 per 16 values.
  array w4(std::vector<uint32_t>{0x00000071, 0}, {1, 2}, mx::uint32);
  array s4(std::vector<uint8_t>{0x3c}, {1, 1}, mx::uint8);
  std::vector<double> want4(16, 0.0);
  want4[0] = 0.75;
  want4[1] = 9.0;
  expect_close(mx::dequantize(w4, s4, std::nullopt, 16, 4, "nvfp4", mx::float32), want4, {1, 16}, 0,
               0);
}

// |w - dequantize(quantize(w))| <= |scale| / 2 where the code rounds to
// nearest, and the larger-magnitude extreme of each group is exact. Pinning
// that extreme rescales the group (scale = edge / q0), so the far extreme may
// land up to one code past the last bin and be clipped: |q0| >= n_bins / 2
// (the edge is at least half the range from zero) bounds that overshoot by
// one step, hence 1.5 |scale| everywhere.
TEST(Quantized, AffineRoundTripErrorBound) {
  mx::random::seed(7);
  array w = mx::random::normal({16, 256});
  auto wv = to_vector(w);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    for (int g : {32, 64, 128}) {
      SCOPED_TRACE("bits " + std::to_string(bits) + " group " + std::to_string(g));
      auto q = mx::quantize(w, g, bits);
      auto d = to_vector(mx::dequantize(q[0], q[1], q[2], g, bits));
      auto sv = to_vector(q[1]);
      size_t within_half = 0;
      for (int r = 0; r < 16; ++r) {
        for (int gi = 0; gi < 256 / g; ++gi) {
          double step = std::abs(sv[r * (256 / g) + gi]);
          double extreme = 0;
          int at = 0;
          for (int i = 0; i < g; ++i) {
            size_t k = size_t(r) * 256 + gi * g + i;
            double err = std::abs(d[k] - wv[k]);
            ASSERT_LE(err, 1.5 * step * (1 + 1e-5)) << "element " << k;
            within_half += err <= 0.5 * step * (1 + 1e-5) + 1e-7;
            if (std::abs(wv[k]) > extreme) {
              extreme = std::abs(wv[k]);
              at = static_cast<int>(k);
            }
          }
          EXPECT_NEAR(d[at], wv[at], 1e-6 * extreme);
        }
      }
      // Clipping touches at most the far extreme's neighbourhood.
      EXPECT_GE(within_half, size_t{16 * 256} * 95 / 100);
    }
  }
}

// quantized_matmul against matmul with the dequantized weights, on every ISA,
// over rows counts around the kernels' limits, odd N and batch dims.
TEST(Quantized, QuantizedMatmulEqualsMatmulWithDequantized) {
  IsaGuard guard;
  mx::random::seed(11);
  const int K = 256;
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    for (int g : {32, 64, 128}) {
      for (int N : {67, 128}) {
        array w = mx::random::normal({N, K});
        auto q = mx::quantize(w, g, bits);
        array wd = mx::dequantize(q[0], q[1], q[2], g, bits);
        for (cpu::Isa isa : isas()) {
          cpu::set_isa(isa);
          for (int M : {1, 2, 5, 8, 9, 20, 40}) {
            SCOPED_TRACE("bits " + std::to_string(bits) + " group " + std::to_string(g) + " N " +
                         std::to_string(N) + " M " + std::to_string(M) + " isa " +
                         cpu::isa_name(isa));
            array x = mx::random::normal({M, K});
            array y = mx::quantized_matmul(x, q[0], q[1], q[2], true, g, bits);
            expect_close(y, to_vector(mx::matmul(x, mx::transpose(wd))), {M, N}, 2e-4, 1e-5);
            if (M == 2 || M == 9) {
              array xn = mx::random::normal({M, N});
              array yn = mx::quantized_matmul(xn, q[0], q[1], q[2], false, g, bits);
              expect_close(yn, to_vector(mx::matmul(xn, wd)), {M, K}, 2e-4, 1e-5);
            }
          }
        }
      }
    }
  }
}

// bfloat16 weights and activations (the models' case, where the 4-bit kernel
// multiplies in bfloat16 with float32 sums): one rounding of the output.
TEST(Quantized, QuantizedMatmulBfloat16OnEveryIsa) {
  IsaGuard guard;
  mx::random::seed(14);
  const int K = 384, N = 75;
  for (int bits : {2, 3, 4, 6, 8}) {
    for (int g : {32, 64, 128}) {
      array w = mx::astype(mx::random::normal({N, K}), mx::bfloat16);
      auto q = mx::quantize(w, g, bits);
      array wd = mx::dequantize(q[0], q[1], q[2], g, bits, "affine", mx::float32);
      for (cpu::Isa isa : isas()) {
        cpu::set_isa(isa);
        for (int M : {1, 3, 8, 20}) {
          SCOPED_TRACE("bits " + std::to_string(bits) + " group " + std::to_string(g) + " M " +
                       std::to_string(M) + " isa " + cpu::isa_name(isa));
          array x = mx::astype(mx::random::normal({M, K}), mx::bfloat16);
          array y = mx::quantized_matmul(x, q[0], q[1], q[2], true, g, bits);
          EXPECT_EQ(y.dtype(), mx::bfloat16);
          expect_close(y, to_vector(mx::matmul(mx::astype(x, mx::float32), mx::transpose(wd))),
                       {M, N}, 0.02, 1.0 / 128);
        }
      }
    }
  }
}

// One bfloat16 row against 4-bit weights with more groups per row than the
// decode kernel converts at once (64) and a count not a multiple of the four
// it keeps in flight, on every ISA: one rounding of the output.
TEST(Quantized, QuantizedMatmulBfloat16OneRowLongRows) {
  IsaGuard guard;
  mx::random::seed(15);
  const int N = 19;
  for (int g : {64, 128}) {
    for (int K : {128 * 70, 128 * 67}) {
      array w = mx::astype(mx::random::normal({N, K}), mx::bfloat16);
      auto q = mx::quantize(w, g, 4);
      array wd = mx::dequantize(q[0], q[1], q[2], g, 4, "affine", mx::float32);
      array x = mx::astype(mx::random::normal({1, K}), mx::bfloat16);
      array want = mx::matmul(mx::astype(x, mx::float32), mx::transpose(wd));
      for (cpu::Isa isa : isas()) {
        cpu::set_isa(isa);
        SCOPED_TRACE("group " + std::to_string(g) + " K " + std::to_string(K) + " isa " +
                     cpu::isa_name(isa));
        array y = mx::quantized_matmul(x, q[0], q[1], q[2], true, g, 4);
        EXPECT_EQ(y.dtype(), mx::bfloat16);
        expect_close(y, to_vector(want), {1, N}, 0.02, 1.0 / 128);
      }
    }
  }
}

TEST(Quantized, QuantizedMatmulBatchAndDtypes) {
  IsaGuard guard;
  mx::random::seed(12);
  array w = mx::random::normal({3, 40, 128});  // a batch of three matrices
  auto q = mx::quantize(w, 64, 4);
  array wd = mx::dequantize(q[0], q[1], q[2], 64, 4);
  for (cpu::Isa isa : isas()) {
    cpu::set_isa(isa);
    SCOPED_TRACE(cpu::isa_name(isa));
    // Leading dims of x against one 2-D matrix.
    array x = mx::random::normal({2, 3, 128});
    array w0 = mx::take(q[0], 0, 0), s0 = mx::take(q[1], 0, 0), b0 = mx::take(q[2], 0, 0);
    array d0 = mx::take(wd, 0, 0);
    expect_close(mx::quantized_matmul(x, w0, s0, b0), to_vector(mx::matmul(x, mx::transpose(d0))),
                 {2, 3, 40}, 2e-4, 1e-5);
    // A 1-D x.
    array xv = mx::random::normal({128});
    expect_close(mx::quantized_matmul(xv, w0, s0, b0), to_vector(mx::matmul(xv, mx::transpose(d0))),
                 {40}, 2e-4, 1e-5);
    // Batched weights broadcast against x's batch dims.
    array xb = mx::random::normal({2, 1, 5, 128});
    expect_close(mx::quantized_matmul(xb, q[0], q[1], q[2]),
                 to_vector(mx::matmul(xb, mx::swapaxes(wd, -1, -2))), {2, 3, 5, 40}, 2e-4, 1e-5);
    // bfloat16 weights and activations: one rounding of the output.
    auto qb = mx::quantize(mx::astype(mx::take(w, 0, 0), mx::bfloat16), 64, 4);
    array db = mx::dequantize(qb[0], qb[1], qb[2], 64, 4, "affine", mx::float32);
    array xh = mx::astype(mx::random::normal({3, 128}), mx::bfloat16);
    array yh = mx::quantized_matmul(xh, qb[0], qb[1], qb[2]);
    EXPECT_EQ(yh.dtype(), mx::bfloat16);
    expect_close(yh, to_vector(mx::matmul(mx::astype(xh, mx::float32), mx::transpose(db))), {3, 40},
                 0.02, 1.0 / 128);
    // float32 x with bfloat16 scales computes in float32.
    array y32 = mx::quantized_matmul(mx::astype(xh, mx::float32), qb[0], qb[1], qb[2]);
    EXPECT_EQ(y32.dtype(), mx::float32);
  }
}

// Strided views (a transposed x, every other row of the packed matrix) and
// float16 weights (float16 scales and biases in the kernels) on every ISA.
TEST(Quantized, ViewsAndFloat16) {
  IsaGuard guard;
  mx::random::seed(16);
  array w = mx::astype(mx::random::normal({40, 128}), mx::float16);
  auto q = mx::quantize(w, 64, 4);
  EXPECT_EQ(q[1].dtype(), mx::float16);
  array rows_w = mx::slice(q[0], {0, 0}, {40, 16}, {2, 1});
  array rows_s = mx::slice(q[1], {0, 0}, {40, 2}, {2, 1});
  array rows_b = mx::slice(q[2], {0, 0}, {40, 2}, {2, 1});
  array wd = mx::dequantize(rows_w, rows_s, rows_b, 64, 4, "affine", mx::float32);
  for (cpu::Isa isa : isas()) {
    cpu::set_isa(isa);
    SCOPED_TRACE(cpu::isa_name(isa));
    for (int M : {1, 4, 12}) {
      array xt = mx::astype(mx::random::normal({128, M}), mx::float16);
      array x = mx::transpose(xt);  // (M, 128), column-major
      array y = mx::quantized_matmul(x, rows_w, rows_s, rows_b, true, 64, 4);
      EXPECT_EQ(y.dtype(), mx::float16);
      expect_close(y, to_vector(mx::matmul(mx::astype(x, mx::float32), mx::transpose(wd))), {M, 20},
                   0.02, 2.0 / 1024);
    }
  }
}

// vmap over x (axis 1 of the batch) against the product of each slice (12 rows
// take the tile path, 3 the matrix-vector kernel: float32 sums in other orders).
TEST(Quantized, VmapOverX) {
  mx::random::seed(15);
  array w = mx::random::normal({6, 64});
  auto q = mx::quantize(w, 32, 4);
  array xs = mx::random::normal({3, 4, 64});  // batch on axis 1
  auto f = [&](const std::vector<array>& in) {
    return std::vector<array>{mx::quantized_matmul(in[0], q[0], q[1], q[2], true, 32, 4)};
  };
  array got = mx::vmap(f, {1}, {0})({xs})[0];
  ASSERT_EQ(got.shape(), (Shape{4, 3, 6}));
  for (int b = 0; b < 4; ++b) {
    array slice = mx::take(xs, b, 1);
    expect_close(mx::take(got, b, 0),
                 to_vector(mx::quantized_matmul(slice, q[0], q[1], q[2], true, 32, 4)), {3, 6},
                 2e-4, 1e-5);
  }
  auto g = [&](const std::vector<array>& in) {
    return std::vector<array>{mx::quantized_matmul(xs, q[0], in[0], q[2], true, 32, 4)};
  };
  EXPECT_THROW(mx::vmap(g, {0}, {0})({mx::stack({q[1], q[1]})}), std::invalid_argument);
}

// gather_qmm against quantized_matmul of the chosen entries one at a time
// (mixture-of-experts: each token's row against its experts' matrices).
TEST(Quantized, GatherQmmPicksEntries) {
  mx::random::seed(17);
  array w = mx::random::normal({4, 24, 64});  // 4 experts
  auto q = mx::quantize(w, 32, 4);
  array x = mx::random::normal({3, 1, 64});  // 3 tokens
  array lhs = array({0, 1, 2, 2}, mx::int32), rhs = array({3, 0, 1, 3}, mx::int32);
  array y = mx::gather_qmm(x, q[0], q[1], q[2], lhs, rhs, true, 32, 4);
  ASSERT_EQ(y.shape(), (Shape{4, 1, 24}));
  std::vector<int> li = {0, 1, 2, 2}, ri = {3, 0, 1, 3};
  for (int i = 0; i < 4; ++i) {
    array want =
        mx::quantized_matmul(mx::take(x, li[i], 0), mx::take(q[0], ri[i], 0),
                             mx::take(q[1], ri[i], 0), mx::take(q[2], ri[i], 0), true, 32, 4);
    expect_close(mx::take(y, i, 0), to_vector(want), {1, 24}, 1e-6, 1e-6);
  }
  // Without lhs_indices, every x batch entry goes with the matching index.
  array y2 =
      mx::gather_qmm(x, q[0], q[1], q[2], std::nullopt, array({1, 1, 0}, mx::int32), true, 32, 4);
  ASSERT_EQ(y2.shape(), (Shape{3, 1, 24}));
  expect_close(
      mx::take(y2, 2, 0),
      to_vector(mx::quantized_matmul(mx::take(x, 2, 0), mx::take(q[0], 0, 0), mx::take(q[1], 0, 0),
                                     mx::take(q[2], 0, 0), true, 32, 4)),
      {1, 24}, 1e-6, 1e-6);
  EXPECT_THROW(mx::gather_qmm(x, q[0], q[1], q[2], array({0.5f}), rhs, true, 32, 4),
               std::invalid_argument);
}

TEST(Quantized, BadInputsNameTheShapes) {
  array w = mx::zeros({4, 96});
  auto expect_msg = [](auto f, const std::string& part) {
    try {
      f();
      ADD_FAILURE() << "no exception, expected one mentioning " << part;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_msg([&] { mx::quantize(w, 64, 4); }, "(4, 96)");
  expect_msg([&] { mx::quantize(w, 32, 7); }, "got 7");
  expect_msg([&] { mx::quantize(w, 16, 4); }, "group sizes 32, 64 and 128");
  expect_msg([&] { mx::quantize(mx::zeros({96}), 32, 4); }, "(96,)");
  expect_msg([&] { mx::quantize(mx::zeros({4, 96}, mx::int32), 32, 4); }, "int32");
  expect_msg([&] { mx::quantize(w, 32, 4, "int4"); }, "int4");
  expect_msg([&] { mx::quantize(w, 64, 4, "mxfp4"); }, "group_size 32 and bits 4");
  auto q = mx::quantize(w, 32, 4);
  expect_msg([&] { mx::dequantize(q[0], q[1], std::nullopt, 32, 4); }, "needs biases");
  expect_msg([&] { mx::dequantize(q[0], mx::zeros({4, 2}), q[2], 32, 4); }, "(4, 2)");
  expect_msg([&] { mx::dequantize(q[0], q[1], q[2], 64, 4); }, "(4, 12)");
  expect_msg([&] { mx::dequantize(mx::astype(q[0], mx::int32), q[1], q[2], 32, 4); }, "int32");
  expect_msg(
      [&] {
        mx::quantized_matmul(mx::zeros({2, 64}), q[0], q[1], q[2], true, 32, 4);
      },
      "(2, 64)");
  expect_msg(
      [&] {
        mx::quantized_matmul(mx::zeros({2, 5}), q[0], q[1], q[2], false, 32, 4);
      },
      "(4, 12)");
  expect_msg(
      [&] {
        mx::quantized_matmul(mx::zeros({2, 96}, mx::int32), q[0], q[1], q[2], true, 32, 4);
      },
      "int32");
}

// d/dx, d/dscales and d/dbiases of sum(quantized_matmul(...) * c) against
// float64 central differences; the packed codes have no gradient.
TEST(Quantized, GradientsMatchFiniteDifferences) {
  mx::random::seed(13);
  const int M = 3, N = 5, K = 64, g = 32;
  array w = mx::random::normal({N, K});
  auto q = mx::quantize(w, g, 4);
  array s64 = mx::astype(q[1], mx::float64), b64 = mx::astype(q[2], mx::float64);
  for (bool transpose : {true, false}) {
    SCOPED_TRACE(transpose ? "transposed" : "not transposed");
    int in = transpose ? K : N, out = transpose ? N : K;
    array x = mx::astype(mx::random::normal({M, in}), mx::float64);
    array c = mx::astype(mx::random::normal({M, out}), mx::float64);
    auto f = [&](const std::vector<array>& a) {
      return mx::sum(
          mx::multiply(mx::quantized_matmul(a[0], q[0], a[1], a[2], transpose, g, 4), c));
    };
    auto grads = mx::grad(f, std::vector<int>{0, 1, 2})({x, s64, b64});
    std::vector<array> args{x, s64, b64};
    for (int a = 0; a < 3; ++a) {
      SCOPED_TRACE("argument " + std::to_string(a));
      auto base = to_vector(args[a]);
      std::vector<double> fd(base.size());
      const double eps = 1e-6;
      for (size_t i = 0; i < base.size(); ++i) {
        auto shifted = [&](double d) {
          auto v = base;
          v[i] += d;
          std::vector<array> p = args;
          p[a] = array(v, args[a].shape(), mx::float64);
          return f(p).item<double>();
        };
        fd[i] = (shifted(eps) - shifted(-eps)) / (2 * eps);
      }
      expect_close(grads[a], fd, args[a].shape(), 1e-6, 1e-6);
    }
    EXPECT_THROW(mx::grad([&](const array& wq) {
                   return mx::sum(mx::quantized_matmul(x, wq, s64, b64, transpose, g, 4));
                 })(q[0]),
                 std::invalid_argument);
  }
}

}  // namespace
