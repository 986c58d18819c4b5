// mx::fast::rms_norm and layer_norm against NumPy float64 references, in every
// float dtype; their vjp/jvp against float64 finite differences.
#include "mx/fast_test_util.h"

namespace {

using fasttest::expect_matches;
using fasttest::input;
using fasttest::refs;
using fasttest::shape_of;

std::optional<mx::array> opt_input(const fasttest::json& t, mx::Dtype d) {
  if (t.is_null()) return std::nullopt;
  return input(t, d);
}

TEST(FastRmsNorm, MatchesReferenceInEveryFloatDtype) {
  for (auto& c : refs().at("rms_norm")) {
    for (mx::Dtype d : fasttest::float_dtypes()) {
      auto y =
          mx::fast::rms_norm(input(c["x"], d), opt_input(c["weight"], d), c["eps"].get<float>());
      expect_matches(y, c["out"], d, c["name"].get<std::string>());
    }
  }
}

TEST(FastLayerNorm, MatchesReferenceInEveryFloatDtype) {
  for (auto& c : refs().at("layer_norm")) {
    for (mx::Dtype d : fasttest::float_dtypes()) {
      auto y = mx::fast::layer_norm(input(c["x"], d), opt_input(c["weight"], d),
                                    opt_input(c["bias"], d), c["eps"].get<float>());
      expect_matches(y, c["out"], d, c["name"].get<std::string>());
    }
  }
}

TEST(FastRmsNorm, ReadsTransposedInput) {
  auto& c = refs().at("rms_norm")[0];  // (3, 16)
  auto x = input(c["x"], mx::float32);
  // A non-contiguous view with the same logical values.
  auto xt = mx::transpose(mx::copy(mx::transpose(x)));
  xt.eval();
  ASSERT_FALSE(xt.flags().row_contiguous);
  auto y = mx::fast::rms_norm(xt, input(c["weight"], mx::float32), c["eps"].get<float>());
  expect_matches(y, c["out"], mx::float32, "transposed");
}

TEST(FastRmsNorm, PromotesWithTheWeight) {
  auto x = mx::ones({2, 4}, mx::bfloat16);
  EXPECT_EQ(mx::fast::rms_norm(x, mx::ones({4}, mx::float32), 1e-5f).dtype(), mx::float32);
  EXPECT_EQ(mx::fast::rms_norm(x, std::nullopt, 1e-5f).dtype(), mx::bfloat16);
  EXPECT_EQ(mx::fast::layer_norm(x, std::nullopt, mx::ones({4}, mx::float16), 1e-5f).dtype(),
            mx::float32);
}

TEST(FastRmsNorm, HandWorkedValues) {
  // Row (3, 4): mean square 12.5; with eps 0 the result is x / sqrt(12.5).
  auto y = mx::fast::rms_norm(mx::array({3.0f, 4.0f}, {1, 2}), mx::array({1.0f, 2.0f}), 0.0f);
  double r = std::sqrt(12.5);
  mxtest::expect_close(y, {3 / r, 8 / r}, {1, 2});
  // Layer norm of (1, 3): centred (-1, 1), variance 1.
  auto z = mx::fast::layer_norm(mx::array({1.0f, 3.0f}, {1, 2}), std::nullopt, std::nullopt, 0.0f);
  mxtest::expect_close(z, {-1, 1}, {1, 2});
}

TEST(FastRmsNorm, NaNStaysInItsRow) {
  float nan = std::nanf("");
  auto y = mx::fast::rms_norm(mx::array({1.0f, nan, 2.0f, 2.0f}, {2, 2}), std::nullopt, 0.0f);
  mxtest::expect_close(y, {NAN, NAN, 1, 1}, {2, 2});
  auto z = mx::fast::layer_norm(mx::array({1.0f, nan, 2.0f, 4.0f}, {2, 2}), std::nullopt,
                                std::nullopt, 0.0f);
  mxtest::expect_close(z, {NAN, NAN, -1, 1}, {2, 2});
}

TEST(FastRmsNorm, EmptyArrays) {
  auto a = mx::fast::rms_norm(mx::zeros({0, 8}), mx::ones({8}), 1e-5f);
  a.eval();
  EXPECT_EQ(a.shape(), (mx::Shape{0, 8}));
  auto b = mx::fast::layer_norm(mx::zeros({3, 0}), std::nullopt, std::nullopt, 1e-5f);
  b.eval();
  EXPECT_EQ(b.shape(), (mx::Shape{3, 0}));
}

template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

TEST(FastRmsNorm, BadArgumentsNameTheShapes) {
  auto msg = error_of([] { mx::fast::rms_norm(mx::ones({2, 4}), mx::ones({5}), 1e-5f); });
  EXPECT_NE(msg.find("[rms_norm]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(2, 4)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(5,)"), std::string::npos) << msg;
  msg = error_of([] {
    mx::fast::layer_norm(mx::ones({2, 4}), std::nullopt, mx::ones({4, 1}), 0.f);
  });
  EXPECT_NE(msg.find("[layer_norm] bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(4, 1)"), std::string::npos) << msg;
  msg = error_of([] { mx::fast::rms_norm(mx::array(1.0f), std::nullopt, 1e-5f); });
  EXPECT_NE(msg.find("[rms_norm]"), std::string::npos) << msg;
  msg = error_of([] { mx::fast::rms_norm(mx::ones({2, 4}, mx::int32), std::nullopt, 1e-5f); });
  EXPECT_NE(msg.find("int32"), std::string::npos) << msg;
}

// ---- derivatives (float64 finite differences of the fused forward) ----

struct NormCase {
  bool layer;
  bool weight;
  bool bias;
};

mx::array norm_fn(const NormCase& c, const std::vector<mx::array>& in, float eps) {
  std::optional<mx::array> w, b;
  size_t k = 1;
  if (c.weight) w = in[k++];
  if (c.bias) b = in[k++];
  return c.layer ? mx::fast::layer_norm(in[0], w, b, eps) : mx::fast::rms_norm(in[0], w, eps);
}

void check_norm_derivatives(const NormCase& c) {
  SCOPED_TRACE(std::string(c.layer ? "layer_norm" : "rms_norm") + (c.weight ? " weight" : "") +
               (c.bias ? " bias" : ""));
  const float eps = 1e-3f;
  const mx::Shape xs{3, 5}, ps{5};
  std::vector<std::vector<double>> vals{fasttest::pseudo_random(15, 1)};
  std::vector<mx::Shape> shapes{xs};
  if (c.weight) vals.push_back(fasttest::pseudo_random(5, 2)), shapes.push_back(ps);
  if (c.bias) vals.push_back(fasttest::pseudo_random(5, 3)), shapes.push_back(ps);
  auto fn = [&](const std::vector<mx::array>& in) { return norm_fn(c, in, eps); };
  auto cot = fasttest::pseudo_random(15, 4);
  std::vector<int> argnums;
  for (size_t i = 0; i < vals.size(); ++i) argnums.push_back(static_cast<int>(i));

  std::vector<mx::array> in;
  for (size_t i = 0; i < vals.size(); ++i) in.emplace_back(vals[i], shapes[i], mx::float64);
  auto grads = fasttest::primitive_vjp(fn(in), cot, argnums);
  ASSERT_EQ(grads.size(), vals.size());
  for (size_t i = 0; i < vals.size(); ++i) {
    auto expected = fasttest::numeric_vjp(fn, vals, shapes, static_cast<int>(i), cot);
    mxtest::expect_close(grads[i], expected, shapes[i], 1e-7, 1e-6);
  }

  // jvp along each input separately, and along all of them at once.
  std::vector<std::vector<double>> tangents;
  std::vector<mx::array> tangent_arrays;
  for (size_t i = 0; i < vals.size(); ++i) {
    tangents.push_back(fasttest::pseudo_random(vals[i].size(), 10 + i));
    tangent_arrays.emplace_back(tangents.back(), shapes[i], mx::float64);
  }
  std::vector<double> total(15, 0.0);
  for (size_t i = 0; i < vals.size(); ++i) {
    auto out = fn(in);
    auto jv = out.primitive().jvp(out.inputs(), {tangent_arrays[i]}, {static_cast<int>(i)});
    auto expected = fasttest::numeric_jvp(fn, vals, shapes, static_cast<int>(i), tangents[i]);
    mxtest::expect_close(jv[0], expected, xs, 1e-7, 1e-6);
    for (size_t e = 0; e < 15; ++e) total[e] += expected[e];
  }
  auto out = fn(in);
  auto jv = out.primitive().jvp(out.inputs(), tangent_arrays, argnums);
  mxtest::expect_close(jv[0], total, xs, 1e-7, 1e-6);

  // Second order, through the rules of the backward primitive: g(x) = J(x)^T
  // cot differentiated in reverse (along tangents) and in forward mode (each
  // input along its tangent), against central differences of g.
  mx::array cot_arr(cot, xs, mx::float64);
  auto first = [&](const std::vector<mx::array>& x) {
    auto f = [&](const std::vector<mx::array>& y) { return std::vector<mx::array>{fn(y)}; };
    return mx::vjp(f, x, {cot_arr}).second;
  };
  auto flat_first = [&](const std::vector<mx::array>& x) {
    std::vector<mx::array> parts;
    for (auto& g : first(x)) parts.push_back(mx::flatten(g));
    return mx::concatenate(parts);
  };
  std::vector<double> all_tangents;
  for (auto& t : tangents) all_tangents.insert(all_tangents.end(), t.begin(), t.end());
  auto second = mx::vjp(first, in, tangent_arrays).second;
  for (size_t i = 0; i < vals.size(); ++i) {
    SCOPED_TRACE("second order, input " + std::to_string(i));
    int arg = static_cast<int>(i);
    auto rev = fasttest::numeric_vjp(flat_first, vals, shapes, arg, all_tangents, 1e-5);
    mxtest::expect_close(second[i], rev, shapes[i], 1e-6, 1e-5);
    auto one = [&](const std::vector<mx::array>& x) {
      std::vector<mx::array> all = in;
      all[i] = x[0];
      return std::vector<mx::array>{flat_first(all)};
    };
    auto fwd = mx::jvp(one, {in[i]}, {tangent_arrays[i]}).second[0];
    auto want = fasttest::numeric_jvp(flat_first, vals, shapes, arg, tangents[i], 1e-5);
    mxtest::expect_close(fwd, want, {static_cast<int>(want.size())}, 1e-6, 1e-5);
  }
}

TEST(FastNormGrad, MatchesFiniteDifferences) {
  for (bool w : {false, true}) check_norm_derivatives({false, w, false});
  for (bool w : {false, true}) {
    for (bool b : {false, true}) check_norm_derivatives({true, w, b});
  }
}

TEST(FastNormGrad, SixteenBitGradientsAreCloseToFloat64) {
  const mx::Shape xs{4, 32}, ps{32};
  auto xv = fasttest::pseudo_random(128, 7), wv = fasttest::pseudo_random(32, 8);
  auto cot = fasttest::pseudo_random(128, 9);
  auto grads = [&](mx::Dtype d) {
    mx::array x(xv, xs, d), w(wv, ps, d);
    auto y = mx::fast::rms_norm(x, w, 1e-5f);
    auto g = fasttest::primitive_vjp(y, cot, {0, 1});
    return std::vector<std::vector<double>>{mxtest::to_vector(g[0]), mxtest::to_vector(g[1])};
  };
  // The float64 gradient is itself checked against finite differences above.
  auto ref = grads(mx::float64);
  auto half = grads(mx::bfloat16);
  for (size_t k = 0; k < 2; ++k) {
    double scale = 0;
    for (double v : ref[k]) scale = std::max(scale, std::abs(v));
    for (size_t i = 0; i < ref[k].size(); ++i) {
      EXPECT_NEAR(half[k][i], ref[k][i], 2e-2 * scale) << "grad " << k << " element " << i;
    }
  }
}

TEST(FastNormGrad, CotangentOfAnotherDtypeIsCast) {
  // A float32 cotangent for a bfloat16 output acts as its bfloat16 rounding
  // (the values here are exact in both).
  auto x = mx::array(fasttest::pseudo_random(16, 51), {2, 8}, mx::bfloat16);
  auto w = mx::array(fasttest::pseudo_random(8, 52), {8}, mx::bfloat16);
  auto cot = fasttest::pseudo_random(16, 53);
  for (double& c : cot) c = std::round(c * 8) / 8;
  auto y = mx::fast::layer_norm(x, w, w, 1e-5f);
  auto a = y.primitive().vjp(y.inputs(), {mx::array(cot, {2, 8}, mx::float32)}, {0, 1, 2}, {y});
  auto b = fasttest::primitive_vjp(y, cot, {0, 1, 2});
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a[i].dtype(), mx::bfloat16);
    mxtest::expect_close(a[i], mxtest::to_vector(b[i]), b[i].shape(), 0, 0);
  }
}

TEST(FastNormVmap, BatchesOverAnyAxis) {
  // vmap over axis 1 of x (3, 2, 4) equals normalizing each x[:, b, :].
  auto& c = refs().at("rms_norm")[1];  // (2, 3, 7), no weight
  auto x = input(c["x"], mx::float64);
  auto y = mx::fast::rms_norm(x, std::nullopt, c["eps"].get<float>());
  auto [outs, axes] = y.primitive().vmap(y.inputs(), {1});
  ASSERT_EQ(axes.size(), 1u);
  // The reference output of the unbatched op, laid out with the batch axis where vmap put it.
  auto ref = mx::array(fasttest::output_values(c["out"]), shape_of(c["out"]), mx::float64);
  auto got = mx::moveaxis(outs[0], axes[0], 1);
  mxtest::expect_close(got, mxtest::to_vector(ref), ref.shape(), 1e-12, 1e-12);

  // A batched weight: each batch entry uses its own weight row.
  auto& lc = refs().at("layer_norm")[0];  // (3, 16), weight and bias
  auto lx = input(lc["x"], mx::float64);
  auto w = input(lc["weight"], mx::float64), b = input(lc["bias"], mx::float64);
  auto w2 = mx::stack({w, mx::multiply(w, mx::array(2.0))}, 1);  // (16, 2), batch axis 1
  auto ly = mx::fast::layer_norm(lx, w, b, lc["eps"].get<float>());
  auto [louts, laxes] = ly.primitive().vmap({lx, w2, b}, {-1, 1, -1});
  auto lo = mx::moveaxis(louts[0], laxes[0], 0);
  ASSERT_EQ(lo.shape(), (mx::Shape{2, 3, 16}));
  auto expect0 = fasttest::output_values(lc["out"]);
  // Doubling the weight doubles (out - bias).
  auto bv = fasttest::input_values(lc["bias"]);
  std::vector<double> expect;
  for (double v : expect0) expect.push_back(v);
  for (size_t i = 0; i < expect0.size(); ++i) expect.push_back(2 * expect0[i] - bv[i % 16]);
  mxtest::expect_close(lo, expect, {2, 3, 16}, 1e-12, 1e-12);
}

}  // namespace
