// Helpers shared by the reduction, scan and softmax tests: the NumPy
// reference cases (tools/reference/reduce_refs.py) and float64 finite
// differences for checking a primitive's vjp / jvp / vmap directly.
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/primitive.h"

namespace reducetest {

using json = nlohmann::json;
using mx::array;
using mx::Shape;

inline const json& refs() {
  static const json j = [] {
    std::ifstream f(std::string(MLXCPP_TEST_DATA) + "/mx/reduce_refs.json");
    if (!f) throw std::runtime_error("cannot open reduce_refs.json");
    return json::parse(f);
  }();
  return j;
}

inline std::vector<double> values_of(const json& j) {
  std::vector<double> v;
  for (auto& x : j["data"]) {
    if (x.is_string()) {
      auto s = x.get<std::string>();
      double inf = std::numeric_limits<double>::infinity();
      v.push_back(s == "nan" ? std::nan("") : (s == "inf" ? inf : -inf));
    } else if (x.is_boolean()) {
      v.push_back(x.get<bool>() ? 1.0 : 0.0);
    } else {
      v.push_back(x.get<double>());
    }
  }
  return v;
}

inline array from_json(const json& j) {
  return mx::astype(array(values_of(j), j["shape"].get<Shape>(), mx::float64),
                    mx::dtype_from_name(j["dtype"].get<std::string>()));
}

// Tolerances by output dtype: 16-bit results are rounded once from an exact value.
inline double tolerance(mx::Dtype d) {
  if (d == mx::float16) return 2e-3;
  if (d == mx::bfloat16) return 1e-2;
  if (d == mx::float32) return 2e-5;
  if (d == mx::float64) return 1e-12;
  return 0;
}

// Runs every case whose op is in `ops` through `run` and checks the dtype,
// shape and values against NumPy's.
inline void check_cases(const std::vector<std::string>& ops,
                        const std::function<array(const json&)>& run, int min_cases) {
  int n = 0;
  for (auto& c : refs()["cases"]) {
    std::string op = c["op"];
    if (std::find(ops.begin(), ops.end(), op) == ops.end()) continue;
    SCOPED_TRACE(c["name"].get<std::string>());
    array out = run(c);
    mx::Dtype want = mx::dtype_from_name(c["expected"]["dtype"].get<std::string>());
    EXPECT_EQ(out.dtype(), want);
    double tol = tolerance(want);
    mxtest::expect_close(out, values_of(c["expected"]), c["expected"]["shape"].get<Shape>(), tol,
                         tol);
    ++n;
  }
  EXPECT_GE(n, min_cases);
}

inline std::vector<double> random_values(size_t n, unsigned seed, double lo = -1, double hi = 1) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

inline array f64(const std::vector<double>& v, const Shape& shape) {
  return array(v, shape, mx::float64);
}

// Checks out.primitive()'s vjp and jvp (out = f(x), x float64) against
// central differences of f along random directions.
inline void check_derivatives(const std::function<array(const array&)>& f,
                              const std::vector<double>& xv, const Shape& shape, double tol = 1e-6,
                              unsigned seed = 7) {
  array x = f64(xv, shape);
  array out = f(x);
  ASSERT_TRUE(out.has_primitive());
  ASSERT_TRUE(out.inputs()[0].is_same(x)) << "f must apply one primitive to x";
  // Both rules are built before anything is evaluated (evaluation detaches the graph).
  auto prim = out.primitive_ptr();
  auto inputs = out.inputs();
  // Outputs that are constant infinities (the identity of an exclusive
  // cummax) carry no derivative; they are left out of the loss.
  auto y0 = mxtest::to_vector(f(f64(xv, shape)));
  auto cv = random_values(out.size(), seed);
  for (size_t k = 0; k < cv.size(); ++k) {
    if (!std::isfinite(y0[k])) cv[k] = 0;
  }
  array c = f64(cv, out.shape());
  auto tv = random_values(xv.size(), seed + 1);
  array t = f64(tv, shape);
  array jt = prim->jvp(inputs, {t}, {0})[0];
  // vjp: dL/dx_i of L = sum(c * f(x)), one coordinate at a time.
  array g = prim->vjp(inputs, {c}, {0}, {out})[0];
  ASSERT_EQ(g.shape(), x.shape());
  auto got = mxtest::to_vector(g);
  const double h = 1e-6;
  auto loss = [&](const std::vector<double>& v) {
    auto y = mxtest::to_vector(f(f64(v, shape)));
    double l = 0;
    for (size_t k = 0; k < y.size(); ++k) l += cv[k] == 0 ? 0 : y[k] * cv[k];
    return l;
  };
  for (size_t i = 0; i < xv.size(); ++i) {
    auto p = xv, m = xv;
    p[i] += h;
    m[i] -= h;
    double fd = (loss(p) - loss(m)) / (2 * h);
    EXPECT_NEAR(got[i], fd, tol * (1 + std::abs(fd))) << "vjp element " << i;
  }
  // jvp along a random tangent.
  ASSERT_EQ(jt.shape(), out.shape());
  auto jg = mxtest::to_vector(jt);
  auto p = xv, m = xv;
  for (size_t i = 0; i < xv.size(); ++i) {
    p[i] += h * tv[i];
    m[i] -= h * tv[i];
  }
  auto yp = mxtest::to_vector(f(f64(p, shape)));
  auto ym = mxtest::to_vector(f(f64(m, shape)));
  for (size_t k = 0; k < jg.size(); ++k) {
    if (!std::isfinite(y0[k])) continue;
    double fd = (yp[k] - ym[k]) / (2 * h);
    EXPECT_NEAR(jg[k], fd, tol * (1 + std::abs(fd))) << "jvp element " << k;
  }
}

// Checks out.primitive()'s vmap: batching x along `axis` must equal applying
// f to each slice.
inline void check_vmap(const std::function<array(const array&)>& f, const array& xb, int axis) {
  int nb = xb.shape(axis);
  array slice0 = mx::squeeze(mx::slice(xb, Shape(xb.ndim(), 0),
                                       [&] {
                                         Shape s = xb.shape();
                                         s[axis] = 1;
                                         return s;
                                       }()),
                             axis);
  array probe = f(slice0);
  ASSERT_TRUE(probe.has_primitive());
  auto [outs, out_axes] = probe.primitive().vmap({xb}, {axis});
  array batched = outs[0];
  int oa = out_axes[0];
  ASSERT_EQ(static_cast<int>(batched.ndim()), static_cast<int>(probe.ndim()) + 1);
  for (int b = 0; b < nb; ++b) {
    Shape start(xb.ndim(), 0), stop = xb.shape();
    start[axis] = b;
    stop[axis] = b + 1;
    array expect = f(mx::squeeze(mx::slice(xb, start, stop), axis));
    Shape ostart(batched.ndim(), 0), ostop = batched.shape();
    ostart[oa] = b;
    ostop[oa] = b + 1;
    array got = mx::squeeze(mx::slice(batched, ostart, ostop), oa);
    mxtest::expect_close(got, mxtest::to_vector(expect), expect.shape(), 1e-12, 1e-12);
  }
}

}  // namespace reducetest
