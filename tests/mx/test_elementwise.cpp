// Elementwise ops against NumPy (tests/data/mx/elementwise_refs.json, made by
// tools/reference/elementwise_refs.py) and hand-worked edge cases.
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>

#include <nlohmann/json.hpp>

#include "common/check.h"

using mx::array;

namespace {

const nlohmann::json& refs() {
  static const nlohmann::json j = [] {
    std::ifstream f(std::string(MLXCPP_TEST_DATA) + "/mx/elementwise_refs.json");
    return nlohmann::json::parse(f);
  }();
  return j;
}

array from_json(const nlohmann::json& v, mx::Dtype dtype) {
  auto x = v.get<std::vector<double>>();
  return mx::astype(array(x, {static_cast<int>(x.size())}, mx::float64), dtype);
}

const std::map<std::string, std::function<array(const array&)>> kUnary = {
    {"abs", [](const array& x) { return mx::abs(x); }},
    {"negative", [](const array& x) { return mx::negative(x); }},
    {"sign", [](const array& x) { return mx::sign(x); }},
    {"square", [](const array& x) { return mx::square(x); }},
    {"sqrt", [](const array& x) { return mx::sqrt(x); }},
    {"rsqrt", [](const array& x) { return mx::rsqrt(x); }},
    {"exp", [](const array& x) { return mx::exp(x); }},
    {"expm1", [](const array& x) { return mx::expm1(x); }},
    {"log", [](const array& x) { return mx::log(x); }},
    {"log2", [](const array& x) { return mx::log2(x); }},
    {"log10", [](const array& x) { return mx::log10(x); }},
    {"log1p", [](const array& x) { return mx::log1p(x); }},
    {"sin", [](const array& x) { return mx::sin(x); }},
    {"cos", [](const array& x) { return mx::cos(x); }},
    {"tan", [](const array& x) { return mx::tan(x); }},
    {"arcsin", [](const array& x) { return mx::arcsin(x); }},
    {"arccos", [](const array& x) { return mx::arccos(x); }},
    {"arctan", [](const array& x) { return mx::arctan(x); }},
    {"sinh", [](const array& x) { return mx::sinh(x); }},
    {"cosh", [](const array& x) { return mx::cosh(x); }},
    {"tanh", [](const array& x) { return mx::tanh(x); }},
    {"arcsinh", [](const array& x) { return mx::arcsinh(x); }},
    {"arccosh", [](const array& x) { return mx::arccosh(x); }},
    {"arctanh", [](const array& x) { return mx::arctanh(x); }},
    {"sigmoid", [](const array& x) { return mx::sigmoid(x); }},
    {"erf", [](const array& x) { return mx::erf(x); }},
    {"erfinv", [](const array& x) { return mx::erfinv(x); }},
    {"floor", [](const array& x) { return mx::floor(x); }},
    {"ceil", [](const array& x) { return mx::ceil(x); }},
    {"round", [](const array& x) { return mx::round(x); }},
    {"degrees", [](const array& x) { return mx::degrees(x); }},
    {"radians", [](const array& x) { return mx::radians(x); }},
};

const std::map<std::string, std::function<array(const array&, const array&)>> kBinary = {
    {"add", [](const array& a, const array& b) { return mx::add(a, b); }},
    {"subtract", [](const array& a, const array& b) { return mx::subtract(a, b); }},
    {"multiply", [](const array& a, const array& b) { return mx::multiply(a, b); }},
    {"divide", [](const array& a, const array& b) { return mx::divide(a, b); }},
    {"floor_divide", [](const array& a, const array& b) { return mx::floor_divide(a, b); }},
    {"remainder", [](const array& a, const array& b) { return mx::remainder(a, b); }},
    {"power", [](const array& a, const array& b) { return mx::power(a, b); }},
    {"maximum", [](const array& a, const array& b) { return mx::maximum(a, b); }},
    {"minimum", [](const array& a, const array& b) { return mx::minimum(a, b); }},
    {"arctan2", [](const array& a, const array& b) { return mx::arctan2(a, b); }},
    {"logaddexp", [](const array& a, const array& b) { return mx::logaddexp(a, b); }},
};

}  // namespace

TEST(Elementwise, UnaryMatchesNumpyInFloat32AndFloat64) {
  for (auto& [name, fn] : kUnary) {
    SCOPED_TRACE(name);
    auto& c = refs().at("unary").at(name);
    auto y = c.at("y").get<std::vector<double>>();
    int n = static_cast<int>(y.size());
    mxtest::expect_close(fn(from_json(c.at("x"), mx::float64)), y, {n}, 1e-12, 1e-12);
    mxtest::expect_close(fn(from_json(c.at("x"), mx::float32)), y, {n}, 1e-5, 2e-6);
    auto r = fn(from_json(c.at("x"), mx::float32));
    EXPECT_EQ(r.dtype(), mx::float32);
  }
}

TEST(Elementwise, UnaryHalfTypesComputeInFloat) {
  for (auto dt : {mx::bfloat16, mx::float16}) {
    for (auto& [name, fn] : kUnary) {
      SCOPED_TRACE(name);
      auto& c = refs().at("unary").at(name);
      // The reference is evaluated on the rounded inputs by rounding them the same way.
      auto x16 = from_json(c.at("x"), dt);
      auto y = fn(x16);
      EXPECT_EQ(y.dtype(), dt);
      auto expect = mxtest::to_vector(fn(mx::astype(x16, mx::float64)));
      double tol = dt == mx::bfloat16 ? 1.0 / 128 : 1.0 / 1024;
      mxtest::expect_close(y, expect, x16.shape(), 2 * tol, 2 * tol);
    }
  }
}

TEST(Elementwise, BinaryMatchesNumpy) {
  for (auto& [name, fn] : kBinary) {
    SCOPED_TRACE(name);
    auto& c = refs().at("binary").at(name);
    auto z = c.at("z").get<std::vector<double>>();
    int n = static_cast<int>(z.size());
    mxtest::expect_close(fn(from_json(c.at("x"), mx::float64), from_json(c.at("y"), mx::float64)),
                         z, {n}, 1e-12, 1e-12);
    mxtest::expect_close(fn(from_json(c.at("x"), mx::float32), from_json(c.at("y"), mx::float32)),
                         z, {n}, 1e-5, 1e-5);
  }
}

TEST(Elementwise, IntegerDivisionFollowsPython) {
  for (auto name : {"floor_divide", "remainder", "power"}) {
    SCOPED_TRACE(name);
    auto& c = refs().at("int_binary").at(name);
    auto x = c.at("x").get<std::vector<int>>();
    auto y = c.at("y").get<std::vector<int>>();
    auto z = c.at("z").get<std::vector<double>>();
    int n = static_cast<int>(x.size());
    auto r = kBinary.at(name)(array(x, {n}, mx::int32), array(y, {n}, mx::int32));
    EXPECT_EQ(r.dtype(), mx::int32);
    mxtest::expect_close(r, z, {n}, 0, 0);
  }
}

TEST(Elementwise, TypePromotion) {
  array i8(int8_t{1}), u8(uint8_t{1}), i32(1), f16 = mx::astype(array(1.0f), mx::float16);
  array bf = mx::astype(array(1.0f), mx::bfloat16);
  EXPECT_EQ((i8 + u8).dtype(), mx::int16);
  EXPECT_EQ((i32 + f16).dtype(), mx::float16);
  EXPECT_EQ((bf + f16).dtype(), mx::float32);
  EXPECT_EQ((array(uint64_t{1}) + array(int64_t{1})).dtype(), mx::float32);
  EXPECT_EQ((array(true) + array(true)).dtype(), mx::bool_);
  EXPECT_EQ(mx::divide(i32, i32).dtype(), mx::float32);
  EXPECT_EQ(mx::sqrt(i32).dtype(), mx::float32);
  EXPECT_EQ(mx::equal(i32, f16).dtype(), mx::bool_);
  EXPECT_EQ(mx::abs(mx::astype(array(1.0f), mx::complex64)).dtype(), mx::float32);
}

TEST(Elementwise, BroadcastingAndStridedInputs) {
  array a = mx::reshape(mx::arange(6.0), {2, 3});  // [[0,1,2],[3,4,5]]
  array b({10.0f, 20.0f, 30.0f});
  mxtest::expect_close(a + b, {10, 21, 32, 13, 24, 35}, {2, 3});
  array col = mx::reshape(array({1.0f, 2.0f}), {2, 1});
  mxtest::expect_close(a * col, {0, 1, 2, 6, 8, 10}, {2, 3});
  // Transposed and sliced views are read through their strides.
  mxtest::expect_close(mx::transpose(a) + 1.0f, {1, 4, 2, 5, 3, 6}, {3, 2});
  array s = mx::slice(a, {0, 0}, {2, 3}, {1, 2});  // [[0, 2], [3, 5]]
  mxtest::expect_close(s * mx::transpose(s), {0, 6, 6, 25}, {2, 2});
  array rev = mx::slice(a, {1, 2}, {-3, -4}, {-1, -1});  // a[::-1, ::-1]
  mxtest::expect_close(rev + a, {5, 5, 5, 5, 5, 5}, {2, 3});
}

TEST(Elementwise, ShapeErrorsNameBothShapes) {
  array a = mx::zeros({2, 3});
  array b = mx::zeros({4});
  try {
    auto c = a + b;
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("(2, 3)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(4,)"), std::string::npos) << msg;
  }
}

TEST(Elementwise, NanAndInfinity) {
  double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  array x({-inf, -1.0, 0.0, 1.0, inf, nan});
  mxtest::expect_close(mx::isnan(x), {0, 0, 0, 0, 0, 1}, {6});
  mxtest::expect_close(mx::isinf(x), {1, 0, 0, 0, 1, 0}, {6});
  mxtest::expect_close(mx::isfinite(x), {0, 1, 1, 1, 0, 0}, {6});
  mxtest::expect_close(mx::isposinf(x), {0, 0, 0, 0, 1, 0}, {6});
  mxtest::expect_close(mx::isneginf(x), {1, 0, 0, 0, 0, 0}, {6});
  mxtest::expect_close(mx::maximum(x, array(0.0)), {0, 0, 0, 1, inf, nan}, {6});
  mxtest::expect_close(mx::exp(x), {0, std::exp(-1.0), 1, std::exp(1.0), inf, nan}, {6}, 1e-12);
  mxtest::expect_close(mx::nan_to_num(x, 0.0f, 7.0f, -7.0f), {-7, -1, 0, 1, 7, 0}, {6});
  mxtest::expect_close(mx::divide(array(1.0f), array(0.0f)), {inf}, {});
  mxtest::expect_close(mx::logaddexp(array(-inf), array(-inf)), {-inf}, {});
}

TEST(Elementwise, IntegerOverflowWraps) {
  array a(std::vector<int8_t>{127, -128}, {2}, mx::int8);
  mxtest::expect_close(a + array(int8_t{1}), {-128, -127}, {2}, 0, 0);
  array u(std::vector<uint8_t>{0, 255}, {2}, mx::uint8);
  mxtest::expect_close(u + array(uint8_t{1}), {1, 0}, {2}, 0, 0);
  mxtest::expect_close(mx::negative(u), {0, 1}, {2}, 0, 0);
  array big(std::vector<int32_t>{2147483647}, {1}, mx::int32);
  mxtest::expect_close(big * array(2), {-2}, {1}, 0, 0);
  mxtest::expect_close(big + array(1), {-2147483648.0}, {1}, 0, 0);
  array small(std::vector<int32_t>{-2147483647 - 1}, {1}, mx::int32);
  mxtest::expect_close(small - array(1), {2147483647}, {1}, 0, 0);
  mxtest::expect_close(mx::negative(small), {-2147483648.0}, {1}, 0, 0);
}

TEST(Elementwise, BitwiseAndLogical) {
  array a(std::vector<int32_t>{12, 10, -1}, {3}, mx::int32);
  array b(std::vector<int32_t>{10, 6, 4}, {3}, mx::int32);
  mxtest::expect_close(a & b, {8, 2, 4}, {3}, 0, 0);
  mxtest::expect_close(a | b, {14, 14, -1}, {3}, 0, 0);
  mxtest::expect_close(a ^ b, {6, 12, -5}, {3}, 0, 0);
  mxtest::expect_close(~a, {-13, -11, 0}, {3}, 0, 0);
  mxtest::expect_close(a << array(2), {48, 40, -4}, {3}, 0, 0);
  mxtest::expect_close(a >> array(1), {6, 5, -1}, {3}, 0, 0);
  array t({true, true, false}), f({true, false, false});
  mxtest::expect_close(t && f, {1, 0, 0}, {3}, 0, 0);
  mxtest::expect_close(t || f, {1, 1, 0}, {3}, 0, 0);
  mxtest::expect_close(!t, {0, 0, 1}, {3}, 0, 0);
  EXPECT_THROW(mx::bitwise_and(array(1.0f), array(1.0f)), std::invalid_argument);
  EXPECT_THROW(mx::negative(array(true)), std::invalid_argument);
}

TEST(Elementwise, WhereAndClip) {
  array c({true, false, true});
  mxtest::expect_close(mx::where(c, array({1.0f, 2.0f, 3.0f}), array(0.0f)), {1, 0, 3}, {3});
  array x({-2.0f, 0.5f, 3.0f});
  mxtest::expect_close(mx::clip(x, array(-1.0f), array(1.0f)), {-1, 0.5, 1}, {3});
  mxtest::expect_close(mx::clip(x, std::nullopt, array(0.0f)), {-2, 0, 0}, {3});
}

TEST(Elementwise, AsTypeRoundsAndConverts) {
  // bfloat16 keeps 8 bits of mantissa: 1 + 2^-8 rounds to even (1), 1 + 3*2^-8 rounds up.
  array x({1.0f + 1.0f / 256, 1.0f + 3.0f / 256, 65504.0f, 70000.0f});
  mxtest::expect_close(mx::astype(x, mx::bfloat16), {1.0, 1.0 + 4.0 / 256, 65536.0, 70144.0}, {4},
                       0, 0);
  mxtest::expect_close(
      mx::astype(x, mx::float16),
      {1.0 + 1.0 / 256, 1.0 + 3.0 / 256, 65504.0, std::numeric_limits<double>::infinity()}, {4}, 0,
      0);
  mxtest::expect_close(mx::astype(array({-1.7f, 2.9f}), mx::int32), {-1, 2}, {2}, 0, 0);
  mxtest::expect_close(mx::astype(array({0.0f, 0.1f}), mx::bool_), {0, 1}, {2}, 0, 0);
  // float16 subnormals survive the round trip.
  array tiny(std::vector<float>{5.960464477539063e-08f, 6.103515625e-05f}, {2});
  mxtest::expect_close(mx::astype(mx::astype(tiny, mx::float16), mx::float32),
                       {5.960464477539063e-08, 6.103515625e-05}, {2}, 0, 0);
}

// float32 tanh is computed in float32 arithmetic (vectorized); the reference is the C
// library's double-precision tanh of the same inputs, on a dense grid that crosses the
// kernel's internal switch points (|x| = 1/4, 0.55, 10), with tiny, subnormal and special
// values.
TEST(Elementwise, Float32TanhWithinThreeUlpsOfDoubleTanh) {
  std::vector<float> xs;
  for (int i = -120000; i <= 120000; ++i) xs.push_back(static_cast<float>(i) * 1e-4f);
  for (int e = -149; e < 0; e += 3) {
    xs.push_back(std::ldexp(1.0f, e));
    xs.push_back(-std::ldexp(1.37f, e));
  }
  for (float v : {0.25f, -0.25f, std::nextafter(0.25f, 0.0f), 0.55f, 9.0f, 9.02f, 10.0f, -10.0f,
                  100.0f, -1e30f}) {
    xs.push_back(v);
  }
  const int n = static_cast<int>(xs.size());
  auto got = mxtest::to_vector(mx::tanh(array(xs, {n})));
  for (int i = 0; i < n; ++i) {
    const float ref = static_cast<float>(std::tanh(static_cast<double>(xs[i])));
    const double ulp = std::nextafter(std::fabs(ref), 2.0f) - std::fabs(ref);
    // Past |x| = 0.55 the error must stay near half an ulp of the result's magnitude:
    // GELU forms 1 + tanh(x), whose relative accuracy for very negative x is exactly that.
    const double bound = std::fabs(xs[i]) >= 0.55f ? 1.5 * ulp : 3 * ulp;
    ASSERT_LE(std::fabs(got[i] - std::tanh(static_cast<double>(xs[i]))), bound) << "x = " << xs[i];
    ASSERT_EQ(std::signbit(got[i]), std::signbit(ref)) << "x = " << xs[i];
  }
  const float inf = std::numeric_limits<float>::infinity();
  auto special = mxtest::to_vector(
      mx::tanh(array({inf, -inf, std::numeric_limits<float>::quiet_NaN(), 0.0f, -0.0f})));
  EXPECT_EQ(special[0], 1.0);
  EXPECT_EQ(special[1], -1.0);
  EXPECT_TRUE(std::isnan(special[2]));
  EXPECT_TRUE(special[3] == 0.0 && !std::signbit(special[3]));
  EXPECT_TRUE(special[4] == 0.0 && std::signbit(special[4]));
  // A strided (transposed) input goes through the same kernel.
  array m = mx::reshape(array(std::vector<float>(xs.begin(), xs.begin() + 6), {6}), {2, 3});
  auto t = mxtest::to_vector(mx::tanh(mx::transpose(m)));
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 2; ++j) {
      EXPECT_NEAR(t[i * 2 + j], std::tanh(static_cast<double>(xs[j * 3 + i])), 1e-6);
    }
  }
}
