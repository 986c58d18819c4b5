// bfloat16 GEMM with AVX-512 BF16: C (float32 accumulators) += A @ B on k
// pairs, vdpbf16ps doing 32 multiply-adds per instruction. A is packed once
// into panels of MR rows holding each row's k pair as one 32-bit word (the
// broadcast operand); B into strips of NR columns with each column's k pair
// interleaved (the vector operand). Threads take contiguous ranges of column
// strips, each packing only its own B. Same target-region arrangement as
// simd_avx512.cpp; only called after isa() has checked the CPU.
#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <cstring>
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
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace mx::cpu::avx512 {
namespace {

constexpr int MR = 6;    // rows of the register tile
constexpr int NR = 64;   // columns of the register tile: 4 vectors of 16 float32
constexpr int KC = 256;  // k per block: a B strip block is 32 KB (L1)
constexpr int MCP = 16;  // row panels per block (96 rows)
constexpr int NCS = 4;   // column strips per block (256 columns)

inline __m512bh as_bh(__m512i v) { return (__m512bh)v; }

inline uint32_t pair_bits(uint16_t lo, uint16_t hi) { return uint32_t{lo} | (uint32_t{hi} << 16); }

inline uint16_t bits_at(const void* base, int64_t i) {
  uint16_t v;
  std::memcpy(&v, static_cast<const uint16_t*>(base) + i, 2);
  return v;
}

template <typename U>
U* scratch(int which, size_t n) {
  thread_local std::vector<U> bufs[2];
  std::vector<U>& b = bufs[which];
  if (b.size() < n) b.resize(n);
  return b.data();
}

// A rows [p * MR, p * MR + MR) as ap[pair][r]; rows past M and the odd k's
// partner are zero.
void pack_a_panel(const GemmArgs& g, int p, int kpairs, uint32_t* ap) {
  const int64_t rs = g.a.rs, cs = g.a.cs;
  for (int r = 0; r < MR; ++r) {
    int m = p * MR + r;
    if (m >= g.M) {
      for (int q = 0; q < kpairs; ++q) ap[q * MR + r] = 0;
      continue;
    }
    const int64_t row = m * rs;
    int q = 0;
    if (cs == 1) {
      const uint16_t* src = static_cast<const uint16_t*>(g.a.p) + row;
      for (; 2 * q + 1 < g.K; ++q) {
        uint32_t v;
        std::memcpy(&v, src + 2 * q, 4);
        ap[q * MR + r] = v;
      }
    } else {
      for (; 2 * q + 1 < g.K; ++q) {
        ap[q * MR + r] =
            pair_bits(bits_at(g.a.p, row + 2 * q * cs), bits_at(g.a.p, row + (2 * q + 1) * cs));
      }
    }
    if (q < kpairs) ap[q * MR + r] = pair_bits(bits_at(g.a.p, row + 2 * q * cs), 0);
  }
}

// B columns [s * NR, s * NR + NR) over all k as bp[pair][NR] (32-bit words);
// columns past N and the odd k's partner are zero.
void pack_b_strip(const GemmArgs& g, int s, int kpairs, uint32_t* bp) {
  const int64_t rs = g.b.rs, cs = g.b.cs;
  const int n0 = s * NR, nc = std::min(NR, g.N - n0);
  const uint16_t* b = static_cast<const uint16_t*>(g.b.p);
  const int full_pairs = g.K / 2;
  if (cs == 1 && nc == NR) {
    // Rows of B contiguous: interleave rows 2q and 2q+1 32 columns at a time,
    // then undo unpack's lane order.
    const __m512i lo_idx = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
    const __m512i hi_idx = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    for (int q = 0; q < full_pairs; ++q) {
      const uint16_t* r0 = b + 2 * q * rs + n0;
      const uint16_t* r1 = r0 + rs;
      for (int j = 0; j < NR; j += 32) {
        __m512i x0 = _mm512_loadu_si512(r0 + j), x1 = _mm512_loadu_si512(r1 + j);
        __m512i lo = _mm512_unpacklo_epi16(x0, x1), hi = _mm512_unpackhi_epi16(x0, x1);
        _mm512_storeu_si512(bp + q * NR + j, _mm512_permutex2var_epi64(lo, lo_idx, hi));
        _mm512_storeu_si512(bp + q * NR + j + 16, _mm512_permutex2var_epi64(lo, hi_idx, hi));
      }
    }
  } else if (rs == 1) {
    // Columns of B contiguous along k (B = W.T, W row-major): each column's k
    // pair is already one 32-bit word.
    for (int j = 0; j < nc; ++j) {
      const uint16_t* col = b + (n0 + j) * cs;
      for (int q = 0; q < full_pairs; ++q) {
        uint32_t v;
        std::memcpy(&v, col + 2 * q, 4);
        bp[q * NR + j] = v;
      }
    }
  } else {
    for (int j = 0; j < nc; ++j) {
      const int64_t col = (n0 + j) * cs;
      for (int q = 0; q < full_pairs; ++q) {
        bp[q * NR + j] = pair_bits(b[col + 2 * q * rs], b[col + (2 * q + 1) * rs]);
      }
    }
  }
  if (full_pairs < kpairs) {  // odd K: the last k with a zero partner
    for (int j = 0; j < nc; ++j)
      bp[full_pairs * NR + j] = pair_bits(b[(n0 + j) * cs + (g.K - 1) * rs], 0);
  }
  for (int q = 0; q < kpairs; ++q) {
    for (int j = nc; j < NR; ++j) bp[q * NR + j] = 0;
  }
}

// c[MR][NR] (row stride ldc) = (load ? c : 0) + A panel @ B strip over np pairs.
void micro(int np, const uint32_t* ap, const uint32_t* bp, float* c, int ldc, bool load) {
  __m512 acc[MR][4];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      acc[r][v] = load ? _mm512_loadu_ps(c + r * ldc + v * 16) : _mm512_setzero_ps();
    }
  }
  for (int q = 0; q < np; ++q) {
    const uint32_t* bq = bp + q * NR;
    __m512i b0 = _mm512_loadu_si512(bq), b1 = _mm512_loadu_si512(bq + 16),
            b2 = _mm512_loadu_si512(bq + 32), b3 = _mm512_loadu_si512(bq + 48);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      __m512bh a = as_bh(_mm512_set1_epi32(static_cast<int>(ap[q * MR + r])));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], as_bh(b0), a);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], as_bh(b1), a);
      acc[r][2] = _mm512_dpbf16_ps(acc[r][2], as_bh(b2), a);
      acc[r][3] = _mm512_dpbf16_ps(acc[r][3], as_bh(b3), a);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) _mm512_storeu_ps(c + r * ldc + v * 16, acc[r][v]);
  }
}

// Rows of panels [p0, p1) x column strips [s0, s1), A already packed.
void run_block(const GemmArgs& g, const uint32_t* apack, int kpairs, int p0, int p1, int s0,
               int s1) {
  const int ldcb = NCS * NR;
  uint32_t* bpack = scratch<uint32_t>(0, size_t{NCS} * kpairs * NR);
  float* cbuf = scratch<float>(1, size_t{MCP} * MR * ldcb);
  bfloat16_t* out = static_cast<bfloat16_t*>(g.c);
  for (int sj = s0; sj < s1; sj += NCS) {
    const int ns = std::min(NCS, s1 - sj);
    for (int s = 0; s < ns; ++s) pack_b_strip(g, sj + s, kpairs, bpack + size_t(s) * kpairs * NR);
    for (int pi = p0; pi < p1; pi += MCP) {
      const int np = std::min(MCP, p1 - pi);
      for (int q0 = 0; q0 < kpairs; q0 += KC / 2) {
        const int nq = std::min(KC / 2, kpairs - q0);
        for (int s = 0; s < ns; ++s) {
          const uint32_t* bs = bpack + (size_t(s) * kpairs + q0) * NR;
          for (int p = 0; p < np; ++p) {
            micro(nq, apack + (size_t(pi + p) * kpairs + q0) * MR, bs,
                  cbuf + size_t(p) * MR * ldcb + s * NR, ldcb, q0 > 0);
          }
        }
      }
      const int m0 = pi * MR, mc = std::min(np * MR, g.M - m0);
      const int n0 = sj * NR, nc = std::min(ns * NR, g.N - n0);
      for (int i = 0; i < mc; ++i) {
        bfloat16_t* crow = out + (m0 + i) * g.ldc + n0;
        const float* frow = cbuf + size_t(i) * ldcb;
        for (int j = 0; j < nc; ++j) {
          float r = g.alpha * frow[j];
          if (g.beta != 0.0f) r += g.beta * static_cast<float>(crow[j]);
          crow[j] = bfloat16_t(r);
        }
      }
    }
  }
}

}  // namespace

void gemm_bf16(const GemmArgs& g) {
  const int kpairs = (g.K + 1) / 2;
  const int panels = (g.M + MR - 1) / MR, strips = (g.N + NR - 1) / NR;
  // A packed once by all threads; the caller's buffer, read by the pool.
  uint32_t* apack = scratch<uint32_t>(1, size_t(panels) * kpairs * MR);
  const size_t panel_work = size_t(kpairs) * MR * NR * 4;  // flops per panel x strip, about
  scheduler::parallel_for(
      panels, std::max<size_t>(1, (size_t{1} << 21) / (size_t(kpairs) * MR * 4)),
      [&](size_t b, size_t e) {
        for (size_t p = b; p < e; ++p) {
          pack_a_panel(g, static_cast<int>(p), kpairs, apack + p * size_t(kpairs) * MR);
        }
      });
  // At least ~4 MFLOP per thread before splitting.
  const int nt = scheduler::num_threads();
  if (strips >= nt || panels == 1) {
    size_t grain = std::max<size_t>(1, (size_t{4} << 20) / (panel_work * panels));
    scheduler::parallel_for(strips, grain, [&](size_t b, size_t e) {
      run_block(g, apack, kpairs, 0, panels, static_cast<int>(b), static_cast<int>(e));
    });
  } else {
    size_t grain = std::max<size_t>(1, (size_t{4} << 20) / (panel_work * strips));
    scheduler::parallel_for(panels, grain, [&](size_t b, size_t e) {
      run_block(g, apack, kpairs, static_cast<int>(b), static_cast<int>(e), 0, strips);
    });
  }
}

}  // namespace mx::cpu::avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
