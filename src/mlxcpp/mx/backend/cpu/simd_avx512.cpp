// AVX-512 kernels (F/BW/VL/DQ + BF16): bfloat16 products through vdpbf16ps,
// which multiplies 32 bfloat16 pairs and adds them into 16 float32 lanes in
// one instruction. Compiled for those features through a target region (not
// per-file flags), so that inline functions from the headers included above
// it, which the linker may merge with other files' copies, stay baseline code.
// Only called after isa() has checked the CPU (simd_dispatch.cpp).
#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlxcpp/mx/backend/cpu/simd_kernels.h"
#include "mlxcpp/mx/scheduler.h"

#if defined(__clang__)
#pragma clang attribute push(                                                               \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_* "may be used
// uninitialized") wherever the intrinsics are inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace mx::cpu::avx512 {
namespace {

inline __m512bh as_bh(__m512i v) { return (__m512bh)v; }

inline uint32_t load_u32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline __mmask32 low_mask32(int n) { return _cvtu32_mask32(n >= 32 ? ~0u : (1u << n) - 1u); }
inline __mmask16 low_mask16(int n) { return _cvtu32_mask16(n >= 16 ? 0xffffu : (1u << n) - 1u); }

template <typename T>
inline void copy_pad(const T* x, int64_t xcs, int K, T* dst, int kp) {
  for (int k = 0; k < K; ++k) dst[k] = x[k * xcs];
  std::fill(dst + K, dst + kp, T());
}

template <typename T>
inline void to_float_pad(const T* x, int64_t xcs, int K, float* dst, int kp) {
  for (int k = 0; k < K; ++k) dst[k] = static_cast<float>(x[k * xcs]);
  std::fill(dst + K, dst + kp, 0.0f);
}

// Four accumulators' sums as one vector: fold to 256 bits, then two rounds of
// horizontal adds and a fold of the 128-bit halves.
inline __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
  auto fold = [](__m512 v) {
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  };
  __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(fold(a), fold(b)), _mm256_hadd_ps(fold(c), fold(d)));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// out[j] = T(alpha * v[j] + beta * out[j]), 16 at a time; bfloat16 rounds to
// nearest even and keeps NaN a (quiet) NaN, as bfloat16_t does.
inline __m512 scale(const float* v, float alpha) {
  return _mm512_mul_ps(_mm512_loadu_ps(v), _mm512_set1_ps(alpha));
}
inline __m256i to_bf16(__m512 f) {
  __m512i u = _mm512_castps_si512(f);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r =
      _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  __m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q), q);
  return _mm512_cvtepi32_epi16(r);
}
template <typename T>
void store_contiguous_impl(T* out, const float* v, int n, float alpha, float beta) {
  int j = 0;
  if (beta == 0.0f) {
    for (; j + 16 <= n; j += 16) {
      __m512 f = scale(v + j, alpha);
      if constexpr (std::is_same_v<T, float>) {
        _mm512_storeu_ps(out + j, f);
      } else if constexpr (std::is_same_v<T, bfloat16_t>) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), to_bf16(f));
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j),
                            _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      }
    }
  }
  for (; j < n; ++j) {
    float r = alpha * v[j];
    if (beta != 0.0f) r += beta * static_cast<float>(out[j]);
    out[j] = T(r);
  }
}

// Common float32 accumulator operations.
struct Acc16 {
  using V = __m512;
  static constexpr int L = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static float hsum(V v) { return _mm512_reduce_add_ps(v); }
  // out[0 .. R) = the sums of a[0 .. R); out has room for R floats.
  template <int R>
  static void reduce(const V* a, float* out) {
    if constexpr (R == 4) {
      _mm_storeu_ps(out, reduce4(a[0], a[1], a[2], a[3]));
    } else {
      for (int r = 0; r < R; ++r) out[r] = hsum(a[r]);
    }
  }
  static V lda(const float* p) { return _mm512_loadu_ps(p); }
  static void sta(float* p, V v) { _mm512_storeu_ps(p, v); }
  // Accumulators: MM x rows x unroll, at most 16 (AVX2) or 32 (AVX-512) registers
  // less the operands.
  static constexpr int nk_rows(int mm) { return mm <= 4 ? 4 : 2; }
  static constexpr int nk_unroll(int mm) { return mm == 1 ? 2 : 1; }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
};

// bfloat16: x stays bfloat16 (exact), vdpbf16ps on k pairs.
struct Bf16Traits : Acc16 {
  static void store_contiguous(auto* out, const float* v, int n, float alpha, float beta) {
    store_contiguous_impl(out, v, n, alpha, beta);
  }
  using T = bfloat16_t;
  using X = bfloat16_t;
  using WV = __m512i;
  static constexpr int S = 32;
  static WV load(const T* p) { return _mm512_loadu_si512(p); }
  static WV load_tail(const T* p, int n) { return _mm512_maskz_loadu_epi16(low_mask32(n), p); }
  static void madd(V& acc, WV w, const X* x) {
    acc = _mm512_dpbf16_ps(acc, as_bh(w), as_bh(_mm512_loadu_si512(x)));
  }
  static void pack_nk(const T* x, int64_t xcs, int K, X* dst, int kp) {
    copy_pad(x, xcs, K, dst, kp);
  }
  static void pack_kn(const T* x, int64_t xcs, int K, X* dst, int kp) {
    copy_pad(x, xcs, K, dst, kp);
  }
  // Layout kn: a unit is two rows k, k+1; interleaving them 16 bits at a time
  // makes the k pairs of 32 columns, in the lane order unpacklo/hi leave.
  static constexpr int KP = 2, C = 32, NV = 2, UB = 4;
  struct Unit {
    __m512i v[2];
  };
  static Unit load_unit(const T* p, int64_t ldw) {
    __m512i a = _mm512_loadu_si512(p), b = _mm512_loadu_si512(p + ldw);
    return {{_mm512_unpacklo_epi16(a, b), _mm512_unpackhi_epi16(a, b)}};
  }
  static __m512i bcast(const X* x) { return _mm512_set1_epi32(static_cast<int>(load_u32(x))); }
  static V madd_kn(V acc, __m512i w, __m512i xb) {
    return _mm512_dpbf16_ps(acc, as_bh(w), as_bh(xb));
  }
  // unpacklo holds columns 8q..8q+3 of each 128-bit lane q, unpackhi 8q+4..8q+7.
  static int acc_pos(int j) {
    int q = j / 8, t = j % 8;
    return t < 4 ? q * 4 + t : 16 + q * 4 + (t - 4);
  }
};

// float16: no dot-product instruction on these CPUs; widen and FMA.
struct F16Traits : Acc16 {
  static void store_contiguous(auto* out, const float* v, int n, float alpha, float beta) {
    store_contiguous_impl(out, v, n, alpha, beta);
  }
  using T = float16_t;
  using X = float;
  using WV = __m512;
  static constexpr int S = 16;
  static WV load(const T* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static WV load_tail(const T* p, int n) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(low_mask16(n), p));
  }
  static void madd(V& acc, WV w, const X* x) { acc = _mm512_fmadd_ps(w, _mm512_loadu_ps(x), acc); }
  static void pack_nk(const T* x, int64_t xcs, int K, X* dst, int kp) {
    to_float_pad(x, xcs, K, dst, kp);
  }
  static void pack_kn(const T* x, int64_t xcs, int K, X* dst, int kp) {
    to_float_pad(x, xcs, K, dst, kp);
  }
  static constexpr int KP = 1, C = 32, NV = 2, UB = 4;
  struct Unit {
    __m512 v[2];
  };
  static Unit load_unit(const T* p, int64_t) { return {{load(p), load(p + 16)}}; }
  static __m512 bcast(const X* x) { return _mm512_set1_ps(*x); }
  static V madd_kn(V acc, __m512 w, __m512 xb) { return _mm512_fmadd_ps(w, xb, acc); }
  static int acc_pos(int j) { return j; }
};

struct F32Traits : Acc16 {
  static void store_contiguous(auto* out, const float* v, int n, float alpha, float beta) {
    store_contiguous_impl(out, v, n, alpha, beta);
  }
  using T = float;
  using X = float;
  using WV = __m512;
  static constexpr int S = 16;
  static WV load(const T* p) { return _mm512_loadu_ps(p); }
  static WV load_tail(const T* p, int n) { return _mm512_maskz_loadu_ps(low_mask16(n), p); }
  static void madd(V& acc, WV w, const X* x) { acc = _mm512_fmadd_ps(w, _mm512_loadu_ps(x), acc); }
  static void pack_nk(const T* x, int64_t xcs, int K, X* dst, int kp) {
    copy_pad(x, xcs, K, dst, kp);
  }
  static void pack_kn(const T* x, int64_t xcs, int K, X* dst, int kp) {
    copy_pad(x, xcs, K, dst, kp);
  }
  static constexpr int KP = 1, C = 32, NV = 2, UB = 4;
  struct Unit {
    __m512 v[2];
  };
  static Unit load_unit(const T* p, int64_t) { return {{load(p), load(p + 16)}}; }
  static __m512 bcast(const X* x) { return _mm512_set1_ps(*x); }
  static V madd_kn(V acc, __m512 w, __m512 xb) { return _mm512_fmadd_ps(w, xb, acc); }
  static int acc_pos(int j) { return j; }
};

#include "mlxcpp/mx/backend/cpu/simd_gemv_impl.inc"

}  // namespace

void gemv(const GemvArgs& g) { gemv_impl(g); }
void gemv_group(const GemvArgs* gs, int count) { gemv_group_impl(gs, count); }

}  // namespace mx::cpu::avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
