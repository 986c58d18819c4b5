// Split-KV decode attention (see sdpa_decode.h). A decode step reads every
// cached key and value once and does little arithmetic per byte, so the
// kernel is about keeping enough loads in flight on every multiprocessor:
//  - a CTA owns the query rows of one (batch, key/value head) — the grouped
//    heads share each K/V load — and one slice of the keys; enough slices
//    that the card is full even for one sequence;
//  - each warp walks tiles of keys: a key row is split over the lanes in
//    16-byte chunks (a 256-wide bf16 row is exactly one load per lane, a
//    64-wide one a quarter warp, so a warp step covers 1-4 keys), and a tile
//    issues all its K and V loads before using any of them;
//  - scores, the running max and sum and the output are float32; the warps of
//    a CTA merge through shared memory, and the CTAs of a row through float32
//    partials (max, sum, output) that a second kernel combines.
// Semantics follow the one warp per row kernel of sdpa.cu: a masked key (by
// range, bool mask or an additive -inf) never touches the output even when its
// value is inf or NaN; a row that sees no key averages all values (zeros with
// a sink); a NaN score reaches exactly the rows that see it.
#include <cooperative_groups.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/backend/cuda/sdpa_decode.h"

namespace mx::cuda {
namespace {

constexpr int kWarps = 4;
// Scores are kept in base 2 (the query is scaled by log2(e)), so that every
// exponential is one exp2f.
constexpr float kLog2e = 1.4426950408889634f;
// Target CTAs per multiprocessor when splitting the keys (what stays resident
// at the kernel's register use).
constexpr int kCtasPerSm = 4;

// How a warp covers keys, for element size `es`, padded head dim `dpad`
// (64, 128 or 256) and `g` query rows per CTA.
struct Tiling {
  int vec;    // elements per 16-byte chunk
  int lpk;    // lanes per key
  int ch;     // chunks per lane
  int kpw;    // keys per warp step
  int steps;  // warp steps per tile (all loads issued together)
  __host__ __device__ constexpr Tiling(int es, int dpad, int g)
      : vec(16 / es),
        lpk(dpad / (16 / es) < 32 ? dpad / (16 / es) : 32),
        ch(dpad / (16 / es) / lpk),
        kpw(32 / lpk),
        // Few keys per warp: with one or two warps per scheduler a step's
        // arithmetic is latency, not throughput, and a short tile keeps all
        // the card's warps busy even at a few hundred keys. Fewer still when
        // more rows' scores and outputs hold registers.
        steps(steps_for(g, ch)) {}
  __host__ __device__ static constexpr int steps_for(int g, int ch) {
    const int keys = g <= 2 ? 4 : 2;
    return keys / ch > 0 ? keys / ch : 1;
  }
  __host__ __device__ constexpr int warp_keys() const { return kpw * steps; }
};

// Where the partial outputs start in the scratch: after every (row, split)'s
// max and sum, rounded up to 16 bytes for the combine's float4 loads.
__host__ __device__ constexpr int64_t outputs_at(int64_t rows_all, int splits) {
  return (rows_all * splits * 2 + 3) / 4 * 4;
}

template <typename T>
__device__ __forceinline__ void unpack(const uint4& w, float* f) {
  if constexpr (std::is_same_v<T, float>) {
    f[0] = __uint_as_float(w.x);
    f[1] = __uint_as_float(w.y);
    f[2] = __uint_as_float(w.z);
    f[3] = __uint_as_float(w.w);
  } else {
    const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float2 t;
      if constexpr (std::is_same_v<T, __nv_bfloat16>) {
        t = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u[i]));
      } else {
        t = __half22float2(*reinterpret_cast<const __half2*>(&u[i]));
      }
      f[2 * i] = t.x;
      f[2 * i + 1] = t.y;
    }
  }
}

// Query row `gr` of the rows a key/value head serves: head-major, as the CPU.
__device__ __forceinline__ void row_of(const DecodeParams& p, int kvh, int gr, int& h, int& i) {
  h = kvh * p.rep + gr / p.Lq;
  i = gr % p.Lq;
}

// Writes output element d of row (b, h, i) from its merged softmax state.
template <typename T>
__device__ void finish(const DecodeParams& p, const T* v, T* out, int b, int h, int i, int d,
                       float m, float l, float o) {
  float r;
  if (p.sinks) {
    const float sk = cast_to<float>(static_cast<const T*>(p.sinks)[h * p.sink_stride]) * kLog2e;
    const float mm = fmaxf(m, sk);
    const float a = l > 0.0f ? exp2f(m - mm) : 0.0f;
    r = o * a / (l * a + exp2f(sk - mm));
  } else if (l == 0.0f) {
    // No key visible: the mean of all values (a NaN sum is not 0 and divides).
    const T* vh = v + b * p.v_s[0] + (h / p.rep) * p.v_s[1] + d;
    float s = 0.0f;
    for (int j = 0; j < p.Lk; ++j) s += cast_to<float>(vh[j * p.v_s[2]]);
    r = s / static_cast<float>(p.Lk > 1 ? p.Lk : 1);
  } else {
    r = o / l;
  }
  out[((static_cast<int64_t>(b) * p.Hq + h) * p.Lq + i) * p.Dv + d] = cast_to<T>(r);
}

constexpr int kMaxSplits = 1024;
// The most splits merged inside a cluster (the portable cluster size), and the
// most key tiles a warp then walks.
constexpr int kClusterSplits = 8;
// One sequence's few CTAs (Gemma 3 4B: 4 KV heads) take clusters of up to 16 splits, Hopper's
// non-portable size, so each warp walks half as many tiles (one-token decode 252.6 -> 257.3
// tok/s on an H100); batches, whose CTAs fill the card already, keep the portable 8.
// MLXCPP_SDPA_DECODE_CLUSTER_MAX=8 or 16 sets it for every batch.
int cluster_max(int batch) {
  static const int forced = [] {
    const char* v = std::getenv("MLXCPP_SDPA_DECODE_CLUSTER_MAX");
    return v ? (std::atoi(v) == 16 ? 16 : kClusterSplits) : 0;
  }();
  if (forced) return forced;
  return batch == 1 ? 2 * kClusterSplits : kClusterSplits;
}
constexpr int kClusterTiles = 4;
// The most keys a split may have for its CTA to ask L2 for them before the previous kernel
// ends: one-sequence decode over a short context gains (H200, 384 keys: 7.9 -> 6.8 us), long
// splits lost (132 splits of 249 keys: 56.6 -> 58.2 us).
constexpr int kPrefetchKeys = 64;

template <int THREADS, typename Op>
__device__ float block_reduce(float v, float* red, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  v = red[0];
  for (int w = 1; w < THREADS / 32; ++w) v = op(v, red[w]);
  __syncthreads();
  return v;
}

// Shared memory of one row's merge.
template <int THREADS>
struct MergeSmem {
  float weight[kMaxSplits];
  float red[THREADS / 32];
  float4 part[THREADS];
};

// Merges the splits of query row `row` (of the rows_all rows of the plan's
// CTAs; its group row gr of key/value head kvh, batch b) with all THREADS
// threads of the CTA: the splits' weights first, then the outputs with many
// splits' loads in flight at once (a thread owns 4 output columns of a share
// of the splits). The partials were written by the split kernel: loads skip L1.
template <typename T, int THREADS>
__device__ void merge_row(const T* v, T* out, const DecodeParams& p, const DecodePlan& plan,
                          const float* scratch, int64_t rows_all, int64_t row, int b, int kvh,
                          int gr, MergeSmem<THREADS>& sm) {
  const int S = plan.splits, tid = threadIdx.x;
  const float* ml = scratch + row * S * 2;
  float mx = -INFINITY;
  for (int s = tid; s < S; s += THREADS) mx = fmaxf(mx, __ldcg(ml + 2 * s));
  mx = block_reduce<THREADS>(mx, sm.red, [](float a, float c) { return fmaxf(a, c); });
  const float mu = mx == -INFINITY ? 0.0f : mx;
  float lsum = 0.0f;
  for (int s = tid; s < S; s += THREADS) {
    const float ls = __ldcg(ml + 2 * s + 1);
    // A split that saw no key has l = 0 and o = 0; a NaN l still counts.
    const float a = ls != 0.0f ? exp2f(__ldcg(ml + 2 * s) - mu) : 0.0f;
    sm.weight[s] = a;
    lsum += ls != 0.0f ? ls * a : 0.0f;
  }
  // (The reduction's barriers also publish weight[].)
  lsum = block_reduce<THREADS>(lsum, sm.red, [](float a, float c) { return a + c; });
  const int cols = p.Dv / 4, shares = THREADS / cols;
  const int col = tid % cols, share = tid / cols;
  float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (share < shares) {
    const float4* po =
        reinterpret_cast<const float4*>(scratch + outputs_at(rows_all, S) + row * S * p.Dv);
#pragma unroll 4
    for (int s = share; s < S; s += shares) {
      const float a = sm.weight[s];
      const float4 x = __ldcg(po + static_cast<int64_t>(s) * cols + col);
      o.x = fmaf(a, x.x, o.x);
      o.y = fmaf(a, x.y, o.y);
      o.z = fmaf(a, x.z, o.z);
      o.w = fmaf(a, x.w, o.w);
    }
  }
  sm.part[tid] = o;
  __syncthreads();
  if (tid < cols) {
    for (int sh = 1; sh < shares; ++sh) {
      const float4 x = sm.part[sh * cols + tid];
      o.x += x.x;
      o.y += x.y;
      o.z += x.z;
      o.w += x.w;
    }
    int h, i;
    row_of(p, kvh, gr, h, i);
    const float os[4] = {o.x, o.y, o.z, o.w};
    for (int e = 0; e < 4; ++e) finish<T>(p, v, out, b, h, i, 4 * tid + e, mx, lsum, os[e]);
  }
}

constexpr int kCombineThreads = 256;

// The combine kernel: a CTA per query row.
template <typename T>
__global__ void __launch_bounds__(kCombineThreads)
    decode_combine_kernel(const T* v, T* out, DecodeParams p, DecodePlan plan, const float* scratch,
                          int64_t rows_all) {
  allow_dependent_launch();
  wait_for_prerequisites();
  __shared__ MergeSmem<kCombineThreads> sm;
  const int64_t row = blockIdx.x;
  const int G = plan.rows_per_cta;
  const int cta = static_cast<int>(row / G), r = static_cast<int>(row % G);
  const int grp = cta % plan.row_groups;
  const int kvh = (cta / plan.row_groups) % p.Hkv;
  const int b = cta / (plan.row_groups * p.Hkv);
  const int gr = grp * G + r;
  if (gr >= p.rep * p.Lq) return;  // the whole CTA: no barrier is left waiting
  merge_row<T, kCombineThreads>(v, out, p, plan, scratch, rows_all, row, b, kvh, gr, sm);
}

// The splits of a row group as one thread-block cluster (plan.cluster): each
// CTA left its merged state (max, sum, output) in its shared memory; after the
// cluster's barrier every CTA gathers all splits' max and sum of its rows (one
// remote load per thread, all in flight), turns them into the splits' weights
// in its own shared memory, and finishes a share of the (row, column) outputs
// from all CTAs' partial outputs (distributed shared memory: every split's
// load issued before any is used), with the combine kernel's arithmetic. The
// second barrier keeps each CTA's shared memory alive until the others have
// read it. One launch instead of two, and no scratch.
constexpr int kMaxClusterSplits = 16;

template <int G>
struct ClusterSmem {
  float cm[G], cl[G];             // this CTA's merged max and sum, read by the whole cluster
  float m[G][kMaxClusterSplits];  // the splits' maxima
  float w[G][kMaxClusterSplits];  // their weights exp2(m - max), 0 for a split that saw no key
  float l[G][kMaxClusterSplits];  // their weighted sums
  float mx[G];
};

// The CTA's ClusterSmem (only kernels that merge in a cluster have it).
template <int G>
__device__ __forceinline__ ClusterSmem<G>& cluster_smem() {
  __shared__ ClusterSmem<G> cs;
  return cs;
}

template <typename T, int DPAD, int G>
__device__ void merge_cluster(const T* v, T* out, const DecodeParams& p, const DecodePlan& plan,
                              float (&o_sm)[G][DPAD], int b, int kvh, int grp) {
  namespace cg = cooperative_groups;
  ClusterSmem<G>& cs = cluster_smem<G>();
  static_assert(G * kMaxClusterSplits <= kWarps * 32, "one thread per (row, split)");
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();
  const int S = plan.splits, rank = static_cast<int>(cluster.block_rank());
  const int rows = p.rep * p.Lq, tid = static_cast<int>(threadIdx.x);
  const int wr = tid / S, ws = tid % S;
  float ms = -INFINITY, ls = 0.0f;
  if (wr < G) {
    ms = cluster.map_shared_rank(&cs.cm[wr], ws)[0];
    ls = cluster.map_shared_rank(&cs.cl[wr], ws)[0];
    cs.m[wr][ws] = ms;
  }
  __syncthreads();
  if (wr < G) {
    float mx = -INFINITY;
    for (int s = 0; s < S; ++s) mx = fmaxf(mx, cs.m[wr][s]);
    const float mu = mx == -INFINITY ? 0.0f : mx;
    // A split that saw no key has l = 0 and o = 0; a NaN l still counts.
    const float a = ls != 0.0f ? exp2f(ms - mu) : 0.0f;
    cs.w[wr][ws] = a;
    cs.l[wr][ws] = ls != 0.0f ? ls * a : 0.0f;
    if (ws == 0) cs.mx[wr] = mx;
  }
  __syncthreads();
  for (int t = rank * kWarps * 32 + tid; t < G * p.Dv; t += S * kWarps * 32) {
    const int r = t / p.Dv, d = t % p.Dv;
    const int gr = grp * G + r;
    if (gr >= rows) continue;
    float ov[kMaxClusterSplits];
#pragma unroll
    for (int s = 0; s < kMaxClusterSplits; ++s) {
      ov[s] = s < S ? cluster.map_shared_rank(&o_sm[r][d], s)[0] : 0.0f;
    }
    float lsum = 0.0f, o = 0.0f;
#pragma unroll
    for (int s = 0; s < kMaxClusterSplits; ++s) {
      if (s < S) {
        lsum += cs.l[r][s];
        o = fmaf(cs.w[r][s], ov[s], o);
      }
    }
    int h, i;
    row_of(p, kvh, gr, h, i);
    finish<T>(p, v, out, b, h, i, d, cs.mx[r], lsum, o);
  }
  cluster.sync();
}

// CL: the plan merges its splits in a cluster (plan.cluster; short splits, one-token decode).
// Only that instantiation carries the cluster merge and the L2 prefetch before the wait; the
// other keeps the layout it had without them (with them compiled in, long splits ran up to
// 15 % slower on an H200, B = 64 x 4096 keys: 430 -> 485-492 us, in two of three builds).
template <typename T, int DPAD, int G, bool CL>
__global__ void __launch_bounds__(kWarps * 32)
    decode_split_kernel(const T* q, const T* k, const T* v, T* out, DecodeParams p, DecodePlan plan,
                        float* scratch) {
  allow_dependent_launch();
  if (!CL || !plan.prefetch) wait_for_prerequisites();
  constexpr Tiling tl(sizeof(T), DPAD, G);
  constexpr int VEC = tl.vec, LPK = tl.lpk, CH = tl.ch, KPW = tl.kpw, U = tl.steps;
  constexpr int WT = tl.warp_keys();
  __shared__ float sm_acc[kWarps][G][DPAD];
  __shared__ float sm_m[kWarps][G], sm_l[kWarps][G];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int grp = blockIdx.x % plan.row_groups;
  const int kvh = (blockIdx.x / plan.row_groups) % p.Hkv;
  const int b = blockIdx.x / (plan.row_groups * p.Hkv);
  const int split = blockIdx.y;
  const int rows = p.rep * p.Lq;
  const int sub = lane % LPK;  // the lane's chunk within a key row
  const int kin = lane / LPK;  // the lane's key within a warp step
  const int s_lo = static_cast<int>(plan.key_lo + split * plan.keys_per_split);
  const int64_t s_end = plan.key_lo + (split + 1) * plan.keys_per_split;
  const int s_hi = static_cast<int>(s_end < plan.key_hi + 1 ? s_end : plan.key_hi + 1);
  if constexpr (CL) {
    // A short split (plan.prefetch): before the previous kernel has finished (in a decode step
    // it writes this step's key and value), one thread asks L2 for all the split's key and
    // value rows (l2_prefetch: safe before the wait).
    if (plan.prefetch) {
      if (threadIdx.x == 0 && s_hi > s_lo) {
        const int n = s_hi - s_lo;
        l2_prefetch(k + b * p.k_s[0] + kvh * p.k_s[1] + s_lo * p.k_s[2],
                    static_cast<uint32_t>(((n - 1) * p.k_s[2] + p.D) * sizeof(T)));
        l2_prefetch(v + b * p.v_s[0] + kvh * p.v_s[1] + s_lo * p.v_s[2],
                    static_cast<uint32_t>(((n - 1) * p.v_s[2] + p.Dv) * sizeof(T)));
      }
      wait_for_prerequisites();
    }
  }

  const float qscale = p.scale * kLog2e;
  float qf[G][CH][VEC];
  int lo[G], hi[G];
  int64_t mrow[G];
#pragma unroll
  for (int r = 0; r < G; ++r) {
    const int gr = grp * G + r;
    int h, i;
    row_of(p, kvh, gr < rows ? gr : 0, h, i);
    const int pos = i + p.Lk - p.Lq;
    lo[r] = p.window > 0 ? max(s_lo, pos - p.window + 1) : s_lo;
    hi[r] = p.causal ? min(s_hi - 1, pos) : s_hi - 1;
    if (gr >= rows) {  // a padding row of the last group sees nothing
      lo[r] = 1;
      hi[r] = 0;
    }
    mrow[r] = b * p.m_s[0] + h * p.m_s[1] + i * p.m_s[2];
    const T* qr = q + b * p.q_s[0] + h * p.q_s[1] + i * p.q_s[2];
#pragma unroll
    for (int c = 0; c < CH; ++c) {
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        const int d = (c * LPK + sub) * VEC + e;
        qf[r][c][e] = d < p.D ? cast_to<float>(qr[d]) * qscale : 0.0f;
      }
    }
  }

  float m[G], l[G], acc[G][CH][VEC];
#pragma unroll
  for (int r = 0; r < G; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < CH; ++c) {
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc[r][c][e] = 0.0f;
    }
  }
  const T* kh = k + b * p.k_s[0] + kvh * p.k_s[1];
  const T* vh = v + b * p.v_s[0] + kvh * p.v_s[1];

  for (int base = s_lo + warp * WT; base < s_hi; base += kWarps * WT) {
    uint4 kr[U][CH], vr[U][CH];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int j = base + u * KPW + kin;
#pragma unroll
      for (int c = 0; c < CH; ++c) {
        const int d0 = (c * LPK + sub) * VEC;
        kr[u][c] = j < s_hi && d0 < p.D
                       ? __ldg(reinterpret_cast<const uint4*>(kh + j * p.k_s[2] + d0))
                       : make_uint4(0, 0, 0, 0);
        vr[u][c] = j < s_hi && d0 < p.Dv
                       ? __ldg(reinterpret_cast<const uint4*>(vh + j * p.v_s[2] + d0))
                       : make_uint4(0, 0, 0, 0);
      }
    }
    float s[G][U];
#pragma unroll
    for (int r = 0; r < G; ++r) {
#pragma unroll
      for (int u = 0; u < U; ++u) s[r][u] = 0.0f;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
#pragma unroll
      for (int c = 0; c < CH; ++c) {
        float kf[VEC];
        unpack<T>(kr[u][c], kf);
#pragma unroll
        for (int r = 0; r < G; ++r) {
#pragma unroll
          for (int e = 0; e < VEC; ++e) s[r][u] = fmaf(qf[r][c][e], kf[e], s[r][u]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < G; ++r) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
#pragma unroll
        for (int o = LPK / 2; o > 0; o >>= 1) s[r][u] += __shfl_xor_sync(0xffffffffu, s[r][u], o);
      }
    }
    // Masks, then the online softmax: s becomes the probability, vis its key's visibility.
    unsigned vis[G];
#pragma unroll
    for (int r = 0; r < G; ++r) {
      vis[r] = 0;
      float mt = -INFINITY;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int j = base + u * KPW + kin;
        bool see = j >= lo[r] && j <= hi[r];
        if (see && p.mask) {
          const int64_t at = mrow[r] + j * p.m_s[3];
          if (p.bool_mask) {
            see = static_cast<const bool*>(p.mask)[at];
          } else {
            s[r][u] += cast_to<float>(static_cast<const T*>(p.mask)[at]) * kLog2e;
          }
        }
        see = see && s[r][u] != -INFINITY;  // an additive -inf hides the key
        if (see) {
          vis[r] |= 1u << u;
          mt = fmaxf(mt, s[r][u]);  // NaN scores do not set the max; they reach l below
        }
      }
#pragma unroll
      for (int o = 16; o >= LPK; o >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
      const float m_new = fmaxf(m[r], mt);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float corr = exp2f(m[r] - m_use);
      l[r] *= corr;
#pragma unroll
      for (int c = 0; c < CH; ++c) {
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[r][c][e] *= corr;
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        s[r][u] = (vis[r] >> u) & 1u ? exp2f(s[r][u] - m_use) : 0.0f;
        l[r] += s[r][u];
      }
      m[r] = m_new;
    }
    // Select, not multiply, where a key is hidden from some row: its inf/NaN
    // value must not reach that row as 0 * inf. Most tiles hide nothing.
    bool all_seen = true;
#pragma unroll
    for (int r = 0; r < G; ++r) all_seen = all_seen && vis[r] == (1u << U) - 1;
    if (__all_sync(0xffffffffu, all_seen)) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
#pragma unroll
        for (int c = 0; c < CH; ++c) {
          float vf[VEC];
          unpack<T>(vr[u][c], vf);
#pragma unroll
          for (int r = 0; r < G; ++r) {
#pragma unroll
            for (int e = 0; e < VEC; ++e) acc[r][c][e] = fmaf(s[r][u], vf[e], acc[r][c][e]);
          }
        }
      }
    } else {
#pragma unroll
      for (int u = 0; u < U; ++u) {
#pragma unroll
        for (int c = 0; c < CH; ++c) {
          float vf[VEC];
          unpack<T>(vr[u][c], vf);
#pragma unroll
          for (int r = 0; r < G; ++r) {
            const bool see = (vis[r] >> u) & 1u;
#pragma unroll
            for (int e = 0; e < VEC; ++e) acc[r][c][e] += see ? s[r][u] * vf[e] : 0.0f;
          }
        }
      }
    }
  }

  // The lanes of one chunk position hold different keys' sums: fold them.
#pragma unroll
  for (int r = 0; r < G; ++r) {
#pragma unroll
    for (int o = 16; o >= LPK; o >>= 1) {
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], o);
#pragma unroll
      for (int c = 0; c < CH; ++c) {
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          acc[r][c][e] += __shfl_xor_sync(0xffffffffu, acc[r][c][e], o);
        }
      }
    }
    if (lane < LPK) {
#pragma unroll
      for (int c = 0; c < CH; ++c) {
#pragma unroll
        for (int e = 0; e < VEC; ++e) sm_acc[warp][r][(c * LPK + lane) * VEC + e] = acc[r][c][e];
      }
    }
    if (lane == 0) {
      sm_m[warp][r] = m[r];
      sm_l[warp][r] = l[r];
    }
  }
  __syncthreads();

  for (int idx = threadIdx.x; idx < G * DPAD; idx += kWarps * 32) {
    const int r = idx / DPAD, d = idx % DPAD;
    const int gr = grp * G + r;
    if (gr >= rows || d >= p.Dv) continue;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm_m[w][r]);
    const float mu = mx == -INFINITY ? 0.0f : mx;
    float lsum = 0.0f, o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float lw = sm_l[w][r];
      if (lw != 0.0f) {  // a NaN sum still counts
        const float a = exp2f(sm_m[w][r] - mu);
        lsum += lw * a;
        o += sm_acc[w][r][d] * a;
      }
    }
    if (plan.splits == 1) {
      int h, i;
      row_of(p, kvh, gr, h, i);
      finish<T>(p, v, out, b, h, i, d, mx, lsum, o);
    } else if (CL) {
      // This thread alone reads [*][r][d]: the CTA's merged output replaces warp 0's. The
      // row's max and sum go apart (into the cluster's part of shared memory): other threads
      // of the row still read sm_m and sm_l.
      sm_acc[0][r][d] = o;
      if (d == 0) {
        cluster_smem<G>().cm[r] = mx;
        cluster_smem<G>().cl[r] = lsum;
      }
    } else {
      const int64_t row = static_cast<int64_t>(blockIdx.x) * G + r;
      const int64_t at = row * plan.splits + split;
      if (d == 0) {
        scratch[2 * at] = mx;
        scratch[2 * at + 1] = lsum;
      }
      const int64_t rows_all = static_cast<int64_t>(gridDim.x) * G;
      scratch[outputs_at(rows_all, plan.splits) + at * p.Dv + d] = o;
    }
  }
  if constexpr (CL) merge_cluster<T, DPAD, G>(v, out, p, plan, sm_acc[0], b, kvh, grp);
}

int elem_size(DecodeDtype t) { return t == DecodeDtype::f32 ? 4 : 2; }

int padded_dim(const DecodeParams& p) {
  const int d = std::max(p.D, p.Dv);
  return d <= 64 ? 64 : d <= 128 ? 128 : 256;
}

template <typename T, int DPAD, int G>
void launch(const void* q, const void* k, const void* v, void* out, const DecodeParams& p,
            const DecodePlan& plan, float* scratch, cudaStream_t st) {
  const unsigned ctas = static_cast<unsigned>(p.B) * p.Hkv * plan.row_groups;
  const dim3 grid(ctas, static_cast<unsigned>(plan.splits));
  if (plan.cluster) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(kWarps * 32);
    cfg.stream = st;
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 1;
    attr[0].val.clusterDim.y = static_cast<unsigned>(plan.splits);
    attr[0].val.clusterDim.z = 1;
    attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[1].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = dependent_launch_enabled() ? 2 : 1;
    if (plan.splits > kClusterSplits) {
      static const bool allowed = [] {
        return cudaFuncSetAttribute(decode_split_kernel<T, DPAD, G, true>,
                                    cudaFuncAttributeNonPortableClusterSizeAllowed,
                                    1) == cudaSuccess;
      }();
      if (!allowed) throw std::runtime_error("sdpa decode: no cluster of 16 on this device");
    }
    check(cudaLaunchKernelEx(&cfg, decode_split_kernel<T, DPAD, G, true>, static_cast<const T*>(q),
                             static_cast<const T*>(k), static_cast<const T*>(v),
                             static_cast<T*>(out), p, plan, scratch),
          "sdpa decode (cluster)");
    return;
  }
  launch_dependent(decode_split_kernel<T, DPAD, G, false>, grid, dim3(kWarps * 32), st,
                   "sdpa decode", static_cast<const T*>(q), static_cast<const T*>(k),
                   static_cast<const T*>(v), static_cast<T*>(out), p, plan, scratch);
  if (plan.splits > 1) {
    const int64_t rows_all = static_cast<int64_t>(ctas) * G;
    launch_dependent(decode_combine_kernel<T>, dim3(static_cast<unsigned>(rows_all)),
                     dim3(kCombineThreads), st, "sdpa decode (combine)", static_cast<const T*>(v),
                     static_cast<T*>(out), p, plan, scratch, rows_all);
  }
}

template <typename T, int DPAD>
void launch_rows(const void* q, const void* k, const void* v, void* out, const DecodeParams& p,
                 const DecodePlan& plan, float* scratch, cudaStream_t st) {
  switch (plan.rows_per_cta) {
    case 2:
      return launch<T, DPAD, 2>(q, k, v, out, p, plan, scratch, st);
    case 4:
      return launch<T, DPAD, 4>(q, k, v, out, p, plan, scratch, st);
    default:
      return launch<T, DPAD, 8>(q, k, v, out, p, plan, scratch, st);
  }
}

template <typename T>
void launch_dim(const void* q, const void* k, const void* v, void* out, const DecodeParams& p,
                const DecodePlan& plan, float* scratch, cudaStream_t st) {
  switch (padded_dim(p)) {
    case 64:
      return launch_rows<T, 64>(q, k, v, out, p, plan, scratch, st);
    case 128:
      return launch_rows<T, 128>(q, k, v, out, p, plan, scratch, st);
    default:
      return launch_rows<T, 256>(q, k, v, out, p, plan, scratch, st);
  }
}

int current_sm_count() {
  static const int count = [] {
    int dev = 0, n = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev),
          "cudaDeviceGetAttribute(multiprocessors)");
    return n > 0 ? n : 1;
  }();
  return count;
}

// Thread-block clusters (compute capability 9.0 on) and not switched off with
// MLXCPP_SDPA_DECODE_CLUSTER=0 (the two-kernel merge, for comparison).
bool clusters_enabled() {
  static const bool on = !switched_off("MLXCPP_SDPA_DECODE_CLUSTER") && is_sm90_or_later();
  return on;
}

// The L2 prefetch of a short split's keys and values before the wait (sm_90 on, where kernels
// are programmatic dependents); MLXCPP_SDPA_DECODE_PREFETCH=0 turns it off.
bool prefetch_enabled() {
  static const bool on = !switched_off("MLXCPP_SDPA_DECODE_PREFETCH") && is_sm90_or_later();
  return on;
}

// Whether this device launches clusters past the portable 8 CTAs, asked once on the kernel a
// one-token decode with 256-wide bfloat16 heads takes: where it does not, plans keep clusters of
// 8 instead of failing at the launch.
bool nonportable_clusters() {
  static const bool ok = [] {
    const bool yes =
        cudaFuncSetAttribute(decode_split_kernel<__nv_bfloat16, 256, 8, true>,
                             cudaFuncAttributeNonPortableClusterSizeAllowed, 1) == cudaSuccess;
    if (!yes) cudaGetLastError();  // clear the refusal
    return yes;
  }();
  return ok;
}

}  // namespace

bool sdpa_decode_supported(const DecodeParams& p, DecodeDtype t, const void* const (&ptrs)[4]) {
  if (p.Lq < 1 || p.Lq > kDecodeMaxQueries || p.Lk < 1 || p.Hkv < 1) return false;
  const int vec = 16 / elem_size(t);
  if (p.D < 1 || p.Dv < 1 || p.D % vec != 0 || p.Dv % vec != 0 || std::max(p.D, p.Dv) > 256) {
    return false;
  }
  // K and V move in 16-byte chunks: every row must start 16-byte aligned.
  for (int d = 0; d < 3; ++d) {
    if (p.k_s[d] % vec != 0 || p.v_s[d] % vec != 0) return false;
  }
  for (int a = 1; a <= 2; ++a) {
    if (reinterpret_cast<uintptr_t>(ptrs[a]) % 16 != 0) return false;
  }
  const int64_t ctas = static_cast<int64_t>(p.B) * p.Hkv * (p.rep * p.Lq);
  return ctas < (int64_t{1} << 30);
}

DecodePlan sdpa_decode_plan(const DecodeParams& p, DecodeDtype t, int sms, int64_t min_split_keys) {
  DecodePlan plan{};
  const int rows = p.rep * p.Lq;
  plan.rows_per_cta = rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
  plan.row_groups = (rows + plan.rows_per_cta - 1) / plan.rows_per_cta;
  // The keys some query sees: the window's lower edge of the first query.
  plan.key_hi = p.Lk - 1;
  plan.key_lo =
      p.window > 0 ? std::max<int64_t>(0, static_cast<int64_t>(p.Lk) - p.Lq - p.window + 1) : 0;
  const int64_t span = plan.key_hi - plan.key_lo + 1;
  const int64_t wt = Tiling(elem_size(t), padded_dim(p), plan.rows_per_cta).warp_keys();
  // At least a tile for every warp of a CTA: a split's fixed costs (its
  // query, its partial state, the combine's share) are the same for fewer.
  const int64_t min_keys = min_split_keys > 0 ? min_split_keys : kWarps * wt;
  const int64_t ctas = static_cast<int64_t>(p.B) * p.Hkv * plan.row_groups;
  const int64_t want =
      (static_cast<int64_t>(kCtasPerSm) * (sms > 0 ? sms : current_sm_count()) + ctas - 1) / ctas;
  int64_t splits =
      std::clamp<int64_t>(std::min(want, (span + min_keys - 1) / min_keys), 1, kMaxSplits);
  // Few keys a row group (a short context, or a batch that fills the card with few splits):
  // at most kClusterSplits splits, merged inside their cluster, of at most kClusterTiles tiles a
  // warp; the combine kernel's launch costs more than the longer splits.
  const int cmax =
      cluster_max(p.B) > kClusterSplits && clusters_enabled() && !nonportable_clusters()
          ? kClusterSplits
          : cluster_max(p.B);
  if (clusters_enabled() && span <= int64_t{cmax} * kClusterTiles * kWarps * wt) {
    splits = std::min<int64_t>(splits, cmax);
    splits = std::max<int64_t>(
        splits, (span + kClusterTiles * kWarps * wt - 1) / (kClusterTiles * kWarps * wt));
  }
  plan.keys_per_split = ((span + splits - 1) / splits + wt - 1) / wt * wt;
  plan.splits = static_cast<int>((span + plan.keys_per_split - 1) / plan.keys_per_split);
  plan.cluster = plan.splits > 1 && plan.splits <= cmax && clusters_enabled() &&
                 span <= int64_t{cmax} * kClusterTiles * kWarps * wt;
  plan.prefetch = plan.cluster && prefetch_enabled() && plan.keys_per_split <= kPrefetchKeys;
  return plan;
}

size_t sdpa_decode_scratch_floats(const DecodeParams& p, const DecodePlan& plan) {
  if (plan.splits <= 1 || plan.cluster) return 0;
  const size_t rows_all =
      static_cast<size_t>(p.B) * p.Hkv * plan.row_groups * static_cast<size_t>(plan.rows_per_cta);
  return static_cast<size_t>(outputs_at(static_cast<int64_t>(rows_all), plan.splits)) +
         rows_all * static_cast<size_t>(plan.splits) * static_cast<size_t>(p.Dv);
}

void sdpa_decode(DecodeDtype t, const void* q, const void* k, const void* v, void* out,
                 const DecodeParams& p, const DecodePlan& plan, float* scratch,
                 cudaStream_t stream) {
  switch (t) {
    case DecodeDtype::f32:
      return launch_dim<float>(q, k, v, out, p, plan, scratch, stream);
    case DecodeDtype::f16:
      return launch_dim<__half>(q, k, v, out, p, plan, scratch, stream);
    case DecodeDtype::bf16:
      return launch_dim<__nv_bfloat16>(q, k, v, out, p, plan, scratch, stream);
  }
}

}  // namespace mx::cuda
