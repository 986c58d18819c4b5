// Matrix products for what cuBLASLt does not cover. Host declarations, shared
// by matmul.cpp and matmul_generic.cu.
#pragma once

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/device.h"
#include "mlxcpp/mx/primitive.h"

namespace mx::cuda {

// out (batch..., M, N) = alpha * a @ b + beta * out, with batch dims broadcast
// and any strides, for every dtype: integers and bool wrap modulo 2^64 and
// ignore alpha and beta (as the CPU kernel does), complex64 accumulates in
// complex64, floats in float (double for float64). out is allocated
// row-contiguous; it is only read when beta != 0.
void matmul_generic(const array& a, const array& b, array& out, float alpha, float beta,
                    const Stream& s);

// out (M, N) = a (M, K) @ b (K, N) through cuBLASLt for float types (matmul's
// path; `p` names the op in errors and picks the stream), out allocated.
void cublaslt_product(Primitive& p, const array& a, const array& b, array& out);

}  // namespace mx::cuda
