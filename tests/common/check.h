// Assertions shared by the tests: compare an array with expected values that
// come from an independent reference (numpy output, hand-worked values).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "mlxcpp/mx.h"

namespace mxtest {

// Reads every element of `a` (evaluated, any layout) as double, in row-major order.
inline std::vector<double> to_vector(mx::array a) {
  a = mx::astype(mx::copy(a), mx::float64);
  a.eval();
  const double* p = a.data<double>();
  return std::vector<double>(p, p + a.size());
}

// Expects shape and values to match within atol + rtol * |expected|; NaNs must match NaNs.
inline void expect_close(const mx::array& actual, const std::vector<double>& expected,
                         const mx::Shape& shape, double atol = 1e-6, double rtol = 1e-6) {
  ASSERT_EQ(actual.shape(), shape);
  auto got = to_vector(actual);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(expected[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << "element " << i;
    } else if (std::isinf(expected[i])) {
      EXPECT_EQ(got[i], expected[i]) << "element " << i;
    } else {
      EXPECT_NEAR(got[i], expected[i], atol + rtol * std::abs(expected[i])) << "element " << i;
    }
  }
}

}  // namespace mxtest
