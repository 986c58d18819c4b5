// fast::grouped_linear against dot products computed here in double from the
// same inputs, on every CPU ISA (forced through mx::cpu::set_isa), every float
// dtype, matrices starting at every misalignment within a cache line, and the
// fallbacks (several rows, float64); its gradients are checked against finite
// differences in test_grad_checks.cpp ("grouped_linear").
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx.h"
#include "mlxcpp/mx/backend/cpu/isa.h"
#include "mlxcpp/mx/fast.h"

namespace {

namespace cpu = mx::cpu;

struct IsaGuard {
  cpu::Isa saved = cpu::isa();
  ~IsaGuard() { cpu::set_isa(saved); }
};

std::vector<cpu::Isa> isas() {
  std::vector<cpu::Isa> out;
  for (cpu::Isa i : {cpu::Isa::none, cpu::Isa::avx2, cpu::Isa::avx512}) {
    if (cpu::isa_supported(i)) out.push_back(i);
  }
  return out;
}

// Values that are exact in every float dtype: multiples of 1/8 in [-2, 2).
std::vector<float> exact_values(size_t n, unsigned seed) {
  std::vector<float> v(n);
  unsigned s = seed * 2654435761u + 12345u;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<float>(static_cast<int>((s >> 16) % 32) - 16) / 8.0f;
  }
  return v;
}

// x (1, 1, K) against matrices (N_i, K) that start `offset` elements into a
// flat buffer, so that their rows sit at any alignment.
void check_case(mx::Dtype dt, int K, const std::vector<int>& Ns, int offset, double tol,
                const std::string& what) {
  auto xv = exact_values(static_cast<size_t>(K), 1);
  auto x = mx::astype(mx::array(xv, {1, 1, K}), dt);
  std::vector<mx::array> ws;
  std::vector<std::vector<float>> wv;
  for (size_t i = 0; i < Ns.size(); ++i) {
    const int n = Ns[i] * K;
    auto flat = exact_values(static_cast<size_t>(n + offset), static_cast<unsigned>(7 + i));
    wv.emplace_back(flat.begin() + offset, flat.end());
    auto buf = mx::astype(mx::array(flat, {n + offset}), dt);
    ws.push_back(mx::reshape(mx::slice(buf, {offset}, {n + offset}), {Ns[i], K}));
  }
  auto ys = mx::fast::grouped_linear(x, ws);
  ASSERT_EQ(ys.size(), Ns.size());
  for (size_t i = 0; i < Ns.size(); ++i) {
    ASSERT_EQ(ys[i].shape(), (mx::Shape{1, 1, Ns[i]})) << what;
    std::vector<double> ref(static_cast<size_t>(Ns[i]));
    for (int r = 0; r < Ns[i]; ++r) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += double(xv[k]) * wv[i][static_cast<size_t>(r) * K + k];
      ref[r] = s;
    }
    SCOPED_TRACE(what + " matrix " + std::to_string(i));
    mxtest::expect_close(mx::astype(ys[i], mx::float64), ref, {1, 1, Ns[i]}, tol, tol);
  }
}

TEST(FastGroupedLinear, MatchesDotProductsOnEveryIsaDtypeAndAlignment) {
  IsaGuard guard;
  for (cpu::Isa isa : isas()) {
    cpu::set_isa(isa);
    for (mx::Dtype dt : {mx::float32, mx::bfloat16, mx::float16}) {
      // Sums of products of multiples of 1/8 are exact in float32; the result
      // is rounded once to the output dtype.
      const double tol = dt == mx::float32 ? 1e-6 : (dt == mx::float16 ? 1e-3 : 8e-3);
      for (int K : {1, 7, 64, 200, 640}) {
        for (int offset : {0, 1, 5, 16, 31}) {
          check_case(dt, K, {3, 65, 1}, offset, tol,
                     std::string(cpu::isa_name(isa)) + " " + mx::dtype_name(dt) +
                         " K=" + std::to_string(K) + " offset=" + std::to_string(offset));
        }
      }
    }
  }
}

TEST(FastGroupedLinear, ManyRowsAcrossChunksAndMatrices) {
  // Enough rows that the pool splits the pass, with chunks straddling matrices.
  check_case(mx::bfloat16, 640, {1024, 256, 256, 2048}, 3, 8e-3, "layer shapes");
}

TEST(FastGroupedLinear, FallbacksMatchMatmul) {
  auto x = mx::reshape(mx::astype(mx::arange(12), mx::float64), {2, 2, 3});
  auto w1 = mx::reshape(mx::astype(mx::arange(6), mx::float64), {2, 3});
  auto w2 = mx::ones({1, 3}, mx::float64);
  auto ys = mx::fast::grouped_linear(x, {w1, w2});
  // x rows (0,1,2) (3,4,5) (6,7,8) (9,10,11) against w1 rows (0,1,2) (3,4,5).
  mxtest::expect_close(ys[0], {5, 14, 14, 50, 23, 86, 32, 122}, {2, 2, 2}, 1e-12);
  mxtest::expect_close(ys[1], {3, 12, 21, 30}, {2, 2, 1}, 1e-12);
  // One row of float64 takes the primitive's portable loop.
  auto y1 = mx::fast::grouped_linear(mx::slice(x, {0, 0, 0}, {1, 1, 3}), {w1, w2});
  mxtest::expect_close(y1[0], {5, 14}, {1, 1, 2}, 1e-12);
  mxtest::expect_close(y1[1], {3}, {1, 1, 1}, 1e-12);
}

TEST(FastGroupedLinear, BadInputNamesTheShapes) {
  auto x = mx::ones({1, 4});
  try {
    mx::fast::grouped_linear(x, {mx::ones({3, 4}), mx::ones({2, 5})});
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("weight 1 has shape (2, 5)"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(mx::fast::grouped_linear(x, {}), std::invalid_argument);
  EXPECT_THROW(mx::fast::grouped_linear(mx::ones({1, 4}, mx::int32), {mx::ones({2, 4}, mx::int32)}),
               std::invalid_argument);
}

}  // namespace
