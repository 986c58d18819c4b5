// Softmax: NumPy references (tools/reference/reduce_refs.py), hand-worked
// values, numerical stability, 16-bit inputs, and float64 finite differences
// for the fused Softmax primitive's derivatives and vmap.
#include "reduce_test_util.h"

namespace {

using mx::array;
using mx::Shape;
using mxtest::expect_close;
using reducetest::check_cases;
using reducetest::check_derivatives;
using reducetest::check_vmap;
using reducetest::f64;
using reducetest::from_json;
using reducetest::json;
using reducetest::random_values;

array run_softmax(const json& c) {
  array a = from_json(c["a"]);
  bool precise = c["precise"].get<bool>();
  if (c["axes"].is_null()) return mx::softmax(a, precise);
  return mx::softmax(a, c["axes"].get<std::vector<int>>(), precise);
}

TEST(Softmax, NumpyReferences) { check_cases({"softmax"}, run_softmax, 12); }

TEST(Softmax, HandWorked) {
  // softmax([0, ln 3]) = [1/4, 3/4]
  array a({0.0f, static_cast<float>(std::log(3.0))}, {2});
  expect_close(mx::softmax(a, -1), {0.25, 0.75}, {2});
  // Rows that differ by a constant shift give the same result (no overflow at 1e4).
  array b({1e4f, 1e4f + std::log(3.0f)}, {2});
  expect_close(mx::softmax(b, 0), {0.25, 0.75}, {2}, 1e-3, 1e-3);
  EXPECT_EQ(mx::softmax(array({1, 2}), 0).dtype(), mx::float32);
  EXPECT_EQ(mx::softmax(mx::astype(array({1, 2}), mx::bfloat16), 0, true).dtype(), mx::bfloat16);
  // One row of a single element is 1.
  expect_close(mx::softmax(mx::ones({3, 1}), -1), {1, 1, 1}, {3, 1});
}

TEST(Softmax, IsTheFusedPrimitive) {
  array x = mx::ones({2, 3});
  EXPECT_STREQ(mx::softmax(x, -1).primitive().name(), "Softmax");
  EXPECT_STREQ(mx::softmax(x, 1).primitive().name(), "Softmax");
}

TEST(Softmax, EmptyAndErrors) {
  EXPECT_EQ(mx::softmax(mx::zeros({0, 4}), -1).shape(), (Shape{0, 4}));
  try {
    mx::softmax(mx::zeros({2, 3}), 2);
    FAIL();
  } catch (const std::invalid_argument& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("[softmax]"), std::string::npos) << m;
    EXPECT_NE(m.find("axis 2"), std::string::npos) << m;
  }
  EXPECT_THROW(mx::softmax(mx::zeros({2, 3}), std::vector<int>{0, -2}), std::invalid_argument);
}

TEST(SoftmaxGrad, FiniteDifferences) {
  auto v = random_values(4 * 6, 61, -3, 3);
  for (bool precise : {false, true}) {
    check_derivatives([&](const array& x) { return mx::softmax(x, -1, precise); }, v, {4, 6});
  }
}

TEST(SoftmaxVmap, BatchAxes) {
  array xb = f64(random_values(3 * 4 * 5, 71), {3, 4, 5});
  for (int bax = 0; bax < 3; ++bax) {
    SCOPED_TRACE(bax);
    check_vmap([](const array& x) { return mx::softmax(x, -1); }, xb, bax);
  }
}

}  // namespace
