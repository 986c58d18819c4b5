// Shared by the mx::nn tests: the NumPy reference cases
// (tools/reference/nn_refs.py -> tests/data/nn/nn_refs.json) and dtype tolerances.
#pragma once

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/check.h"

namespace nntest {

using json = nlohmann::json;

inline const json& refs() {
  static const json j = [] {
    std::string path = std::string(MLXCPP_TEST_DATA) + "/nn/nn_refs.json";
    std::ifstream f(path);
    if (!f) throw std::runtime_error("cannot open " + path);
    return json::parse(f);
  }();
  return j;
}

inline mx::Shape shape_of(const json& t) { return t.at("shape").get<mx::Shape>(); }

// Reference inputs are stored as value * 64 (exact in bfloat16 and float32).
inline mx::array input(const json& t, mx::Dtype dtype) {
  std::vector<double> v;
  for (auto& q : t.at("q64")) v.push_back(q.get<double>() / 64.0);
  return mx::array(v, shape_of(t), dtype);
}

inline mx::array output(const json& t, mx::Dtype dtype) {
  return mx::array(t.at("data").get<std::vector<double>>(), shape_of(t), dtype);
}

// Expects `actual` (of dtype) to match the float64 reference: float32 round-off,
// or for bfloat16 a few roundings of the result (relative to the element and to
// the typical magnitude of the output, since intermediates are rounded too).
inline void expect_matches(const mx::array& actual, const json& expected, mx::Dtype dtype,
                           const std::string& what) {
  SCOPED_TRACE(what + " in " + mx::dtype_name(dtype));
  ASSERT_EQ(actual.dtype(), dtype);
  auto e = expected.at("data").get<std::vector<double>>();
  double rms = 0;
  for (double v : e) rms += v * v;
  rms = e.empty() ? 0 : std::sqrt(rms / e.size());
  double rtol = 0, atol = 0;
  if (dtype == mx::float32) {
    rtol = 2e-5, atol = 2e-5 * (1 + rms);
  } else {
    rtol = 1.6e-2, atol = 1.6e-2 * rms;
  }
  mxtest::expect_close(actual, e, shape_of(expected), atol, rtol);
}

}  // namespace nntest
