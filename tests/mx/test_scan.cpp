// Scans (cumsum, cumprod, cummax, cummin): NumPy references
// (tools/reference/reduce_refs.py), hand-worked cases, dtype rules, errors,
// and float64 finite differences for the Scan derivatives and vmap.
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

array run_scan(const json& c) {
  std::string op = c["op"];
  array a = from_json(c["a"]);
  bool rev = c["reverse"].get<bool>(), inc = c["inclusive"].get<bool>();
  if (c["axis"].is_null()) {
    if (op == "cumsum") return mx::cumsum(a, rev, inc);
    if (op == "cumprod") return mx::cumprod(a, rev, inc);
    if (op == "cummax") return mx::cummax(a, rev, inc);
    return mx::cummin(a, rev, inc);
  }
  int ax = c["axis"].get<int>();
  if (op == "cumsum") return mx::cumsum(a, ax, rev, inc);
  if (op == "cumprod") return mx::cumprod(a, ax, rev, inc);
  if (op == "cummax") return mx::cummax(a, ax, rev, inc);
  return mx::cummin(a, ax, rev, inc);
}

TEST(Scan, NumpyReferences) {
  check_cases({"cumsum", "cumprod", "cummax", "cummin"}, run_scan, 69);
}

TEST(Scan, HandWorked) {
  array a({1, 2, 3, 4}, {4});
  expect_close(mx::cumsum(a), {1, 3, 6, 10}, {4});
  expect_close(mx::cumsum(a, 0, true), {10, 9, 7, 4}, {4});
  expect_close(mx::cumsum(a, 0, false, false), {0, 1, 3, 6}, {4});
  expect_close(mx::cumsum(a, 0, true, false), {9, 7, 4, 0}, {4});
  expect_close(mx::cumprod(a), {1, 2, 6, 24}, {4});
  expect_close(mx::cumprod(a, 0, true, false), {24, 12, 4, 1}, {4});
  array b({3, 1, 4, 1, 5}, {5});
  expect_close(mx::cummax(b), {3, 3, 4, 4, 5}, {5});
  expect_close(mx::cummin(b), {3, 1, 1, 1, 1}, {5});
  expect_close(mx::cummax(b, 0, true), {5, 5, 5, 5, 5}, {5});
  expect_close(mx::cummin(b, 0, true), {1, 1, 1, 1, 5}, {5});
  array m({1, 2, 3, 4, 5, 6}, {2, 3});
  expect_close(mx::cumsum(m, 0), {1, 2, 3, 5, 7, 9}, {2, 3});
  expect_close(mx::cumsum(m, -1), {1, 3, 6, 4, 9, 15}, {2, 3});
  expect_close(mx::cumsum(m), {1, 3, 6, 10, 15, 21}, {6});  // flattened
  // Strided input: the transpose of m.
  expect_close(mx::cumsum(mx::transpose(m), 1), {1, 5, 2, 7, 3, 9}, {3, 2});
}

TEST(Scan, DtypesAndEdges) {
  EXPECT_EQ(mx::cumsum(array({true, false, true})).dtype(), mx::int32);
  expect_close(mx::cumsum(array({true, false, true})), {1, 1, 2}, {3});
  EXPECT_EQ(mx::cumsum(mx::astype(array({1, 2}), mx::int8)).dtype(), mx::int8);
  EXPECT_EQ(mx::cumprod(array({true, false})).dtype(), mx::bool_);
  EXPECT_EQ(mx::cummax(mx::astype(array({1, 2}), mx::bfloat16)).dtype(), mx::bfloat16);
  array e = mx::zeros({0, 3});
  EXPECT_EQ(mx::cumsum(e, 0).shape(), (Shape{0, 3}));
  EXPECT_EQ(mx::cumsum(e, 1).size(), 0u);
  mx::cumsum(e, 1).eval();
  // float16 accumulates in float: 3000 ones count exactly to 2048 and beyond
  // (up to float16's spacing of 2 above 2048).
  auto v = mxtest::to_vector(mx::cumsum(mx::ones({3000}, mx::float16)));
  EXPECT_EQ(v[2047], 2048);
  EXPECT_EQ(v[2999], 3000);
}

TEST(Scan, Errors) {
  array a = mx::zeros({2, 3});
  for (auto fn : {+[](const array& x) { return mx::cumsum(x, 2); },
                  +[](const array& x) { return mx::cumprod(x, -3); },
                  +[](const array& x) { return mx::cummax(x, 5); },
                  +[](const array& x) { return mx::cummin(x, -4); }}) {
    try {
      fn(a);
      FAIL() << "expected an axis error";
    } catch (const std::invalid_argument& err) {
      std::string m = err.what();
      EXPECT_NE(m.find("[cum"), std::string::npos) << m;
      EXPECT_NE(m.find("2 dimensions"), std::string::npos) << m;
    }
  }
  EXPECT_THROW(mx::cumsum(array(1.0f), 0), std::invalid_argument);
  EXPECT_THROW(mx::cummax(mx::astype(a, mx::complex64), 0).eval(), std::invalid_argument);
}

TEST(ScanGrad, AllKindsDirections) {
  // Distinct values so cummax / cummin are differentiable everywhere.
  auto v = random_values(3 * 5, 41, 0.5, 2.0);
  for (int axis : {0, 1}) {
    for (bool rev : {false, true}) {
      for (bool inc : {true, false}) {
        SCOPED_TRACE(::testing::Message()
                     << "axis " << axis << " reverse " << rev << " inclusive " << inc);
        check_derivatives([&](const array& x) { return mx::cumsum(x, axis, rev, inc); }, v, {3, 5});
        check_derivatives([&](const array& x) { return mx::cumprod(x, axis, rev, inc); }, v,
                          {3, 5});
        check_derivatives([&](const array& x) { return mx::cummax(x, axis, rev, inc); }, v, {3, 5});
        check_derivatives([&](const array& x) { return mx::cummin(x, axis, rev, inc); }, v, {3, 5});
      }
    }
  }
}

TEST(ScanGrad, CumprodWithZeros) {
  // Zeros (one or several per row) must not produce inf or nan: compare with
  // finite differences at points away from the kinks of the zero entries.
  std::vector<double> v = {1.5, 0.0, 2.0, -1.0, 0.5, 0.0, 3.0, 0.0, 1.2, 0.7, 2.0, 0.0};
  for (bool rev : {false, true}) {
    for (bool inc : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "reverse " << rev << " inclusive " << inc);
      check_derivatives([&](const array& x) { return mx::cumprod(x, 1, rev, inc); }, v, {2, 6});
    }
  }
  // Hand-worked: x = [2, 0, 3], y = [2, 0, 0], c = [1, 1, 1]:
  // dx0 = 1 + x1 + x1 x2 = 1, dx1 = x0 + x0 x2 = 8, dx2 = x0 x1 = 0.
  array x = f64({2, 0, 3}, {3});
  array out = mx::cumprod(x, 0);
  array g = out.primitive().vjp(out.inputs(), {f64({1, 1, 1}, {3})}, {0}, {out})[0];
  expect_close(g, {1, 8, 0}, {3});
}

TEST(ScanGrad, CummaxOwnership) {
  // Hand-worked: x = [1, 3, 2, 5, 4], cummax = [1, 3, 3, 5, 5]; output k
  // copies x at positions [0, 1, 1, 3, 3], so dx = [c0, c1 + c2, 0, c3 + c4, 0].
  array x = f64({1, 3, 2, 5, 4}, {5});
  array out = mx::cummax(x, 0);
  array c = f64({1, 10, 100, 1000, 10000}, {5});
  array g = out.primitive().vjp(out.inputs(), {c}, {0}, {out})[0];
  expect_close(g, {1, 110, 0, 11000, 0}, {5});
  // Exclusive: outputs [-inf, 1, 3, 3, 5] copy positions [-, 0, 1, 1, 3].
  array oe = mx::cummax(x, 0, false, false);
  array ge = oe.primitive().vjp(oe.inputs(), {c}, {0}, {oe})[0];
  expect_close(ge, {10, 1100, 0, 10000, 0}, {5});
}

TEST(ScanVmap, AllKinds) {
  array xb = f64(random_values(3 * 4 * 5, 51), {3, 4, 5});
  for (int bax = 0; bax < 3; ++bax) {
    SCOPED_TRACE(bax);
    check_vmap([](const array& x) { return mx::cumsum(x, 1); }, xb, bax);
    check_vmap([](const array& x) { return mx::cumprod(x, 0, true); }, xb, bax);
    check_vmap([](const array& x) { return mx::cummax(x, 1, false, false); }, xb, bax);
    check_vmap([](const array& x) { return mx::cummin(x, 0, true, false); }, xb, bax);
  }
}

}  // namespace
