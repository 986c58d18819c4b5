// mx::fast::rope against NumPy float64 references (both pair layouts, partial
// dims, offsets, freqs) in every float dtype; vjp/jvp against finite differences.
#include "mx/fast_test_util.h"

namespace {

using fasttest::expect_matches;
using fasttest::input;
using fasttest::json;
using fasttest::refs;

std::optional<float> base_of(const json& c) {
  if (c["base"].is_null()) return std::nullopt;
  return c["base"].get<float>();
}

std::optional<mx::array> freqs_of(const json& c) {
  if (c["freqs"].is_null()) return std::nullopt;
  auto f = c["freqs"].get<std::vector<float>>();
  return mx::array(f, {static_cast<int>(f.size())});
}

mx::array run_case(const json& c, const mx::array& x) {
  if (c["offset"].is_array()) {
    auto o = c["offset"].get<std::vector<int>>();
    return mx::fast::rope(x, c["dims"], c["traditional"], base_of(c), c["scale"].get<float>(),
                          mx::array(o, {static_cast<int>(o.size())}), freqs_of(c));
  }
  return mx::fast::rope(x, c["dims"], c["traditional"], base_of(c), c["scale"].get<float>(),
                        c["offset"].get<int>(), freqs_of(c));
}

TEST(FastRope, MatchesReferenceInEveryFloatDtype) {
  for (auto& c : refs().at("rope")) {
    for (mx::Dtype d : fasttest::float_dtypes()) {
      expect_matches(run_case(c, input(c["x"], d)), c["out"], d, c["name"].get<std::string>());
    }
  }
}

TEST(FastRope, ArrayOffsetEqualsIntOffset) {
  for (auto& c : refs().at("rope")) {
    if (!c["offset"].is_number()) continue;
    auto y =
        mx::fast::rope(input(c["x"], mx::float32), c["dims"], c["traditional"], base_of(c),
                       c["scale"].get<float>(), mx::array(c["offset"].get<int>()), freqs_of(c));
    expect_matches(y, c["out"], mx::float32, c["name"].get<std::string>() + " (array offset)");
  }
}

TEST(FastRope, RepeatedAndInterleavedCallsKeepTheirTables) {
  // The kernel caches small sin/cos tables per thread: cases that differ only
  // in base, scale, freqs or offset, run back to back in both orders and
  // twice each, must each still match their own reference.
  const auto& cases = refs().at("rope");
  std::vector<size_t> order;
  for (size_t i = 0; i < cases.size(); ++i) order.insert(order.end(), {i, i});
  for (size_t i = cases.size(); i-- > 0;) order.push_back(i);
  for (size_t i : order) {
    const auto& c = cases[i];
    expect_matches(run_case(c, input(c["x"], mx::float32)), c["out"], mx::float32,
                   c["name"].get<std::string>() + " (repeated)");
  }
}

TEST(FastRope, ReadsTransposedViews) {
  // Models apply rope to (B, L, H, D) projections transposed to (B, H, L, D).
  auto& c = refs().at("rope")[0];  // (2, 3, 5, 8)
  auto x = input(c["x"], mx::float32);
  auto view = mx::transpose(mx::copy(mx::transpose(x, {0, 2, 1, 3})), {0, 2, 1, 3});
  view.eval();
  ASSERT_FALSE(view.flags().row_contiguous);
  expect_matches(run_case(c, view), c["out"], mx::float32, "transposed view");
}

TEST(FastRope, HandWorkedQuarterTurn) {
  // One pair (1, 0) at position 1 with freqs = 2/pi: angle pi/2 -> (0, 1).
  auto x = mx::array({1.0f, 0.0f}, {1, 1, 1, 2});
  auto y =
      mx::fast::rope(x, 2, false, std::nullopt, 1.0f, 1, mx::array({static_cast<float>(2 / M_PI)}));
  mxtest::expect_close(y, {0, 1}, {1, 1, 1, 2}, 1e-6);
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

TEST(FastRope, BadArguments) {
  auto x = mx::ones({1, 2, 3, 8});
  auto has = [](const std::string& msg, const std::string& part) {
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
  };
  has(error_of([&] { mx::fast::rope(x, 3, false, 10000.f, 1.f, 0); }), "dims");
  has(error_of([&] { mx::fast::rope(x, 10, false, 10000.f, 1.f, 0); }), "(8)");
  has(error_of([&] { mx::fast::rope(mx::ones({3, 8}), 8, false, 10000.f, 1.f, 0); }), "(3, 8)");
  has(error_of([&] { mx::fast::rope(x, 8, false, std::nullopt, 1.f, 0); }), "[rope]");
  has(error_of([&] { mx::fast::rope(x, 8, false, 10000.f, 1.f, 0, mx::ones({4})); }), "[rope]");
  has(error_of([&] { mx::fast::rope(x, 8, false, std::nullopt, 1.f, 0, mx::ones({3})); }), "(3,)");
  has(error_of([&] { mx::fast::rope(x, 8, false, 10000.f, 1.f, mx::array(1.5f)); }), "float32");
  has(error_of([&] { mx::fast::rope(x, 8, false, 10000.f, 1.f, mx::array({1, 2})); }), "(2,)");
  has(error_of([&] {
        mx::fast::rope(mx::ones({1, 2, 3, 8}, mx::int32), 8, false, 1e4f, 1.f, 0);
      }),
      "int32");
}

TEST(FastRope, EmptyInput) {
  auto y = mx::fast::rope(mx::zeros({2, 0, 3, 8}), 8, false, 10000.f, 1.f, 0);
  y.eval();
  EXPECT_EQ(y.shape(), (mx::Shape{2, 0, 3, 8}));
}

mx::array rope_fn(const std::vector<mx::array>& in, bool traditional) {
  return mx::fast::rope(in[0], 6, traditional, 100.f, 0.75f, 3);
}

TEST(FastRopeGrad, VjpAndJvpMatchFiniteDifferences) {
  const mx::Shape xs{2, 2, 3, 8};
  std::vector<std::vector<double>> vals{fasttest::pseudo_random(96, 21)};
  auto cot = fasttest::pseudo_random(96, 22);
  for (bool trad : {false, true}) {
    SCOPED_TRACE(trad ? "traditional" : "halves");
    auto fn = [&](const std::vector<mx::array>& in) { return rope_fn(in, trad); };
    mx::array x(vals[0], xs, mx::float64);
    auto g = fasttest::primitive_vjp(fn({x}), cot, {0});
    mxtest::expect_close(g[0], fasttest::numeric_vjp(fn, vals, {xs}, 0, cot), xs, 1e-8, 1e-7);

    auto y = fn({x});
    mx::array t(cot, xs, mx::float64);
    auto jv = y.primitive().jvp(y.inputs(), {t}, {0});
    mxtest::expect_close(jv[0], fasttest::numeric_jvp(fn, vals, {xs}, 0, cot), xs, 1e-8, 1e-7);
  }
}

TEST(FastRopeGrad, VjpIsTheInverseRotation) {
  auto x = mx::array(fasttest::pseudo_random(48, 5), {1, 2, 3, 8}, mx::float64);
  auto y = mx::fast::rope(x, 8, true, 10000.f, 1.f, 5);
  auto back =
      y.primitive().vjp(y.inputs(), {mx::fast::rope(x, 8, true, 10000.f, 1.f, 5)}, {0}, {y});
  mxtest::expect_close(back[0], mxtest::to_vector(x), x.shape(), 1e-12, 1e-12);
}

TEST(FastRopeGrad, OffsetIsNotDifferentiable) {
  auto y = mx::fast::rope(mx::ones({1, 1, 2, 4}), 4, false, 10000.f, 1.f, 0);
  EXPECT_THROW(y.primitive().vjp(y.inputs(), {mx::ones({1, 1, 2, 4})}, {1}, {y}),
               std::invalid_argument);
}

TEST(FastRopeVmap, BatchAxisKeepsPositions) {
  // vmap over a leading axis of stacked inputs: each slice rotates like the reference.
  auto& c = refs().at("rope")[0];  // (2, 3, 5, 8), scalar offset 0
  auto x = input(c["x"], mx::float64);
  auto y = run_case(c, x);
  auto [outs, axes] = y.primitive().vmap(y.inputs(), {1});  // treat axis 1 as the batch
  auto got = mx::moveaxis(outs[0], axes[0], 1);
  expect_matches(got, c["out"], mx::float64, "vmap");
}

}  // namespace

namespace {

TEST(FastRopeVmap, PerBatchOffsetsFollowAxisZero) {
  // Offsets index axis 0 of x; vmap over axis 1 must keep them there.
  const json* found = nullptr;
  for (auto& c : refs().at("rope")) {
    if (c["name"] == "batch_offsets") found = &c;
  }
  ASSERT_NE(found, nullptr);
  auto& c = *found;  // x (3, 2, 4, 8), offsets (0, 5, 11)
  auto x = input(c["x"], mx::float64);
  auto y = run_case(c, x);
  auto [outs, axes] = y.primitive().vmap(y.inputs(), {1, -1});
  auto got = mx::moveaxis(outs[0], axes[0], 1);
  expect_matches(got, c["out"], mx::float64, "vmap with per-batch offsets");
}

}  // namespace
