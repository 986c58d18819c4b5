// AVX-512 quantized GEMV (qgemv.h): 16 codes per vector, widened from bytes
// (4 and 8 bits) or unpacked with a lane permute of the block's words and
// per-lane variable shifts (other widths), converted to float32 and
// multiplied into x with FMA; 4-bit codes against bfloat16 x take vdpbf16ps. Compiled for AVX-512
// through a target region, as simd_avx512.cpp is; only called after isa() has checked the CPU
// (simd_dispatch.cpp).
#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
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
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(V v) { return _mm512_reduce_add_ps(v); }

  struct Consts {
    I idx[2], sh[2], mask;
    __mmask16 words;
    const uint32_t* safe_end = nullptr;
  };
  static Consts make_consts(int bits) {
    Consts c;
    for (int j = 0; j < 2; ++j) {
      alignas(64) int32_t iv[16], sv[16];
      for (int l = 0; l < 16; ++l) {
        int bit = (j * 16 + l) * bits;
        iv[l] = bit / 32;
        sv[l] = bit % 32;
      }
      c.idx[j] = _mm512_load_si512(iv);
      c.sh[j] = _mm512_load_si512(sv);
    }
    c.mask = _mm512_set1_epi32(static_cast<int>((1u << bits) - 1));
    c.words = _cvtu32_mask16((1u << bits) - 1u);
    return c;
  }

  // 4 bits: the 16 bytes widened to 16 lanes; lane l holds codes 2l (low
  // nibble) and 2l + 1, so vector 0 takes the even codes and vector 1 the odd.
  template <int B>
  static int pack_pos(int e) {
    if constexpr (B == 4) {
      return (e % 2) * 16 + e / 2;
    } else {
      return e;
    }
  }

  template <int B>
  static void decode_block(const uint32_t* p, const Consts& c, V* q) {
    if constexpr (B == 4) {
      I v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      q[0] = _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(15)));
      q[1] = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
    } else if constexpr (B == 8) {
      q[0] = _mm512_cvtepi32_ps(
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
      q[1] = _mm512_cvtepi32_ps(
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 4))));
    } else {
      // Words past the block are never used; near the end of the matrix a
      // masked load keeps from touching memory past it.
      const I words = p < c.safe_end ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi32(c.words, p);
      for (int j = 0; j < 2; ++j) {
        I v = _mm512_srlv_epi32(_mm512_permutexvar_epi32(c.idx[j], words), c.sh[j]);
        if constexpr (B < 0) {
          // The next word's low bits, shifted up past the first word's part
          // (a shift by 32 gives 0 where the value does not straddle).
          I hi = _mm512_permutexvar_epi32(_mm512_add_epi32(c.idx[j], _mm512_set1_epi32(1)), words);
          v = _mm512_or_si512(
              v, _mm512_sllv_epi32(hi, _mm512_sub_epi32(_mm512_set1_epi32(32), c.sh[j])));
        }
        q[j] = _mm512_cvtepi32_ps(_mm512_and_si512(v, c.mask));
      }
    }
  }
};

// 4 bits against bfloat16 x (exact in bfloat16): 64 codes (32 bytes) widened
// to 32 16-bit lanes, each nibble mapped to its bfloat16 value by a 32-entry
// word permute (entry i = i & 15, so the low nibble needs no mask), and
// multiplied with vdpbf16ps: 64 multiply-adds in six instructions. x is
// packed per 64 values as the 32 even ones, then the 32 odd ones.
#define HAS_BF16_DOT 1
#define HAS_BF16_PLANES 1

// The packed rows start on a 64-byte boundary of `store` (each 64-byte load
// of them then reads one cache line, not two); returns where.
const uint16_t* pack_x_bf16_4bit(const QGemvArgs& a, std::vector<uint16_t>& store) {
  store.resize(static_cast<size_t>(a.M) * a.K + 32);
  uint16_t* xb = reinterpret_cast<uint16_t*>((reinterpret_cast<uintptr_t>(store.data()) + 63) &
                                             ~uintptr_t{63});
  alignas(64) uint16_t ev[32], od[32];
  for (int i = 0; i < 32; ++i) {
    ev[i] = static_cast<uint16_t>(2 * i);
    od[i] = static_cast<uint16_t>(2 * i + 1);
  }
  const __m512i even = _mm512_load_si512(ev), odd = _mm512_load_si512(od);
  for (int m = 0; m < a.M; ++m) {
    const float* x = a.x + int64_t{m} * a.K;
    uint16_t* o = xb + int64_t{m} * a.K;
    // 64 values at a time: rounded to bfloat16 (exact: x holds bfloat16
    // values) in order, then the even and the odd ones gathered.
    for (int k0 = 0; k0 < a.K; k0 += 64) {
      const __m512i lo =
          (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k0 + 16), _mm512_loadu_ps(x + k0));
      const __m512i hi =
          (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k0 + 48), _mm512_loadu_ps(x + k0 + 32));
      _mm512_storeu_si512(o + k0, _mm512_permutex2var_epi16(lo, even, hi));
      _mm512_storeu_si512(o + k0 + 32, _mm512_permutex2var_epi16(lo, odd, hi));
    }
  }
  return xb;
}

template <int MM, typename S>
void range_bf16_4bit(const QGemvArgs& a, const uint16_t* xb, const float* xsum, int n0, int n1) {
  alignas(64) uint16_t tv[32];
  for (int i = 0; i < 32; ++i) tv[i] = bfloat16_t(static_cast<float>(i & 15)).bits;
  const __m512i table = _mm512_load_si512(tv);
  const int g = a.group_size, groups = a.K / g, chunks = g / 64;
  const int64_t row_bytes = int64_t{a.K} / 2;
  const S* scales = static_cast<const S*>(a.scales);
  const S* biases = static_cast<const S*>(a.biases);
  for (int n = n0; n < n1; ++n) {
    const uint8_t* wb = reinterpret_cast<const uint8_t*>(a.w) + n * row_bytes;
    const S* srow = scales + int64_t{n} * groups;
    const S* brow = biases + int64_t{n} * groups;
    __m512 acc[MM];
    float bsum[MM];
#pragma GCC unroll 8
    for (int m = 0; m < MM; ++m) {
      acc[m] = _mm512_setzero_ps();
      bsum[m] = 0.0f;
    }
    for (int gi = 0; gi < groups; ++gi) {
      __m512 part[MM];
#pragma GCC unroll 8
      for (int m = 0; m < MM; ++m) part[m] = _mm512_setzero_ps();
      for (int c = 0; c < chunks; ++c) {
        const __m512i v =
            _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb)));
        wb += 32;
        const __m512bh lo = (__m512bh)_mm512_permutexvar_epi16(v, table);
        const __m512bh hi = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(v, 4), table);
        const int64_t k = int64_t{gi} * g + c * 64;
#pragma GCC unroll 8
        for (int m = 0; m < MM; ++m) {
          const uint16_t* xm = xb + int64_t{m} * a.K + k;
          part[m] = _mm512_dpbf16_ps(part[m], lo, (__m512bh)_mm512_loadu_si512(xm));
          part[m] = _mm512_dpbf16_ps(part[m], hi, (__m512bh)_mm512_loadu_si512(xm + 32));
        }
      }
      const __m512 sc = _mm512_set1_ps(static_cast<float>(srow[gi]));
      const float bv = static_cast<float>(brow[gi]);
#pragma GCC unroll 8
      for (int m = 0; m < MM; ++m) {
        acc[m] = _mm512_fmadd_ps(part[m], sc, acc[m]);
        bsum[m] += bv * xsum[m * groups + gi];
      }
    }
#pragma GCC unroll 8
    for (int m = 0; m < MM; ++m) a.y[m * a.ldy + n] = _mm512_reduce_add_ps(acc[m]) + bsum[m];
  }
}

// 16 scales (or biases) of a row as float32 lanes; lanes past `count` are 0.
template <typename S>
__m512 load_params16(const S* p, int count) {
  const __mmask16 m = count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1u);
  if constexpr (std::is_same_v<S, float>) {
    return count >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p);
  } else {
    const __m256i h = count >= 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                                  : _mm256_maskz_loadu_epi16(m, p);
    if constexpr (std::is_same_v<S, bfloat16_t>) {
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
      return _mm512_cvtph_ps(h);
    }
  }
}

// The one-row case of range_bf16_4bit (decode). There, each group ended in one
// FMA into a single accumulator and one scalar multiply-add of the bias term,
// two dependency chains of ~4 cycles per 32 bytes of codes, which bounded a
// core to ~20 GB/s in cache. Here four groups in flight each have their own
// accumulator, and a row's scales are converted 16 at a time and its bias
// term, sum over groups of bias * sum(x over the group), is one vector
// product per 16 groups.
template <typename S>
void range_bf16_4bit_m1(const QGemvArgs& a, const uint16_t* xb, const float* xsum, int n0, int n1) {
  alignas(64) uint16_t tv[32];
  for (int i = 0; i < 32; ++i) tv[i] = bfloat16_t(static_cast<float>(i & 15)).bits;
  const __m512i table = _mm512_load_si512(tv);
  const int g = a.group_size, groups = a.K / g, chunks = g / 64;
  const int64_t row_bytes = int64_t{a.K} / 2;
  const S* scales = static_cast<const S*>(a.scales);
  const S* biases = static_cast<const S*>(a.biases);
  constexpr int kBlock = 64;  // groups whose scales are converted at once
  alignas(64) float cs[kBlock];
  for (int n = n0; n < n1; ++n) {
    const uint8_t* wb = reinterpret_cast<const uint8_t*>(a.w) + n * row_bytes;
    const S* srow = scales + int64_t{n} * groups;
    const S* brow = biases + int64_t{n} * groups;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, bacc = acc0;
    const uint16_t* xg = xb;
    auto group = [&](float scale, __m512& acc) {
      __m512 part = _mm512_setzero_ps();
      for (int c = 0; c < chunks; ++c) {
        const __m512i v =
            _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb)));
        wb += 32;
        const __m512bh lo = (__m512bh)_mm512_permutexvar_epi16(v, table);
        const __m512bh hi = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(v, 4), table);
        part = _mm512_dpbf16_ps(part, lo, (__m512bh)_mm512_loadu_si512(xg));
        part = _mm512_dpbf16_ps(part, hi, (__m512bh)_mm512_loadu_si512(xg + 32));
        xg += 64;
      }
      acc = _mm512_fmadd_ps(part, _mm512_set1_ps(scale), acc);
    };
    for (int gb = 0; gb < groups; gb += kBlock) {
      const int gn = std::min(kBlock, groups - gb);
      for (int j = 0; j < gn; j += 16) {
        const __m512 sv = load_params16(srow + gb + j, gn - j);
        const __m512 bv = load_params16(brow + gb + j, gn - j);
        _mm512_store_ps(cs + j, sv);
        const __m512 xs =
            gn - j >= 16 ? _mm512_loadu_ps(xsum + gb + j)
                         : _mm512_maskz_loadu_ps(__mmask16((1u << (gn - j)) - 1u), xsum + gb + j);
        bacc = _mm512_fmadd_ps(bv, xs, bacc);
      }
      int gi = 0;
      for (; gi + 4 <= gn; gi += 4) {
        group(cs[gi], acc0);
        group(cs[gi + 1], acc1);
        group(cs[gi + 2], acc2);
        group(cs[gi + 3], acc3);
      }
      for (; gi < gn; ++gi) group(cs[gi], acc0);
    }
    const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3));
    a.y[n] = _mm512_reduce_add_ps(sum) + _mm512_reduce_add_ps(bacc);
  }
}

// The one-row 4-bit kernel for K a multiple of 128 and groups of 32, 64 or
// 128 (every Gemma 3 projection): no shuffles on the codes. range_bf16_4bit_m1
// spent three shuffles (a widening move, two word permutes) per 32 bytes of
// codes, which held a core to ~20 GB/s with the data in cache, under the
// memory floor of two cores. Here a 64-byte load holds 128 codes as 32 words
// of four nibbles each; nibble p of every word is moved to bits 3..6 and
// or-ed with 0x4180 (bfloat16 16.0, whose last mantissa bit is 1/8), which
// makes the bfloat16 value 16 + q exactly: a shift and a ternary logic op per
// 32 codes. x is packed in the same four planes (plane p holds x[4j + p]),
// so vdpbf16ps sums (16 + q) * x; the 16 * sum(x) it adds per group is taken
// back through the bias term, sum over groups of (bias - 16 * scale) *
// sum(x over the group). Lane i of a block's products covers codes 8i ..
// 8i + 7, all in one group, so one lane permute of 16 converted scales gives
// each lane its group's scale.
const uint16_t* pack_x_bf16_planes(const QGemvArgs& a, std::vector<uint16_t>& store) {
  store.resize(static_cast<size_t>(a.K) + 32);
  uint16_t* xb = reinterpret_cast<uint16_t*>((reinterpret_cast<uintptr_t>(store.data()) + 63) &
                                             ~uintptr_t{63});
  for (int k0 = 0; k0 < a.K; k0 += 128) {
    for (int p = 0; p < 4; ++p) {
      for (int j = 0; j < 32; ++j) {
        // x holds bfloat16 values: its top 16 bits are the value exactly.
        uint32_t u;
        std::memcpy(&u, a.x + k0 + 4 * j + p, 4);
        xb[k0 + 32 * p + j] = static_cast<uint16_t>(u >> 16);
      }
    }
  }
  return xb;
}

bool planes_fit(const QGemvArgs& a) {
  return a.M == 1 && a.bits == 4 && a.x_bf16_exact && a.K % 128 == 0 &&
         (a.group_size == 32 || a.group_size == 64 || a.group_size == 128);
}

template <typename S>
void range_bf16_4bit_planes(const QGemvArgs& a, const uint16_t* xb, const float* xsum, int n0,
                            int n1) {
  const int g = a.group_size, groups = a.K / g;
  const int64_t row_bytes = int64_t{a.K} / 2;
  const S* scales = static_cast<const S*>(a.scales);
  const S* biases = static_cast<const S*>(a.biases);
  // Blocks of 128 codes per window of 16 groups, and for block j of a window
  // the group (within it) of each lane.
  const int bpw = g / 8;
  alignas(64) int32_t lane_group[16 * 16];
  for (int j = 0; j < bpw; ++j) {
    for (int i = 0; i < 16; ++i) lane_group[j * 16 + i] = (128 * j + 8 * i) / g;
  }
  const __m512i nib = _mm512_set1_epi16(0x78), magic = _mm512_set1_epi16(0x4180);
  const __m512 sixteen = _mm512_set1_ps(16.0f);
  // (a & b) | c as a ternary logic table.
  constexpr int kAndOr = 0xEA;
  for (int n = n0; n < n1; ++n) {
    const uint8_t* wb = reinterpret_cast<const uint8_t*>(a.w) + n * row_bytes;
    const S* srow = scales + int64_t{n} * groups;
    const S* brow = biases + int64_t{n} * groups;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, bacc = acc0;
    const uint16_t* xg = xb;
    for (int gw = 0; gw < groups; gw += 16) {
      const int gn = std::min(16, groups - gw);
      const __m512 sv = load_params16(srow + gw, gn);
      const __m512 bv = load_params16(brow + gw, gn);
      const __m512 xs = gn >= 16 ? _mm512_loadu_ps(xsum + gw)
                                 : _mm512_maskz_loadu_ps(__mmask16((1u << gn) - 1u), xsum + gw);
      bacc = _mm512_fmadd_ps(_mm512_fnmadd_ps(sixteen, sv, bv), xs, bacc);
      auto block = [&](int j, __m512& acc) {
        const __m512i w = _mm512_loadu_si512(wb);
        wb += 64;
        const __m512i qa = _mm512_ternarylogic_epi32(_mm512_slli_epi16(w, 3), nib, magic, kAndOr);
        const __m512i qb = _mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 1), nib, magic, kAndOr);
        const __m512i qc = _mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 5), nib, magic, kAndOr);
        const __m512i qd = _mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 9), nib, magic, kAndOr);
        __m512 p =
            _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)qa, (__m512bh)_mm512_load_si512(xg));
        p = _mm512_dpbf16_ps(p, (__m512bh)qb, (__m512bh)_mm512_load_si512(xg + 32));
        p = _mm512_dpbf16_ps(p, (__m512bh)qc, (__m512bh)_mm512_load_si512(xg + 64));
        p = _mm512_dpbf16_ps(p, (__m512bh)qd, (__m512bh)_mm512_load_si512(xg + 96));
        xg += 128;
        const __m512 sc = _mm512_permutexvar_ps(_mm512_load_si512(lane_group + 16 * j), sv);
        acc = _mm512_fmadd_ps(p, sc, acc);
      };
      const int nb = gn * g / 128;
      int j = 0;
      for (; j + 4 <= nb; j += 4) {
        block(j, acc0);
        block(j + 1, acc1);
        block(j + 2, acc2);
        block(j + 3, acc3);
      }
      for (; j < nb; ++j) block(j, acc0);
    }
    const __m512 sum =
        _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(_mm512_add_ps(acc2, acc3), bacc));
    a.y[n] = _mm512_reduce_add_ps(sum);
  }
}

// 2, 3, 5 and 6 bits with AVX-512 VBMI (checked at run time: the ISA level
// does not include it): 64 codes fill 8 * bits bytes, and each qword of the
// output gathers (vpermb) the `bits` bytes holding its 8 codes, from which
// vpmultishiftqb cuts code j at bit j * bits into byte j. The codes, as bytes
// in natural order, then become floats (float32 x) or, through a word
// permute table, bfloat16 values for vdpbf16ps (bfloat16 x).
#define HAS_VBMI_UNPACK 1
#define MLXCPP_VBMI_TARGET                                                  \
  __attribute__((                                                           \
      target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16," \
             "avx512vbmi")))

bool has_vbmi() {
  static const bool yes = __builtin_cpu_supports("avx512vbmi");
  return yes;
}

template <int MM, typename S, bool BF16>
MLXCPP_VBMI_TARGET void range_vbmi(const QGemvArgs& a, const void* xv, const float* xsum, int n0,
                                   int n1) {
  const int bits = a.bits, g = a.group_size, groups = a.K / g, chunks = g / 64;
  const int64_t row_bytes = int64_t{a.K} * bits / 8;
  alignas(64) uint8_t idx[64], ctrl[64];
  for (int i = 0; i < 8; ++i) {
    for (int j = 0; j < 8; ++j) {
      idx[8 * i + j] = static_cast<uint8_t>(i * bits + j);
      ctrl[8 * i + j] = static_cast<uint8_t>(j * bits);
    }
  }
  const __m512i vidx = _mm512_load_si512(idx), vctrl = _mm512_load_si512(ctrl);
  const __m512i mask = _mm512_set1_epi8(static_cast<char>((1u << bits) - 1));
  // The 8 * bits bytes of the 64 codes.
  const __mmask64 bytes = _cvtu64_mask64((uint64_t{1} << (8 * bits)) - 1);
  alignas(64) uint16_t tv[64];
  for (int i = 0; i < 64; ++i) tv[i] = bfloat16_t(static_cast<float>(i)).bits;
  const __m512i tlo = _mm512_load_si512(tv), thi = _mm512_load_si512(tv + 32);
  const S* scales = static_cast<const S*>(a.scales);
  const S* biases = static_cast<const S*>(a.biases);
  // Chunks starting before this are read with a plain 64-byte load (masked
  // loads measured ~2x slower here); the last ones of the matrix are masked.
  const uint8_t* safe_end =
      reinterpret_cast<const uint8_t*>(a.w) + std::max<int64_t>(0, a.N * row_bytes - 64);
  for (int n = n0; n < n1; ++n) {
    const uint8_t* wb = reinterpret_cast<const uint8_t*>(a.w) + n * row_bytes;
    const S* srow = scales + int64_t{n} * groups;
    const S* brow = biases + int64_t{n} * groups;
    __m512 acc[MM];
    float bsum[MM];
#pragma GCC unroll 8
    for (int m = 0; m < MM; ++m) {
      acc[m] = _mm512_setzero_ps();
      bsum[m] = 0.0f;
    }
    for (int gi = 0; gi < groups; ++gi) {
      __m512 part[MM];
#pragma GCC unroll 8
      for (int m = 0; m < MM; ++m) part[m] = _mm512_setzero_ps();
      for (int c = 0; c < chunks; ++c) {
        const __m512i raw =
            wb < safe_end ? _mm512_loadu_si512(wb) : _mm512_maskz_loadu_epi8(bytes, wb);
        wb += 8 * bits;
        const __m512i codes = _mm512_and_si512(
            _mm512_multishift_epi64_epi8(vctrl, _mm512_permutexvar_epi8(vidx, raw)), mask);
        const int64_t k = int64_t{gi} * g + c * 64;
        if constexpr (BF16) {
          const uint16_t* xb = static_cast<const uint16_t*>(xv);
          for (int h = 0; h < 2; ++h) {
            const __m512i w16 = _mm512_cvtepu8_epi16(h == 0 ? _mm512_castsi512_si256(codes)
                                                            : _mm512_extracti64x4_epi64(codes, 1));
            const __m512bh q = (__m512bh)_mm512_permutex2var_epi16(tlo, w16, thi);
#pragma GCC unroll 8
            for (int m = 0; m < MM; ++m) {
              part[m] = _mm512_dpbf16_ps(
                  part[m], q, (__m512bh)_mm512_loadu_si512(xb + int64_t{m} * a.K + k + 32 * h));
            }
          }
        } else {
          const float* xf = static_cast<const float*>(xv);
          // The lane index of extracti32x4 must be a constant at every
          // optimization level (a loop variable compiles only once unrolled).
          auto quarter = [&]<int H>() {
            const __m512 q =
                _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(codes, H)));
#pragma GCC unroll 8
            for (int m = 0; m < MM; ++m) {
              part[m] =
                  _mm512_fmadd_ps(q, _mm512_loadu_ps(xf + int64_t{m} * a.K + k + 16 * H), part[m]);
            }
          };
          quarter.template operator()<0>();
          quarter.template operator()<1>();
          quarter.template operator()<2>();
          quarter.template operator()<3>();
        }
      }
      const __m512 sc = _mm512_set1_ps(static_cast<float>(srow[gi]));
      const float bv = static_cast<float>(brow[gi]);
#pragma GCC unroll 8
      for (int m = 0; m < MM; ++m) {
        acc[m] = _mm512_fmadd_ps(part[m], sc, acc[m]);
        bsum[m] += bv * xsum[m * groups + gi];
      }
    }
#pragma GCC unroll 8
    for (int m = 0; m < MM; ++m) a.y[m * a.ldy + n] = _mm512_reduce_add_ps(acc[m]) + bsum[m];
  }
}

#include "mlxcpp/mx/backend/cpu/qgemv_impl.inc"
#undef HAS_BF16_DOT
#undef HAS_BF16_PLANES
#undef HAS_VBMI_UNPACK
#undef MLXCPP_VBMI_TARGET

}  // namespace

void qgemv(const QGemvArgs& a) { qgemv_impl(a); }

}  // namespace mx::cpu::avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
