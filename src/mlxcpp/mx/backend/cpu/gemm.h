// Matrix-product kernels the CPU Matmul/AddMM primitives call for one matrix
// of a batch. Operands are seen through element strides so that transposed
// and sliced views are used in place.
#pragma once

#include <cstdint>

#include "mlxcpp/mx/dtype.h"

namespace mx::cpu {

// A 2-D operand: element (i, j) lives at p + i * rs + j * cs (in elements).
struct MatRef {
  const void* p;
  int64_t rs;
  int64_t cs;
};

// C = alpha * A @ B + beta * C for float16/bfloat16 operands, accumulating in
// float32; A is M x K, B is K x N, C is row-major with row stride ldc. With
// beta == 0, C is only written (it may hold garbage or NaN).
void gemm_half(Dtype dtype, int M, int N, int K, float alpha, MatRef a, MatRef b, float beta,
               void* c, int64_t ldc);

}  // namespace mx::cpu
