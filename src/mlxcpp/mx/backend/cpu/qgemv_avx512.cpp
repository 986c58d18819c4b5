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

// The one-row kernel for 4 and 8 bits against bfloat16 x (decode), K a
// multiple of 128 (4 bits) or 64 (8 bits) and groups of 32, 64 or 128 (every
// Gemma 3 projection). A 64-byte load of codes is read as 32 16-bit words;
// each word holds four nibbles (four 4-bit codes, or the low and high nibbles
// of two 8-bit codes). One masked vgf2p8affineqb per nibble plane moves the
// nibble of every even byte to bits 3..6 and sets bit 7, while the odd bytes
// keep the constant 0x41: the word becomes 0x4180 | q << 3, the bfloat16
// value 16 + q exactly. The odd bytes' nibbles come from the same words shifted
// right by 8. The earlier kernel spent a shift and a ternary logic op per
// plane (eight ops per 64 bytes, here five).
//
// x is packed to match, per block of codes: for 4 bits (128 codes) plane p
// holds x[4j + p]; for 8 bits (64 codes) planes 0 and 2 hold x[2j] and
// x[2j + 1], planes 1 and 3 the same times 16 (exact in bfloat16), so
// (16 + lo) * x + (16 + hi) * 16x = q * x + 272x. vdpbf16ps sums the products
// into float32 lanes; lane i of a block covers codes of one group, and its
// group's scale comes from a two-source lane permute of the window's 32
// converted scales. The offsets' share, off * scale * sum(x over the group)
// (off = 16 or 272), is taken back through the bias term: sum over groups of
// (bias - off * scale) * sum(x over the group), x's per-group sums computed
// once per call.
#define HAS_BF16_PLANES 1
#define MLXCPP_GFNI_TARGET                                                  \
  __attribute__((                                                           \
      target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16," \
             "gfni")))

bool has_gfni() {
  static const bool yes = __builtin_cpu_supports("gfni");
  return yes;
}

bool planes_fit(const QGemvArgs& a) {
  if (a.M != 1 || !a.x_bf16_exact || !has_gfni()) return false;
  if (a.group_size != 32 && a.group_size != 64 && a.group_size != 128) return false;
  return (a.bits == 4 && a.K % 128 == 0) || (a.bits == 8 && a.K % 64 == 0);
}

// Packed x: K (4 bits) or 2K (8 bits) bfloat16 values starting on a 64-byte
// boundary of `store` (each 64-byte load then reads one cache line).
const uint16_t* pack_x_bf16_planes(const QGemvArgs& a, std::vector<uint16_t>& store) {
  const int per = a.bits == 4 ? 1 : 2;
  store.resize(static_cast<size_t>(per) * a.K + 32);
  uint16_t* xb = reinterpret_cast<uint16_t*>((reinterpret_cast<uintptr_t>(store.data()) + 63) &
                                             ~uintptr_t{63});
  const float* x = a.x;
  // cvtne2ps_pbh is exact here: x holds bfloat16 values (and 16x too).
  auto bf = [&](const float* p, float mul) {
    const __m512 m = _mm512_set1_ps(mul);
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_mul_ps(_mm512_loadu_ps(p + 16), m),
                                        _mm512_mul_ps(_mm512_loadu_ps(p), m));
  };
  if (a.bits == 4) {
    // Plane p of 128 values: elements 4j + p, taken 16 at a time from each
    // 64-value half.
    alignas(64) uint16_t iv[4][32];
    for (int p = 0; p < 4; ++p) {
      for (int j = 0; j < 32; ++j) iv[p][j] = static_cast<uint16_t>(j < 16 ? 4 * j + p : 0);
    }
    for (int k0 = 0; k0 < a.K; k0 += 128) {
      const __m512i v0 = bf(x + k0, 1.0f), v1 = bf(x + k0 + 32, 1.0f);
      const __m512i v2 = bf(x + k0 + 64, 1.0f), v3 = bf(x + k0 + 96, 1.0f);
      for (int p = 0; p < 4; ++p) {
        const __m512i idx = _mm512_load_si512(iv[p]);
        const __m512i lo = _mm512_permutex2var_epi16(v0, idx, v1);
        const __m512i hi = _mm512_permutex2var_epi16(v2, idx, v3);
        _mm512_store_si512(xb + k0 + 32 * p, _mm512_inserti64x4(lo, _mm512_castsi512_si256(hi), 1));
      }
    }
  } else {
    alignas(64) uint16_t ev[32], od[32];
    for (int j = 0; j < 32; ++j) {
      ev[j] = static_cast<uint16_t>(2 * j);
      od[j] = static_cast<uint16_t>(2 * j + 1);
    }
    const __m512i even = _mm512_load_si512(ev), odd = _mm512_load_si512(od);
    for (int k0 = 0; k0 < a.K; k0 += 64) {
      const __m512i v0 = bf(x + k0, 1.0f), v1 = bf(x + k0 + 32, 1.0f);
      const __m512i w0 = bf(x + k0, 16.0f), w1 = bf(x + k0 + 32, 16.0f);
      uint16_t* o = xb + 2 * k0;
      _mm512_store_si512(o, _mm512_permutex2var_epi16(v0, even, v1));
      _mm512_store_si512(o + 32, _mm512_permutex2var_epi16(w0, even, w1));
      _mm512_store_si512(o + 64, _mm512_permutex2var_epi16(v0, odd, v1));
      _mm512_store_si512(o + 96, _mm512_permutex2var_epi16(w0, odd, w1));
    }
  }
  return xb;
}

// Up to 32 scales (or biases) of a row as two float32 vectors; lanes past
// `count` are 0.
template <typename S>
void load_params32(const S* p, int count, __m512& lo, __m512& hi) {
  lo = load_params16(p, std::min(count, 16));
  hi = count > 16 ? load_params16(p + 16, count - 16) : _mm512_setzero_ps();
}

// The dot product of one 64-byte block of codes with its 128 packed x values,
// per float32 lane (lane i: the codes of bytes 4i .. 4i + 3).
MLXCPP_GFNI_TARGET inline __m512 block_dot(const uint8_t* wb, const uint16_t* xg) {
  // Output bit 3 + j of each byte takes input bit j (low nibble) or 4 + j
  // (high nibble): matrix byte 7 - (3 + j) selects it. Bit 7 comes from the
  // constant 0x80; the odd bytes keep 0x41 through the merge mask.
  constexpr uint64_t kLo =
      (uint64_t{1} << 32) | (uint64_t{2} << 24) | (uint64_t{4} << 16) | (uint64_t{8} << 8);
  constexpr uint64_t kHi =
      (uint64_t{16} << 32) | (uint64_t{32} << 24) | (uint64_t{64} << 16) | (uint64_t{128} << 8);
  const __m512i mlo = _mm512_set1_epi64(static_cast<long long>(kLo));
  const __m512i mhi = _mm512_set1_epi64(static_cast<long long>(kHi));
  const __m512i magic = _mm512_set1_epi16(0x4180);
  const __mmask64 even = 0x5555555555555555ull;
  const __m512i w = _mm512_loadu_si512(wb);
  const __m512i w8 = _mm512_srli_epi16(w, 8);
  const __m512i qa = _mm512_mask_gf2p8affine_epi64_epi8(magic, even, w, mlo, 0x80);
  const __m512i qb = _mm512_mask_gf2p8affine_epi64_epi8(magic, even, w, mhi, 0x80);
  const __m512i qc = _mm512_mask_gf2p8affine_epi64_epi8(magic, even, w8, mlo, 0x80);
  const __m512i qd = _mm512_mask_gf2p8affine_epi64_epi8(magic, even, w8, mhi, 0x80);
  __m512 p = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)qa, (__m512bh)_mm512_load_si512(xg));
  p = _mm512_dpbf16_ps(p, (__m512bh)qb, (__m512bh)_mm512_load_si512(xg + 32));
  p = _mm512_dpbf16_ps(p, (__m512bh)qc, (__m512bh)_mm512_load_si512(xg + 64));
  return _mm512_dpbf16_ps(p, (__m512bh)qd, (__m512bh)_mm512_load_si512(xg + 96));
}

// Codes are prefetched this far ahead (32 lines). Measured with
// mlxcpp_bench_core's BM_QuantizedGemv, 2 threads: none against 1024 bytes in
// three alternations, 6912 x 1152 at 4 bits 28.7-37.1 -> 33.1-38.6 GB/s, 1152 x
// 6912 34.0-35.6 -> 42.2-45.8; 1024 against 2048 (four alternations, two
// quiet, two loaded) 2048 equal or ahead (quantized / read rate 0.70 -> 0.78
// loaded), 512, 1536 and 3072 behind.
constexpr int kPlanesPrefetch = 2048;

template <int BITS, int G, typename S>
MLXCPP_GFNI_TARGET void range_bf16_planes(const QGemvArgs& a, const uint16_t* xb, const float* xsum,
                                          int n0, int n1) {
  constexpr int kCodes = 512 / BITS;  // codes per 64-byte block
  constexpr float kOff = BITS == 4 ? 16.0f : 272.0f;
  const int groups = a.K / G;
  const int64_t row_bytes = int64_t{a.K} * BITS / 8;
  const S* scales = static_cast<const S*>(a.scales);
  const S* biases = static_cast<const S*>(a.biases);
  // Windows of 32 groups. Lane i of block j of a window holds codes of group
  // (kCodes * j + kCodes / 16 * i) / G (0..31): the index of its scale in the
  // window's lane permute. Where a block spans whole groups that is block 0's
  // index plus kCodes / G per block, one add; 8-bit codes in groups of 128
  // (two blocks per group) read it from a table.
  constexpr int kStep = kCodes >= G ? kCodes / G : 0;
  constexpr int kTableBlocks = kStep > 0 ? 1 : 32 * G / kCodes;
  alignas(64) int32_t lane_group[kTableBlocks * 16];
  for (int j = 0; j < kTableBlocks; ++j) {
    for (int i = 0; i < 16; ++i) lane_group[j * 16 + i] = (kCodes * j + kCodes / 16 * i) / G;
  }
  const __m512i step = _mm512_set1_epi32(kStep);
  const __m512 off = _mm512_set1_ps(kOff);
  for (int n = n0; n < n1; ++n) {
    const uint8_t* wb = reinterpret_cast<const uint8_t*>(a.w) + n * row_bytes;
    const S* srow = scales + int64_t{n} * groups;
    const S* brow = biases + int64_t{n} * groups;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    __m512 bacc = _mm512_setzero_ps();
    const uint16_t* xg = xb;
    for (int gw = 0; gw < groups; gw += 32) {
      const int gn = std::min(32, groups - gw);
      __m512 s0, s1, b0, b1;
      load_params32(srow + gw, gn, s0, s1);
      load_params32(brow + gw, gn, b0, b1);
      const __m512 x0 = gn >= 16 ? _mm512_loadu_ps(xsum + gw)
                                 : _mm512_maskz_loadu_ps(__mmask16((1u << gn) - 1u), xsum + gw);
      const __m512 x1 =
          gn >= 32  ? _mm512_loadu_ps(xsum + gw + 16)
          : gn > 16 ? _mm512_maskz_loadu_ps(__mmask16((1u << (gn - 16)) - 1u), xsum + gw + 16)
                    : _mm512_setzero_ps();
      bacc = _mm512_fmadd_ps(_mm512_fnmadd_ps(off, s0, b0), x0, bacc);
      bacc = _mm512_fmadd_ps(_mm512_fnmadd_ps(off, s1, b1), x1, bacc);
      const int nb = gn * G / kCodes;
      __m512i lane = _mm512_load_si512(lane_group);
      // One block: its products, scaled per lane, into accumulator u (four
      // in flight). A prefetch never faults: past the range it fetches lines
      // of other rows, or none.
      auto block = [&](int j, int u) {
        _mm_prefetch(
            reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(wb) + kPlanesPrefetch),
            _MM_HINT_T0);
        const __m512 p = block_dot(wb, xg);
        wb += 64;
        xg += 128;
        if constexpr (kStep > 0) {
          acc[u] = _mm512_fmadd_ps(p, _mm512_permutex2var_ps(s0, lane, s1), acc[u]);
          lane = _mm512_add_epi32(lane, step);
        } else {
          const __m512i idx = _mm512_load_si512(lane_group + 16 * j);
          acc[u] = _mm512_fmadd_ps(p, _mm512_permutex2var_ps(s0, idx, s1), acc[u]);
        }
      };
      int j = 0;
      for (; j + 4 <= nb; j += 4) {
        block(j, 0);
        block(j + 1, 1);
        block(j + 2, 2);
        block(j + 3, 3);
      }
      for (; j < nb; ++j) block(j, 0);
    }
    const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]),
                                     _mm512_add_ps(_mm512_add_ps(acc[2], acc[3]), bacc));
    a.y[n] = _mm512_reduce_add_ps(sum);
  }
}

template <typename S>
void range_bf16_planes_bits(const QGemvArgs& a, const uint16_t* xb, const float* xsum, int n0,
                            int n1) {
  auto run = [&]<int BITS>() {
    if (a.group_size == 32) {
      range_bf16_planes<BITS, 32, S>(a, xb, xsum, n0, n1);
    } else if (a.group_size == 64) {
      range_bf16_planes<BITS, 64, S>(a, xb, xsum, n0, n1);
    } else {
      range_bf16_planes<BITS, 128, S>(a, xb, xsum, n0, n1);
    }
  };
  if (a.bits == 4) {
    run.template operator()<4>();
  } else {
    run.template operator()<8>();
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

// Several matrices against one row of x (q/k/v, gate/up in decode): x packed
// and its group sums taken once, and one parallel pass over the rows of them
// all, one thread-pool hand-off instead of one per matrix.
template <typename S>
void qgemv_multi_typed(const QGemvArgs* a, int count) {
  const std::vector<float> xsum = x_group_sums(a[0], 1);
  std::vector<uint16_t> store;
  const uint16_t* xb = pack_x_bf16_planes(a[0], store);
  std::vector<size_t> start(static_cast<size_t>(count) + 1, 0);
  for (int i = 0; i < count; ++i) start[i + 1] = start[i] + static_cast<size_t>(a[i].N);
  const size_t row_bytes = static_cast<size_t>(a[0].K) * a[0].bits / 8 +
                           size_t{2} * (a[0].K / a[0].group_size) * sizeof(S);
  const size_t rows = start[count];
  scheduler::parallel_for(rows, qgemv_grain(rows, row_bytes), [&](size_t b, size_t e) {
    for (int i = 0; i < count; ++i) {
      const size_t lo = std::max(b, start[i]), hi = std::min(e, start[i + 1]);
      if (lo < hi) {
        range_bf16_planes_bits<S>(a[i], xb, xsum.data(), static_cast<int>(lo - start[i]),
                                  static_cast<int>(hi - start[i]));
      }
    }
  });
}
#undef HAS_BF16_DOT
#undef HAS_BF16_PLANES
#undef HAS_VBMI_UNPACK
#undef MLXCPP_VBMI_TARGET
#undef MLXCPP_GFNI_TARGET

}  // namespace

void qgemv(const QGemvArgs& a) { qgemv_impl(a); }

bool qgemv_multi(const QGemvArgs* a, int count) {
  for (int i = 0; i < count; ++i) {
    const QGemvArgs& b = a[i];
    if (!planes_fit(b) || b.x != a[0].x || b.K != a[0].K || b.bits != a[0].bits ||
        b.group_size != a[0].group_size || b.sdtype != a[0].sdtype) {
      return false;
    }
  }
  if (a[0].sdtype == bfloat16) {
    qgemv_multi_typed<bfloat16_t>(a, count);
  } else if (a[0].sdtype == float16) {
    qgemv_multi_typed<float16_t>(a, count);
  } else if (a[0].sdtype == float32) {
    qgemv_multi_typed<float>(a, count);
  } else {
    return false;
  }
  return true;
}

}  // namespace mx::cpu::avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
