// complex64 arithmetic on the device beyond + - * (kernel_utils.cuh): division
// and the elementary functions, computed by cuda::std::complex (the same
// branch cuts and inf/NaN rules as std::complex on the CPU) on the plain
// cfloat the kernels store.
#pragma once

#include <cuda/std/complex>

#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"

namespace mx::cuda::cplx {

using std_complex = ::cuda::std::complex<float>;

__device__ __forceinline__ std_complex to_std(cfloat x) { return std_complex(x.re, x.im); }
__device__ __forceinline__ cfloat from_std(std_complex x) { return cfloat(x.real(), x.imag()); }

__device__ __forceinline__ cfloat operator/(cfloat a, cfloat b) {
  return from_std(to_std(a) / to_std(b));
}

__device__ __forceinline__ float cabs(cfloat x) { return ::cuda::std::abs(to_std(x)); }
__device__ __forceinline__ cfloat conj(cfloat x) { return cfloat(x.re, -x.im); }

#define MX_CUDA_COMPLEX_FN(NAME)                     \
  __device__ __forceinline__ cfloat NAME(cfloat x) { \
    return from_std(::cuda::std::NAME(to_std(x)));   \
  }
MX_CUDA_COMPLEX_FN(sqrt)
MX_CUDA_COMPLEX_FN(exp)
MX_CUDA_COMPLEX_FN(log)
MX_CUDA_COMPLEX_FN(log10)
MX_CUDA_COMPLEX_FN(sin)
MX_CUDA_COMPLEX_FN(cos)
MX_CUDA_COMPLEX_FN(tan)
MX_CUDA_COMPLEX_FN(asin)
MX_CUDA_COMPLEX_FN(acos)
MX_CUDA_COMPLEX_FN(atan)
MX_CUDA_COMPLEX_FN(sinh)
MX_CUDA_COMPLEX_FN(cosh)
MX_CUDA_COMPLEX_FN(tanh)
MX_CUDA_COMPLEX_FN(asinh)
MX_CUDA_COMPLEX_FN(acosh)
MX_CUDA_COMPLEX_FN(atanh)
#undef MX_CUDA_COMPLEX_FN

__device__ __forceinline__ cfloat pow(cfloat x, cfloat y) {
  return from_std(::cuda::std::pow(to_std(x), to_std(y)));
}

__device__ __forceinline__ bool isnan(cfloat x) { return ::isnan(x.re) || ::isnan(x.im); }
__device__ __forceinline__ bool isinf(cfloat x) { return ::isinf(x.re) || ::isinf(x.im); }

}  // namespace mx::cuda::cplx
