// Quantized matrix-vector kernels (decode): a few float32 rows of x against
// an affine-quantized matrix W [N, K] (nn.Linear layout, quantized along K)
// read once, codes unpacked in registers. One implementation per ISA
// (qgemv_avx2.cpp, qgemv_avx512.cpp) from qgemv_impl.inc, chosen at run time.
#pragma once

#include <cstdint>

#include "mlxcpp/mx/dtype.h"

namespace mx::cpu {

// y(m, n) = sum_k x(m, k) * (scale(n, k / g) * q(n, k) + bias(n, k / g)).
struct QGemvArgs {
  int M = 0, N = 0, K = 0;
  const float* x = nullptr;      // M rows of K, contiguous
  bool x_bf16_exact = false;     // x holds bfloat16 values: kernels may use bfloat16 products
  const uint32_t* w = nullptr;   // N rows of K * bits / 32 words
  const void* scales = nullptr;  // N rows of K / group_size, dtype sdtype
  const void* biases = nullptr;
  Dtype sdtype = float32;  // float32, float16 or bfloat16
  int bits = 4, group_size = 64;
  float* y = nullptr;  // y(m, n) = y[m * ldy + n]
  int64_t ldy = 0;
};
constexpr int kQGemvMaxRows = 8;

namespace avx2 {
void qgemv(const QGemvArgs& a);
}
namespace avx512 {
void qgemv(const QGemvArgs& a);
bool qgemv_multi(const QGemvArgs* a, int count);
}  // namespace avx512

// Runs the kernel of the active ISA (isa()); returns false, writing nothing,
// when there is none, M > kQGemvMaxRows, or the scales are not 16/32-bit floats.
bool qgemv_dispatch(const QGemvArgs& a);

// Several matrices against the same one row of x (a[i].x equal, M = 1, the
// same K, bits, group size and scale dtype; q/k/v or gate/up in decode) in one
// parallel pass. Returns false, writing nothing, where the one-row AVX-512
// kernel does not take them all; run qgemv_dispatch per matrix then.
bool qgemv_multi_dispatch(const QGemvArgs* a, int count);

}  // namespace mx::cpu
