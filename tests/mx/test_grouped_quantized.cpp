// grouped_quantized_matmul (several affine matrices against one x, the
// quantized q/k/v and gate/up of a decode step) on the default device
// against quantized_matmul of each matrix alone: the same values, the same
// dtypes and shapes, x's gradient the sum of the separate ones, and clear
// errors for matrices that do not share K or scale dtype. quantized_geglu (gate and up with
// the tanh GELU) against fast::gelu_approx_mul of the two products: the same values (it is
// that graph, fused), the same gradients, and errors for anything but two matrices of the same
// rows. residual_norm_quantized_matmul against fast::residual_rms_norm and then the products:
// the same values and gradients.
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/primitive.h"
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

// The fused primitive (few rows) and the composed graph (many rows) against the ops it fuses:
// equal values, since both round gate and up to x's dtype before the activation.
TEST(GroupedQuantized, GegluEqualsGeluOfTheProducts) {
  for (mx::Dtype dt : {mx::bfloat16, mx::float32}) {
    for (int bits : {4, 8}) {
      for (int M : {1, 3, 12}) {
        SCOPED_TRACE(mx::dtype_name(dt) + " bits " + std::to_string(bits) + " M " +
                     std::to_string(M));
        Mats m = make({40, 40}, 256, 64, bits, dt, 50 + bits);
        array x = normal({1, M, 256}, dt, 60 + M);
        array got = mx::quantized_geglu(x, m.w, m.s, m.b, 64, bits);
        auto gu = mx::grouped_quantized_matmul(x, m.w, m.s, m.b, 64, bits);
        array want = mx::fast::gelu_approx_mul(gu[0], gu[1]);
        ASSERT_EQ(got.dtype(), want.dtype());
        ASSERT_EQ(got.shape(), want.shape());
        expect_close(got, to_vector(want), want.shape(), 0.0, 0.0);
      }
    }
  }
}

TEST(GroupedQuantized, GegluGradientsMatchTheComposedGraph) {
  Mats m = make({24, 24}, 128, 32, 4, mx::float32, 70);
  array x = normal({1, 128}, mx::float32, 71);
  array c = normal({1, 24}, mx::float32, 72);
  auto loss = [&](bool fused) {
    return [&, fused](const std::vector<array>& in) {
      array y = fused ? mx::quantized_geglu(in[0], m.w, m.s, m.b, 32, 4) : [&] {
        auto gu = mx::grouped_quantized_matmul(in[0], m.w, m.s, m.b, 32, 4);
        return mx::fast::gelu_approx_mul(gu[0], gu[1]);
      }();
      return std::vector<array>{mx::sum(mx::multiply(y, c))};
    };
  };
  auto g_fused = mx::vjp(loss(true), {x}, {array(1.0f)}).second[0];
  auto g_plain = mx::vjp(loss(false), {x}, {array(1.0f)}).second[0];
  expect_close(g_fused, to_vector(g_plain), x.shape(), 1e-6, 1e-6);
  // Forward-mode: the tangent along a direction v of x.
  array v = normal({1, 128}, mx::float32, 73);
  auto t_fused = mx::jvp(loss(true), {x}, {v}).second[0];
  auto t_plain = mx::jvp(loss(false), {x}, {v}).second[0];
  expect_close(t_fused, to_vector(t_plain), t_plain.shape(), 1e-5, 1e-6);
}

TEST(GroupedQuantized, GegluRejectsOtherThanTwoMatricesOfOneShape) {
  Mats m = make({16, 32, 16}, 256, 64, 4, mx::float32, 80);
  array x = normal({1, 256}, mx::float32, 81);
  try {
    mx::quantized_geglu(x, m.w, m.s, m.b, 64, 4);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("two matrices (gate, up), got 3"), std::string::npos)
        << e.what();
  }
  try {
    mx::quantized_geglu(x, {m.w[0], m.w[1]}, {m.s[0], m.s[1]}, {m.b[0], m.b[1]}, 64, 4);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("must have the same rows"), std::string::npos) << e.what();
  }
}

TEST(GroupedQuantized, ResidualNormThenProductsEqualsTheOpsItFuses) {
  const int K = 256;
  for (mx::Dtype dt : {mx::bfloat16, mx::float32}) {
    for (bool geglu : {false, true}) {
      for (int M : {1, 5}) {
        SCOPED_TRACE(mx::dtype_name(dt) + (geglu ? " geglu" : " three matrices") + " M " +
                     std::to_string(M));
        Mats m = make(geglu ? std::vector<int>{40, 40} : std::vector<int>{48, 16, 16}, K, 64, 4, dt,
                      90 + M);
        array res = normal({1, M, K}, dt, 91), y = normal({1, M, K}, dt, 92);
        array wy = normal({K}, mx::float32, 93), wx = normal({K}, mx::float32, 94);
        auto got =
            mx::residual_norm_quantized_matmul(res, y, wy, wx, 1e-6f, m.w, m.s, m.b, 64, 4, geglu);
        auto [h, x] = mx::fast::residual_rms_norm(res, y, wy, wx, 1e-6f);
        std::vector<array> want{h};
        if (geglu) {
          want.push_back(mx::quantized_geglu(x, m.w, m.s, m.b, 64, 4));
        } else {
          for (auto& p : mx::grouped_quantized_matmul(x, m.w, m.s, m.b, 64, 4)) want.push_back(p);
        }
        ASSERT_EQ(got.size(), want.size());
        // One row: one fused node (its CPU evaluation is what is compared); more: the graph.
        ASSERT_TRUE(got[0].has_primitive());
        EXPECT_EQ(std::string(got[0].primitive().name()) == "ResidualNormQuantizedMatmul", M == 1);
        for (size_t i = 0; i < got.size(); ++i) {
          ASSERT_EQ(got[i].dtype(), want[i].dtype());
          expect_close(got[i], to_vector(want[i]), want[i].shape(), 0.0, 0.0);
        }
      }
    }
  }
}

TEST(GroupedQuantized, ResidualNormThenProductsGradients) {
  const int K = 128;
  Mats m = make({24, 24}, K, 32, 4, mx::float32, 95);
  array res = normal({1, K}, mx::float32, 96), y = normal({1, K}, mx::float32, 97);
  array wy = normal({K}, mx::float32, 98), wx = normal({K}, mx::float32, 99);
  array ch = normal({1, K}, mx::float32, 100), cp = normal({1, 24}, mx::float32, 101);
  auto loss = [&](bool fused) {
    return [&, fused](const std::vector<array>& in) {
      std::vector<array> out;
      if (fused) {
        out = mx::residual_norm_quantized_matmul(in[0], in[1], in[2], in[3], 1e-6f, m.w, m.s, m.b,
                                                 32, 4, true);
      } else {
        auto [h, x] = mx::fast::residual_rms_norm(in[0], in[1], in[2], in[3], 1e-6f);
        out = {h, mx::quantized_geglu(x, m.w, m.s, m.b, 32, 4)};
      }
      return std::vector<array>{
          mx::add(mx::sum(mx::multiply(out[0], ch)), mx::sum(mx::multiply(out[1], cp)))};
    };
  };
  auto g_fused = mx::vjp(loss(true), {res, y, wy, wx}, {array(1.0f)}).second;
  auto g_plain = mx::vjp(loss(false), {res, y, wy, wx}, {array(1.0f)}).second;
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE("input " + std::to_string(i));
    expect_close(g_fused[i], to_vector(g_plain[i]), g_plain[i].shape(), 1e-5, 1e-5);
  }
}
