// The decode product, one bfloat16 row against 4- and 8-bit affine weights,
// against float64 sums from NumPy (tools/reference/qgemv_decode_refs.py ->
// tests/data/quantized/qgemv_decode_refs.json) on every ISA: K a multiple of
// 128 (4 bits) or 64 (8 bits), which the AVX-512 one-row kernel takes, and
// not, groups of 32, 64 and 128, one and many (odd) output rows, rows of more
// than 32 groups, and matrices large enough to be split across threads; and
// the same rows cut into three matrices of one grouped_quantized_matmul (the
// q/k/v and gate/up of a decode step, one pass over all their rows).
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "common/check.h"
#include "mlxcpp/mx/backend/cpu/isa.h"

namespace {

using mx::array;
namespace cpu = mx::cpu;

const nlohmann::json& refs() {
  static nlohmann::json j = [] {
    std::ifstream f(std::string(MLXCPP_TEST_DATA) + "/quantized/qgemv_decode_refs.json");
    if (!f) throw std::runtime_error("cannot open quantized/qgemv_decode_refs.json");
    return nlohmann::json::parse(f);
  }();
  return j;
}

struct IsaGuard {
  cpu::Isa saved = cpu::isa();
  ~IsaGuard() { cpu::set_isa(saved); }
};

array bf16(const nlohmann::json& v, mx::Shape shape) {
  return mx::astype(array(v.get<std::vector<double>>(), std::move(shape), mx::float64),
                    mx::bfloat16);
}

// One reference case: the packed weights, scales, biases and x row, with the float64 outputs
// and the sums of |x * w| per output that bound the float32 error.
struct Case {
  int bits, K, N, g;
  array wq, scales, biases, x;
  std::vector<double> want, mag;
  // One bfloat16 rounding of the output (half an ulp: 2^-9 relative) plus
  // float32 sums over K terms of at most sum |x * w|.
  double tol(int n) const { return std::abs(want[n]) / 256 + 2e-6 * mag[n]; }
};

// Runs `check` on every reference case under every ISA this CPU has.
template <typename F>
void each_case_and_isa(F check) {
  IsaGuard guard;
  for (cpu::Isa isa : {cpu::Isa::none, cpu::Isa::avx2, cpu::Isa::avx512}) {
    if (!cpu::isa_supported(isa)) continue;
    cpu::set_isa(isa);
    for (const auto& c : refs()["cases"]) {
      const int bits = c["bits"], K = c["K"], N = c["N"], g = c["group_size"];
      SCOPED_TRACE("bits " + std::to_string(bits) + " K " + std::to_string(K) + " N " +
                   std::to_string(N) + " group " + std::to_string(g) + " isa " +
                   cpu::isa_name(isa));
      check(Case{bits, K, N, g,
                 array(c["wq"].get<std::vector<uint32_t>>(), {N, K * bits / 32}, mx::uint32),
                 bf16(c["scales"], {N, K / g}), bf16(c["biases"], {N, K / g}),
                 bf16(c["x"], {1, 1, K}), c["y"].get<std::vector<double>>(),
                 c["abs_sum"].get<std::vector<double>>()});
    }
  }
}

TEST(QuantizedDecode, OneBfloat16RowMatchesFloat64Reference) {
  ASSERT_EQ(refs()["cases"].size(), 24u);
  each_case_and_isa([](const Case& c) {
    array y = mx::quantized_matmul(c.x, c.wq, c.scales, c.biases, true, c.g, c.bits);
    ASSERT_EQ(y.dtype(), mx::bfloat16);
    ASSERT_EQ(y.shape(), (mx::Shape{1, 1, c.N}));
    const auto got = mxtest::to_vector(y);
    for (int n = 0; n < c.N; ++n) EXPECT_NEAR(got[n], c.want[n], c.tol(n)) << "output " << n;
  });
}

// Each case's rows as three matrices (uneven, odd row counts) of one
// grouped product: every output equals its rows of the float64 reference.
TEST(QuantizedDecode, GroupedOneBfloat16RowMatchesFloat64Reference) {
  each_case_and_isa([](const Case& c) {
    if (c.N < 3) return;
    const int words = c.K * c.bits / 32, groups = c.K / c.g;
    const int cut[4] = {0, c.N / 3 + 1, c.N - c.N / 4, c.N};
    std::vector<array> ws, ss, bs;
    for (int p = 0; p < 3; ++p) {
      ws.push_back(mx::slice(c.wq, {cut[p], 0}, {cut[p + 1], words}));
      ss.push_back(mx::slice(c.scales, {cut[p], 0}, {cut[p + 1], groups}));
      bs.push_back(mx::slice(c.biases, {cut[p], 0}, {cut[p + 1], groups}));
    }
    auto ys = mx::grouped_quantized_matmul(c.x, ws, ss, bs, c.g, c.bits);
    ASSERT_EQ(ys.size(), 3u);
    for (int p = 0; p < 3; ++p) {
      ASSERT_EQ(ys[p].dtype(), mx::bfloat16);
      ASSERT_EQ(ys[p].shape(), (mx::Shape{1, 1, cut[p + 1] - cut[p]}));
      const auto got = mxtest::to_vector(ys[p]);
      for (int n = cut[p]; n < cut[p + 1]; ++n) {
        EXPECT_NEAR(got[n - cut[p]], c.want[n], c.tol(n)) << "matrix " << p << " output " << n;
      }
    }
  });
}

}  // namespace
