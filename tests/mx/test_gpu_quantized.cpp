// The CUDA kernels of quantize, dequantize and quantized_matmul against the
// NumPy implementation of formats.md section 2 (tests/data/quantized/
// quantize_refs.json, from tools/reference/quantize_refs.py) and against the
// CPU kernels on the same inputs: quantize and dequantize bit for bit, the
// products within float32 / bfloat16 / float16 rounding, over every mode, bit
// width and group size, both transposes, the matrix-vector kernel's row counts
// (1, 3, and blocks of 8 rows: 17, 32) and the GEMM's (33, 300), batches,
// broadcast weights, strided views and gather_qmm. Every test skips where no
// GPU exists (ctest label `gpu`).
#include <nlohmann/json.hpp>

#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/random.h"

using mx::array;
using mxtest::expect_close;
using mxtest::to_vector;

namespace {

const mx::Device kGpu(mx::Device::gpu);
const mx::Device kCpu(mx::Device::cpu);

class GpuQuantized : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  }
};

const nlohmann::json& refs() {
  static nlohmann::json j = [] {
    std::ifstream f(std::string(MLXCPP_TEST_DATA) + "/quantized/quantize_refs.json");
    if (!f) throw std::runtime_error("cannot open quantized/quantize_refs.json");
    return nlohmann::json::parse(f);
  }();
  return j;
}

array floats(const nlohmann::json& v, mx::Shape shape, mx::Dtype dtype) {
  return mx::astype(array(v.get<std::vector<double>>(), std::move(shape), mx::float64), dtype,
                    kCpu);
}

std::vector<double> as_floats(const nlohmann::json& v) {
  std::vector<double> out;
  for (double d : v.get<std::vector<double>>()) out.push_back(static_cast<float>(d));
  return out;
}

array normal(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed) {
  array x = mx::random::normal(shape, mx::float32, mx::random::key(seed), kCpu);
  return mx::astype(x, dtype, kCpu);
}

// Expects identical values (and dtypes and shapes) from both devices.
void expect_equal(const array& got, const array& want) {
  ASSERT_EQ(got.dtype(), want.dtype());
  expect_close(got, to_vector(want), want.shape(), 0, 0);
}

struct Params {
  std::string mode;
  int bits, g;
};

std::vector<Params> all_params() {
  std::vector<Params> p;
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    for (int g : {32, 64, 128}) p.push_back({"affine", bits, g});
  }
  p.push_back({"mxfp4", 4, 32});
  p.push_back({"mxfp8", 8, 32});
  p.push_back({"nvfp4", 4, 16});
  return p;
}

std::string name(const Params& p) {
  return p.mode + " bits " + std::to_string(p.bits) + " group " + std::to_string(p.g);
}

// Tolerances of one product computed by two kernels in x's dtype: float32
// sums in other orders, or one rounding of the output each (plus the
// dequantized weights rounded to x's type in one of the tile paths).
double atol_of(mx::Dtype d, int K) {
  double scale = std::sqrt(static_cast<double>(K) / 256.0);
  if (d == mx::bfloat16) return 0.05 * scale;
  if (d == mx::float16) return 0.01 * scale;
  return 2e-4 * scale;
}
double rtol_of(mx::Dtype d) {
  if (d == mx::bfloat16) return 1.0 / 64;
  if (d == mx::float16) return 1.0 / 256;
  return 1e-5;
}

}  // namespace

// The NumPy reference, on the GPU: the packed words, scales and biases bit
// for bit, the dequantized values exactly, the products as on the CPU.
TEST_F(GpuQuantized, MatchesNumpyReference) {
  for (const auto& c : refs()["cases"]) {
    const std::string mode = c["mode"];
    const int bits = c["bits"], g = c["group_size"], rows = c["shape"][0], cols = c["shape"][1];
    const mx::Dtype dtype = mx::dtype_from_name(c["dtype"]);
    SCOPED_TRACE(mode + " bits " + std::to_string(bits) + " group " + std::to_string(g) + " " +
                 dtype_name(dtype));
    array w = floats(c["w"], {rows, cols}, dtype);
    array wq(c["wq"].get<std::vector<uint32_t>>(), {rows, cols * bits / 32}, mx::uint32);
    array scales(0.0f);
    std::optional<array> biases;
    if (mode == "affine") {
      scales = floats(c["scales"], {rows, cols / g}, dtype);
      biases = floats(c["biases"], {rows, cols / g}, dtype);
    } else {
      scales = array(c["scales"].get<std::vector<uint8_t>>(), {rows, cols / g}, mx::uint8);
    }
    auto q = mx::quantize(w, g, bits, mode, kGpu);
    expect_close(q[0], to_vector(wq), wq.shape(), 0, 0);
    expect_close(q[1], to_vector(scales), scales.shape(), 0, 0);
    if (biases) expect_close(q[2], to_vector(*biases), biases->shape(), 0, 0);
    array d = mx::dequantize(wq, scales, biases, g, bits, mode, std::nullopt, kGpu);
    EXPECT_EQ(d.dtype(), mode == "affine" ? dtype : mx::bfloat16);
    expect_close(d, as_floats(c["dequantized"]), {rows, cols}, 0, 0);
    array d32 = mx::dequantize(wq, scales, biases, g, bits, mode, mx::float32, kGpu);
    const double tol = dtype == mx::bfloat16 || mode != "affine" ? 1.0 / 128 : 0;
    expect_close(d32, as_floats(c["dequantized"]), {rows, cols}, 0, tol);
    const int m = c["m"];
    const mx::Dtype xd = mode == "affine" ? dtype : mx::float32;
    array xt = floats(c["x_t"], {m, cols}, xd);
    array xn = floats(c["x_n"], {m, rows}, xd);
    array yt = mx::quantized_matmul(xt, wq, scales, biases, true, g, bits, mode, kGpu);
    array yn = mx::quantized_matmul(xn, wq, scales, biases, false, g, bits, mode, kGpu);
    const double atol = xd == mx::bfloat16 ? 0.05 : 2e-4,
                 rtol = xd == mx::bfloat16 ? 1.0 / 128 : 1e-5;
    expect_close(yt, c["out_t"].get<std::vector<double>>(), {m, rows}, atol, rtol);
    expect_close(yn, c["out_n"].get<std::vector<double>>(), {m, cols}, atol, rtol);
  }
}

// quantize and dequantize give the CPU's bits for every mode and input dtype
// (scales of the inputs' dtype, and the dequantized values in every float type).
TEST_F(GpuQuantized, QuantizeAndDequantizeMatchCpuBitForBit) {
  uint64_t seed = 100;
  for (const Params& p : all_params()) {
    for (mx::Dtype dt : {mx::float32, mx::bfloat16, mx::float16}) {
      SCOPED_TRACE(name(p) + " " + dtype_name(dt));
      // Spread magnitudes so that the fp scales vary from group to group.
      array base = normal({24, 512}, dt, seed++);
      array spread = mx::astype(mx::exp(normal({24, 1}, mx::float32, seed++), kCpu), dt, kCpu);
      array w = mx::multiply(base, spread, kCpu);
      auto qc = mx::quantize(w, p.g, p.bits, p.mode, kCpu);
      auto qg = mx::quantize(w, p.g, p.bits, p.mode, kGpu);
      ASSERT_EQ(qc.size(), qg.size());
      for (size_t i = 0; i < qc.size(); ++i) expect_equal(qg[i], qc[i]);
      std::optional<array> b;
      if (p.mode == "affine") b = qc[2];
      for (mx::Dtype od : {mx::float32, mx::bfloat16, mx::float16}) {
        SCOPED_TRACE(std::string("out ") + dtype_name(od));
        expect_equal(mx::dequantize(qc[0], qc[1], b, p.g, p.bits, p.mode, od, kGpu),
                     mx::dequantize(qc[0], qc[1], b, p.g, p.bits, p.mode, od, kCpu));
      }
    }
  }
  // float64 scales and output (the derivative checks' case).
  auto q = mx::quantize(normal({8, 256}, mx::float32, 7), 64, 4, "affine", kCpu);
  array s64 = mx::astype(q[1], mx::float64, kCpu), b64 = mx::astype(q[2], mx::float64, kCpu);
  expect_equal(mx::dequantize(q[0], s64, b64, 64, 4, "affine", std::nullopt, kGpu),
               mx::dequantize(q[0], s64, b64, 64, 4, "affine", std::nullopt, kCpu));
}

// Every mode, bit width and group size; both transposes; the matrix-vector
// kernel's row counts and the GEMM's; x in float32, bfloat16 and float16.
TEST_F(GpuQuantized, QuantizedMatmulMatchesCpu) {
  uint64_t seed = 300;
  const int K = 256, N = 96;
  for (const Params& p : all_params()) {
    for (mx::Dtype dt : {mx::float32, mx::bfloat16, mx::float16}) {
      array w = normal({N, K}, dt, seed++);
      auto q = mx::quantize(w, p.g, p.bits, p.mode, kCpu);
      std::optional<array> b;
      if (p.mode == "affine") b = q[2];
      // 17 and 32: blocks of the matrix-vector kernel (affine); 33: the GEMM.
      for (int M : {1, 3, 17, 32, 33, 300}) {
        SCOPED_TRACE(name(p) + " " + dtype_name(dt) + " M " + std::to_string(M));
        array xt = normal({M, K}, dt, seed++);
        array want = mx::quantized_matmul(xt, q[0], q[1], b, true, p.g, p.bits, p.mode, kCpu);
        array got = mx::quantized_matmul(xt, q[0], q[1], b, true, p.g, p.bits, p.mode, kGpu);
        ASSERT_EQ(got.dtype(), want.dtype());
        expect_close(got, to_vector(want), want.shape(), atol_of(dt, K), rtol_of(dt));
        array xn = normal({M, N}, dt, seed++);
        want = mx::quantized_matmul(xn, q[0], q[1], b, false, p.g, p.bits, p.mode, kCpu);
        got = mx::quantized_matmul(xn, q[0], q[1], b, false, p.g, p.bits, p.mode, kGpu);
        expect_close(got, to_vector(want), want.shape(), atol_of(dt, N), rtol_of(dt));
      }
    }
  }
}

// Rows long enough that several warps share one, odd N, up to 8 rows of x,
// every group size: rows whose chunks of four 64-byte spans end early (K 640
// and 1152) and scale rows whose length is no multiple of a vector load
// (K 1152 at groups of 32 and 128: 36 and 9 scales).
TEST_F(GpuQuantized, LongRowsAndOddShapes) {
  uint64_t seed = 500;
  for (int K : {640, 1152, 2560, 10240}) {
    for (int bits : {4, 8}) {
      for (int g : {32, 64, 128}) {
        SCOPED_TRACE("K " + std::to_string(K) + " bits " + std::to_string(bits) + " group " +
                     std::to_string(g));
        array w = normal({67, K}, mx::bfloat16, seed++);
        auto q = mx::quantize(w, g, bits, "affine", kCpu);
        for (int M : {1, 2, 3, 5, 8}) {
          array x = normal({M, K}, mx::bfloat16, seed++);
          array want = mx::quantized_matmul(x, q[0], q[1], q[2], true, g, bits, "affine", kCpu);
          array got = mx::quantized_matmul(x, q[0], q[1], q[2], true, g, bits, "affine", kGpu);
          expect_close(got, to_vector(want), want.shape(), atol_of(mx::bfloat16, K),
                       rtol_of(mx::bfloat16));
        }
      }
    }
  }
}

// Batched and broadcast weights, leading dims of x, a 1-D x, strided views
// and float32 x against bfloat16 scales.
TEST_F(GpuQuantized, BatchesBroadcastsAndViews) {
  array w = normal({3, 40, 128}, mx::float32, 12);
  auto q = mx::quantize(w, 64, 4, "affine", kCpu);
  auto both = [&](const std::function<array(mx::StreamOrDevice)>& f, double atol, double rtol) {
    array want = f(kCpu);
    array got = f(kGpu);
    ASSERT_EQ(got.dtype(), want.dtype());
    expect_close(got, to_vector(want), want.shape(), atol, rtol);
  };
  for (int M : {1, 5, 20, 70}) {
    SCOPED_TRACE("M " + std::to_string(M));
    array xb = normal({2, 1, M, 128}, mx::float32, 13 + M);
    both(
        [&](auto s) {
          return mx::quantized_matmul(xb, q[0], q[1], q[2], true, 64, 4, "affine", s);
        },
        2e-4, 1e-5);
    array xn = normal({2, 1, M, 40}, mx::float32, 14 + M);
    both(
        [&](auto s) {
          return mx::quantized_matmul(xn, q[0], q[1], q[2], false, 64, 4, "affine", s);
        },
        2e-4, 1e-5);
  }
  array w0 = mx::take(q[0], 1, 0, kCpu), s0 = mx::take(q[1], 1, 0, kCpu),
        b0 = mx::take(q[2], 1, 0, kCpu);
  array x = normal({2, 3, 128}, mx::float32, 20);
  both([&](auto s) { return mx::quantized_matmul(x, w0, s0, b0, true, 64, 4, "affine", s); }, 2e-4,
       1e-5);
  array xv = normal({128}, mx::float32, 21);
  both([&](auto s) { return mx::quantized_matmul(xv, w0, s0, b0, true, 64, 4, "affine", s); }, 2e-4,
       1e-5);
  // Every other row of the packed matrix, and a column-major x.
  array rows_w = mx::slice(w0, {0, 0}, {40, 16}, {2, 1}, kCpu);
  array rows_s = mx::slice(s0, {0, 0}, {40, 2}, {2, 1}, kCpu);
  array rows_b = mx::slice(b0, {0, 0}, {40, 2}, {2, 1}, kCpu);
  for (int M : {1, 12}) {
    array xc = mx::transpose(normal({128, M}, mx::float16, 22 + M), kCpu);
    both(
        [&](auto s) {
          return mx::quantized_matmul(xc, rows_w, rows_s, rows_b, true, 64, 4, "affine", s);
        },
        0.01, 1.0 / 256);
  }
  // float32 x with bfloat16 scales computes in float32.
  auto qb = mx::quantize(normal({40, 128}, mx::bfloat16, 23), 64, 4, "affine", kCpu);
  array x32 = normal({3, 128}, mx::float32, 24);
  both(
      [&](auto s) {
        return mx::quantized_matmul(x32, qb[0], qb[1], qb[2], true, 64, 4, "affine", s);
      },
      2e-4, 1e-5);
  // float64 x (the derivative checks') takes the GEMM in float64.
  array x64 = normal({3, 128}, mx::float64, 25);
  array s64 = mx::astype(s0, mx::float64, kCpu), b64 = mx::astype(b0, mx::float64, kCpu);
  both([&](auto s) { return mx::quantized_matmul(x64, w0, s64, b64, true, 64, 4, "affine", s); },
       1e-12, 1e-12);
  array xn64 = normal({3, 40}, mx::float64, 26);
  both([&](auto s) { return mx::quantized_matmul(xn64, w0, s64, b64, false, 64, 4, "affine", s); },
       1e-12, 1e-12);
}

// gather_qmm (mixture of experts) on the GPU against the CPU, decode and prefill sizes.
TEST_F(GpuQuantized, GatherQmmMatchesCpu) {
  array w = normal({4, 48, 128}, mx::bfloat16, 30);
  for (const Params& p :
       {Params{"affine", 4, 32}, Params{"affine", 8, 64}, Params{"mxfp4", 4, 32}}) {
    SCOPED_TRACE(name(p));
    auto q = mx::quantize(w, p.g, p.bits, p.mode, kCpu);
    std::optional<array> b;
    if (p.mode == "affine") b = q[2];
    for (int M : {1, 20}) {
      array x = normal({3, M, 128}, mx::bfloat16, 31 + M);
      array lhs = array({0, 1, 2, 2}, mx::int32), rhs = array({3, 0, 1, 3}, mx::int32);
      array want =
          mx::gather_qmm(x, q[0], q[1], b, lhs, rhs, true, p.g, p.bits, p.mode, false, kCpu);
      array got =
          mx::gather_qmm(x, q[0], q[1], b, lhs, rhs, true, p.g, p.bits, p.mode, false, kGpu);
      expect_close(got, to_vector(want), want.shape(), atol_of(mx::bfloat16, 128),
                   rtol_of(mx::bfloat16));
    }
  }
}
