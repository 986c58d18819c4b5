// The mx::fast ops under the function transforms (vjp, jvp, grad, vmap):
// the transforms must reach the fused primitives' rules and give the float64
// finite-difference derivatives.
#include "mx/fast_test_util.h"

namespace {

using fasttest::numeric_jvp;
using fasttest::numeric_vjp;
using fasttest::pseudo_random;

struct Problem {
  std::string name;
  std::vector<mx::Shape> shapes;
  fasttest::Fn fn;
  mx::Shape out_shape;
};

size_t numel(const mx::Shape& s) {
  size_t n = 1;
  for (int d : s) n *= d;
  return n;
}

std::vector<Problem> problems() {
  return {
      {"rms_norm",
       {{3, 6}, {6}},
       [](const std::vector<mx::array>& in) { return mx::fast::rms_norm(in[0], in[1], 1e-4f); },
       {3, 6}},
      {"layer_norm",
       {{2, 5}, {5}, {5}},
       [](const std::vector<mx::array>& in) {
         return mx::fast::layer_norm(in[0], in[1], in[2], 1e-4f);
       },
       {2, 5}},
      {"rope",
       {{1, 2, 3, 6}},
       [](const std::vector<mx::array>& in) {
         return mx::fast::rope(in[0], 4, false, 10000.f, 1.f, 2);
       },
       {1, 2, 3, 6}},
      {"sdpa",
       {{1, 4, 3, 4}, {1, 2, 5, 4}, {1, 2, 5, 4}},
       [](const std::vector<mx::array>& in) {
         return mx::fast::scaled_dot_product_attention(in[0], in[1], in[2], 0.7f, "causal",
                                                       std::nullopt, std::nullopt, 4);
       },
       {1, 4, 3, 4}},
  };
}

std::vector<std::vector<double>> values_for(const Problem& p) {
  std::vector<std::vector<double>> vals;
  for (size_t i = 0; i < p.shapes.size(); ++i) {
    vals.push_back(pseudo_random(numel(p.shapes[i]), 60 + static_cast<uint32_t>(i)));
  }
  return vals;
}

std::vector<mx::array> arrays(const Problem& p, const std::vector<std::vector<double>>& vals) {
  std::vector<mx::array> in;
  for (size_t i = 0; i < vals.size(); ++i) in.emplace_back(vals[i], p.shapes[i], mx::float64);
  return in;
}

TEST(FastTransforms, VjpMatchesFiniteDifferences) {
  for (auto& p : problems()) {
    SCOPED_TRACE(p.name);
    auto vals = values_for(p);
    auto cot = pseudo_random(numel(p.out_shape), 70);
    auto fn = [&](const std::vector<mx::array>& in) { return std::vector<mx::array>{p.fn(in)}; };
    auto [outs, grads] = mx::vjp(fn, arrays(p, vals), {mx::array(cot, p.out_shape, mx::float64)});
    ASSERT_EQ(grads.size(), vals.size());
    for (size_t i = 0; i < vals.size(); ++i) {
      mxtest::expect_close(grads[i], numeric_vjp(p.fn, vals, p.shapes, static_cast<int>(i), cot),
                           p.shapes[i], 1e-7, 1e-6);
    }
  }
}

TEST(FastTransforms, GradOfAScalarLoss) {
  // loss = sum(cot * f(inputs)): its gradient is the vjp of cot.
  for (auto& p : problems()) {
    SCOPED_TRACE(p.name);
    auto vals = values_for(p);
    auto cot = pseudo_random(numel(p.out_shape), 71);
    mx::array c(cot, p.out_shape, mx::float64);
    std::vector<int> argnums;
    for (size_t i = 0; i < vals.size(); ++i) argnums.push_back(static_cast<int>(i));
    auto g = mx::grad([&](const std::vector<mx::array>& in) { return mx::sum(p.fn(in) * c); },
                      argnums)(arrays(p, vals));
    for (size_t i = 0; i < vals.size(); ++i) {
      mxtest::expect_close(g[i], numeric_vjp(p.fn, vals, p.shapes, static_cast<int>(i), cot),
                           p.shapes[i], 1e-7, 1e-6);
    }
  }
}

TEST(FastTransforms, JvpMatchesFiniteDifferences) {
  for (auto& p : problems()) {
    if (p.name == "sdpa") continue;  // no forward-mode rule (reverse mode only)
    SCOPED_TRACE(p.name);
    auto vals = values_for(p);
    auto fn = [&](const std::vector<mx::array>& in) { return std::vector<mx::array>{p.fn(in)}; };
    std::vector<mx::array> tangents;
    std::vector<double> expected(numel(p.out_shape), 0.0);
    for (size_t i = 0; i < vals.size(); ++i) {
      auto t = pseudo_random(vals[i].size(), 80 + static_cast<uint32_t>(i));
      tangents.emplace_back(t, p.shapes[i], mx::float64);
      auto d = numeric_jvp(p.fn, vals, p.shapes, static_cast<int>(i), t);
      for (size_t e = 0; e < d.size(); ++e) expected[e] += d[e];
    }
    auto [outs, tout] = mx::jvp(fn, arrays(p, vals), tangents);
    mxtest::expect_close(tout[0], expected, p.out_shape, 1e-7, 1e-6);
  }
}

TEST(FastTransforms, VmapOverTheBatchOfRows) {
  // vmap over axis 1 of x (4, 3, 6), unbatched weight: each x[:, b, :] normalized.
  auto xv = pseudo_random(72, 90), wv = pseudo_random(6, 91);
  mx::array x(xv, {4, 3, 6}, mx::float64), w(wv, {6}, mx::float64);
  auto f = [&](const std::vector<mx::array>& in) {
    return std::vector<mx::array>{mx::fast::rms_norm(in[0], in[1], 1e-5f)};
  };
  auto y = mx::vmap(f, {1, -1}, {1})({x, w})[0];
  // Rows are independent, so the batched result equals normalizing x as a whole,
  // which the reference tests check against NumPy; here the rule must not move rows.
  std::vector<double> expected;
  for (size_t r = 0; r < 12; ++r) {
    double ss = 0;
    for (int i = 0; i < 6; ++i) ss += xv[r * 6 + i] * xv[r * 6 + i];
    double n = 1 / std::sqrt(ss / 6 + static_cast<double>(1e-5f));
    for (int i = 0; i < 6; ++i) expected.push_back(xv[r * 6 + i] * n * wv[i]);
  }
  mxtest::expect_close(y, expected, {4, 3, 6}, 1e-12, 1e-12);
}

}  // namespace
