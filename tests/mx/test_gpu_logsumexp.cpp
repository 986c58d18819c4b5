// The CUDA LogSumExp kernel against the CPU kernel (itself tested against
// NumPy in test_logsumexp.cpp) on the same inputs: row lengths around the
// 16-byte vector width and the chunking threshold, every float dtype, rows at
// odd offsets and strides, few long rows (split over many blocks) and many;
// and inside a captured CUDA graph, replayed with its input shifted each time
// (logsumexp(x + c) = logsumexp(x) + c). Skips where no GPU exists.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/graph.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/mx/transforms.h"

namespace {

using mx::array;

const mx::Device kGpu(mx::Device::gpu);
const mx::Device kCpu(mx::Device::cpu);

class GpuLogSumExp : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  }
};

array rand(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed, float lo = -8, float hi = 8) {
  array x = mx::random::uniform(lo, hi, shape, mx::float32, mx::random::key(seed), kCpu);
  return mx::astype(x, dtype, kCpu);
}

double tol(mx::Dtype d) {
  if (d == mx::float64) return 1e-12;
  if (d == mx::float32) return 2e-5;
  if (d == mx::float16) return 2e-3;
  return 1e-2;
}

void expect_same(const array& x, int axis, bool keepdims, const std::string& what) {
  SCOPED_TRACE(what);
  array want = mx::logsumexp(x, axis, keepdims, kCpu);
  array got = mx::logsumexp(x, axis, keepdims, kGpu);
  mx::eval({want, got});
  ASSERT_EQ(got.dtype(), want.dtype());
  mxtest::expect_close(got, mxtest::to_vector(want), want.shape(), tol(x.dtype()), tol(x.dtype()));
}

TEST_F(GpuLogSumExp, MatchesTheCpu) {
  uint64_t seed = 1;
  for (mx::Dtype dt : {mx::float32, mx::bfloat16, mx::float16, mx::float64}) {
    for (int n : {1, 3, 7, 8, 9, 31, 1000, 4095, 4097, 20011, 262208}) {
      for (int rows : {1, 3, 300}) {
        if (static_cast<int64_t>(rows) * n > 8'000'000) continue;
        const std::string what =
            mx::dtype_name(dt) + " " + std::to_string(rows) + "x" + std::to_string(n);
        array x = rand({rows, n}, dt, seed++);
        expect_same(x, -1, rows == 3, what);
        // Rows starting 1 element into a padded array (row stride n + 3): no row is
        // 16-byte aligned, so each chunk has a scalar head and tail.
        array padded =
            mx::concatenate({rand({rows, 1}, dt, seed), x, rand({rows, 2}, dt, seed + 1)}, 1, kCpu);
        expect_same(mx::slice(padded, {0, 1}, {rows, n + 1}, kCpu), 1, false,
                    what + " offset rows");
        // The last axis strided: made contiguous on the device first.
        if (n > 1 && rows > 1 && n * rows <= 1'000'000) {
          array t = mx::transpose(mx::copy(mx::transpose(x, kCpu), kCpu), kCpu);
          expect_same(t, 1, false, what + " transposed");
        }
      }
    }
  }
}

TEST_F(GpuLogSumExp, NonFiniteRowsOfAVocabulary) {
  const int n = 262208;
  // Row 0 holds a NaN, row 1 a +inf, row 2 is all -inf, row 3 has one finite value.
  array x = rand({4, n}, mx::float32, 7);
  array col = mx::arange(n, kCpu);
  auto put = [&](int row, array mask, float value) {
    array rows = mx::reshape(mx::equal(mx::arange(4, kCpu), array(row), kCpu), {4, 1}, kCpu);
    x = mx::where(mx::logical_and(rows, mask, kCpu), array(value), x, kCpu);
  };
  const float inf = std::numeric_limits<float>::infinity();
  put(0, mx::equal(col, array(n - 5), kCpu), std::nanf(""));
  put(1, mx::equal(col, array(1234), kCpu), inf);
  put(2, mx::greater_equal(col, array(0), kCpu), -inf);
  put(3, mx::not_equal(col, array(99999), kCpu), -inf);
  for (mx::Dtype dt : {mx::float32, mx::bfloat16}) {
    array xd = mx::astype(x, dt, kCpu);
    expect_same(xd, -1, false, "rows " + mx::dtype_name(dt));
    for (int r = 0; r < 4; ++r) {
      expect_same(mx::slice(xd, {r, 0}, {r + 1, n}, kCpu), -1, true,
                  "row " + std::to_string(r) + " " + mx::dtype_name(dt));
    }
  }
}

// A decode step's log-probabilities recorded once and replayed; the input is
// fed back shifted by one, so replay k gives logsumexp(x) + k and the same
// log-probabilities.
TEST_F(GpuLogSumExp, ReplaysInACapturedGraph) {
  if (!mx::CapturedGraph::is_available()) GTEST_SKIP() << "no CUDA graphs here";
  for (int rows : {1, 64}) {
    SCOPED_TRACE(rows);
    const int n = 262208;
    array x0 = rand({rows, n}, mx::float32, 11 + rows, -4, 4);
    auto step = [](const std::vector<array>& in) -> std::vector<array> {
      array lse = mx::logsumexp(in[0], -1, true, kGpu);
      return {mx::add(in[0], array(1.0f), kGpu), lse, mx::subtract(in[0], lse, kGpu)};
    };
    mx::CapturedGraph g({x0}, step, {{0, 0}}, kGpu);
    array lse0 = mx::logsumexp(x0, -1, true, kCpu);
    array logp0 = mx::subtract(x0, lse0, kCpu);
    auto want_lse = mxtest::to_vector(lse0);
    auto want_logp = mxtest::to_vector(logp0);
    for (int k = 0; k < 3; ++k) {
      auto r = g.replay({1, 2});
      std::vector<double> shifted = want_lse;
      for (auto& v : shifted) v += k;
      mxtest::expect_close(r[0], shifted, {rows, 1}, 1e-4, 1e-5);
      // x + k rounds to float32, so the log-probabilities move by about an ulp of x + k.
      mxtest::expect_close(r[1], want_logp, {rows, n}, 2e-5, 1e-5);
    }
  }
}

}  // namespace
