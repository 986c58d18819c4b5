// SIMD matrix-product kernels, one set per ISA (simd_avx2.cpp, simd_avx512.cpp),
// chosen at run time by isa(). Callers go through the dispatchers below, which
// return false when no kernel fits and the portable path must run.
#pragma once

#include <cstdint>
#include <vector>

#include "mlxcpp/mx/backend/cpu/gemm.h"
#include "mlxcpp/mx/dtype.h"

namespace mx::cpu {

// y(m, n) = alpha * sum_k x(m, k) * w(n, k) + beta * y(m, n) for m < M <= 8:
// a few rows of activations against a matrix read once. x, w and y share the
// dtype (float32, bfloat16 or float16); accumulation is in float32.
struct GemvArgs {
  Dtype dtype = float32;
  int M = 0, N = 0, K = 0;
  const void* x = nullptr;
  int64_t xrs = 0, xcs = 1;  // x(m, k) = x[m * xrs + k * xcs]
  const void* w = nullptr;
  int64_t ldw = 0;
  bool kn = false;  // false: w(n, k) = w[n * ldw + k] (nn.Linear); true: w[k * ldw + n]
  void* y = nullptr;
  int64_t yrs = 0, ycs = 1;  // y(m, n) = y[m * yrs + n * ycs]
  float alpha = 1.0f, beta = 0.0f;
};
constexpr int kGemvMaxRows = 8;

// C = alpha * A @ B + beta * C for bfloat16 A (M x K), B (K x N), C row-major.
struct GemmArgs {
  int M = 0, N = 0, K = 0;
  MatRef a{}, b{};
  void* c = nullptr;
  int64_t ldc = 0;
  float alpha = 1.0f, beta = 0.0f;
};

namespace avx2 {
void gemv(const GemvArgs& g);
void gemv_group(const GemvArgs* gs, int count);
}  // namespace avx2
namespace avx512 {
void gemv(const GemvArgs& g);
void gemv_group(const GemvArgs* gs, int count);
void gemm_bf16(const GemmArgs& g);
}  // namespace avx512

// C (M x N, row stride ldc) = alpha * A @ B + beta * C through the GEMV kernels
// when M or N is at most kGemvMaxRows and the matrix operand has a unit stride
// along one of its dims. Returns false (nothing written) otherwise.
bool gemv_dispatch(Dtype dtype, int M, int N, int K, float alpha, MatRef a, MatRef b, float beta,
                   void* c, int64_t ldc);
// y_i (1 x N_i, contiguous) = x (1 x K, element stride xcs) @ w_i^T for
// row-major w_i (N_i x K, leading dim ldw_i), all of one float dtype, in one
// parallel pass over every w_i's rows. Returns false (nothing written) when
// the CPU has no vector kernels.
struct GemvGroupItem {
  const void* w;
  int64_t ldw;
  int N;
  void* y;
};
bool gemv_group_dispatch(Dtype dtype, int K, const void* x, int64_t xcs,
                         const std::vector<GemvGroupItem>& items);
// bfloat16 GEMM through the AVX-512 BF16 kernel when the CPU has it.
bool gemm_bf16_dispatch(int M, int N, int K, float alpha, MatRef a, MatRef b, float beta, void* c,
                        int64_t ldc);

}  // namespace mx::cpu
