// Helpers shared by the CPU kernels of mx::fast.
#pragma once

namespace mx::fast::cpu_detail {

// Sum of f(i) for i in [0, n) kept in 16 independent partial sums: the
// compiler can vectorize that without reassociating floating-point adds,
// which a single running sum (one add latency per element) does not allow.
template <typename A, typename F>
inline A lane_sum(int n, F f) {
  constexpr int kLanes = 16;
  A part[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) part[k] += f(i + k);
  }
  for (int k = 0; i < n; ++i, ++k) part[k] += f(i);
  A s = 0;
  for (int k = 0; k < kLanes; ++k) s += part[k];
  return s;
}

}  // namespace mx::fast::cpu_detail
