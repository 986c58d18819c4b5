// mx::fast::scaled_dot_product_attention against NumPy float64 references
// (grouped-query heads, causal masks aligned to the end, sliding windows, bool
// and additive masks, sinks, decode and multi-block shapes) in every float
// dtype; its vjp against float64 finite differences.
#include "mx/fast_test_util.h"

namespace {

using fasttest::expect_matches;
using fasttest::input;
using fasttest::json;
using fasttest::refs;

std::optional<mx::array> mask_of(const json& c, mx::Dtype d) {
  const json& m = c["mask"];
  if (m.is_null()) return std::nullopt;
  if (m["dtype"] == "bool") {
    std::vector<bool> bits;
    for (auto& v : m["data"]) bits.push_back(v.get<int>() != 0);
    auto shape = fasttest::shape_of(m);
    return mx::astype(mx::array(std::vector<uint8_t>(bits.begin(), bits.end()), shape), mx::bool_);
  }
  return input(m, d);
}

mx::array run_case(const json& c, const mx::array& q, const mx::array& k, const mx::array& v,
                   mx::Dtype d) {
  std::optional<mx::array> sinks;
  if (!c["sinks"].is_null()) sinks = input(c["sinks"], d);
  std::optional<int> window;
  if (!c["window"].is_null()) window = c["window"].get<int>();
  return mx::fast::scaled_dot_product_attention(q, k, v, c["scale"].get<float>(),
                                                c["mask_mode"].get<std::string>(), mask_of(c, d),
                                                sinks, window);
}

TEST(FastSdpa, MatchesReferenceInEveryFloatDtype) {
  for (auto& c : refs().at("sdpa")) {
    for (mx::Dtype d : fasttest::float_dtypes()) {
      auto out = run_case(c, input(c["q"], d), input(c["k"], d), input(c["v"], d), d);
      expect_matches(out, c["out"], d, c["name"].get<std::string>());
    }
  }
}

const json& case_named(const std::string& name) {
  for (auto& c : refs().at("sdpa")) {
    if (c["name"] == name) return c;
  }
  throw std::runtime_error("no sdpa reference case " + name);
}

TEST(FastSdpa, ReadsTransposedProjections) {
  // Models produce (B, L, H, D) and attend over its (B, H, L, D) transpose.
  auto& c = case_named("causal_short_queries");
  auto view = [](const mx::array& a) {
    auto t = mx::transpose(mx::copy(mx::transpose(a, {0, 2, 1, 3})), {0, 2, 1, 3});
    t.eval();
    return t;
  };
  auto q = view(input(c["q"], mx::float32));
  ASSERT_FALSE(q.flags().row_contiguous);
  auto out = run_case(c, q, view(input(c["k"], mx::float32)), view(input(c["v"], mx::float32)),
                      mx::float32);
  expect_matches(out, c["out"], mx::float32, "transposed views");
}

TEST(FastSdpa, MixedInputDtypesPromote) {
  auto& c = case_named("no_mask");
  auto out = run_case(c, input(c["q"], mx::bfloat16), input(c["k"], mx::float32),
                      input(c["v"], mx::bfloat16), mx::float32);
  expect_matches(out, c["out"], mx::float32, "promoted");
}

TEST(FastSdpa, ArrayMaskOverload) {
  auto& c = case_named("additive_mask");
  auto out = mx::fast::scaled_dot_product_attention(
      input(c["q"], mx::float32), input(c["k"], mx::float32), input(c["v"], mx::float32),
      c["scale"].get<float>(), *mask_of(c, mx::float32));
  expect_matches(out, c["out"], mx::float32, "overload");
}

TEST(FastSdpa, HandWorkedTwoKeys) {
  // Scores (0, ln 3) -> weights (1/4, 3/4) over values 4 and 8: 7.
  auto q = mx::array({1.0f}, {1, 1, 1, 1});
  auto k = mx::array({0.0f, static_cast<float>(std::log(3.0))}, {1, 1, 2, 1});
  auto v = mx::array({4.0f, 8.0f}, {1, 1, 2, 1});
  mxtest::expect_close(mx::fast::scaled_dot_product_attention(q, k, v, 1.0f), {7}, {1, 1, 1, 1},
                       1e-5);
  // Causal with one query sees both keys (aligned to the end); masking the
  // second key leaves the first.
  mxtest::expect_close(mx::fast::scaled_dot_product_attention(q, k, v, 1.0f, "causal"), {7},
                       {1, 1, 1, 1}, 1e-5);
  auto keep_first = mx::array({true, false}, {1, 2});
  mxtest::expect_close(mx::fast::scaled_dot_product_attention(q, k, v, 1.0f, keep_first), {4},
                       {1, 1, 1, 1}, 1e-6);
}

TEST(FastSdpa, NoKeysGivesZeros) {
  auto out = mx::fast::scaled_dot_product_attention(mx::ones({1, 2, 3, 4}), mx::ones({1, 1, 0, 4}),
                                                    mx::ones({1, 1, 0, 4}), 0.5f);
  mxtest::expect_close(out, std::vector<double>(24, 0.0), {1, 2, 3, 4});
  auto none = mx::fast::scaled_dot_product_attention(mx::ones({1, 2, 0, 4}), mx::ones({1, 1, 5, 4}),
                                                     mx::ones({1, 1, 5, 4}), 0.5f);
  none.eval();
  EXPECT_EQ(none.shape(), (mx::Shape{1, 2, 0, 4}));
}

TEST(FastSdpa, NaNInAKeyReachesOnlyRowsThatSeeIt) {
  // Query 0 (causal) sees key 0 only; key 1 holds a NaN.
  auto q = mx::ones({1, 1, 2, 2});
  auto k = mx::array({1.0f, 1.0f, std::nanf(""), 1.0f}, {1, 1, 2, 2});
  auto v = mx::array({1.0f, 2.0f, 3.0f, 4.0f}, {1, 1, 2, 2});
  auto out = mx::fast::scaled_dot_product_attention(q, k, v, 1.0f, "causal");
  mxtest::expect_close(out, {1, 2, NAN, NAN}, {1, 1, 2, 2});
}

TEST(FastSdpa, MaskedValuesNeverLeak) {
  // Keys 1.. are masked for query 0 and hold NaN values (an unfilled cache).
  std::vector<float> vals(2 * 9, std::nanf(""));
  vals[0] = 5.0f, vals[1] = 6.0f;
  auto v = mx::array(vals, {1, 1, 9, 2});
  auto q = mx::ones({1, 1, 1, 2}), k = mx::ones({1, 1, 9, 2});
  auto keep = mx::astype(mx::array({1, 0, 0, 0, 0, 0, 0, 0, 0}, {1, 9}), mx::bool_);
  mxtest::expect_close(mx::fast::scaled_dot_product_attention(q, k, v, 1.0f, keep), {5, 6},
                       {1, 1, 1, 2});
  auto window =
      mx::fast::scaled_dot_product_attention(mx::ones({1, 1, 9, 2}), k, v, 1.0f, "causal");
  auto row0 = mx::slice(window, {0, 0, 0, 0}, {1, 1, 1, 2});
  mxtest::expect_close(row0, {5, 6}, {1, 1, 1, 2});
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

TEST(FastSdpa, BadArgumentsNameTheShapes) {
  auto q = mx::ones({1, 4, 3, 8}), k = mx::ones({1, 2, 5, 8}), v = mx::ones({1, 2, 5, 8});
  auto sdpa = [](auto... a) { return mx::fast::scaled_dot_product_attention(a...); };
  auto has = [](const std::string& msg, const std::string& part) {
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
    EXPECT_NE(msg.find("[scaled_dot_product_attention]"), std::string::npos) << msg;
  };
  has(error_of([&] { sdpa(mx::ones({4, 3, 8}), k, v, 1.f); }), "(4, 3, 8)");
  has(error_of([&] { sdpa(mx::ones({1, 3, 3, 8}), k, v, 1.f); }), "(1, 3, 3, 8)");
  has(error_of([&] { sdpa(q, mx::ones({1, 2, 5, 4}), v, 1.f); }), "(1, 2, 5, 4)");
  has(error_of([&] { sdpa(q, k, mx::ones({1, 2, 6, 8}), 1.f); }), "(1, 2, 6, 8)");
  has(error_of([&] { sdpa(q, k, v, 1.f, mx::ones({3, 4})); }), "(3, 4)");
  has(error_of([&] { sdpa(q, k, v, 1.f, mx::ones({3, 4})); }), "(1, 4, 3, 5)");
  has(error_of([&] { sdpa(q, k, v, 1.f, std::string("sideways")); }), "sideways");
  has(error_of([&] {
        mx::fast::scaled_dot_product_attention(q, k, v, 1.f, "causal", mx::ones({3, 5}));
      }),
      "causal");
  has(error_of([&] {
        mx::fast::scaled_dot_product_attention(q, k, v, 1.f, "causal", std::nullopt, std::nullopt,
                                               0);
      }),
      "sliding_window");
  has(error_of([&] {
        mx::fast::scaled_dot_product_attention(q, k, v, 1.f, "", std::nullopt, mx::ones({2}));
      }),
      "(2,)");
  has(error_of([&] {
        sdpa(mx::ones({1, 4, 3, 8}, mx::int32), mx::ones({1, 2, 5, 8}, mx::int32),
             mx::ones({1, 2, 5, 8}, mx::int32), 1.f);
      }),
      "int32");
}

// ---- derivatives ----

struct GradCase {
  std::string name;
  int B, Hq, Hkv, Lq, Lk, D, Dv;
  std::string mode;
  std::optional<int> window;
  int mask;  // 0: none, 1: bool, 2: additive
  bool sinks;
};

void check_sdpa_vjp(const GradCase& g) {
  SCOPED_TRACE(g.name);
  mx::Shape qs{g.B, g.Hq, g.Lq, g.D}, ks{g.B, g.Hkv, g.Lk, g.D}, vs{g.B, g.Hkv, g.Lk, g.Dv};
  auto size = [](const mx::Shape& s) {
    size_t n = 1;
    for (int d : s) n *= d;
    return n;
  };
  std::vector<std::vector<double>> vals{fasttest::pseudo_random(size(qs), 31),
                                        fasttest::pseudo_random(size(ks), 32),
                                        fasttest::pseudo_random(size(vs), 33)};
  // Larger queries make the softmax far from uniform.
  for (auto& x : vals[0]) x *= 3;
  std::optional<mx::array> mask, sinks;
  if (g.mask == 1) {
    auto bits = fasttest::pseudo_random(g.Lq * g.Lk, 34);
    std::vector<uint8_t> keep;
    for (double b : bits) keep.push_back(b > -0.4);
    keep[0] = 1;
    mask = mx::astype(mx::array(keep, {g.Lq, g.Lk}), mx::bool_);
  } else if (g.mask == 2) {
    mask = mx::array(fasttest::pseudo_random(g.Lq * g.Lk, 35), {g.Lq, g.Lk}, mx::float64);
  }
  if (g.sinks) sinks = mx::array(fasttest::pseudo_random(g.Hq, 36), {g.Hq}, mx::float64);
  auto fn = [&](const std::vector<mx::array>& in) {
    return mx::fast::scaled_dot_product_attention(in[0], in[1], in[2], 0.5f, g.mode, mask, sinks,
                                                  g.window);
  };
  std::vector<mx::Shape> shapes{qs, ks, vs};
  std::vector<mx::array> in;
  for (int i = 0; i < 3; ++i) in.emplace_back(vals[i], shapes[i], mx::float64);
  mx::Shape os{g.B, g.Hq, g.Lq, g.Dv};
  auto cot = fasttest::pseudo_random(size(os), 37);
  auto grads = fasttest::primitive_vjp(fn(in), cot, {0, 1, 2});
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE("argument " + std::to_string(i));
    mxtest::expect_close(grads[i], fasttest::numeric_vjp(fn, vals, shapes, i, cot), shapes[i], 1e-7,
                         1e-6);
  }
  // Any subset of argnums gives the same values.
  auto only_v = fasttest::primitive_vjp(fn(in), cot, {2});
  mxtest::expect_close(only_v[0], mxtest::to_vector(grads[2]), vs, 0, 0);

  // Forward mode, one argument at a time.
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE("jvp of argument " + std::to_string(i));
    auto tangent = fasttest::pseudo_random(size(shapes[i]), 38 + i);
    auto one = [&](const std::vector<mx::array>& x) {
      std::vector<mx::array> all = in;
      all[i] = x[0];
      return std::vector<mx::array>{fn(all)};
    };
    auto tan = mx::jvp(one, {in[i]}, {mx::array(tangent, shapes[i], mx::float64)}).second[0];
    mxtest::expect_close(tan, fasttest::numeric_jvp(fn, vals, shapes, i, tangent), os, 1e-7, 1e-6);
  }

  // Reverse over reverse: the vjp of x -> J(x)^T cot along dirs, against
  // central differences of <dirs, J(x)^T cot>.
  mx::array cot_arr(cot, os, mx::float64);
  auto first = [&](const std::vector<mx::array>& x) {
    return mx::vjp([&](const std::vector<mx::array>& y) { return std::vector<mx::array>{fn(y)}; },
                   x, {cot_arr})
        .second;
  };
  std::vector<double> dirs;
  std::vector<mx::array> dir_arrays;
  for (int i = 0; i < 3; ++i) {
    auto d = fasttest::pseudo_random(size(shapes[i]), 51 + i);
    dirs.insert(dirs.end(), d.begin(), d.end());
    dir_arrays.emplace_back(d, shapes[i], mx::float64);
  }
  auto flat_first = [&](const std::vector<mx::array>& x) {
    auto g = first(x);
    return mx::concatenate({mx::flatten(g[0]), mx::flatten(g[1]), mx::flatten(g[2])});
  };
  auto second = mx::vjp(first, in, dir_arrays).second;
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE("second-order vjp of argument " + std::to_string(i));
    mxtest::expect_close(second[i], fasttest::numeric_vjp(flat_first, vals, shapes, i, dirs, 1e-5),
                         shapes[i], 1e-6, 1e-5);
  }
}

TEST(FastSdpaGrad, MatchesFiniteDifferences) {
  std::vector<GradCase> cases{
      {"plain", 1, 2, 2, 3, 4, 4, 4, "", std::nullopt, 0, false},
      {"gqa_causal", 2, 4, 2, 3, 5, 4, 3, "causal", std::nullopt, 0, false},
      {"sliding_window", 1, 2, 1, 6, 6, 4, 4, "causal", 2, 0, false},
      {"bool_mask", 1, 2, 1, 3, 4, 4, 4, "", std::nullopt, 1, false},
      {"additive_mask", 1, 2, 2, 3, 4, 4, 4, "array", std::nullopt, 2, false},
      {"sinks", 1, 2, 1, 2, 3, 4, 4, "causal", std::nullopt, 0, true},
      {"decode", 1, 4, 1, 1, 7, 4, 4, "", std::nullopt, 0, false},
      {"more_queries_than_keys", 1, 1, 1, 3, 2, 2, 2, "causal", std::nullopt, 0, false},
  };
  for (auto& g : cases) check_sdpa_vjp(g);
}

TEST(FastSdpaGrad, SixteenBitGradientsAreCloseToFloat64) {
  mx::Shape qs{1, 4, 5, 16}, ks{1, 2, 9, 16};
  auto qv = fasttest::pseudo_random(320, 41), kv = fasttest::pseudo_random(288, 42),
       vv = fasttest::pseudo_random(288, 43), cot = fasttest::pseudo_random(320, 44);
  auto grads = [&](mx::Dtype d) {
    auto out = mx::fast::scaled_dot_product_attention(mx::array(qv, qs, d), mx::array(kv, ks, d),
                                                      mx::array(vv, ks, d), 0.25f, "causal");
    auto g = fasttest::primitive_vjp(out, cot, {0, 1, 2});
    std::vector<std::vector<double>> r;
    for (auto& a : g) {
      EXPECT_EQ(a.dtype(), d);
      r.push_back(mxtest::to_vector(a));
    }
    return r;
  };
  // The float64 gradients are checked against finite differences above.
  auto ref = grads(mx::float64);
  auto half = grads(mx::bfloat16);
  for (size_t k = 0; k < 3; ++k) {
    double scale = 0;
    for (double v : ref[k]) scale = std::max(scale, std::abs(v));
    for (size_t i = 0; i < ref[k].size(); ++i) {
      EXPECT_NEAR(half[k][i], ref[k][i], 3e-2 * scale) << "grad " << k << " element " << i;
    }
  }
}

TEST(FastSdpaGrad, MaskAndSinksAreNotDifferentiable) {
  auto q = mx::ones({1, 1, 2, 2});
  auto out = mx::fast::scaled_dot_product_attention(q, q, q, 1.f, mx::zeros({2, 2}));
  EXPECT_THROW(out.primitive().vjp(out.inputs(), {q}, {3}, {out}), std::invalid_argument);
  // A mapped axis needs rank-5 operands: (N, B, H, L, D).
  EXPECT_THROW(out.primitive().vmap(out.inputs(), {0, -1, -1, -1}), std::invalid_argument);
}

// vmap against the unbatched op applied to each slice: batched masks and
// unmapped keys fold into the attention batch; batched sinks take the unfused
// formula.
TEST(FastSdpaGrad, VmapMatchesSlices) {
  constexpr int N = 3;
  mx::Shape qs{N, 1, 2, 3, 4}, ks{1, 1, 5, 4};
  mx::array q(fasttest::pseudo_random(72, 61), qs, mx::float64);
  mx::array k(fasttest::pseudo_random(20, 62), ks, mx::float64);
  mx::array v(fasttest::pseudo_random(20, 63), ks, mx::float64);
  mx::array mask(fasttest::pseudo_random(N * 15, 64), {N, 3, 5}, mx::float64);
  mx::array sinks(fasttest::pseudo_random(N * 2, 65), {N, 2}, mx::float64);
  auto with_mask = mx::vmap(
      [](const std::vector<mx::array>& x) {
        return std::vector<mx::array>{mx::fast::scaled_dot_product_attention(
            x[0], x[1], x[2], 0.5f, "array", x[3], std::nullopt, 2)};
      },
      {0, -1, -1, 0})({q, k, v, mask})[0];
  auto with_sinks = mx::vmap(
      [](const std::vector<mx::array>& x) {
        return std::vector<mx::array>{mx::fast::scaled_dot_product_attention(
            x[0], x[1], x[2], 0.5f, "causal", std::nullopt, x[3], 3)};
      },
      {0, -1, -1, 0})({q, k, v, sinks})[0];
  std::vector<double> want_mask, want_sinks;
  for (int b = 0; b < N; ++b) {
    auto qb = mx::take(q, b, 0);
    auto a = mxtest::to_vector(mx::fast::scaled_dot_product_attention(
        qb, k, v, 0.5f, "array", mx::take(mask, b, 0), std::nullopt, 2));
    auto c = mxtest::to_vector(mx::fast::scaled_dot_product_attention(
        qb, k, v, 0.5f, "causal", std::nullopt, mx::take(sinks, b, 0), 3));
    want_mask.insert(want_mask.end(), a.begin(), a.end());
    want_sinks.insert(want_sinks.end(), c.begin(), c.end());
  }
  mx::Shape batched{N, 1, 2, 3, 4};
  mxtest::expect_close(with_mask, want_mask, batched, 1e-12, 1e-12);
  mxtest::expect_close(with_sinks, want_sinks, batched, 1e-12, 1e-12);
}

}  // namespace
