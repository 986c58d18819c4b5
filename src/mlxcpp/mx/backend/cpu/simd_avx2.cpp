// AVX2 + FMA + F16C kernels: the path for x86-64 CPUs without AVX-512 BF16, and
// the one MLXCPP_CPU_ISA=avx2 forces. bfloat16 is widened by shifts: a 32-bit
// lane holding bf16 pair (lo, hi) gives lo as a float by a left shift of 16
// and hi by masking the low half, so 16 weights cost one load, two integer
// operations and two FMAs (against x packed as even / odd elements).
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
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace mx::cpu::avx2 {
namespace {

template <typename T>
inline void to_float_pad(const T* x, int64_t xcs, int K, float* dst, int kp) {
  for (int k = 0; k < K; ++k) dst[k] = static_cast<float>(x[k * xcs]);
  std::fill(dst + K, dst + kp, 0.0f);
}

inline __m256 even_bf16(__m256i w) { return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)); }
inline __m256 odd_bf16(__m256i w) {
  return _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}

inline __m128 reduce4(__m256 a, __m256 b, __m256 c, __m256 d) {
  __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// out[j] = T(alpha * v[j] + beta * out[j]), 8 at a time; bfloat16 rounds to
// nearest even and keeps NaN a (quiet) NaN, as bfloat16_t does.
inline __m128i to_bf16(__m256 f) {
  __m256i u = _mm256_castps_si256(f);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r =
      _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  r = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(q),
                                           _mm256_cmp_ps(f, f, _CMP_UNORD_Q)));
  __m256i p = _mm256_packus_epi32(r, r);  // per 128-bit lane: 4 values twice
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(p, 0x08));
}
template <typename T>
void store_contiguous_impl(T* out, const float* v, int n, float alpha, float beta) {
  int j = 0;
  if (beta == 0.0f) {
    for (; j + 8 <= n; j += 8) {
      __m256 f = _mm256_mul_ps(_mm256_loadu_ps(v + j), _mm256_set1_ps(alpha));
      if constexpr (std::is_same_v<T, float>) {
        _mm256_storeu_ps(out + j, f);
      } else if constexpr (std::is_same_v<T, bfloat16_t>) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), to_bf16(f));
      } else {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j),
                         _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      }
    }
  }
  for (; j < n; ++j) {
    float r = alpha * v[j];
    if (beta != 0.0f) r += beta * static_cast<float>(out[j]);
    out[j] = T(r);
  }
}

struct Acc8 {
  using V = __m256;
  static constexpr int L = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static float hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  template <int R>
  static void reduce(const V* a, float* out) {
    if constexpr (R == 4) {
      _mm_storeu_ps(out, reduce4(a[0], a[1], a[2], a[3]));
    } else {
      for (int r = 0; r < R; ++r) out[r] = hsum(a[r]);
    }
  }
  static V lda(const float* p) { return _mm256_loadu_ps(p); }
  static void sta(float* p, V v) { _mm256_storeu_ps(p, v); }
  // Accumulators: MM x rows x unroll, at most 16 (AVX2) or 32 (AVX-512) registers
  // less the operands.
  static constexpr int nk_rows(int mm) { return mm <= 2 ? 4 : mm <= 4 ? 2 : 1; }
  static constexpr int nk_unroll(int mm) { return mm == 1 ? 2 : 1; }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
};

// Fewer than a full step of elements, zero padded, for the loaders below.
template <typename T, int N>
struct Tail {
  T v[N] = {};
  Tail(const T* p, int n) { std::copy(p, p + n, v); }
};

struct Bf16Traits : Acc8 {
  static void store_contiguous(auto* out, const float* v, int n, float alpha, float beta) {
    store_contiguous_impl(out, v, n, alpha, beta);
  }
  using T = bfloat16_t;
  using X = float;
  using WV = __m256i;
  static constexpr int S = 16;
  static WV load(const T* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static WV load_tail(const T* p, int n) { return load(Tail<T, 16>(p, n).v); }
  static void madd(V& acc, WV w, const X* x) {
    acc = _mm256_fmadd_ps(even_bf16(w), _mm256_loadu_ps(x), acc);
    acc = _mm256_fmadd_ps(odd_bf16(w), _mm256_loadu_ps(x + 8), acc);
  }
  // Each block of 16 k as its 8 even then its 8 odd elements, to match madd.
  static void pack_nk(const T* x, int64_t xcs, int K, X* dst, int kp) {
    for (int k = 0; k < kp; ++k) {
      float v = k < K ? static_cast<float>(x[k * xcs]) : 0.0f;
      dst[k / 16 * 16 + (k % 2) * 8 + (k % 16) / 2] = v;
    }
  }
  static void pack_kn(const T* x, int64_t xcs, int K, X* dst, int kp) {
    to_float_pad(x, xcs, K, dst, kp);
  }
  // Layout kn: 16 columns of one row as even and odd columns.
  static constexpr int KP = 1, C = 16, NV = 2, UB = 4;
  struct Unit {
    __m256 v[2];
  };
  static Unit load_unit(const T* p, int64_t) {
    __m256i w = load(p);
    return {{even_bf16(w), odd_bf16(w)}};
  }
  static __m256 bcast(const X* x) { return _mm256_set1_ps(*x); }
  static V madd_kn(V acc, __m256 w, __m256 xb) { return _mm256_fmadd_ps(w, xb, acc); }
  static int acc_pos(int j) { return (j % 2) * 8 + j / 2; }
};

struct F16Traits : Acc8 {
  static void store_contiguous(auto* out, const float* v, int n, float alpha, float beta) {
    store_contiguous_impl(out, v, n, alpha, beta);
  }
  using T = float16_t;
  using X = float;
  using WV = __m256;
  static constexpr int S = 8;
  static WV load(const T* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static WV load_tail(const T* p, int n) { return load(Tail<T, 8>(p, n).v); }
  static void madd(V& acc, WV w, const X* x) { acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(x), acc); }
  static void pack_nk(const T* x, int64_t xcs, int K, X* dst, int kp) {
    to_float_pad(x, xcs, K, dst, kp);
  }
  static void pack_kn(const T* x, int64_t xcs, int K, X* dst, int kp) {
    to_float_pad(x, xcs, K, dst, kp);
  }
  static constexpr int KP = 1, C = 16, NV = 2, UB = 4;
  struct Unit {
    __m256 v[2];
  };
  static Unit load_unit(const T* p, int64_t) { return {{load(p), load(p + 8)}}; }
  static __m256 bcast(const X* x) { return _mm256_set1_ps(*x); }
  static V madd_kn(V acc, __m256 w, __m256 xb) { return _mm256_fmadd_ps(w, xb, acc); }
  static int acc_pos(int j) { return j; }
};

struct F32Traits : Acc8 {
  static void store_contiguous(auto* out, const float* v, int n, float alpha, float beta) {
    store_contiguous_impl(out, v, n, alpha, beta);
  }
  using T = float;
  using X = float;
  using WV = __m256;
  static constexpr int S = 8;
  static WV load(const T* p) { return _mm256_loadu_ps(p); }
  static WV load_tail(const T* p, int n) { return load(Tail<T, 8>(p, n).v); }
  static void madd(V& acc, WV w, const X* x) { acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(x), acc); }
  static void pack_nk(const T* x, int64_t xcs, int K, X* dst, int kp) {
    to_float_pad(x, xcs, K, dst, kp);
  }
  static void pack_kn(const T* x, int64_t xcs, int K, X* dst, int kp) {
    to_float_pad(x, xcs, K, dst, kp);
  }
  static constexpr int KP = 1, C = 16, NV = 2, UB = 4;
  struct Unit {
    __m256 v[2];
  };
  static Unit load_unit(const T* p, int64_t) { return {{load(p), load(p + 8)}}; }
  static __m256 bcast(const X* x) { return _mm256_set1_ps(*x); }
  static V madd_kn(V acc, __m256 w, __m256 xb) { return _mm256_fmadd_ps(w, xb, acc); }
  static int acc_pos(int j) { return j; }
};

#include "mlxcpp/mx/backend/cpu/simd_gemv_impl.inc"

}  // namespace

void gemv(const GemvArgs& g) { gemv_impl(g); }
void gemv_group(const GemvArgs* gs, int count) { gemv_group_impl(gs, count); }

}  // namespace mx::cpu::avx2

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
