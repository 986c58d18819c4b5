// Loads the NumPy reference cases of tools/reference/shape_sort_refs.py
// (tests/data/mx/shape_sort_refs.json) and compares arrays with them.
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "common/check.h"

namespace mxtest {

inline const nlohmann::json& shape_sort_case(const std::string& name) {
  static const nlohmann::json all = [] {
    std::ifstream f(std::string(MLXCPP_TEST_DATA) + "/mx/shape_sort_refs.json");
    if (!f) throw std::runtime_error("cannot open tests/data/mx/shape_sort_refs.json");
    return nlohmann::json::parse(f);
  }();
  const auto& cases = all.at("cases");
  if (!cases.contains(name)) throw std::runtime_error("no reference case named " + name);
  return cases.at(name);
}

inline double ref_value(const nlohmann::json& v) {
  if (v.is_string()) {
    auto s = v.get<std::string>();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    return s == "inf" ? std::numeric_limits<double>::infinity()
                      : -std::numeric_limits<double>::infinity();
  }
  return v.get<double>();
}

inline mx::array ref_array(const nlohmann::json& j) {
  mx::Shape shape = j.at("shape").get<mx::Shape>();
  mx::Dtype dtype = mx::dtype_from_name(j.at("dtype").get<std::string>());
  const auto& data = j.at("data");
  if (mx::is_floating_point(dtype)) {
    std::vector<double> v;
    for (const auto& x : data) v.push_back(ref_value(x));
    return mx::astype(mx::array(v, shape, mx::float64), dtype);
  }
  std::vector<int64_t> v;
  for (const auto& x : data) v.push_back(x.get<int64_t>());
  return mx::astype(mx::array(v, shape, mx::int64), dtype);
}

// Input `i` of case `name`.
inline mx::array ref_input(const std::string& name, int i) {
  return ref_array(shape_sort_case(name).at("inputs").at(i));
}

inline std::vector<double> ref_values(const nlohmann::json& j) {
  std::vector<double> v;
  for (const auto& x : j.at("data")) v.push_back(ref_value(x));
  return v;
}

// Expects `actual` to equal output `i` of case `name`: shape, dtype and values
// (exactly, NaN where NumPy has NaN).
inline void expect_ref(const mx::array& actual, const std::string& name, int i = 0) {
  const auto& j = shape_sort_case(name).at("outputs").at(i);
  EXPECT_EQ(mx::dtype_name(actual.dtype()), j.at("dtype").get<std::string>()) << name;
  expect_close(actual, ref_values(j), j.at("shape").get<mx::Shape>(), 0.0, 0.0);
}

}  // namespace mxtest
