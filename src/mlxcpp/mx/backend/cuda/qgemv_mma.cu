// The decode product on the tensor cores for the common cases: affine 4- or
// 8-bit weights, groups of 32, 64 or 128, bfloat16 / float16 x (up to 8 rows
// of x per block; grid z index i takes rows 8i .. 8i + 7), one to four weight
// matrices that share x (q/k/v or gate/up in one launch).
//
// Decode reads each weight byte once, so the kernel is built to keep the
// memory system busy with few instructions per byte:
// - Rows are read in 64-byte spans: the four lanes t of a row load 16
//   contiguous bytes each (one 16-byte load per lane, 64 bytes per row and
//   instruction; 32-byte spans and 8-byte loads where x has many rows, see
//   launch_lw), a warp loads four spans of each of its 16 rows before using
//   them, and the scales and biases of those spans come with one vector load
//   per row. Launched as a programmatic dependent (sm_90), a warp asks L2 for
//   its first tile's codes before waiting for the previous kernel, so the
//   weights stream while that kernel finishes.
// - Codes become 16-bit floats with one shift and one LOP3 per two codes: a
//   nibble OR-ed into the mantissa of 128 (bfloat16) or 1024 (float16) is
//   MAGIC + code exactly. The MAGIC is not subtracted: the accumulated
//   sum(x * (MAGIC + q)) is corrected per group with sum(x), which folds into
//   the bias term (8-bit codes are two nibbles: lo + 16 * hi, each nibble its
//   own product, so the offset is 17 * MAGIC):
//     acc += scale * (d - OFF * sum(x)) + bias * sum(x)
//   This is the CPU's arithmetic (float32 sums of x * code, scale and bias
//   applied per group) up to float32 rounding.
// - mma.sync.m16n8k16 multiplies 16 rows of W by x with float32 accumulation.
//   Its k-slots may be any permutation of positions as long as A (codes) and B
//   (x) agree, so x is rearranged once per block into shared memory in the
//   order the unpacked codes come out. One mma must not mix scale groups, but
//   the four lanes of a row hold 64 bytes, which may be 1, 2 or 4 groups (a
//   "piece" is the part of a span in one group): each piece gets its own B
//   column (x where the lane's piece matches, zero elsewhere), so an mma sums
//   every piece of the span separately, for 8 / pieces rows of x at a time.
//   With one row of x the columns also separate spans: the mmas of
//   several spans accumulate into one D and the scales are applied once for
//   them, by every lane of a quad (one_row_chunk).
// - Warps of a block split K when tiles are few; blocks loop over tiles so x
//   is rearranged once per block.
// - One row of x in whole chunks (K a multiple of a chunk's codes, scale pairs
//   4-byte aligned: every Gemma 3 4B product) takes a loop without bounds or
//   fallbacks (full_chunk_loads, then one_row_chunk's arithmetic); at 8 bits it multiplies in
//   float16, x scaled per scale group by a power of two (full_chunk_h_math).
// - Gate and up with the tanh GELU (quantized_geglu): a tile takes 8 rows of each (mma rows g
//   from gate, g + 8 from up), so the lane that stores a row holds both of its values and
//   stores gelu(gate) * up, neither product written out (Segments::geglu).
// The loop is issue-bound as much as memory-bound (bench/RESULTS.md,
// 2026-11-28 12:40): count instructions when changing it.
#include <mutex>
#include <unordered_map>

#include "mlxcpp/mx/backend/cuda/gelu.cuh"
#include "mlxcpp/mx/backend/cuda/quantized.cuh"
#include "mlxcpp/mx/backend/cuda/residual_norm.cuh"

namespace mx::cuda::quant {
namespace {

constexpr int kWarps = 8;  // per block
constexpr int kThreads = kWarps * 32;
// Shared memory a block may use for x (beyond it the SIMT kernel runs).
constexpr size_t kMaxSmem = 64 * 1024;
// Spans of each row a warp loads before using them (a chunk).
constexpr int kSpans = 4;

template <typename T>
struct Mma;

template <>
struct Mma<__nv_bfloat16> {
  static constexpr uint32_t kMagic = 0x43004300u;  // (128, 128)
  static constexpr float kOff = 128.0f;
  __device__ __forceinline__ static void mma(float* d, uint32_t a0, uint32_t a1, uint32_t a2,
                                             uint32_t a3, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
  // The 16-bit value at half h of w as a float.
  __device__ __forceinline__ static float half_at(uint32_t w, int h) {
    return __uint_as_float(h ? (w & 0xffff0000u) : (w << 16));
  }
};

template <>
struct Mma<__half> {
  static constexpr uint32_t kMagic = 0x64006400u;  // (1024, 1024)
  static constexpr float kOff = 1024.0f;
  __device__ __forceinline__ static void mma(float* d, uint32_t a0, uint32_t a1, uint32_t a2,
                                             uint32_t a3, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
  __device__ __forceinline__ static float half_at(uint32_t w, int h) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(h ? w >> 16 : w & 0xffffu)));
  }
};

// (w & MASK) | magic as one LOP3. Written out: with both constants immediates the compiler
// emits an AND and an OR (11 instructions a code word of two rows instead of 7).
template <uint32_t MASK>
__device__ __forceinline__ uint32_t masked_or(uint32_t w, uint32_t magic) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(r) : "r"(w), "n"(MASK), "r"(magic));
  return r;
}

// Nibbles c and c + 4 (as 16-bit halves: bits 4c.. of each half) of w as MAGIC + nibble.
template <typename T, int C>
__device__ __forceinline__ uint32_t nib_pair(uint32_t w) {
  return masked_or<0x000f000fu>(C == 0 ? w : w >> (4 * C), Mma<T>::kMagic);
}

// How a row is cut up. A span is 16 * LW bytes of a row (four lanes, LW
// words each: 64 bytes, or 32 where rows of x are many, below); a piece is
// the part of a span in one scale group.
template <int BITS, int GS, int LW>
struct Shape {
  static constexpr int SV = (BITS == 4 ? 32 : 16) * LW;  // values per span
  static constexpr int LV = SV / 4;                      // values per lane and span
  static constexpr int PIECE = GS < SV ? GS : SV;        // values per piece
  static constexpr int CP = SV / PIECE;                  // pieces per span = B columns per row of x
  static constexpr int MC = 8 / CP;                      // rows of x per mma pass
  static constexpr int PASSES = kQgemvMaxRows / MC;
  static constexpr int LPP = PIECE / LV;       // lanes t per piece
  static constexpr int NG = kSpans * SV / GS;  // scale groups per chunk of kSpans spans
  static constexpr int NW = NG / 2;            // 32-bit words holding them
  static constexpr int WPS = 4 * LW;           // words per span
};

// NG 16-bit scales (or biases) from p[0, NG) into w: vector loads when `vec`
// (the caller checked their alignment), else one at a time up to `avail`.
template <int NW>
__device__ __forceinline__ void load_halves(const uint16_t* p, bool vec, int avail, uint32_t* w) {
  if (vec && avail >= 2 * NW) {
    if constexpr (NW >= 4) {
#pragma unroll
      for (int i = 0; i < NW / 4; ++i) {
        const uint4 v = __ldg(reinterpret_cast<const uint4*>(p) + i);
        w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
      }
    } else if constexpr (NW == 2) {
      const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
      w[0] = v.x, w[1] = v.y;
    } else {
      w[0] = __ldg(reinterpret_cast<const uint32_t*>(p));
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < NW; ++i) {
    const uint32_t lo = 2 * i < avail ? __ldg(p + 2 * i) : 0u;
    const uint32_t hi = 2 * i + 1 < avail ? __ldg(p + 2 * i + 1) : 0u;
    w[i] = lo | (hi << 16);
  }
}

// LW words of a lane's piece of a span (LW * 4 bytes, aligned to that).
template <int LW>
__device__ __forceinline__ void load_lane(const uint32_t* p, uint32_t* w) {
  if constexpr (LW == 4) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
  } else {
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
    w[0] = v.x, w[1] = v.y;
  }
}

// Rows [0, rows) of x (row-contiguous, K a multiple of the span) into shared
// memory: each 8-value chunk stays at its place with its values in the order
// the unpacked codes come out (4 bits: pairs (0,4) (1,5) (2,6) (3,7);
// 8 bits: (0,2) (1,3) (4,6) (5,7)), and the float32 sum of each piece of
// PIECE values into sums[row * (K / PIECE) + piece].
template <typename T, int BITS, int PIECE>
__device__ void stage_x(const T* x, int K, int rows, uint4* xs, float* sums) {
  constexpr int SEG = PIECE / 8;  // chunks per piece (divides 32)
  constexpr int kAhead = 4;       // loads in flight per thread
  const int chunks = rows * (K / 8);
  const int nthreads = static_cast<int>(blockDim.x);
  for (int base = 0; base < chunks; base += kAhead * nthreads) {
    uint4 v[kAhead];
#pragma unroll
    for (int j = 0; j < kAhead; ++j) {
      const int c = base + j * nthreads + static_cast<int>(threadIdx.x);
      v[j] =
          c < chunks ? *reinterpret_cast<const uint4*>(x + int64_t{c} * 8) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int j = 0; j < kAhead; ++j) {
      if (base + j * nthreads >= chunks) break;  // the same for the whole block
      const int c = base + j * nthreads + static_cast<int>(threadIdx.x);
      const bool active = c < chunks;
      if (active) {
        uint4 r;
        if constexpr (BITS == 4) {
          r.x = __byte_perm(v[j].x, v[j].z, 0x5410);
          r.y = __byte_perm(v[j].x, v[j].z, 0x7632);
          r.z = __byte_perm(v[j].y, v[j].w, 0x5410);
          r.w = __byte_perm(v[j].y, v[j].w, 0x7632);
        } else {
          r.x = __byte_perm(v[j].x, v[j].y, 0x5410);
          r.y = __byte_perm(v[j].x, v[j].y, 0x7632);
          r.z = __byte_perm(v[j].z, v[j].w, 0x5410);
          r.w = __byte_perm(v[j].z, v[j].w, 0x7632);
        }
        xs[c] = r;
      }
      float s = 0.0f;
      const uint32_t u[4] = {v[j].x, v[j].y, v[j].z, v[j].w};
#pragma unroll
      for (int i = 0; i < 4; ++i) s += Mma<T>::half_at(u[i], 0) + Mma<T>::half_at(u[i], 1);
#pragma unroll
      for (int off = SEG / 2; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
      if (active && (c % SEG) == 0) sums[c / SEG] = s;
    }
  }
}

struct Segments {
  const uint32_t* w[kMaxGroupedQmm];
  const uint16_t* scales[kMaxGroupedQmm];
  const uint16_t* biases[kMaxGroupedQmm];
  void* out[kMaxGroupedQmm];
  int N[kMaxGroupedQmm];
  int tile_start[kMaxGroupedQmm + 1];  // first 16-row tile of each matrix; [count] = all tiles
  int count;
  // Two matrices of N rows, gate and up, and one output, gelu_approx(gate) * up: a tile is
  // rows r0 .. r0 + 7 of both (row g of the mma from gate, g + 8 from up), so a lane ends
  // with both values of its row (geglu_store).
  int geglu;
  // One row of x computed in the prologue from fast::residual_rms_norm's operands (pre.y not
  // null; residual_norm_row), block 0 writing h.
  QmmPrenorm pre;
};

// Shared memory for x staged (2 * K * rows bytes), its per-piece sums (`sum_floats` floats a
// piece), and with the residual norm the computed row (2 * K bytes, 16-byte aligned).
__host__ __device__ inline size_t staging_bytes(int K, int rows, int piece, int sum_floats,
                                                bool prenorm) {
  const size_t staged = size_t{2} * K * rows + size_t{4} * sum_floats * rows * (K / piece);
  return prenorm ? (staged + 15) / 16 * 16 + size_t{2} * K : staged;
}

// One warp's view of a 16-row tile: rows g and g + 8 of lane (g, t).
struct TileRows {
  const uint32_t* wa;  // lane t's first word of row a (span 0)
  const uint32_t* wb;
  const uint16_t *sa, *ba, *sb, *bb;  // the rows' scales and biases (group 0)
  int s_idx, N, r0;
};

__device__ __forceinline__ TileRows tile_rows(const Segments& seg, int tile, int g, int t, int lw,
                                              int words_per_row, int G) {
  TileRows r;
  r.s_idx = 0;
  if (seg.geglu) {
    r.N = seg.N[0];
    r.r0 = tile * 8;
    const int row = min(r.r0 + g, r.N - 1);
    r.wa = seg.w[0] + int64_t{row} * words_per_row + t * lw;
    r.wb = seg.w[1] + int64_t{row} * words_per_row + t * lw;
    r.sa = seg.scales[0] + int64_t{row} * G;
    r.ba = seg.biases[0] + int64_t{row} * G;
    r.sb = seg.scales[1] + int64_t{row} * G;
    r.bb = seg.biases[1] + int64_t{row} * G;
    return r;
  }
#pragma unroll
  for (int i = 1; i < kMaxGroupedQmm; ++i) {
    if (i < seg.count && tile >= seg.tile_start[i]) r.s_idx = i;
  }
  r.N = seg.N[r.s_idx];
  r.r0 = (tile - seg.tile_start[r.s_idx]) * 16;
  // Rows past the matrix read its last row; their sums are dropped.
  const int ra = min(r.r0 + g, r.N - 1), rb = min(r.r0 + g + 8, r.N - 1);
  r.wa = seg.w[r.s_idx] + int64_t{ra} * words_per_row + t * lw;
  r.wb = seg.w[r.s_idx] + int64_t{rb} * words_per_row + t * lw;
  r.sa = seg.scales[r.s_idx] + int64_t{ra} * G;
  r.ba = seg.biases[r.s_idx] + int64_t{ra} * G;
  r.sb = seg.scales[r.s_idx] + int64_t{rb} * G;
  r.bb = seg.biases[r.s_idx] + int64_t{rb} * G;
  return r;
}

// The mmas of one span's codes (rows g, g + 8 of lane (g, t)) against B from
// xb (the block's zeros where this lane's column has no x): at 4 bits nibbles 0
// and 1 of each word into d, 2 and 3 into d1 (two accumulator chains, or one
// when d1 == d); at 8 bits the low nibbles of bytes (0, 2) and (1, 3) into d,
// the high ones into d1 (to be weighted by 16).
template <typename T, int BITS, int LW>
__device__ __forceinline__ void span_mmas(const uint32_t (&wa)[LW], const uint32_t (&wb)[LW],
                                          const uint4* xb, float* d, float* d1) {
  if constexpr (BITS == 4) {
#pragma unroll
    for (int jw = 0; jw < LW; ++jw) {
      const uint4 b = xb[jw];
      const uint32_t a = wa[jw], e = wb[jw];
      Mma<T>::mma(d, nib_pair<T, 0>(a), nib_pair<T, 0>(e), nib_pair<T, 1>(a), nib_pair<T, 1>(e),
                  b.x, b.y);
      Mma<T>::mma(d1, nib_pair<T, 2>(a), nib_pair<T, 2>(e), nib_pair<T, 3>(a), nib_pair<T, 3>(e),
                  b.z, b.w);
    }
  } else {
#pragma unroll
    for (int jj = 0; jj < LW / 2; ++jj) {
      const uint4 b = xb[jj];
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const uint32_t a = wa[2 * jj + k], e = wb[2 * jj + k];
        const uint32_t b0 = k ? b.z : b.x, b1 = k ? b.w : b.y;
        Mma<T>::mma(d, nib_pair<T, 0>(a), nib_pair<T, 0>(e), nib_pair<T, 2>(a), nib_pair<T, 2>(e),
                    b0, b1);
        Mma<T>::mma(d1, nib_pair<T, 1>(a), nib_pair<T, 1>(e), nib_pair<T, 3>(a), nib_pair<T, 3>(e),
                    b0, b1);
      }
    }
  }
}

// Groups g and g + 1 of a row's scales (or biases) as one word: a 4-byte load
// when `vec` (the caller checked the alignment), else two, up to `avail`.
__device__ __forceinline__ uint32_t load_pair(const uint16_t* p, bool vec, int avail) {
  if (vec && avail >= 2) return __ldg(reinterpret_cast<const uint32_t*>(p));
  const uint32_t lo = avail > 0 ? __ldg(p) : 0u, hi = avail > 1 ? __ldg(p + 1) : 0u;
  return lo | (hi << 16);
}

// One chunk of a tile for one row of x. The B operand has 8 columns but one
// row of x fills only CP of them per span, so the mmas of SA = 8 / CP spans
// (up to the chunk's four) accumulate into one D, each span's x in its own
// columns: column c of lane quad t is then span c / CP, piece c % CP, and all
// four lanes of a quad hold useful sums, so the scales are applied once per
// SA spans with one word of scales per lane (groups 2t, 2t + 1) instead of
// per span. A chunk has NSG such span groups.
template <int BITS, int GS, int LW>
struct OneRow {
  using S = Shape<BITS, GS, LW>;
  static_assert(S::PIECE == GS, "one-row chunks need whole groups in a span");
  static constexpr int SA = 8 / S::CP < kSpans ? 8 / S::CP : kSpans;
  static constexpr int NSG = kSpans / SA;
};

// The scale and bias words of a one-row chunk (per span group: rows g and g + 8,
// groups 2t and 2t + 1). Loaded right after the chunk's codes, before any is
// used, so a chunk costs one memory latency, not two (H200, 4-bit gemma3-4b:
// gate + up 18.5 -> 16.8 us, LM head 132 -> 124 us, decode ~430 -> ~444 tok/s).
template <int BITS, int GS, int LW>
__device__ __forceinline__ void one_row_scales(const TileRows& r, int span0, int spans, int G,
                                               int t, int vec,
                                               uint32_t (&q)[OneRow<BITS, GS, LW>::NSG][4]) {
  using S = Shape<BITS, GS, LW>;
  constexpr int SA = OneRow<BITS, GS, LW>::SA;
#pragma unroll
  for (int a = 0; a < OneRow<BITS, GS, LW>::NSG; ++a) {
    const int sp0 = span0 + a * SA;
    const int gf = sp0 * S::CP + 2 * t;  // the first of the lane's two groups (and pieces)
    const int cols = sp0 < spans ? min(SA, spans - sp0) * S::CP : 0;
    const int avail = 2 * t < cols ? min(G - gf, cols - 2 * t) : 0;
    q[a][0] = load_pair(r.sa + gf, vec, avail);
    q[a][1] = load_pair(r.ba + gf, vec, avail);
    q[a][2] = load_pair(r.sb + gf, vec, avail);
    q[a][3] = load_pair(r.bb + gf, vec, avail);
  }
}

// FULL: the chunk's kSpans spans all lie in the row (no bounds to check).
template <typename T, int BITS, int GS, int LW, bool FULL = false>
__device__ __forceinline__ void one_row_chunk(const uint32_t (&ca)[kSpans][LW],
                                              const uint32_t (&cb)[kSpans][LW],
                                              const uint32_t (&q)[OneRow<BITS, GS, LW>::NSG][4],
                                              const uint4* xs, const uint4* zeros,
                                              const float* sums, int span0, int spans, int t, int g,
                                              float (&acc)[4]) {
  using S = Shape<BITS, GS, LW>;
  constexpr int SA = OneRow<BITS, GS, LW>::SA;
  constexpr float kOff = Mma<T>::kOff * (BITS == 8 ? 17.0f : 1.0f);
#pragma unroll
  for (int a = 0; a < OneRow<BITS, GS, LW>::NSG; ++a) {
    const int a0 = a * SA, sp0 = span0 + a0;
    if (!FULL && sp0 >= spans) break;
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f}, d1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int ul = 0; ul < SA; ++ul) {
      const int u = a0 + ul, span = sp0 + ul;
      if (!FULL && span >= spans) break;
      // Lane (g, t) gives B column g: span g / CP of the group, piece g % CP.
      const bool bval = g / S::CP == ul && g % S::CP == t / S::LPP;
      span_mmas<T, BITS, LW>(ca[u], cb[u], bval ? xs + (span * S::SV + t * S::LV) / 8 : zeros, d,
                             d1);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) d[i] = BITS == 8 ? fmaf(16.0f, d1[i], d[i]) : d[i] + d1[i];
    // Columns 2t, 2t + 1 are this span group's groups 2t, 2t + 1 (a piece is a
    // group here); past SA * CP columns or past the row they hold nothing.
    const int gf = sp0 * S::CP + 2 * t;  // the first of the two groups (and pieces)
    const int cols = (FULL ? SA : min(SA, spans - sp0)) * S::CP;
    if (2 * t >= cols) continue;
    const float2 sx = cols - 2 * t >= 2 ? *reinterpret_cast<const float2*>(sums + gf)
                                        : make_float2(sums[gf], 0.0f);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int h = i & 1;
      const float x_sum = h ? sx.y : sx.x;
      const float sc = Mma<T>::half_at(i >= 2 ? q[a][2] : q[a][0], h);
      const float bi = Mma<T>::half_at(i >= 2 ? q[a][3] : q[a][1], h);
      acc[i] = fmaf(sc, fmaf(-kOff, x_sum, d[i]), fmaf(bi, x_sum, acc[i]));
    }
  }
}

// ---------------------------------------------------------------- whole chunks
// A whole chunk of one row of x: every span in the row and the scale pairs 4-byte aligned
// (every Gemma 3 4B product). Its loads have no bounds, fallbacks or per-load address
// arithmetic (in the general loop they were a third of the instructions).
template <int BITS, int GS>
__device__ __forceinline__ void full_chunk_loads(const TileRows& r, int c, int t,
                                                 uint32_t (&ca)[kSpans][4],
                                                 uint32_t (&cb)[kSpans][4],
                                                 uint32_t (&q)[OneRow<BITS, GS, 4>::NSG][4]) {
  using S = Shape<BITS, GS, 4>;
  using O = OneRow<BITS, GS, 4>;
  const uint32_t* pa = r.wa + c * kSpans * S::WPS;
  const uint32_t* pb = r.wb + c * kSpans * S::WPS;
#pragma unroll
  for (int u = 0; u < kSpans; ++u) {
    load_lane<4>(pa + u * S::WPS, ca[u]);
    load_lane<4>(pb + u * S::WPS, cb[u]);
  }
  const bool used = 2 * t < O::SA * S::CP;  // the lane's columns hold groups
#pragma unroll
  for (int a = 0; a < O::NSG; ++a) {
    const int ga = (c * kSpans + a * O::SA) * S::CP + 2 * t;  // one_row_scales' groups
    q[a][0] = used ? __ldg(reinterpret_cast<const uint32_t*>(r.sa + ga)) : 0u;
    q[a][1] = used ? __ldg(reinterpret_cast<const uint32_t*>(r.ba + ga)) : 0u;
    q[a][2] = used ? __ldg(reinterpret_cast<const uint32_t*>(r.sb + ga)) : 0u;
    q[a][3] = used ? __ldg(reinterpret_cast<const uint32_t*>(r.bb + ga)) : 0u;
  }
}

// A whole chunk's codes and scales in registers (full_chunk_loads). Loading a warp's first
// chunk before x is staged (to overlap the staging) took the kernel to 128 registers with
// spills and decode from 548 to 459 tok/s on an H200: not done.
template <int BITS, int GS>
struct ChunkRegs {
  uint32_t ca[kSpans][4], cb[kSpans][4], q[OneRow<BITS, GS, 4>::NSG][4];
};

// 8 bits: the products in float16 whatever x's type. A float16 code is one LOP3 a pair (a
// byte fits float16's 10 mantissa bits, not bfloat16's 7, which took two nibbles a byte: two
// mmas and twice the instructions), and x converts exactly once each scale group is scaled by
// a power of two that puts its largest magnitude at 2^14 (bfloat16's 8 significant bits fit
// float16's 11; only values 2^28 under the group's largest become subnormal, far below float32
// rounding). The staged x of a piece (= group) p carries its factor f = 2^e and, in x's scaled
// units, the offset term off = 1024 * sum(x) and plain = sum(x):
//   acc += f * (scale * (d - off) + bias * plain).
// (At 4 bits float16 codes save 2 of 7 instructions a code word, but the staging's scaling
// cost the small products more: gemma3-4b decode 511-517 tok/s against 513-525, not kept.)

// x (one row, K a multiple of 8 * SEG) into shared memory as float16, each piece of PIECE values
// scaled as above, its values in the order the codes come out ((0,2) (1,3) (4,6) (5,7)), and
// piece p's off, plain and f at meta[p], meta[P + p] and meta[2 P + p] (P = K / PIECE).
template <typename T, int PIECE>
__device__ void stage_x_h(const T* x, int K, uint4* xs, float* meta) {
  constexpr int SEG = PIECE / 8;  // 8-value chunks per piece (consecutive threads; divides 32)
  const int chunks = K / 8, P = K / PIECE;
  for (int c0 = 0; c0 < chunks; c0 += static_cast<int>(blockDim.x)) {
    const int c = c0 + static_cast<int>(threadIdx.x);
    const bool active = c < chunks;  // the same for all SEG threads of a piece
    const uint4 raw = active ? *reinterpret_cast<const uint4*>(x + int64_t{c} * 8) : uint4{};
    const uint32_t u[4] = {raw.x, raw.y, raw.z, raw.w};
    float v[8], amax = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      v[i] = Mma<T>::half_at(u[i / 2], i & 1);
      amax = fmaxf(amax, fabsf(v[i]));
    }
#pragma unroll
    for (int off = SEG / 2; off > 0; off >>= 1) {
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    }
    // e: amax * 2^-e in [2^14, 2^15) for every finite amax (0 for an all-zero piece; NaN and
    // infinity stay so; pieces under 2^-86 keep e = -100, their values are far under rounding).
    int e = amax > 0.0f ? static_cast<int>((__float_as_uint(amax) >> 23) & 0xff) - 127 - 14 : 0;
    e = max(-100, min(113, e));
    const float down = __uint_as_float(static_cast<uint32_t>(127 - e) << 23);
    uint32_t h[8];
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const __half hv = __float2half_rn(v[i] * down);
      h[i] = __half_as_ushort(hv);
      sum += __half2float(hv);
    }
#pragma unroll
    for (int off = SEG / 2; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (!active) continue;
    xs[c] = make_uint4(h[0] | h[2] << 16, h[1] | h[3] << 16, h[4] | h[6] << 16, h[5] | h[7] << 16);
    if (c % SEG == 0) {
      const int p = c / SEG;
      meta[p] = 1024.0f * sum;
      meta[P + p] = sum;
      meta[2 * P + p] = __uint_as_float(static_cast<uint32_t>(127 + e) << 23);
    }
  }
}

// A whole 8-bit chunk (c) of a tile for one row of x, in float16: one_row_chunk's scheme of
// span groups sharing a D, with stage_x_h's pieces.
template <typename T, int GS>
__device__ __forceinline__ void full_chunk_h_math(const uint32_t (&ca)[kSpans][4],
                                                  const uint32_t (&cb)[kSpans][4],
                                                  const uint32_t (&q)[OneRow<8, GS, 4>::NSG][4],
                                                  int c, int t, int g, const uint4* xs,
                                                  const uint4* zeros, const float* meta, int P,
                                                  float (&acc)[4]) {
  using S = Shape<8, GS, 4>;
  using O = OneRow<8, GS, 4>;
  constexpr int SA = O::SA;
#pragma unroll
  for (int a = 0; a < O::NSG; ++a) {
    const int sp0 = c * kSpans + a * SA;
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f}, d1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int ul = 0; ul < SA; ++ul) {
      // Lane (g, t) gives B column g: span g / CP of the group, piece g % CP.
      const bool bval = g / S::CP == ul && g % S::CP == t / S::LPP;
      const uint4* xb = bval ? xs + ((sp0 + ul) * S::SV + t * S::LV) / 8 : zeros;
      const uint32_t(&wa)[4] = ca[a * SA + ul];
      const uint32_t(&wb)[4] = cb[a * SA + ul];
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        const uint4 b = xb[jj];
#pragma unroll
        for (int k = 0; k < 2; ++k) {
          // Bytes (0, 2) and (1, 3) of word 2 jj + k: values (0,2) (1,3) or (4,6) (5,7).
          const uint32_t w = wa[2 * jj + k], e = wb[2 * jj + k];
          constexpr uint32_t kM = Mma<__half>::kMagic;  // float16 1024 + byte
          Mma<__half>::mma(k ? d1 : d, masked_or<0x00ff00ffu>(w, kM), masked_or<0x00ff00ffu>(e, kM),
                           masked_or<0x00ff00ffu>(w >> 8, kM), masked_or<0x00ff00ffu>(e >> 8, kM),
                           k ? b.z : b.x, k ? b.w : b.y);
        }
      }
    }
    if (2 * t >= SA * S::CP) continue;
    const int gf = sp0 * S::CP + 2 * t;  // the lane's two groups (and pieces)
    const float2 mo = *reinterpret_cast<const float2*>(meta + gf);  // gf and P are even
    const float2 mp = *reinterpret_cast<const float2*>(meta + P + gf);
    const float2 mf = *reinterpret_cast<const float2*>(meta + 2 * P + gf);
    const float off[2] = {mo.x, mo.y}, plain[2] = {mp.x, mp.y}, f[2] = {mf.x, mf.y};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int h = i & 1;
      const float sc = Mma<T>::half_at(i >= 2 ? q[a][2] : q[a][0], h);
      const float bi = Mma<T>::half_at(i >= 2 ? q[a][3] : q[a][1], h);
      acc[i] = fmaf(f[h], fmaf(sc, d[i] + d1[i] - off[h], bi * plain[h]), acc[i]);
    }
  }
}

// The sums of the ksplit warps of a tile (warps wt * ksplit + wk of the block) into warp wk = 0's
// acc, through shared memory; every warp of the block takes part (two block barriers).
__device__ __forceinline__ void sum_over_ksplit(float (&acc)[4], float (*partial)[32][4], int warp,
                                                int lane, int wk, int ksplit) {
  if (ksplit <= 1) return;
#pragma unroll
  for (int i = 0; i < 4; ++i) partial[warp][lane][i] = acc[i];
  __syncthreads();
  if (wk == 0) {
    for (int k = 1; k < ksplit; ++k) {
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[i] += partial[warp + k][lane][i];
    }
  }
  __syncthreads();
}

// One row of x: every column of a quad's D is a piece of that row, so rows g and g + 8 of the
// tile are the quad's sums; lane t = 0 writes them.
// Row `row` of a geglu launch: gate and up rounded to T as the separate products would be,
// then gelu_approx(gate) * up as fast::gelu_approx_mul.
template <typename T>
__device__ __forceinline__ void geglu_store(T* out, int64_t at, int row, int N, float gate,
                                            float up) {
  if (row < N) out[at + row] = gelu_approx_mul_one(static_cast<T>(gate), static_cast<T>(up));
}

template <typename T>
__device__ __forceinline__ void store_one_row(const float (&acc)[4], const Segments& seg,
                                              const TileRows& r, int g, int t, int m_first) {
  float va = acc[0] + acc[1], vb = acc[2] + acc[3];
  va += __shfl_xor_sync(0xffffffffu, va, 1);
  vb += __shfl_xor_sync(0xffffffffu, vb, 1);
  va += __shfl_xor_sync(0xffffffffu, va, 2);
  vb += __shfl_xor_sync(0xffffffffu, vb, 2);
  if (t != 0) return;
  T* out = static_cast<T*>(seg.out[r.s_idx]);
  const int ra = r.r0 + g, rb = r.r0 + g + 8;
  if (seg.geglu) return geglu_store<T>(out, int64_t{m_first} * r.N, ra, r.N, va, vb);
  if (ra < r.N) out[int64_t{m_first} * r.N + ra] = static_cast<T>(va);
  if (rb < r.N) out[int64_t{m_first} * r.N + rb] = static_cast<T>(vb);
}

template <typename T, int BITS, int GS, int LW, bool ONE, bool FULL>
__global__ void __launch_bounds__(kThreads, 2)
    qgemv_mma_kernel(Segments seg, const T* x_all, int M, int K, int ksplit, int vec_scales) {
  using S = Shape<BITS, GS, LW>;
  allow_dependent_launch();
  extern __shared__ __align__(16) uint32_t smem[];
  __shared__ float partial[kWarps][32][4];
  // B for the lanes whose column has no x: reading zeros costs one address select a span
  // instead of zeroing the four registers of each word's B.
  __shared__ uint4 zeros[LW];
  const int m_first = static_cast<int>(blockIdx.z) * kQgemvMaxRows;
  const int m_count = min(M - m_first, kQgemvMaxRows);
  const int G = K / GS;
  const int P = K / S::PIECE;
  const int spans = K / S::SV;
  const int chunks = (spans + kSpans - 1) / kSpans;
  uint4* xs = reinterpret_cast<uint4*>(smem);
  float* sums = reinterpret_cast<float*>(smem + m_count * K / 2);

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int tiles_per_block = static_cast<int>(blockDim.x) / 32 / ksplit;
  const int wt = warp / ksplit, wk = warp % ksplit;
  const int c_begin = wk * chunks / ksplit, c_end = (wk + 1) * chunks / ksplit;
  const int words_per_row = K * BITS / 32;
  const int total_tiles = seg.tile_start[seg.count];
  const int passes = (m_count + S::MC - 1) / S::MC;
  constexpr float kOff = Mma<T>::kOff * (BITS == 8 ? 17.0f : 1.0f);
  constexpr int kWordsPerSpan = S::WPS;

  // Before the previous kernel has finished, lanes t = 0 ask L2 for the codes
  // of this warp's part of its first tile's rows g and g + 8 (the weights are
  // never written by the kernels a decode step chains, but a register load
  // could still read a stale line, an L2 prefetch cannot). Asking for later
  // tiles or chunks too was slower (lm head 151 -> 178 us, gate/up 14.5 ->
  // 17.4 us on an H200).
  auto prefetch_tile = [&](int tile) {
    if (tile >= total_tiles || c_begin >= c_end || t != 0) return;
    const TileRows r = tile_rows(seg, tile, g, 0, LW, words_per_row, G);
    const int s0 = c_begin * kSpans, s1 = min(c_end * kSpans, spans);
    const uint32_t bytes = static_cast<uint32_t>(s1 - s0) * (4u * kWordsPerSpan);
    l2_prefetch(r.wa + s0 * kWordsPerSpan, bytes);
    l2_prefetch(r.wb + s0 * kWordsPerSpan, bytes);
  };
  int tb = static_cast<int>(blockIdx.x) * tiles_per_block;
  const int stride = static_cast<int>(gridDim.x) * tiles_per_block;
  prefetch_tile(tb + wt);
  // The whole-chunk 8-bit path multiplies in float16 (full_chunk_h_math).
  constexpr bool kHalf = ONE && FULL && BITS == 8;
  const T* x_src = x_all + int64_t{m_first} * K;
  if (seg.pre.y) {
    // The norms' weights and the residual into L2 while the previous kernel finishes (the
    // step's weight traffic evicts them between layers), one thread a 128-byte line.
    const int i = static_cast<int>(threadIdx.x);
    for (int l = i; l < K / 32; l += static_cast<int>(blockDim.x)) {
      l2_prefetch_line(seg.pre.wy + l * 32);
      l2_prefetch_line(seg.pre.wx + l * 32);
    }
    for (int l = i; l < K / 64; l += static_cast<int>(blockDim.x)) {
      l2_prefetch_line(static_cast<const T*>(seg.pre.res) + l * 64);
    }
  }
  wait_for_prerequisites();
  if (seg.pre.y) {
    const size_t at = staging_bytes(K, 1, S::PIECE, kHalf ? 3 : 1, true) - size_t{2} * K;
    T* xrow = reinterpret_cast<T*>(reinterpret_cast<char*>(smem) + at);
    residual_norm_row<T>(static_cast<const T*>(seg.pre.res), static_cast<const T*>(seg.pre.y),
                         seg.pre.wy, seg.pre.wx, seg.pre.eps, K, xrow,
                         blockIdx.x == 0 ? static_cast<T*>(seg.pre.h) : nullptr);
    __syncthreads();
    x_src = xrow;
  }
  if constexpr (kHalf) {
    stage_x_h<T, S::PIECE>(x_src, K, xs, sums);
  } else {
    stage_x<T, BITS, S::PIECE>(x_src, K, m_count, xs, sums);
  }
  if (threadIdx.x < LW) zeros[threadIdx.x] = make_uint4(0, 0, 0, 0);
  __syncthreads();

  for (; tb < total_tiles; tb += stride) {
    const int tile = tb + wt;
    float acc[S::PASSES][4];
#pragma unroll
    for (int p = 0; p < S::PASSES; ++p) acc[p][0] = acc[p][1] = acc[p][2] = acc[p][3] = 0.0f;
    const TileRows r =
        tile < total_tiles ? tile_rows(seg, tile, g, t, LW, words_per_row, G) : TileRows{};
    if (tile < total_tiles) {
      for (int c = c_begin; c < c_end; ++c) {
        if constexpr (ONE && FULL) {
          ChunkRegs<BITS, GS> now;
          full_chunk_loads<BITS, GS>(r, c, t, now.ca, now.cb, now.q);
          if constexpr (kHalf) {
            full_chunk_h_math<T, GS>(now.ca, now.cb, now.q, c, t, g, xs, zeros, sums, P, acc[0]);
          } else {
            one_row_chunk<T, BITS, GS, 4, true>(now.ca, now.cb, now.q, xs, zeros, sums, c * kSpans,
                                                0, t, g, acc[0]);
          }
          continue;
        }
        uint32_t ca[kSpans][LW], cb[kSpans][LW];
        uint32_t sa[S::NW], ba[S::NW], sb[S::NW], bb[S::NW];
        const int span0 = c * kSpans;
#pragma unroll
        for (int u = 0; u < kSpans; ++u) {
          if (span0 + u < spans) {
            load_lane<LW>(r.wa + (span0 + u) * kWordsPerSpan, ca[u]);
            load_lane<LW>(r.wb + (span0 + u) * kWordsPerSpan, cb[u]);
          }
        }
        if constexpr (ONE) {
          uint32_t q[OneRow<BITS, GS, LW>::NSG][4];
          one_row_scales<BITS, GS, LW>(r, span0, spans, G, t, vec_scales, q);
          one_row_chunk<T, BITS, GS, LW>(ca, cb, q, xs, zeros, sums, span0, spans, t, g, acc[0]);
          continue;
        }
        const int g0 = span0 * S::SV / GS, avail = G - g0;
        load_halves<S::NW>(r.sa + g0, vec_scales, avail, sa);
        load_halves<S::NW>(r.ba + g0, vec_scales, avail, ba);
        load_halves<S::NW>(r.sb + g0, vec_scales, avail, sb);
        load_halves<S::NW>(r.bb + g0, vec_scales, avail, bb);
#pragma unroll
        for (int u = 0; u < kSpans; ++u) {
          const int span = span0 + u;
          if (span >= spans) break;
#pragma unroll
          for (int p = 0; p < S::PASSES; ++p) {
            if (p >= passes) break;
            // B column g: row m of x, piece g % CP; this lane's values are piece t / LPP.
            const int mb = p * S::MC + g / S::CP;
            const bool bval = (g % S::CP) == t / S::LPP && mb < m_count;
            const uint4* xb = bval ? xs + (int64_t{mb} * K + span * S::SV + t * S::LV) / 8 : zeros;
            float d[4] = {0.0f, 0.0f, 0.0f, 0.0f}, d1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            // Two accumulator chains at 4 bits (an mma waits for the one before
            // on its registers), but at groups of 32, where registers are short.
            constexpr bool kTwo = BITS == 8 || S::CP <= 2;
            span_mmas<T, BITS, LW>(ca[u], cb[u], xb, d, kTwo ? d1 : d);
            if constexpr (kTwo) {
#pragma unroll
              for (int i = 0; i < 4; ++i)
                d[i] = BITS == 8 ? fmaf(16.0f, d1[i], d[i]) : d[i] + d1[i];
            }
            // D: [0], [1] row g, columns 2t, 2t + 1; [2], [3] row g + 8. Column c is
            // row c / CP of this pass's x and piece c % CP of the span.
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const int c_col = 2 * t + (i & 1);
              const int m = p * S::MC + c_col / S::CP;
              if (m >= m_count) continue;
              const int pc = c_col % S::CP;
              // The piece's group within the chunk (constant once unrolled, but for
              // CP = 4, where it depends on t's low bit).
              const int pc0 = S::CP == 1 ? 0 : (i & 1);
              const int gl0 = (u * S::SV + pc0 * S::PIECE) / GS;
              const int gl1 = S::CP == 4 ? gl0 + 2 : gl0;
              const bool hi = S::CP == 4 && (t & 1);
              float sc, bi;
              if (i >= 2) {
                sc = Mma<T>::half_at(hi ? sb[gl1 / 2] : sb[gl0 / 2], (hi ? gl1 : gl0) & 1);
                bi = Mma<T>::half_at(hi ? bb[gl1 / 2] : bb[gl0 / 2], (hi ? gl1 : gl0) & 1);
              } else {
                sc = Mma<T>::half_at(hi ? sa[gl1 / 2] : sa[gl0 / 2], (hi ? gl1 : gl0) & 1);
                bi = Mma<T>::half_at(hi ? ba[gl1 / 2] : ba[gl0 / 2], (hi ? gl1 : gl0) & 1);
              }
              const float sx = sums[int64_t{m} * P + span * S::CP + pc];
              acc[p][i] = fmaf(sc, fmaf(-kOff, sx, d[i]), fmaf(bi, sx, acc[p][i]));
            }
          }
        }
      }
    }
#pragma unroll
    for (int p = 0; p < S::PASSES; ++p) {
      if (p >= passes) break;
      sum_over_ksplit(acc[p], partial, warp, lane, wk, ksplit);
      if (wk != 0 || tile >= total_tiles) continue;
      T* out = static_cast<T*>(seg.out[r.s_idx]);
      const int ra = r.r0 + g, rb = r.r0 + g + 8;
      if constexpr (ONE) {
        store_one_row<T>(acc[0], seg, r, g, t, m_first);
      } else if constexpr (S::CP == 1) {
        if (seg.geglu) {
          // D [0], [1]: gate of rows 2t, 2t + 1 of x; [2], [3]: their up.
#pragma unroll
          for (int i = 0; i < 2; ++i) {
            const int m = p * S::MC + 2 * t + i;
            if (m < m_count) {
              geglu_store<T>(out, int64_t{m_first + m} * r.N, ra, r.N, acc[p][i], acc[p][i + 2]);
            }
          }
          continue;
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int row = i >= 2 ? rb : ra, m = p * S::MC + 2 * t + (i & 1);
          if (row < r.N && m < m_count) {
            out[int64_t{m_first + m} * r.N + row] = static_cast<T>(acc[p][i]);
          }
        }
      } else {
        // Columns 2t and 2t + 1 are pieces of one row of x; with four pieces
        // a span, lanes t and t ^ 1 hold the two halves.
        float va = acc[p][0] + acc[p][1], vb = acc[p][2] + acc[p][3];
        if constexpr (S::CP == 4) {
          va += __shfl_xor_sync(0xffffffffu, va, 1);
          vb += __shfl_xor_sync(0xffffffffu, vb, 1);
        }
        const int m = p * S::MC + (S::CP == 2 ? t : t / 2);
        if ((S::CP == 2 || (t & 1) == 0) && m < m_count && seg.geglu) {
          geglu_store<T>(out, int64_t{m_first + m} * r.N, ra, r.N, va, vb);
        } else if ((S::CP == 2 || (t & 1) == 0) && m < m_count) {
          if (ra < r.N) out[int64_t{m_first + m} * r.N + ra] = static_cast<T>(va);
          if (rb < r.N) out[int64_t{m_first + m} * r.N + rb] = static_cast<T>(vb);
        }
      }
    }
  }
}

int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev), "SM count");
    return v;
  }();
  return n;
}

// Resident blocks per SM of `kernel` at `smem` bytes of dynamic shared
// memory and `threads` per block (also raises the kernel's dynamic shared
// memory limit past 48 KB where needed); cached per kernel, size and block.
int blocks_per_sm(const void* kernel, size_t smem, int threads) {
  static std::mutex mu;
  static std::unordered_map<const void*, std::unordered_map<size_t, int>> cache;
  const size_t key = smem * 1024 + static_cast<size_t>(threads);
  std::lock_guard<std::mutex> lk(mu);
  if (cache.find(kernel) == cache.end()) {
    // Static (the partial sums) plus dynamic shared memory may pass the 48 KB
    // a launch gets without opting in.
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(kMaxSmem)),
          "QuantizedMatmul: shared memory limit");
  }
  auto& per = cache[kernel];
  if (auto it = per.find(key); it != per.end()) return it->second;
  int n = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem),
        "QuantizedMatmul: occupancy");
  per[key] = n < 1 ? 1 : n;
  return per[key];
}

// Values per span: K must be a multiple of it.
int span_values(int bits) { return bits == 4 ? 128 : 64; }

size_t smem_bytes(int K, int group_size, int bits, int M, bool prenorm) {
  const int rows = M < kQgemvMaxRows ? M : kQgemvMaxRows;
  const int piece = group_size < span_values(bits) ? group_size : span_values(bits);
  // The general path's (the 8-bit whole-chunk path checks its own three floats a piece).
  return staging_bytes(K, rows, piece, 1, prenorm);
}

// Warps per SM the launch aims for (K is split over more warps below it): 8 and 32 measured
// the same as 16 on an H200.
constexpr int kWarpsPerSmTarget = 16;

// How a launch splits its work: K over ksplit warps of a tile, tiles_per_block tiles a block.
struct Split {
  int ksplit, tiles_per_block;
};

// Split K over as many warps as it takes to reach the target number of warps (up to one chunk
// each and a block's 8). One row of x with fewer tiles than the target: K split as far as it
// goes, so that each warp has all its loads in flight at once, even where that takes more than
// one wave of blocks. On an H200 the 4B's gate + up (1280 tiles of 5 chunks at 4 bits) took
// 12.95 us split 5 ways against 15.63 split 2 ways (the split that first reached the target;
// 13.6-15.4 for 3 and 4 ways or 1 and 2 tiles a block), at 8 bits 19.46 against 22.90; with 8
// rows of x 5 ways was slower (gate/up alone 18.4 -> 20.2 us). Then fewer tiles a block while
// that leaves SMs without one.
Split split_for(int tiles, int chunks, int row_blocks, bool one_row) {
  const int64_t target = int64_t{sm_count()} * kWarpsPerSmTarget;
  const int kmax = chunks < kWarps ? chunks : kWarps;
  Split sp{one_row && tiles < target ? kmax : 1, 1};
  while (sp.ksplit < kmax && int64_t{tiles} * sp.ksplit * row_blocks < target) ++sp.ksplit;
  sp.tiles_per_block = kWarps / sp.ksplit;
  while (sp.tiles_per_block > 1 && int64_t{tiles} * row_blocks / sp.tiles_per_block < sm_count()) {
    sp.tiles_per_block /= 2;
  }
  return sp;
}

template <typename T, int BITS, int GS, int LW, bool ONE, bool FULL = false>
void launch(const Segments& seg, const QmmArgs& a, cudaStream_t stream) {
  using S = Shape<BITS, GS, LW>;
  // Scales and biases come a chunk's worth at a time (one row of x: two
  // groups a lane): one vector load per row when every row and matrix starts
  // at a multiple of its size.
  constexpr size_t vec_bytes = ONE ? 4 : S::NG * 2 < 16 ? S::NG * 2 : 16;
  bool vec_scales = (size_t{2} * (a.K / GS)) % vec_bytes == 0;
  for (int i = 0; i < seg.count; ++i) {
    vec_scales = vec_scales && reinterpret_cast<uintptr_t>(seg.scales[i]) % vec_bytes == 0 &&
                 reinterpret_cast<uintptr_t>(seg.biases[i]) % vec_bytes == 0;
  }
  if constexpr (ONE && !FULL) {
    // Whole chunks with aligned scale pairs (every Gemma 3 4B product): the loop without
    // bounds (full_chunk_loads). MLXCPP_QGEMV_FULL=0 keeps the general one.
    static const bool full_on = !switched_off("MLXCPP_QGEMV_FULL");
    if (full_on && vec_scales && a.K % (kSpans * S::SV) == 0 &&
        staging_bytes(a.K, 1, S::PIECE, BITS == 8 ? 3 : 1, seg.pre.y != nullptr) <= kMaxSmem) {
      return launch<T, BITS, GS, LW, true, true>(seg, a, stream);
    }
  }
  const int tiles = seg.tile_start[seg.count];
  const int row_blocks = (a.M + kQgemvMaxRows - 1) / kQgemvMaxRows;
  const int chunks = (a.K / S::SV + kSpans - 1) / kSpans;
  const Split sp = split_for(tiles, chunks, row_blocks, ONE);
  const int ksplit = sp.ksplit, tiles_per_block = sp.tiles_per_block;
  const int threads = tiles_per_block * ksplit * 32;
  const int rows = a.M < kQgemvMaxRows ? a.M : kQgemvMaxRows;
  // x, and per piece its sum (three floats in the 8-bit whole-chunk path: stage_x_h).
  const size_t smem =
      staging_bytes(a.K, rows, S::PIECE, ONE && FULL && BITS == 8 ? 3 : 1, seg.pre.y != nullptr);
  auto* kernel = qgemv_mma_kernel<T, BITS, GS, LW, ONE, FULL>;
  const int resident =
      blocks_per_sm(reinterpret_cast<const void*>(kernel), smem, threads) * sm_count();
  const int needed = (tiles + tiles_per_block - 1) / tiles_per_block;
  const int per_z = row_blocks > 1 ? (resident + row_blocks - 1) / row_blocks : resident;
  const dim3 grid(static_cast<unsigned>(needed < per_z ? needed : per_z), 1,
                  static_cast<unsigned>(row_blocks));
  launch_dependent(kernel, grid, dim3(static_cast<unsigned>(threads)), smem, stream,
                   "QuantizedMatmul (tensor-core matrix-vector)", seg, static_cast<const T*>(a.x),
                   a.M, a.K, ksplit, vec_scales ? 1 : 0);
}

// 64-byte spans, but 32-byte ones where they would split a group of a 4-bit
// row of 64 or fewer values, or an 8-bit one of 32, and x has more rows than
// one pass takes: an mma then covers one group for 8 rows of x instead of
// two or four groups for 4 or 2 rows.
template <typename T, int BITS, int GS>
void launch_lw(const Segments& seg, const QmmArgs& a, cudaStream_t stream) {
  if constexpr (Shape<BITS, GS, 4>::CP > 1) {
    if (a.M > Shape<BITS, GS, 4>::MC) {
      return launch<T, BITS, GS, 2, false>(seg, a, stream);
    }
  }
  // One row of x (decode): the mmas of several spans share a D (one_row_chunk).
  // On an H200, 4 bits: the 4B's LM head 155 -> 132 us, gate + up 22.1 -> 18.5,
  // down 14.3 -> 11.9, decode 351.5 / 349.9 -> 401.5 / 401.3 tok/s. At 8 bits it
  // lost 3-9 % until its scales were loaded with the codes (one_row_scales);
  // since, 8-bit decode 293.8 / 293.2 -> 315.6 / 314.9 tok/s. Groups of 128 at 8
  // bits span two 64-byte spans and keep the general path. MLXCPP_QGEMV_ONE=0
  // for the general path everywhere.
  static const bool one_row = !switched_off("MLXCPP_QGEMV_ONE");
  if constexpr (Shape<BITS, GS, 4>::PIECE == GS) {
    if (one_row && a.M == 1) return launch<T, BITS, GS, 4, true>(seg, a, stream);
  }
  launch<T, BITS, GS, 4, false>(seg, a, stream);
}

template <typename T>
void launch_ts(const Segments& seg, const QmmArgs& a, cudaStream_t stream) {
  const int key = a.bits * 1000 + a.group_size;
  switch (key) {
    case 4032:
      return launch_lw<T, 4, 32>(seg, a, stream);
    case 4064:
      return launch_lw<T, 4, 64>(seg, a, stream);
    case 4128:
      return launch_lw<T, 4, 128>(seg, a, stream);
    case 8032:
      return launch_lw<T, 8, 32>(seg, a, stream);
    case 8064:
      return launch_lw<T, 8, 64>(seg, a, stream);
    default:
      return launch_lw<T, 8, 128>(seg, a, stream);
  }
}

}  // namespace

bool qgemv_mma_supported(const QmmArgs& a, Dtype xdtype, bool prenorm) {
  // Scales of x's type (float32 scales promote x to float32 in the op).
  const bool scales_ok = (xdtype == bfloat16 && a.stype == ScaleType::bf16) ||
                         (xdtype == float16 && a.stype == ScaleType::f16);
  auto aligned16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  // x and the codes are read 16 bytes at a time (the grouped call checks its matrices' codes).
  return a.transpose && a.mode == QuantizationMode::affine && (a.bits == 4 || a.bits == 8) &&
         (a.group_size == 32 || a.group_size == 64 || a.group_size == 128) && a.biases &&
         a.M >= 1 && a.M <= kQgemvBlockedRows && a.nbatch == 1 && a.K > 0 &&
         a.K % a.group_size == 0 && a.K % span_values(a.bits) == 0 && scales_ok &&
         (xdtype == bfloat16 || xdtype == float16) && aligned16(a.x) &&
         (a.w == nullptr || aligned16(a.w)) && (!prenorm || a.M == 1) &&
         smem_bytes(a.K, a.group_size, a.bits, a.M, prenorm) <= kMaxSmem;
}

void qgemv_mma_grouped(const QmmArgs& a, const QmmGroup* groups, int count, Dtype xdtype,
                       cudaStream_t stream, bool geglu, const QmmPrenorm* pre) {
  if (count < 1 || count > kMaxGroupedQmm) {
    throw std::invalid_argument("QuantizedMatmul: the grouped kernel takes 1 to " +
                                std::to_string(kMaxGroupedQmm) + " matrices, got " +
                                std::to_string(count));
  }
  if (geglu && (count != 2 || groups[0].N != groups[1].N)) {
    throw std::invalid_argument(
        "QuantizedMatmul: gelu(gate) * up takes two matrices of the same rows, got " +
        std::to_string(count) + " matrices (rows " + std::to_string(groups[0].N) +
        (count > 1 ? ", " + std::to_string(groups[1].N) : std::string()) + ")");
  }
  Segments seg{};
  seg.count = count;
  seg.tile_start[0] = 0;
  for (int i = 0; i < count; ++i) {
    seg.w[i] = groups[i].w;
    seg.scales[i] = static_cast<const uint16_t*>(groups[i].scales);
    seg.biases[i] = static_cast<const uint16_t*>(groups[i].biases);
    seg.out[i] = groups[i].out;
    seg.N[i] = groups[i].N;
    seg.tile_start[i + 1] = seg.tile_start[i] + (groups[i].N + 15) / 16;
    if (reinterpret_cast<uintptr_t>(groups[i].w) % 16 != 0) {
      throw std::invalid_argument(
          "QuantizedMatmul: the tensor-core kernel needs 16-byte aligned codes");
    }
  }
  if (pre) {
    auto aligned16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
    if (a.M != 1 || !aligned16(pre->res) || !aligned16(pre->y) || !aligned16(pre->wy) ||
        !aligned16(pre->wx) || !aligned16(pre->h)) {
      throw std::invalid_argument(
          "QuantizedMatmul: the residual norm in the prologue takes one row of x and 16-byte "
          "aligned operands, got " +
          std::to_string(a.M) + " rows");
    }
    seg.pre = *pre;
  }
  if (geglu) {  // 8-row tiles of both matrices, one output (Segments::geglu)
    seg.geglu = 1;
    seg.tile_start[1] = seg.tile_start[2] = (groups[0].N + 7) / 8;
  }
  if (xdtype == bfloat16) {
    launch_ts<__nv_bfloat16>(seg, a, stream);
  } else {
    launch_ts<__half>(seg, a, stream);
  }
  check_launch("QuantizedMatmul (tensor-core matrix-vector)");
}

void qgemv_mma(const QmmArgs& a, Dtype xdtype, cudaStream_t stream) {
  const QmmGroup one{a.w, a.scales, a.biases, a.out, a.N};
  qgemv_mma_grouped(a, &one, 1, xdtype, stream);
}

}  // namespace mx::cuda::quant
