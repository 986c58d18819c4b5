// The GPU's few-row product kernel (x @ w^T for one or two rows of x): through
// fast::grouped_linear (one row, several matrices) and mx::matmul (1 or 2 rows
// against a transposed row-major weight of many rows, an LM head; other
// few-row products there go to cuBLASLt and are checked the same way), on
// Gemma 3 4B's decode shapes and on odd ones (K not a multiple of the 16-byte
// vector, N = 1, strided and misaligned weight rows, long rows that several
// warps share, more matrices than one launch takes). The reference
// is the plain double-precision dot product of the same input values on the
// host; the results must round from it as float32 accumulation allows. Skips
// where no GPU exists (ctest label `gpu`).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"

using mx::array;

namespace {

const mx::Device kGpu(mx::Device::gpu);
const mx::Device kCpu(mx::Device::cpu);

class GpuGemv : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  }
};

array rand(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed) {
  array x = mx::random::uniform(-1.0f, 1.0f, shape, mx::float32, mx::random::key(seed), kCpu);
  return mx::astype(x, dtype, kCpu);
}

// y[r, n] = sum_k x[r, k] * w[n, k] in double, from the inputs' own values.
std::vector<double> reference(const array& x, const array& w) {
  const int K = w.shape(1);
  const int64_t N = w.shape(0);
  const auto xv = mxtest::to_vector(x);
  const auto wv = mxtest::to_vector(w);
  const int64_t rows = static_cast<int64_t>(xv.size()) / K;
  std::vector<double> y(static_cast<size_t>(rows * N));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += xv[r * K + k] * wv[n * K + k];
      y[r * N + n] = s;
    }
  }
  return y;
}

// The output's rounding (half an ulp of its dtype, relative) plus float32
// accumulation over K terms of magnitude <= 1 (absolute).
void expect_product(const array& got, const array& x, const array& w, const std::string& what) {
  SCOPED_TRACE(what);
  const int K = w.shape(1);
  double rtol = 1e-6, atol = 1e-6 * K;
  if (got.dtype() == mx::bfloat16) rtol = 4e-3;
  if (got.dtype() == mx::float16) rtol = 1e-3;
  if (got.dtype() == mx::float64) atol = 1e-12 * K;
  if (got.dtype() != mx::float32 && got.dtype() != mx::float64) atol += 1e-3;
  mx::Shape shape = x.shape();
  shape.back() = w.shape(0);
  mxtest::expect_close(got, reference(x, w), shape, atol, rtol);
}

std::string name(mx::Dtype d, int rows, int N, int K) {
  return mx::dtype_name(d) + " rows " + std::to_string(rows) + " N " + std::to_string(N) + " K " +
         std::to_string(K);
}

}  // namespace

TEST_F(GpuGemv, Gemma3DecodeShapesThroughGroupedLinear) {
  const mx::Dtype d = mx::bfloat16;
  struct Case {
    std::vector<int> ns;
    int K;
  };
  // q/k/v, o_proj, gate/up, down of Gemma 3 4B.
  for (const Case& c : std::vector<Case>{
           {{2048, 1024, 1024}, 2560}, {{2560}, 2048}, {{10240, 10240}, 2560}, {{2560}, 10240}}) {
    array x = rand({1, 1, c.K}, d, 1);
    std::vector<array> ws;
    for (size_t i = 0; i < c.ns.size(); ++i) ws.push_back(rand({c.ns[i], c.K}, d, 10 + i));
    auto got = mx::fast::grouped_linear(x, ws, kGpu);
    mx::eval(got);
    for (size_t i = 0; i < ws.size(); ++i) {
      expect_product(got[i], x, ws[i], name(d, 1, c.ns[i], c.K));
    }
  }
}

TEST_F(GpuGemv, OneToEightRowsThroughMatmul) {
  for (mx::Dtype d : {mx::float32, mx::float16, mx::bfloat16}) {
    // K: vector-aligned for every dtype, not a multiple of 8 (16-bit rows
    // misaligned), odd, 1; N = 1 and N not a multiple of a block's outputs.
    for (auto [N, K] : std::vector<std::pair<int, int>>{
             {300, 512}, {1, 512}, {33, 100}, {77, 13}, {5, 1}, {1, 4099}}) {
      array w = rand({N, K}, d, 2);
      for (int rows = 1; rows <= 8; ++rows) {
        array x = rand({rows, K}, d, 3 + rows);
        array got = mx::matmul(x, mx::transpose(w), kGpu);
        expect_product(got, x, w, name(d, rows, N, K));
      }
    }
  }
}

TEST_F(GpuGemv, ManyOutputsThroughMatmul) {
  // N >= 16384 with one or two rows is the kernel's (an LM head); three rows
  // and [B, T, K] rows that fold into two are checked too.
  for (mx::Dtype d : {mx::float32, mx::float16, mx::bfloat16}) {
    for (int K : {64, 13, 1, 520}) {
      array w = rand({20000, K}, d, 4);
      for (int rows = 1; rows <= 3; ++rows) {
        array x = rand({rows, K}, d, 5 + rows);
        array got = mx::matmul(x, mx::transpose(w), kGpu);
        expect_product(got, x, w, name(d, rows, 20000, K));
      }
      array xb = rand({2, 1, K}, d, 9);
      expect_product(mx::matmul(xb, mx::transpose(w), kGpu), xb, w,
                     "[2, 1, K] " + name(d, 2, 20000, K));
    }
  }
}

TEST_F(GpuGemv, LongRowsShareTheirWarps) {
  // Few outputs of long rows: up to eight warps per output (split K, summed
  // through shared memory), aligned rows or not.
  for (mx::Dtype d : {mx::bfloat16, mx::float32}) {
    for (int K : {20000, 20001, 4100}) {
      array x = rand({1, K}, d, 7);
      std::vector<array> ws{rand({5, K}, d, 6), rand({1, K}, d, 8)};
      auto got = mx::fast::grouped_linear(x, ws, kGpu);
      for (size_t i = 0; i < ws.size(); ++i) {
        expect_product(got[i], x, ws[i], name(d, 1, ws[i].shape(0), K));
      }
    }
  }
}

TEST_F(GpuGemv, StridedAndMisalignedWeightRows) {
  for (mx::Dtype d : {mx::bfloat16, mx::float16, mx::float32}) {
    // Columns 0..K of a wider matrix: rows 72 elements apart, used in place.
    array big = rand({50, 72}, d, 8);
    array wa = mx::slice(big, {0, 0}, {50, 64});
    // Columns 1..K+1: every row starts one element past a 16-byte boundary.
    array wm = mx::slice(big, {0, 1}, {50, 65});
    for (int rows : {1, 4}) {
      array x = rand({rows, 64}, d, 9);
      expect_product(mx::matmul(x, mx::transpose(wa), kGpu), x, mx::copy(wa, kCpu),
                     "aligned view " + name(d, rows, 50, 64));
      expect_product(mx::matmul(x, mx::transpose(wm), kGpu), x, mx::copy(wm, kCpu),
                     "misaligned view " + name(d, rows, 50, 64));
    }
    array x1 = rand({1, 64}, d, 10);
    auto got = mx::fast::grouped_linear(x1, {wa, wm}, kGpu);
    expect_product(got[0], x1, mx::copy(wa, kCpu), "grouped, aligned view " + mx::dtype_name(d));
    expect_product(got[1], x1, mx::copy(wm, kCpu), "grouped, misaligned view " + mx::dtype_name(d));
  }
}

TEST_F(GpuGemv, ManyMatricesAndEveryFloatDtype) {
  // Nine matrices (more than one launch takes) of mixed sizes, N = 1 among them.
  for (mx::Dtype d : {mx::float32, mx::float16, mx::bfloat16, mx::float64}) {
    const int K = 136;
    array x = rand({1, K}, d, 11);
    std::vector<array> ws;
    for (int i = 0; i < 9; ++i) ws.push_back(rand({i == 4 ? 1 : 17 * (i + 1), K}, d, 20 + i));
    auto got = mx::fast::grouped_linear(x, ws, kGpu);
    ASSERT_EQ(got.size(), ws.size());
    for (size_t i = 0; i < ws.size(); ++i) {
      expect_product(got[i], x, ws[i],
                     name(d, 1, ws[i].shape(0), K) + " matrix " + std::to_string(i));
    }
  }
}

TEST_F(GpuGemv, NonFiniteValuesPropagate) {
  array w = rand({64, 256}, mx::bfloat16, 12);
  array x = mx::astype(mx::concatenate({mx::full({1, 1}, NAN, mx::float32, kCpu),
                                        mx::zeros({1, 255}, mx::float32, kCpu)},
                                       1, kCpu),
                       mx::bfloat16, kCpu);
  array y = mx::matmul(x, mx::transpose(w), kGpu);
  for (double v : mxtest::to_vector(y)) EXPECT_TRUE(std::isnan(v));
}
