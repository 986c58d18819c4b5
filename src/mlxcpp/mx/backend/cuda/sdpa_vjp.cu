// Backward pass of scaled_dot_product_attention (the CPU kernel in
// backend/cpu/fast_sdpa.cpp is the reference semantics: the same masks,
// sinks and rows that see no key). With P the softmax of a query row,
//   dP_j = dO . v_j,  dS_j = P_j (dP_j - sum_k P_k dP_k),
//   dq = scale sum_j dS_j k_j,  dk_j = sum_rows dS_j scale q,  dv_j = sum_rows P_j dO.
// Two kernels, one warp per row each, recomputing the scores instead of
// storing them: the first walks a query row's keys (its softmax statistics,
// sum_k P_k dP_k and dq), the second a key's query rows over every query head
// that shares its key/value head (dk and dv), so no two warps write the same
// gradient and nothing needs atomics.
#include <algorithm>
#include <cmath>

#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/fast.h"

namespace mx::cuda {
namespace {

constexpr int kMaxChunks = 8;  // head dims up to 8 * 32 = 256
constexpr int kWarpsPerBlock = 4;

struct VjpParams {
  int B, Hq, Hkv, rep, Lq, Lk, D, Dv;
  float scale;
  bool causal;
  int window;
  int64_t q_s[3], k_s[3], v_s[3], g_s[3];
  const void* mask;  // broadcast (B, Hq, Lq, Lk), or null
  bool bool_mask;
  int64_t m_s[4];
  const void* sinks;  // (Hq,), or null
  int64_t sink_stride;
};

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Per query row: the score of key j (scaled, masked) or -inf where a mask
// hides it; `visible` says which.
template <typename T, typename A>
__device__ __forceinline__ A score(const VjpParams& p, const A (&qv)[kMaxChunks], const T* k_head,
                                   int b, int h, int i, int64_t j, bool& visible) {
  const int lane = threadIdx.x & 31;
  const int64_t pos = static_cast<int64_t>(i) + p.Lk - p.Lq;
  visible = !(p.causal && j > pos) && !(p.window > 0 && j < pos - p.window + 1);
  const int64_t moff = p.mask ? b * p.m_s[0] + h * p.m_s[1] + i * p.m_s[2] + j * p.m_s[3] : 0;
  if (visible && p.mask && p.bool_mask) visible = static_cast<const bool*>(p.mask)[moff];
  if (!visible) return -INFINITY;
  const T* kr = k_head + j * p.k_s[2];
  A s = 0;
  for (int c = 0; c < kMaxChunks; ++c) {
    const int d = lane + 32 * c;
    if (d < p.D) s += qv[c] * cast_to<A>(kr[d]);
  }
  s = warp_sum(s);
  if (p.mask && !p.bool_mask) s += cast_to<A>(static_cast<const T*>(p.mask)[moff]);
  return s;
}

template <typename T, typename A>
__device__ __forceinline__ A dot_v(const VjpParams& p, const A (&go)[kMaxChunks], const T* vr) {
  const int lane = threadIdx.x & 31;
  A s = 0;
  for (int c = 0; c < kMaxChunks; ++c) {
    const int d = lane + 32 * c;
    if (d < p.Dv) s += go[c] * cast_to<A>(vr[d]);
  }
  return warp_sum(s);
}

// Loads q * scale and dO of row (b, h, i) into the lanes' chunks.
template <typename T, typename A>
__device__ __forceinline__ void load_row(const VjpParams& p, const T* q, const T* g, int b, int h,
                                         int i, A (&qv)[kMaxChunks], A (&go)[kMaxChunks]) {
  const int lane = threadIdx.x & 31;
  const T* qr = q + b * p.q_s[0] + h * p.q_s[1] + i * p.q_s[2];
  const T* gr = g + b * p.g_s[0] + h * p.g_s[1] + i * p.g_s[2];
  for (int c = 0; c < kMaxChunks; ++c) {
    const int d = lane + 32 * c;
    qv[c] = d < p.D ? cast_to<A>(qr[d]) * static_cast<A>(p.scale) : A(0);
    go[c] = d < p.Dv ? cast_to<A>(gr[d]) : A(0);
  }
}

// The probability of key j in a row with statistics (m, denom, seen): a row
// that sees no key is uniform without sinks and all-sink with them.
template <typename A>
__device__ __forceinline__ A prob(const VjpParams& p, A s, bool visible, A m, A denom, bool seen) {
  if (!seen) return p.sinks ? A(0) : A(1) / static_cast<A>(p.Lk);
  return visible ? exp(s - m) / denom : A(0);
}

// Row statistics kept between the kernels: m, denom, sum_k P_k dP_k, seen.
template <typename T, typename A>
__global__ void sdpa_vjp_rows_kernel(const T* q, const T* k, const T* v, const T* g, T* dq,
                                     A* stats, VjpParams p) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= static_cast<int64_t>(p.B) * p.Hq * p.Lq) return;
  const int i = static_cast<int>(row % p.Lq);
  const int h = static_cast<int>((row / p.Lq) % p.Hq);
  const int b = static_cast<int>(row / (static_cast<int64_t>(p.Lq) * p.Hq));
  const int kvh = h / p.rep;
  const T* k_head = k + b * p.k_s[0] + kvh * p.k_s[1];
  const T* v_head = v + b * p.v_s[0] + kvh * p.v_s[1];
  A qv[kMaxChunks], go[kMaxChunks], acc[kMaxChunks];
  load_row<T, A>(p, q, g, b, h, i, qv, go);
  const A sink =
      p.sinks ? cast_to<A>(static_cast<const T*>(p.sinks)[h * p.sink_stride]) : A(-INFINITY);
  A m = sink;
  bool seen = false;
  for (int64_t j = 0; j < p.Lk; ++j) {
    bool vis;
    const A s = score<T, A>(p, qv, k_head, b, h, i, j, vis);
    seen |= vis;
    m = s > m ? s : m;
  }
  A denom = 0;
  if (seen) {
    for (int64_t j = 0; j < p.Lk; ++j) {
      bool vis;
      const A s = score<T, A>(p, qv, k_head, b, h, i, j, vis);
      if (vis) denom += exp(s - m);
    }
    if (p.sinks) denom += exp(sink - m);
  }
  A dsum = 0;
  for (int64_t j = 0; j < p.Lk; ++j) {
    bool vis;
    const A s = score<T, A>(p, qv, k_head, b, h, i, j, vis);
    dsum += prob(p, s, vis, m, denom, seen) * dot_v<T, A>(p, go, v_head + j * p.v_s[2]);
  }
  for (int c = 0; c < kMaxChunks; ++c) acc[c] = A(0);
  for (int64_t j = 0; j < p.Lk; ++j) {
    bool vis;
    const A s = score<T, A>(p, qv, k_head, b, h, i, j, vis);
    if (!vis) continue;
    const A pj = prob(p, s, vis, m, denom, seen);
    const A ds = pj * (dot_v<T, A>(p, go, v_head + j * p.v_s[2]) - dsum);
    const T* kr = k_head + j * p.k_s[2];
    for (int c = 0; c < kMaxChunks; ++c) {
      const int d = lane + 32 * c;
      if (d < p.D) acc[c] += ds * cast_to<A>(kr[d]);
    }
  }
  T* dqr = dq + row * p.D;
  for (int c = 0; c < kMaxChunks; ++c) {
    const int d = lane + 32 * c;
    if (d < p.D) dqr[d] = cast_to<T>(acc[c] * static_cast<A>(p.scale));
  }
  if (lane == 0) {
    A* st = stats + row * 4;
    st[0] = m;
    st[1] = denom;
    st[2] = dsum;
    st[3] = seen ? A(1) : A(0);
  }
}

// One warp per key (b, kvh, j): dk_j and dv_j over the query rows of every
// query head sharing the key/value head.
template <typename T, typename A>
__global__ void sdpa_vjp_keys_kernel(const T* q, const T* k, const T* v, const T* g, T* dk, T* dv,
                                     const A* stats, VjpParams p) {
  const int lane = threadIdx.x & 31;
  const int64_t key = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (key >= static_cast<int64_t>(p.B) * p.Hkv * p.Lk) return;
  const int64_t j = key % p.Lk;
  const int kvh = static_cast<int>((key / p.Lk) % p.Hkv);
  const int b = static_cast<int>(key / (static_cast<int64_t>(p.Lk) * p.Hkv));
  const T* k_head = k + b * p.k_s[0] + kvh * p.k_s[1];
  const T* vr = v + b * p.v_s[0] + kvh * p.v_s[1] + j * p.v_s[2];
  A dk_acc[kMaxChunks], dv_acc[kMaxChunks];
  for (int c = 0; c < kMaxChunks; ++c) dk_acc[c] = dv_acc[c] = A(0);
  for (int h = kvh * p.rep; h < (kvh + 1) * p.rep; ++h) {
    for (int i = 0; i < p.Lq; ++i) {
      A qv[kMaxChunks], go[kMaxChunks];
      load_row<T, A>(p, q, g, b, h, i, qv, go);
      const A* st = stats + ((static_cast<int64_t>(b) * p.Hq + h) * p.Lq + i) * 4;
      const bool seen = st[3] != A(0);
      bool vis;
      const A s = score<T, A>(p, qv, k_head, b, h, i, j, vis);
      const A pj = prob(p, s, vis, st[0], st[1], seen);
      const A dp = dot_v<T, A>(p, go, vr);
      for (int c = 0; c < kMaxChunks; ++c) dv_acc[c] += pj * go[c];
      if (!vis) continue;
      const A ds = pj * (dp - st[2]);
      for (int c = 0; c < kMaxChunks; ++c) dk_acc[c] += ds * qv[c];
    }
  }
  T* dkr = dk + key * p.D;
  T* dvr = dv + key * p.Dv;
  for (int c = 0; c < kMaxChunks; ++c) {
    const int d = lane + 32 * c;
    if (d < p.D) dkr[d] = cast_to<T>(dk_acc[c]);
    if (d < p.Dv) dvr[d] = cast_to<T>(dv_acc[c]);
  }
}

array unit_last_stride(const array& a, const Stream& s) {
  return a.strides().back() == 1 || a.shape(-1) == 1 ? a : ensure_row_contiguous(a, s);
}

void sdpa_vjp_gpu(Primitive& prim, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& op = static_cast<fast::ScaledDotProductAttentionVJP&>(prim);
  const Stream& st = prim.stream();
  array q = unit_last_stride(inputs[0], st);
  array k = unit_last_stride(inputs[1], st);
  array v = unit_last_stride(inputs[2], st);
  array g = unit_last_stride(inputs.back(), st);
  for (auto& o : outputs) allocate_row_contiguous(o);
  const fast::AttentionMask& mode = op.mask();
  VjpParams p{};
  p.B = q.shape(0);
  p.Hq = q.shape(1);
  p.Hkv = k.shape(1);
  p.rep = p.Hq / std::max(p.Hkv, 1);
  p.Lq = q.shape(2);
  p.Lk = k.shape(2);
  p.D = q.shape(3);
  p.Dv = v.shape(3);
  if (outputs[0].size() + outputs[1].size() + outputs[2].size() == 0) return;
  if (p.D > 32 * kMaxChunks || p.Dv > 32 * kMaxChunks) {
    throw std::invalid_argument("[scaled_dot_product_attention] head dims up to " +
                                std::to_string(32 * kMaxChunks) + " on the GPU, got " +
                                std::to_string(p.D) + " and " + std::to_string(p.Dv));
  }
  if (g.dtype() != q.dtype()) {
    throw std::invalid_argument("[scaled_dot_product_attention] cotangent dtype " +
                                dtype_name(g.dtype()) + " differs from the inputs' " +
                                dtype_name(q.dtype()));
  }
  p.scale = op.scale();
  p.causal = mode.causal;
  p.window = mode.window;
  for (int d = 0; d < 3; ++d) {
    p.q_s[d] = q.strides()[d];
    p.k_s[d] = k.strides()[d];
    p.v_s[d] = v.strides()[d];
    p.g_s[d] = g.strides()[d];
  }
  size_t next = 3;
  if (mode.has_array) {
    const array& ma = inputs[next++];
    p.mask = ma.data<void>();
    p.bool_mask = ma.dtype() == bool_;
    if (!p.bool_mask && ma.dtype() != q.dtype()) {
      throw std::invalid_argument("[scaled_dot_product_attention] additive mask of dtype " +
                                  dtype_name(ma.dtype()) + " for " + dtype_name(q.dtype()) +
                                  " inputs");
    }
    for (int d = 0; d < 4; ++d) p.m_s[d] = ma.strides()[d];
  }
  if (mode.has_sinks) {
    const array& sa = inputs[next++];
    if (sa.dtype() != q.dtype()) {
      throw std::invalid_argument("[scaled_dot_product_attention] sinks of dtype " +
                                  dtype_name(sa.dtype()) + " for " + dtype_name(q.dtype()) +
                                  " inputs");
    }
    p.sinks = sa.data<void>();
    p.sink_stride = sa.ndim() == 0 ? 0 : sa.strides()[0];
  }
  const int64_t rows = static_cast<int64_t>(p.B) * p.Hq * p.Lq;
  const int64_t keys = static_cast<int64_t>(p.B) * p.Hkv * p.Lk;
  cudaStream_t cs = stream_of(prim);
  dispatch_float(q.dtype(), "scaled_dot_product_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    array stats({static_cast<int32_t>(std::max<int64_t>(rows * 4, 1))}, dtype_of<A>(), nullptr, {});
    allocate_row_contiguous(stats);
    keep_until_done(st, stats);
    if (rows > 0) {
      const unsigned blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
      sdpa_vjp_rows_kernel<T, A><<<blocks, 32 * kWarpsPerBlock, 0, cs>>>(
          q.data<T>(), k.data<T>(), v.data<T>(), g.data<T>(), outputs[0].data<T>(), stats.data<A>(),
          p);
    }
    if (keys > 0) {
      if (rows == 0) {
        // No query rows: the key and value gradients are zero.
        check(cudaMemsetAsync(outputs[1].data<char>(), 0, outputs[1].nbytes(), cs), "sdpa vjp");
        check(cudaMemsetAsync(outputs[2].data<char>(), 0, outputs[2].nbytes(), cs), "sdpa vjp");
        return;
      }
      const unsigned blocks = static_cast<unsigned>((keys + kWarpsPerBlock - 1) / kWarpsPerBlock);
      sdpa_vjp_keys_kernel<T, A><<<blocks, 32 * kWarpsPerBlock, 0, cs>>>(
          q.data<T>(), k.data<T>(), v.data<T>(), g.data<T>(), outputs[1].data<T>(),
          outputs[2].data<T>(), stats.data<A>(), p);
    }
  });
  check_launch("scaled_dot_product_attention vjp");
}

const Register<fast::ScaledDotProductAttentionVJP> r_sdpa_vjp(&sdpa_vjp_gpu);

}  // namespace
}  // namespace mx::cuda
