// AVX-512 quantized GEMV (qgemv.h): 16 codes per vector, unpacked with a
// lane permute of the block's words and per-lane variable shifts, converted
// to float32 and multiplied into x with FMA. Compiled for AVX-512 through a
// target region, as simd_avx512.cpp is; only called after isa() has checked
// the CPU (simd_dispatch.cpp).
#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlxcpp/mx/backend/cpu/qgemv.h"
#include "mlxcpp/mx/half_types.h"
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

struct Vec {
  static constexpr int L = 16;
  using V = __m512;
  using I = __m512i;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float v) { return _mm512_set1_ps(v); }
  static I set1i(int v) { return _mm512_set1_epi32(v); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(V v) { return _mm512_reduce_add_ps(v); }
  // A masked load never touches the words past `n` (the end of the matrix).
  static I load_words(const uint32_t* p, int n) {
    return _mm512_maskz_loadu_epi32(_cvtu32_mask16((1u << n) - 1u), p);
  }
  static void lane_consts(int j, int bits, I& idx, I& sh) {
    alignas(64) int32_t iv[16], sv[16];
    for (int l = 0; l < 16; ++l) {
      int bit = (j * 16 + l) * bits;
      iv[l] = bit / 32;
      sv[l] = bit % 32;
    }
    idx = _mm512_load_si512(iv);
    sh = _mm512_load_si512(sv);
  }
  template <bool STRADDLE>
  static V decode(I words, I idx, I sh, I mask) {
    I v = _mm512_srlv_epi32(_mm512_permutexvar_epi32(idx, words), sh);
    if constexpr (STRADDLE) {
      // The next word's low bits, shifted up past the first word's part (a
      // shift by 32 gives 0 where the value does not straddle).
      I hi = _mm512_permutexvar_epi32(_mm512_add_epi32(idx, _mm512_set1_epi32(1)), words);
      v = _mm512_or_si512(v, _mm512_sllv_epi32(hi, _mm512_sub_epi32(_mm512_set1_epi32(32), sh)));
    }
    return _mm512_cvtepi32_ps(_mm512_and_si512(v, mask));
  }
};

#include "mlxcpp/mx/backend/cpu/qgemv_impl.inc"

}  // namespace

void qgemv(const QGemvArgs& a) { qgemv_impl(a); }

}  // namespace mx::cpu::avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
