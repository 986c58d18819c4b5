// Helpers shared by the CPU kernels of mx::fast.
#pragma once

#include <cstdint>
#include <cstring>

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

// Eight float32 lanes through the compiler's vector extensions (AVX2 on the
// x86-64-v3 baseline, pairs of NEON vectors elsewhere), for transcendental
// functions that libm computes one element at a time (~20 ns for tanhf).
using V8 = float __attribute__((vector_size(32)));
using I8 = int32_t __attribute__((vector_size(32)));

inline V8 splat(float v) { return V8{} + v; }

// exp(t), |relative error| ~2 ulp: t = n ln2 + r with |r| <= ln2 / 2 (ln2 in
// two parts, so r is exact), exp(r) from a degree-6 polynomial (the Cephes
// expf coefficients), 2^n built in the exponent bits. t is clamped to where
// 2^n stays a normal float; exp(t) is then in [1.6e-38, 1.7e38].
inline V8 exp8(V8 t) {
  t = t < splat(-87.0f) ? splat(-87.0f) : t;
  t = t > splat(88.0f) ? splat(88.0f) : t;
  // Round to nearest through the 1.5 * 2^23 shifter (|t log2 e| < 2^22).
  const V8 shifter = splat(12582912.0f);
  const V8 n = (t * splat(1.44269504089f) + shifter) - shifter;
  V8 r = t - n * splat(0.693359375f);
  r = r - n * splat(-2.12194440e-4f);
  V8 p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  p = p * (r * r) + r + splat(1.0f);
  const I8 e = (__builtin_convertvector(n, I8) + 127) << 23;
  V8 scale;
  std::memcpy(&scale, &e, sizeof(scale));
  return p * scale;
}

}  // namespace mx::fast::cpu_detail
