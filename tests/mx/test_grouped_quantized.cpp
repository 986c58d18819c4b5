// grouped_quantized_matmul (several affine matrices against one x, the
// quantized q/k/v and gate/up of a decode step) on the default device
// against quantized_matmul of each matrix alone: the same values, the same
// dtypes and shapes, x's gradient the sum of the separate ones, and clear
// errors for matrices that do not share K or scale dtype.
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/mx/transforms.h"

using mx::array;
using mxtest::expect_close;
using mxtest::to_vector;

namespace {

array normal(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed) {
  return mx::astype(mx::random::normal(shape, mx::float32, mx::random::key(seed)), dtype);
}

struct Mats {
  std::vector<array> w, s, b;
};

Mats make(const std::vector<int>& ns, int K, int g, int bits, mx::Dtype dt, uint64_t seed) {
  Mats m;
  for (int n : ns) {
    auto q = mx::quantize(normal({n, K}, dt, seed++), g, bits);
    m.w.push_back(q[0]);
    m.s.push_back(q[1]);
    m.b.push_back(q[2]);
  }
  return m;
}

}  // namespace

TEST(GroupedQuantized, EqualsSeparateProducts) {
  for (int bits : {4, 8}) {
    for (int M : {1, 3, 12}) {
      SCOPED_TRACE("bits " + std::to_string(bits) + " M " + std::to_string(M));
      Mats m = make({48, 16, 32}, 256, 64, bits, mx::float32, 10 + bits);
      array x = normal({1, M, 256}, mx::float32, 20 + M);
      auto got = mx::grouped_quantized_matmul(x, m.w, m.s, m.b, 64, bits);
      ASSERT_EQ(got.size(), 3u);
      for (size_t i = 0; i < 3; ++i) {
        array want = mx::quantized_matmul(x, m.w[i], m.s[i], m.b[i], true, 64, bits);
        ASSERT_EQ(got[i].dtype(), want.dtype());
        expect_close(got[i], to_vector(want), want.shape(), 1e-5, 1e-5);
      }
    }
  }
}

TEST(GroupedQuantized, GradientOfXSumsTheProducts) {
  Mats m = make({24, 40}, 128, 32, 4, mx::float32, 30);
  array x = normal({1, 128}, mx::float32, 31);
  array c0 = normal({1, 24}, mx::float32, 32), c1 = normal({1, 40}, mx::float32, 33);
  auto loss = [&](bool grouped) {
    return [&, grouped](const std::vector<array>& in) {
      std::vector<array> y;
      if (grouped) {
        y = mx::grouped_quantized_matmul(in[0], m.w, m.s, m.b, 32, 4);
      } else {
        for (size_t i = 0; i < 2; ++i) {
          y.push_back(mx::quantized_matmul(in[0], m.w[i], m.s[i], m.b[i], true, 32, 4));
        }
      }
      return std::vector<array>{
          mx::add(mx::sum(mx::multiply(y[0], c0)), mx::sum(mx::multiply(y[1], c1)))};
    };
  };
  auto g_grouped = mx::vjp(loss(true), {x}, {array(1.0f)}).second[0];
  auto g_separate = mx::vjp(loss(false), {x}, {array(1.0f)}).second[0];
  expect_close(g_grouped, to_vector(g_separate), x.shape(), 1e-5, 1e-5);
}

TEST(GroupedQuantized, RejectsMismatchedMatrices) {
  Mats a = make({16}, 256, 64, 4, mx::float32, 40);
  Mats b = make({16}, 128, 64, 4, mx::float32, 41);
  array x = normal({1, 256}, mx::float32, 42);
  try {
    mx::grouped_quantized_matmul(x, {a.w[0], b.w[0]}, {a.s[0], b.s[0]}, {a.b[0], b.b[0]}, 64, 4);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("does not match matrix 0"), std::string::npos) << e.what();
  }
  EXPECT_THROW(mx::grouped_quantized_matmul(x, a.w, a.s, {}, 64, 4), std::invalid_argument);
}
