// AVX2 quantized GEMV (qgemv.h): 8 codes per vector, widened from bytes (4
// and 8 bits) or unpacked with a lane permute of the block's words and
// per-lane variable shifts (other widths), converted to float32 and
// multiplied into x with FMA. The library's baseline already has
// AVX2/FMA; the target region keeps this file like its AVX-512 twin.
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
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace mx::cpu::avx2 {
namespace {

struct Vec {
  static constexpr int L = 8;
  using V = __m256;
  using I = __m256i;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static float hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  struct Consts {
    I idx[4], sh[4], mask, words;
    const uint32_t* safe_end = nullptr;
  };
  static Consts make_consts(int bits) {
    Consts c;
    for (int j = 0; j < 4; ++j) {
      alignas(32) int32_t iv[8], sv[8];
      for (int l = 0; l < 8; ++l) {
        int bit = (j * 8 + l) * bits;
        iv[l] = bit / 32;
        sv[l] = bit % 32;
      }
      c.idx[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(iv));
      c.sh[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(sv));
    }
    c.mask = _mm256_set1_epi32(static_cast<int>((1u << bits) - 1));
    c.words =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(bits), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return c;
  }

  // 4 bits: 8 bytes widened to 8 lanes; lane l holds codes 2l and 2l + 1 of
  // its 16, so vectors 0 / 1 take the even / odd codes of the first 16 and
  // vectors 2 / 3 those of the second.
  template <int B>
  static int pack_pos(int e) {
    if constexpr (B == 4) {
      return (2 * (e / 16) + e % 2) * 8 + (e % 16) / 2;
    } else {
      return e;
    }
  }

  template <int B>
  static void decode_block(const uint32_t* p, const Consts& c, V* q) {
    if constexpr (B == 4) {
      for (int h = 0; h < 2; ++h) {
        I v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 2 * h)));
        q[2 * h] = _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(15)));
        q[2 * h + 1] = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4));
      }
    } else if constexpr (B == 8) {
      for (int j = 0; j < 4; ++j) {
        q[j] = _mm256_cvtepi32_ps(
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 2 * j))));
      }
    } else {
      // Words past the block are never used; near the end of the matrix a
      // masked load keeps from touching memory past it.
      const I words = p < c.safe_end
                          ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                          : _mm256_maskload_epi32(reinterpret_cast<const int*>(p), c.words);
      for (int j = 0; j < 4; ++j) {
        I v = _mm256_srlv_epi32(_mm256_permutevar8x32_epi32(words, c.idx[j]), c.sh[j]);
        if constexpr (B < 0) {
          // The next word's low bits, shifted up past the first word's part
          // (a shift by 32 gives 0 where the value does not straddle).
          // Straddling widths use at most 6 words, so idx + 1 stays below 8.
          I hi =
              _mm256_permutevar8x32_epi32(words, _mm256_add_epi32(c.idx[j], _mm256_set1_epi32(1)));
          v = _mm256_or_si256(
              v, _mm256_sllv_epi32(hi, _mm256_sub_epi32(_mm256_set1_epi32(32), c.sh[j])));
        }
        q[j] = _mm256_cvtepi32_ps(_mm256_and_si256(v, c.mask));
      }
    }
  }
};

#include "mlxcpp/mx/backend/cpu/qgemv_impl.inc"

}  // namespace

void qgemv(const QGemvArgs& a) { qgemv_impl(a); }

}  // namespace mx::cpu::avx2

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
