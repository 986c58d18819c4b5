// logsumexp over one axis (the fused LogSumExp primitive): NumPy float64
// references (tools/reference/logsumexp_refs.py) for rows of 1 to 262208
// values in float32 and bfloat16, with keepdims, leading dims, a non-last
// axis and non-finite values; the same rows read through strided views;
// hand-worked long rows (the split path); the primitive's vjp / jvp against
// finite differences and against the composed formula; vmap.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "reduce_test_util.h"

namespace {

using mx::array;
using mx::Shape;
using mxtest::expect_close;
using reducetest::check_derivatives;
using reducetest::check_vmap;
using reducetest::f64;
using reducetest::json;
using reducetest::random_values;

const json& lse_refs() {
  static const json j = [] {
    std::ifstream f(std::string(MLXCPP_TEST_DATA) + "/mx/logsumexp_refs.json");
    if (!f) throw std::runtime_error("cannot open logsumexp_refs.json");
    return json::parse(f);
  }();
  return j;
}

std::vector<double> decode(const json& data) {
  std::vector<double> v;
  for (auto& x : data) {
    if (x.is_string()) {
      auto s = x.get<std::string>();
      double inf = std::numeric_limits<double>::infinity();
      v.push_back(s == "nan" ? std::nan("") : (s == "inf" ? inf : -inf));
    } else {
      v.push_back(x.get<double>());
    }
  }
  return v;
}

// The reference script's counter-based hash (all arithmetic mod 2^32).
uint32_t hash32(uint32_t seed, uint32_t i) {
  uint32_t x = i * 0x9E3779B1u + seed * 0x85EBCA77u + 1u;
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

// The script's generated input: values exact in `dtype` (see its docstring).
std::vector<double> generated(mx::Dtype dtype, uint32_t seed, size_t count, int e) {
  std::vector<double> v(count);
  for (size_t i = 0; i < count; ++i) {
    uint32_t h = hash32(seed, static_cast<uint32_t>(i));
    if (dtype == mx::float32) {
      v[i] = std::ldexp(static_cast<double>(static_cast<int64_t>(h >> 8) - (int64_t{1} << 23)),
                        e - 23);
    } else {
      v[i] = std::ldexp(static_cast<double>(static_cast<int64_t>(h >> 24) - 128), e - 7);
    }
  }
  return v;
}

struct Case {
  std::string name;
  mx::Dtype dtype;
  array x;
  int axis;
  bool keepdims;
  std::vector<double> expected;
  Shape expected_shape;
  bool generated;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  for (auto& c : lse_refs()["cases"]) {
    mx::Dtype dtype = mx::dtype_from_name(c["dtype"].get<std::string>());
    std::vector<double> xv;
    Shape shape;
    bool gen = c.contains("gen");
    if (gen) {
      shape = c["gen"]["shape"].get<Shape>();
      size_t count = 1;
      for (int d : shape) count *= static_cast<size_t>(d);
      xv = generated(dtype, c["gen"]["seed"].get<uint32_t>(), count, c["gen"]["e"].get<int>());
      // Every value is a multiple of 2^(e-23) below 2^e: the sum is exact in double, in any order.
      double total = 0;
      for (double v : xv) total += v;
      EXPECT_EQ(total, c["input_sum"].get<double>()) << c["name"] << ": not the script's input";
    } else {
      shape = c["values"]["shape"].get<Shape>();
      xv = decode(c["values"]["data"]);
    }
    array x = mx::astype(f64(xv, shape), dtype);
    out.push_back({c["name"].get<std::string>(), dtype, x, c["axis"].get<int>(),
                   c["keepdims"].get<bool>(), decode(c["expected"]["data"]),
                   c["expected"]["shape"].get<Shape>(), gen});
  }
  return out;
}

void expect_case(const Case& c, const array& x, const std::string& what) {
  SCOPED_TRACE(c.name + " " + what);
  array y = mx::logsumexp(x, c.axis, c.keepdims);
  EXPECT_EQ(y.dtype(), c.dtype);
  const double tol = reducetest::tolerance(c.dtype);
  expect_close(y, c.expected, c.expected_shape, tol, tol);
}

TEST(LogSumExp, NumpyReferences) {
  auto all = cases();
  EXPECT_GE(all.size(), 34u);
  for (const auto& c : all) expect_case(c, c.x, "contiguous");
}

// The same rows through views: the last axis strided (a transpose of a
// contiguous transpose), and rows at an odd offset and stride (a slice of a
// padded array: neither rows nor their starts are 16-byte aligned).
TEST(LogSumExp, StridedViews) {
  int checked = 0;
  for (const auto& c : cases()) {
    const int nd = static_cast<int>(c.x.ndim());
    if (!c.generated || nd < 2 || c.keepdims) continue;
    const int ax = c.axis < 0 ? c.axis + nd : c.axis;
    // Swapped with its neighbour, copied, swapped back: the same values with
    // the reduced axis strided (or, for a non-last axis, the others strided).
    const int other = ax == nd - 1 ? nd - 2 : nd - 1;
    array t = mx::swapaxes(mx::copy(mx::swapaxes(c.x, ax, other)), ax, other);
    t.eval();
    ASSERT_EQ(t.shape(), c.x.shape());
    if (ax == nd - 1 && c.x.shape(ax) > 1 && c.x.shape(other) > 1) {
      EXPECT_NE(t.strides()[ax], 1) << c.name;
    }
    expect_case(c, t, "transposed view");

    Shape pad_shape = c.x.shape();
    pad_shape[ax] = 1;
    array one = mx::zeros(pad_shape, c.dtype);
    pad_shape[ax] = 2;
    array two = mx::zeros(pad_shape, c.dtype);
    array padded = mx::concatenate({one, c.x, two}, ax);
    Shape start(nd, 0), stop = c.x.shape();
    start[ax] = 1;
    stop[ax] += 1;
    array v = mx::slice(padded, start, stop);
    expect_case(c, v, "offset slice");
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

// Long rows (cut into chunks on both backends) with hand-worked answers.
TEST(LogSumExp, LongRowsHandWorked) {
  const double inf = std::numeric_limits<double>::infinity();
  for (mx::Dtype dt : {mx::float32, mx::bfloat16}) {
    SCOPED_TRACE(mx::dtype_name(dt));
    const double tol = reducetest::tolerance(dt);
    for (int n : {20000, 262208}) {
      SCOPED_TRACE(n);
      // Rows: zeros (log n); zeros with one NaN; ones with one +inf; all -inf;
      // -inf but one -5 in the middle; zeros but one 30 (30 + log(1 + (n-1) e^-30)).
      const int rows = 6;
      std::vector<double> v(static_cast<size_t>(rows) * n, 0.0);
      auto at = [&](int r, int i) -> double& { return v[static_cast<size_t>(r) * n + i]; };
      at(1, n - 3) = std::nan("");
      for (int i = 0; i < n; ++i) at(2, i) = 1.0;
      at(2, n / 2 + 1) = inf;
      for (int i = 0; i < n; ++i) at(3, i) = at(4, i) = -inf;
      at(4, n / 2 - 7) = -5.0;
      at(5, 12345) = 30.0;
      array x = mx::astype(f64(v, {rows, n}), dt);
      std::vector<double> want = {std::log(static_cast<double>(n)),
                                  std::nan(""),
                                  inf,
                                  -inf,
                                  -5.0,
                                  30.0 + std::log1p((n - 1) * std::exp(-30.0))};
      expect_close(mx::logsumexp(x, -1), want, {rows}, tol, tol);
      // One row alone: the split across threads / blocks of a single row.
      for (int r = 0; r < rows; ++r) {
        SCOPED_TRACE(r);
        array row = mx::slice(x, {r, 0}, {r + 1, n});
        expect_close(mx::logsumexp(row, 1, true), {want[r]}, {1, 1}, tol, tol);
      }
    }
  }
}

TEST(LogSumExp, DtypesAndHandWorked) {
  // Integers are promoted to float32: log(e^0 + e^0) = log 2.
  array i = mx::logsumexp(array({0, 0}), -1);
  EXPECT_EQ(i.dtype(), mx::float32);
  expect_close(i, {std::log(2.0)}, {});
  // log(1 + 3) with x = [0, ln 3], in every float dtype.
  for (mx::Dtype dt : {mx::float16, mx::bfloat16, mx::float32, mx::float64}) {
    SCOPED_TRACE(mx::dtype_name(dt));
    array x = mx::astype(array({0.0, std::log(3.0)}, {1, 2}, mx::float64), dt);
    array y = mx::logsumexp(x, 1, true);
    EXPECT_EQ(y.dtype(), dt);
    const double tol = reducetest::tolerance(dt) + (dt == mx::float64 ? 0 : 1e-6);
    expect_close(y, {std::log(4.0)}, {1, 1}, tol, tol);
  }
  // A single element is itself.
  expect_close(mx::logsumexp(array({-7.5f, 2.25f}, {2, 1}), -1), {-7.5, 2.25}, {2});
}

TEST(LogSumExp, IsTheFusedPrimitive) {
  array x = mx::ones({2, 3});
  EXPECT_STREQ(mx::logsumexp(x, -1, true).primitive().name(), "LogSumExp");
  EXPECT_STREQ(mx::logsumexp(x, 1, true).primitive().name(), "LogSumExp");
  // keepdims=false squeezes the kept size-1 dim after the primitive.
  array y = mx::logsumexp(x, -1, false);
  ASSERT_TRUE(y.has_primitive());
  EXPECT_STREQ(y.inputs()[0].primitive().name(), "LogSumExp");
  // Several axes stay composed (max, exp, sum, log).
  EXPECT_STRNE(mx::logsumexp(x, std::vector<int>{0, 1}, true).primitive().name(), "LogSumExp");
}

TEST(LogSumExp, Errors) {
  try {
    mx::logsumexp(mx::zeros({2, 3}), 2);
    FAIL();
  } catch (const std::invalid_argument& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("[logsumexp]"), std::string::npos) << m;
  }
  EXPECT_THROW(mx::logsumexp(mx::zeros({0, 3}), -1), std::invalid_argument);
}

TEST(LogSumExpGrad, FiniteDifferences) {
  auto v = random_values(4 * 6, 81, -3, 3);
  check_derivatives([](const array& x) { return mx::logsumexp(x, -1, true); }, v, {4, 6});
  auto w = random_values(2 * 3 * 5, 83, -4, 4);
  check_derivatives([](const array& x) { return mx::logsumexp(x, -1, true); }, w, {2, 3, 5});
}

// The fused primitive's derivatives equal those of the composed formula
// log(sum(exp(x - m))) + m (m = max(x), no gradient through the shift).
TEST(LogSumExpGrad, MatchesComposedFormula) {
  auto composed = [](const array& x) {
    array m = mx::stop_gradient(mx::max(x, -1, true));
    return mx::add(mx::log(mx::sum(mx::exp(mx::subtract(x, m)), -1, true)), m);
  };
  auto fused = [](const array& x) { return mx::logsumexp(x, -1, true); };
  for (mx::Dtype dt : {mx::float32, mx::float64}) {
    SCOPED_TRACE(mx::dtype_name(dt));
    array x = mx::astype(f64(random_values(3 * 1000, 91, -8, 8), {3, 1000}), dt);
    array c = mx::astype(f64(random_values(3, 92), {3, 1}), dt);
    array t = mx::astype(f64(random_values(3 * 1000, 93), {3, 1000}), dt);
    const double tol = dt == mx::float32 ? 2e-6 : 1e-12;
    auto [yf, gf] = mx::vjp(fused, x, c);
    auto [yc, gc] = mx::vjp(composed, x, c);
    expect_close(yf, mxtest::to_vector(yc), yc.shape(), 1e-5, 1e-6);
    expect_close(gf, mxtest::to_vector(gc), gc.shape(), tol, 1e-4);
    auto [jf_y, jf] = mx::jvp(fused, x, t);
    auto [jc_y, jc] = mx::jvp(composed, x, t);
    expect_close(jf, mxtest::to_vector(jc), jc.shape(), tol, 1e-4);
  }
}

TEST(LogSumExpVmap, BatchAxes) {
  array xb = f64(random_values(3 * 4 * 5, 95, -3, 3), {3, 4, 5});
  for (int bax = 0; bax < 3; ++bax) {
    SCOPED_TRACE(bax);
    check_vmap([](const array& x) { return mx::logsumexp(x, -1, true); }, xb, bax);
  }
  // Through the transform, with keepdims=false.
  auto f = mx::vmap([](const array& x) { return mx::logsumexp(x, -1); }, 2);
  array got = f(xb);
  expect_close(got, mxtest::to_vector(mx::transpose(mx::logsumexp(xb, 1))), {5, 3}, 1e-12, 1e-12);
}

}  // namespace
