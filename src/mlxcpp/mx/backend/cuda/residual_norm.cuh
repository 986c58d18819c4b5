// fast::residual_rms_norm's arithmetic, shared by its kernels and by the quantized product
// that computes it in its prologue (residual_norm_quantized_matmul): h = residual +
// T(rms_norm(y) * y_weight), then x = T(rms_norm(h) * x_weight), float32 in between.
#pragma once

#include <type_traits>

#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"

namespace mx::cuda {

// residual + the normed y, rounded to T; float16 saturates instead of overflowing (NaN stays).
template <typename T>
__device__ __forceinline__ T residual_sum(float r, float a) {
  float v = r + a;
  if constexpr (std::is_same_v<T, __half>) {
    v = v > 65504.0f ? 65504.0f : (v < -65504.0f ? -65504.0f : v);
  }
  return cast_to<T>(v);
}

namespace residual_norm_detail {

// The 8 values of a 16-byte chunk of T as floats.
template <typename T>
__device__ __forceinline__ void widen(const uint4& v, float* f) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = cast_to<float>(reinterpret_cast<const T*>(&u[i])[0]);
    f[2 * i + 1] = cast_to<float>(reinterpret_cast<const T*>(&u[i])[1]);
  }
}

__device__ __forceinline__ void weights(const float* w, float* f) {
  const float4 a = *reinterpret_cast<const float4*>(w), b = *reinterpret_cast<const float4*>(w + 4);
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

}  // namespace residual_norm_detail

// One row of K 16-bit values (K a multiple of 8; every operand 16-byte aligned) by the whole
// block: x into `xrow` (shared memory), and h into `h` where it is not null. Where a thread has
// at most two 8-value chunks, all four operands' loads are issued before the first reduction
// (one memory latency and two block reductions, as fast::residual_rms_norm's kernel); else a
// thread makes three passes over its chunks, `xrow` holding its y, then h, then x. The caller
// synchronizes before reading xrow across threads.
template <typename T>
__device__ void residual_norm_row(const T* res, const T* y, const float* wy, const float* wx,
                                  float eps, int K, T* xrow, T* h) {
  static_assert(sizeof(T) == 2, "16-bit rows");
  using residual_norm_detail::weights;
  using residual_norm_detail::widen;
  const int chunks = K / 8, n = static_cast<int>(blockDim.x);
  if (chunks <= 2 * n) {
    constexpr int R = 2;
    float fy[R][8], fr[R][8], w1[R][8], w2[R][8];
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < R; ++j) {
      const int c = static_cast<int>(threadIdx.x) + j * n;
      if (c < chunks) {
        widen<T>(*reinterpret_cast<const uint4*>(y + int64_t{c} * 8), fy[j]);
        widen<T>(*reinterpret_cast<const uint4*>(res + int64_t{c} * 8), fr[j]);
        weights(wy + int64_t{c} * 8, w1[j]);
        weights(wx + int64_t{c} * 8, w2[j]);
#pragma unroll
        for (int i = 0; i < 8; ++i) ss += fy[j][i] * fy[j][i];
      }
    }
    ss = block_reduce(ss, 0.0f, [](float a, float b) { return a + b; });
    const float ny = 1.0f / sqrtf(ss / static_cast<float>(K) + eps);
    float ss2 = 0.0f;
    alignas(16) T hv[R][8];
#pragma unroll
    for (int j = 0; j < R; ++j) {
      const int c = static_cast<int>(threadIdx.x) + j * n;
      if (c < chunks) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          hv[j][i] =
              residual_sum<T>(fr[j][i], cast_to<float>(cast_to<T>(fy[j][i] * ny * w1[j][i])));
          const float f = cast_to<float>(hv[j][i]);
          ss2 += f * f;
        }
        if (h) reinterpret_cast<uint4*>(h)[c] = *reinterpret_cast<const uint4*>(hv[j]);
      }
    }
    ss2 = block_reduce(ss2, 0.0f, [](float a, float b) { return a + b; });
    const float nh = 1.0f / sqrtf(ss2 / static_cast<float>(K) + eps);
#pragma unroll
    for (int j = 0; j < R; ++j) {
      const int c = static_cast<int>(threadIdx.x) + j * n;
      if (c < chunks) {
        alignas(16) T o[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) o[i] = cast_to<T>(cast_to<float>(hv[j][i]) * nh * w2[j][i]);
        reinterpret_cast<uint4*>(xrow)[c] = *reinterpret_cast<const uint4*>(o);
      }
    }
    return;
  }
  float ss = 0.0f;
  for (int c = threadIdx.x; c < chunks; c += n) {
    const uint4 v = *reinterpret_cast<const uint4*>(y + int64_t{c} * 8);
    reinterpret_cast<uint4*>(xrow)[c] = v;
    float f[8];
    widen<T>(v, f);
#pragma unroll
    for (int j = 0; j < 8; ++j) ss += f[j] * f[j];
  }
  ss = block_reduce(ss, 0.0f, [](float a, float b) { return a + b; });
  const float ny = 1.0f / sqrtf(ss / static_cast<float>(K) + eps);
  float ss2 = 0.0f;
  for (int c = threadIdx.x; c < chunks; c += n) {
    float fy[8], fr[8], w[8];
    widen<T>(reinterpret_cast<const uint4*>(xrow)[c], fy);
    widen<T>(*reinterpret_cast<const uint4*>(res + int64_t{c} * 8), fr);
    weights(wy + int64_t{c} * 8, w);
    alignas(16) T hv[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      hv[j] = residual_sum<T>(fr[j], cast_to<float>(cast_to<T>(fy[j] * ny * w[j])));
      const float f = cast_to<float>(hv[j]);
      ss2 += f * f;
    }
    const uint4 packed = *reinterpret_cast<const uint4*>(hv);
    reinterpret_cast<uint4*>(xrow)[c] = packed;
    if (h) reinterpret_cast<uint4*>(h)[c] = packed;
  }
  ss2 = block_reduce(ss2, 0.0f, [](float a, float b) { return a + b; });
  const float nh = 1.0f / sqrtf(ss2 / static_cast<float>(K) + eps);
  for (int c = threadIdx.x; c < chunks; c += n) {
    float fh[8], w[8];
    widen<T>(reinterpret_cast<const uint4*>(xrow)[c], fh);
    weights(wx + int64_t{c} * 8, w);
    alignas(16) T o[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) o[j] = cast_to<T>(fh[j] * nh * w[j]);
    reinterpret_cast<uint4*>(xrow)[c] = *reinterpret_cast<const uint4*>(o);
  }
}

}  // namespace mx::cuda
