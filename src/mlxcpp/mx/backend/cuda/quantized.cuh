// Device-side decoding of MLX's quantized formats (formats.md section 2) shared
// by the CUDA kernels of Quantize / Dequantize (quantized.cu), the decode
// matrix-vector product (qgemv.cu) and the prefill GEMM (qgemm.cu), and the
// host-side description of one QuantizedMatmul call.
#pragma once

#include <cstdint>

#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/quantized.h"

namespace mx::cuda::quant {

// The scales' element type, read at run time (one load per group, so the
// switch costs little next to the codes).
enum class ScaleType : int { f32, f16, bf16, f64, u8 };

inline ScaleType scale_type(Dtype d) {
  if (d == float16) return ScaleType::f16;
  if (d == bfloat16) return ScaleType::bf16;
  if (d == float64) return ScaleType::f64;
  if (d == uint8) return ScaleType::u8;
  return ScaleType::f32;
}

template <typename A>
__device__ __forceinline__ A load_scale(const void* p, int64_t i, ScaleType t) {
  switch (t) {
    case ScaleType::f16:
      return static_cast<A>(__half2float(static_cast<const __half*>(p)[i]));
    case ScaleType::bf16:
      return static_cast<A>(__bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]));
    case ScaleType::f64:
      return static_cast<A>(static_cast<const double*>(p)[i]);
    case ScaleType::u8:
      return static_cast<A>(static_cast<const uint8_t*>(p)[i]);
    default:
      return static_cast<A>(static_cast<const float*>(p)[i]);
  }
}

// 2^e for e in [-149, 128) as an exact float, without ldexpf's range checks.
__device__ __forceinline__ float pow2f(int e) {
  if (e >= -126) return __int_as_float((e + 127) << 23);
  return __int_as_float(1 << (e + 149));  // subnormal
}

// E4M3 (the "fn" variant: bias 7, no infinities, 0x7f / 0xff are NaN).
__device__ __forceinline__ float e4m3_decode(uint32_t b) {
  const int e = (b >> 3) & 15, m = b & 7;
  float v;
  if (e == 0) {
    v = static_cast<float>(m) * 0.001953125f;  // m * 2^-9
  } else if (e == 15 && m == 7) {
    v = __int_as_float(0x7fc00000);
  } else {
    v = static_cast<float>(8 + m) * pow2f(e - 10);
  }
  return (b & 0x80) ? -v : v;
}

// E8M0 group scale of the mx formats: 2^(byte - 127) (byte 255 is +inf, as
// ldexp gives on the CPU).
__device__ __forceinline__ float e8m0_decode(uint32_t b) {
  return b == 0 ? __int_as_float(0x00400000) : __int_as_float(static_cast<int>(b) << 23);
}

// E2M1: magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6 by the low 3 bits; bit 3 is the sign.
__device__ __forceinline__ float fp4_decode(uint32_t c) {
  const uint32_t e = (c >> 1) & 3, m = c & 1;
  const float mag =
      e == 0 ? 0.5f * static_cast<float>(m) : (1.0f + 0.5f * static_cast<float>(m)) * pow2f(e - 1);
  return (c & 8) ? -mag : mag;
}

// The group scale of an fp mode from its byte.
__device__ __forceinline__ float fp_scale(uint32_t b, QuantizationMode mode) {
  return mode == QuantizationMode::nvfp4 ? e4m3_decode(b) : e8m0_decode(b);
}

// Code e (0 <= e < 32) of a 32-value block held in `w` (BITS words, LSB
// first; w[BITS] is read for straddling values of 3, 5 and 6 bits and must
// exist). With BITS and e known at compile time the shifts are constants.
template <int BITS>
__device__ __forceinline__ uint32_t code_at(const uint32_t* w, int e) {
  constexpr uint32_t mask = (1u << BITS) - 1;
  const int bit = e * BITS;
  const int word = bit >> 5, off = bit & 31;
  if (off + BITS <= 32) return (w[word] >> off) & mask;
  return ((w[word] >> off) | (w[word + 1] << (32 - off))) & mask;
}

// Calls f(std::integral_constant<int, BITS>) for a runtime bit width.
template <typename F>
__device__ __forceinline__ void with_bits(int bits, F&& f) {
  switch (bits) {
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 3:
      return f(std::integral_constant<int, 3>{});
    case 4:
      return f(std::integral_constant<int, 4>{});
    case 5:
      return f(std::integral_constant<int, 5>{});
    case 6:
      return f(std::integral_constant<int, 6>{});
    default:
      return f(std::integral_constant<int, 8>{});
  }
}

// Batch offsets of QuantizedMatmul's operands: x, w, scales, biases may be
// broadcast views over the batch dims (inner two dims row-contiguous).
struct BatchLayout {
  int ndim = 0;
  int32_t shape[kMaxDims] = {};
  int64_t strides[4][kMaxDims] = {};
  __device__ __forceinline__ int64_t offset(int k, int64_t b) const {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t q = b / shape[d];
      off += (b - q * shape[d]) * strides[k][d];
      b = q;
    }
    return off;
  }
};

// One QuantizedMatmul: out (batch, M, N) = x (batch, M, K) @ W^T (W [N, K])
// when transpose, x @ W (W [K, N] quantized along N) otherwise.
struct QmmArgs {
  const void* x = nullptr;
  const uint32_t* w = nullptr;
  const void* scales = nullptr;
  const void* biases = nullptr;
  void* out = nullptr;
  ScaleType stype = ScaleType::f32;
  QuantizationMode mode = QuantizationMode::affine;
  int bits = 4, group_size = 64;
  int M = 0, N = 0, K = 0;
  bool transpose = true;
  int64_t nbatch = 1;
  BatchLayout batch;  // strides in elements of each operand's dtype (w: words)
};

// Launchers (on `stream`): the matrix-vector kernel takes transposed products
// with M <= kQgemvMaxRows, or affine ones with M <= kQgemvBlockedRows (blocks
// of kQgemvMaxRows rows of x, one per grid z index, each reading W once
// more), with x of float32, float16 or bfloat16; the GEMM takes everything.
// Both limits are the CPU's (cpu::kQGemvMaxRows and kQGemvBlockedRows in
// cpu/quantized.cpp) so that both devices use the same arithmetic for the
// same shapes: the matrix-vector kernels sum x * (integer code) in float32
// and apply the scale and bias per group, while the GEMM's tensor-core path
// rounds the dequantized weights to x's 16-bit type first (as the CPU's tile
// path does), which for bfloat16 moves a K = 256 product by up to ~0.07.
constexpr int kQgemvMaxRows = 8;
constexpr int kQgemvBlockedRows = 32;
void qgemv(const QmmArgs& a, Dtype xdtype, cudaStream_t stream);
// The tensor-core matrix-vector kernel (qgemv_mma.cu) for what it supports:
// transposed affine products at 4 or 8 bits with groups of 32, 64 or 128,
// bfloat16 or float16 x with scales of x's type, a 2-D W, M <=
// kQgemvBlockedRows (in blocks of 8 rows) and x small enough to stage in
// shared memory (2 * K * rows bytes, rows = M rounded up to 1, 2, 4, 8).
// prenorm: x computed in the prologue (QmmPrenorm), one row.
bool qgemv_mma_supported(const QmmArgs& a, Dtype xdtype, bool prenorm = false);
void qgemv_mma(const QmmArgs& a, Dtype xdtype, cudaStream_t stream);
// Several matrices of the same K, bits and group size against one x in one
// launch (q/k/v, gate/up of a decode step): a's w, scales, biases, out and N
// are ignored in favour of each group's. qgemv_mma_supported(a) must hold.
constexpr int kMaxGroupedQmm = 4;
struct QmmGroup {
  const uint32_t* w;
  const void* scales;
  const void* biases;
  void* out;
  int N;
};
// The product's one row of x computed in its prologue from fast::residual_rms_norm's operands:
// h = res + rms_norm(y) * wy (rounded to x's type), x = rms_norm(h) * wx, with h stored to
// `h`; a's x is not read. Every pointer 16-byte aligned.
struct QmmPrenorm {
  const void* res;
  const void* y;
  const float* wy;
  const float* wx;
  void* h;
  float eps;
};
// geglu: two matrices (gate, up) of the same rows and one output, gelu_approx(gate) * up
// (each product rounded to x's type first, as fast::gelu_approx_mul of the two outputs).
// pre: the residual norm in the prologue (qgemv_mma_supported(a, xdtype, true) must hold).
void qgemv_mma_grouped(const QmmArgs& a, const QmmGroup* groups, int count, Dtype xdtype,
                       cudaStream_t stream, bool geglu = false, const QmmPrenorm* pre = nullptr);
void qgemm(const QmmArgs& a, Dtype xdtype, cudaStream_t stream);

}  // namespace mx::cuda::quant
