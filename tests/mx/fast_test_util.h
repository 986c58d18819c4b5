// Shared by the mx::fast tests: the NumPy reference cases
// (tools/reference/fast_refs.py -> tests/data/mx/fast_refs.json), dtype
// tolerances and float64 finite differences for vjp/jvp checks.
#pragma once

#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/primitive.h"

namespace fasttest {

using json = nlohmann::json;

inline const json& refs() {
  static const json j = [] {
    std::string path = std::string(MLXCPP_TEST_DATA) + "/mx/fast_refs.json";
    std::ifstream f(path);
    if (!f) throw std::runtime_error("cannot open " + path);
    return json::parse(f);
  }();
  return j;
}

inline mx::Shape shape_of(const json& t) { return t.at("shape").get<mx::Shape>(); }

// Reference inputs are stored as value * 64 (exact in every float dtype).
inline std::vector<double> input_values(const json& t) {
  std::vector<double> v;
  for (auto& q : t.at("q64")) v.push_back(q.get<double>() / 64.0);
  return v;
}

inline mx::array input(const json& t, mx::Dtype dtype) {
  return mx::array(input_values(t), shape_of(t), dtype);
}

inline std::vector<double> output_values(const json& t) {
  return t.at("data").get<std::vector<double>>();
}

inline const std::vector<mx::Dtype>& float_dtypes() {
  static const std::vector<mx::Dtype> d{mx::float64, mx::float32, mx::float16, mx::bfloat16};
  return d;
}

// Expects `actual` to match the float64 reference within what `dtype` allows:
// float64/float32 round-off, or for the 16-bit types a few roundings of the
// result (relative to the element and to the typical magnitude of the output,
// since intermediate values are rounded too).
inline void expect_matches(const mx::array& actual, const json& expected, mx::Dtype dtype,
                           const std::string& what) {
  SCOPED_TRACE(what + " in " + mx::dtype_name(dtype));
  ASSERT_EQ(actual.dtype(), dtype);
  std::vector<double> e = output_values(expected);
  double rms = 0;
  for (double v : e) rms += v * v;
  rms = e.empty() ? 0 : std::sqrt(rms / e.size());
  double rtol = 0, atol = 0;
  if (dtype == mx::float64) {
    rtol = 1e-11, atol = 1e-11;
  } else if (dtype == mx::float32) {
    rtol = 2e-5, atol = 2e-5 * (1 + rms);
  } else if (dtype == mx::float16) {
    rtol = 2.5e-3, atol = 2.5e-3 * rms;
  } else {
    rtol = 1.6e-2, atol = 1.6e-2 * rms;
  }
  mxtest::expect_close(actual, e, shape_of(expected), atol, rtol);
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

using Fn = std::function<mx::array(const std::vector<mx::array>&)>;

// Central differences of sum(cot * fn(inputs)) with respect to every element
// of inputs[arg], all in float64.
inline std::vector<double> numeric_vjp(const Fn& fn, const std::vector<std::vector<double>>& vals,
                                       const std::vector<mx::Shape>& shapes, int arg,
                                       const std::vector<double>& cot, double h = 1e-6) {
  auto eval_at = [&](const std::vector<double>& x) {
    std::vector<mx::array> in;
    for (size_t i = 0; i < vals.size(); ++i) {
      in.emplace_back(static_cast<int>(i) == arg ? x : vals[i], shapes[i], mx::float64);
    }
    return dot(mxtest::to_vector(fn(in)), cot);
  };
  std::vector<double> g;
  std::vector<double> x = vals[arg];
  for (size_t e = 0; e < x.size(); ++e) {
    double x0 = x[e];
    x[e] = x0 + h;
    double fp = eval_at(x);
    x[e] = x0 - h;
    double fm = eval_at(x);
    x[e] = x0;
    g.push_back((fp - fm) / (2 * h));
  }
  return g;
}

// Directional derivative of fn along `tangent` for inputs[arg].
inline std::vector<double> numeric_jvp(const Fn& fn, const std::vector<std::vector<double>>& vals,
                                       const std::vector<mx::Shape>& shapes, int arg,
                                       const std::vector<double>& tangent, double h = 1e-6) {
  auto eval_at = [&](double step) {
    std::vector<mx::array> in;
    for (size_t i = 0; i < vals.size(); ++i) {
      std::vector<double> v = vals[i];
      if (static_cast<int>(i) == arg) {
        for (size_t e = 0; e < v.size(); ++e) v[e] += step * tangent[e];
      }
      in.emplace_back(v, shapes[i], mx::float64);
    }
    return mxtest::to_vector(fn(in));
  };
  auto fp = eval_at(h), fm = eval_at(-h);
  std::vector<double> d(fp.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = (fp[i] - fm[i]) / (2 * h);
  return d;
}

// Deterministic test values in [-1, 1] (a small LCG, so no test depends on a
// random library).
inline std::vector<double> pseudo_random(size_t n, uint32_t seed) {
  std::vector<double> v(n);
  uint64_t s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<double>((s >> 33) % 2001) / 1000.0 - 1.0;
  }
  return v;
}

// Runs the vjp rule of fn's output primitive directly.
inline std::vector<mx::array> primitive_vjp(const mx::array& out, const std::vector<double>& cot,
                                            const std::vector<int>& argnums) {
  mx::array c(cot, out.shape(), out.dtype());
  mx::array o = out;
  return o.primitive().vjp(o.inputs(), {c}, argnums, {o});
}

}  // namespace fasttest
