// scaled_dot_product_attention: one warp per query row streams the visible
// keys with an online softmax (running max, sum and output, as flash
// attention does), so the scores are never stored. Grouped-query heads read
// their shared key/value head; the causal and sliding-window masks bound the
// keys each row visits. When there are too few rows to fill the card (decode:
// one query per head), the keys are split over several warps whose partial
// states a second kernel merges (split-KV). Prefill in bf16/f16 with head dim
// 64/128/256 and no array mask goes to the tensor-core kernel of
// sdpa_flash.cu instead, and decode (up to kDecodeMaxQueries queries) in
// float32/16-bit with 16-byte head dims to the split-KV kernel of
// sdpa_decode.cu; this file's kernels cover the rest (float64, other head
// dims, a few queries per head in float32 with an array mask, ...).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/backend/cuda/sdpa_decode.h"
#include "mlxcpp/mx/backend/cuda/sdpa_flash.h"
#include "mlxcpp/mx/primitives/fast.h"

namespace mx::cuda {
namespace {

constexpr int kMaxChunks = 8;  // head dims up to 8 * 32 = 256
constexpr int kWarpsPerBlock = 4;

struct SdpaParams {
  int B, Hq, Hkv, rep, Lq, Lk, D, Dv;
  float scale;
  bool causal;
  int window;
  int64_t q_s[3], k_s[3], v_s[3];
  const void* mask;  // broadcast (B, Hq, Lq, Lk), or null
  bool bool_mask;
  int64_t m_s[4];
  const void* sinks;  // (Hq,), or null
  int64_t sink_stride;
  int splits;
  int64_t keys_per_split;
  float* partial;  // per (row, split): m, l, then Dv outputs
};

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The keys [lo, hi] that the causal / window masks leave to query i.
__device__ __forceinline__ void key_range(const SdpaParams& p, int i, int64_t& lo, int64_t& hi) {
  const int64_t pos = static_cast<int64_t>(i) + p.Lk - p.Lq;
  lo = 0;
  hi = p.Lk - 1;
  if (p.causal) hi = hi < pos ? hi : pos;
  if (p.window > 0) lo = lo > pos - p.window + 1 ? lo : pos - p.window + 1;
}

// Writes the row's output from its softmax state (m, l, o): folds the sink
// in, and gives a row that saw no key the CPU's answer (zeros with a sink,
// else the plain average of all values).
template <typename T, typename A>
__device__ void finish_row(const SdpaParams& p, const T* v_head, int h, A m, A l,
                           A (&o)[kMaxChunks], T* dst) {
  const int lane = threadIdx.x & 31;
  if (p.sinks) {
    const A sk = cast_to<A>(static_cast<const T*>(p.sinks)[h * p.sink_stride]);
    const A mm = m > sk ? m : sk;
    const A a = l > A(0) ? exp(m - mm) : A(0);
    l = l * a + exp(sk - mm);
    for (int c = 0; c < kMaxChunks; ++c) o[c] *= a;
  } else if (l == A(0)) {  // NaN l: the row saw a NaN score, which must reach it
    for (int c = 0; c < kMaxChunks; ++c) o[c] = A(0);
    for (int64_t j = 0; j < p.Lk; ++j) {
      const T* vr = v_head + j * p.v_s[2];
      for (int c = 0; c < kMaxChunks; ++c) {
        const int d = lane + 32 * c;
        if (d < p.Dv) o[c] += cast_to<A>(vr[d]);
      }
    }
    l = static_cast<A>(p.Lk > 1 ? p.Lk : 1);
  }
  for (int c = 0; c < kMaxChunks; ++c) {
    const int d = lane + 32 * c;
    if (d < p.Dv) dst[d] = cast_to<T>(o[c] / l);
  }
}

template <typename T>
__global__ void sdpa_kernel(const T* q, const T* k, const T* v, T* out, SdpaParams p) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  const int64_t rows = static_cast<int64_t>(p.B) * p.Hq * p.Lq;
  if (row >= rows) return;
  const int split = blockIdx.y;
  const int i = static_cast<int>(row % p.Lq);
  const int h = static_cast<int>((row / p.Lq) % p.Hq);
  const int b = static_cast<int>(row / (static_cast<int64_t>(p.Lq) * p.Hq));
  const int kvh = h / p.rep;
  const T* qr = q + b * p.q_s[0] + h * p.q_s[1] + i * p.q_s[2];
  const T* k_head = k + b * p.k_s[0] + kvh * p.k_s[1];
  const T* v_head = v + b * p.v_s[0] + kvh * p.v_s[1];

  A qv[kMaxChunks], o[kMaxChunks];
  for (int c = 0; c < kMaxChunks; ++c) {
    const int d = lane + 32 * c;
    qv[c] = d < p.D ? cast_to<A>(qr[d]) * static_cast<A>(p.scale) : A(0);
    o[c] = A(0);
  }
  int64_t lo, hi;
  key_range(p, i, lo, hi);
  const int64_t s_lo = split * p.keys_per_split;
  const int64_t s_hi = s_lo + p.keys_per_split - 1;
  lo = lo > s_lo ? lo : s_lo;
  hi = hi < s_hi ? hi : s_hi;
  const int64_t mrow = p.mask ? b * p.m_s[0] + h * p.m_s[1] + i * p.m_s[2] : 0;
  A m = -INFINITY, l = A(0);
  for (int64_t j = lo; j <= hi; ++j) {
    A s = 0;
    if (p.mask && p.bool_mask) {
      if (!static_cast<const bool*>(p.mask)[mrow + j * p.m_s[3]]) continue;
    }
    const T* kr = k_head + j * p.k_s[2];
    for (int c = 0; c < kMaxChunks; ++c) {
      const int d = lane + 32 * c;
      if (d < p.D) s += qv[c] * cast_to<A>(kr[d]);
    }
    s = warp_sum(s);
    if (p.mask && !p.bool_mask) {
      s += cast_to<A>(static_cast<const T*>(p.mask)[mrow + j * p.m_s[3]]);
    }
    if (s == -INFINITY) continue;  // an additive -inf masks the key out
    const A m_new = s > m ? s : m;
    const A corr = exp(m - m_new);
    const A e = exp(s - m_new);
    l = l * corr + e;
    const T* vr = v_head + j * p.v_s[2];
    for (int c = 0; c < kMaxChunks; ++c) {
      const int d = lane + 32 * c;
      o[c] = o[c] * corr + (d < p.Dv ? e * cast_to<A>(vr[d]) : A(0));
    }
    m = m_new;
  }
  if (p.splits == 1) {
    finish_row<T, A>(p, v_head, h, m, l, o,
                     out + ((static_cast<int64_t>(b) * p.Hq + h) * p.Lq + i) * p.Dv);
    return;
  }
  float* part = p.partial + (row * p.splits + split) * (2 + p.Dv);
  if (lane == 0) {
    part[0] = static_cast<float>(m);
    part[1] = static_cast<float>(l);
  }
  for (int c = 0; c < kMaxChunks; ++c) {
    const int d = lane + 32 * c;
    if (d < p.Dv) part[2 + d] = static_cast<float>(o[c]);
  }
}

// Merges the splits of each row (one warp per row).
template <typename T>
__global__ void sdpa_combine_kernel(const T* v, T* out, SdpaParams p) {
  using A = float;
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  const int64_t rows = static_cast<int64_t>(p.B) * p.Hq * p.Lq;
  if (row >= rows) return;
  const int i = static_cast<int>(row % p.Lq);
  const int h = static_cast<int>((row / p.Lq) % p.Hq);
  const int b = static_cast<int>(row / (static_cast<int64_t>(p.Lq) * p.Hq));
  const float* part = p.partial + row * p.splits * (2 + p.Dv);
  A m = -INFINITY;
  for (int s = 0; s < p.splits; ++s) {
    const A ms = part[s * (2 + p.Dv)];
    m = ms > m ? ms : m;
  }
  A l = 0, o[kMaxChunks] = {};
  if (m != -INFINITY) {
    for (int s = 0; s < p.splits; ++s) {
      const float* ps = part + s * (2 + p.Dv);
      if (ps[1] == 0.0f) continue;  // a NaN sum still propagates
      const A a = exp(ps[0] - m);
      l += ps[1] * a;
      for (int c = 0; c < kMaxChunks; ++c) {
        const int d = lane + 32 * c;
        if (d < p.Dv) o[c] += ps[2 + d] * a;
      }
    }
  }
  const T* v_head = v + b * p.v_s[0] + (h / p.rep) * p.v_s[1];
  finish_row<T, A>(p, v_head, h, m, l, o,
                   out + ((static_cast<int64_t>(b) * p.Hq + h) * p.Lq + i) * p.Dv);
}

array unit_last_stride(const array& a, const Stream& s) {
  return a.strides().back() == 1 || a.shape(-1) == 1 ? a : ensure_row_contiguous(a, s);
}

// Runs the split-KV decode kernel when it covers the call.
// MLXCPP_SDPA_DECODE_KERNEL=0 keeps every call on this file's kernels (for
// comparing the two in one run).
bool try_decode(const SdpaParams& sp, const array& q, const array& k, const array& v, array& out,
                const fast::AttentionMask& mode, Primitive& prim) {
  static const bool enabled = [] {
    const char* e = std::getenv("MLXCPP_SDPA_DECODE_KERNEL");
    return e == nullptr || std::string(e) != "0";
  }();
  if (!enabled) return false;
  DecodeDtype t;
  if (out.dtype() == float32) {
    t = DecodeDtype::f32;
  } else if (out.dtype() == float16) {
    t = DecodeDtype::f16;
  } else if (out.dtype() == bfloat16) {
    t = DecodeDtype::bf16;
  } else {
    return false;
  }
  DecodeParams p{};
  p.B = sp.B;
  p.Hq = sp.Hq;
  p.Hkv = sp.Hkv;
  p.rep = sp.rep;
  p.Lq = sp.Lq;
  p.Lk = sp.Lk;
  p.D = sp.D;
  p.Dv = sp.Dv;
  p.scale = sp.scale;
  p.causal = mode.causal;
  p.window = mode.window;
  for (int d = 0; d < 3; ++d) {
    // The stride of a length-1 axis is never used (and may be anything).
    p.q_s[d] = q.shape(d) == 1 ? 0 : sp.q_s[d];
    p.k_s[d] = k.shape(d) == 1 ? 0 : sp.k_s[d];
    p.v_s[d] = v.shape(d) == 1 ? 0 : sp.v_s[d];
  }
  p.mask = sp.mask;
  p.bool_mask = sp.bool_mask;
  for (int d = 0; d < 4; ++d) p.m_s[d] = sp.m_s[d];
  p.sinks = sp.sinks;
  p.sink_stride = sp.sink_stride;
  const void* const ptrs[4] = {q.data<void>(), k.data<void>(), v.data<void>(), out.data<void>()};
  if (!sdpa_decode_supported(p, t, ptrs)) return false;
  const DecodePlan plan = sdpa_decode_plan(p, t);
  const size_t n = sdpa_decode_scratch_floats(p, plan);
  array scratch({1}, float32, nullptr, {});
  float* sp_ptr = nullptr;
  if (n > 0) {
    scratch = array({static_cast<int32_t>(n)}, float32, nullptr, {});
    allocate_row_contiguous(scratch);
    keep_until_done(prim.stream(), scratch);
    sp_ptr = scratch.data<float>();
  }
  sdpa_decode(t, ptrs[0], ptrs[1], ptrs[2], out.data<void>(), p, plan, sp_ptr, stream_of(prim));
  check_launch("scaled_dot_product_attention (decode)");
  return true;
}

void sdpa_gpu(Primitive& prim, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& op = static_cast<fast::ScaledDotProductAttention&>(prim);
  const Stream& st = prim.stream();
  array q = unit_last_stride(inputs[0], st);
  array k = unit_last_stride(inputs[1], st);
  array v = unit_last_stride(inputs[2], st);
  array& out = outputs[0];
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  const fast::AttentionMask& mode = op.mask();
  SdpaParams p{};
  p.B = q.shape(0);
  p.Hq = q.shape(1);
  p.Hkv = k.shape(1);
  p.rep = p.Hq / std::max(p.Hkv, 1);
  p.Lq = q.shape(2);
  p.Lk = k.shape(2);
  p.D = q.shape(3);
  p.Dv = v.shape(3);
  if (p.D > 32 * kMaxChunks || p.Dv > 32 * kMaxChunks) {
    throw std::invalid_argument("[scaled_dot_product_attention] head dims up to " +
                                std::to_string(32 * kMaxChunks) + " on the GPU, got " +
                                std::to_string(p.D) + " and " + std::to_string(p.Dv));
  }
  p.scale = op.scale();
  p.causal = mode.causal;
  p.window = mode.window;
  for (int d = 0; d < 3; ++d) {
    p.q_s[d] = q.strides()[d];
    p.k_s[d] = k.strides()[d];
    p.v_s[d] = v.strides()[d];
  }
  size_t next = 3;
  if (mode.has_array) {
    const array& ma = inputs[next++];
    p.mask = ma.data<void>();
    p.bool_mask = ma.dtype() == bool_;
    if (!p.bool_mask && ma.dtype() != out.dtype()) {
      throw std::invalid_argument("[scaled_dot_product_attention] additive mask of dtype " +
                                  dtype_name(ma.dtype()) + " for " + dtype_name(out.dtype()) +
                                  " inputs");
    }
    for (int d = 0; d < 4; ++d) p.m_s[d] = ma.strides()[d];
  }
  if (mode.has_sinks) {
    const array& sa = inputs[next++];
    p.sinks = sa.data<void>();
    p.sink_stride = sa.ndim() == 0 ? 0 : sa.strides()[0];
  }
  if (p.D == p.Dv && (out.dtype() == bfloat16 || out.dtype() == float16)) {
    FlashParams f{};
    f.B = p.B;
    f.Hq = p.Hq;
    f.Hkv = p.Hkv;
    f.rep = p.rep;
    f.Lq = p.Lq;
    f.Lk = p.Lk;
    f.D = p.D;
    f.scale = p.scale;
    f.causal = p.causal;
    f.window = p.window;
    for (int d = 0; d < 3; ++d) {
      f.q_s[d] = p.q_s[d];
      f.k_s[d] = p.k_s[d];
      f.v_s[d] = p.v_s[d];
    }
    f.sink_stride = p.sink_stride;
    const void* const ptrs[4] = {q.data<void>(), k.data<void>(), v.data<void>(), out.data<void>()};
    if (flash_sdpa_supported(f, true, mode.has_array, ptrs)) {
      flash_sdpa(out.dtype() == bfloat16, ptrs[0], ptrs[1], ptrs[2], out.data<void>(), p.sinks, f,
                 stream_of(prim));
      check_launch("scaled_dot_product_attention");
      return;
    }
  }
  if (try_decode(p, q, k, v, out, op.mask(), prim)) return;
  const int64_t rows = static_cast<int64_t>(p.B) * p.Hq * p.Lq;
  // Split the keys when the rows alone leave most of the card idle. A warp's walk over its
  // keys is a chain of dependent loads (about a microsecond per key), so a decode row (8 of
  // them for Gemma 3) over a few hundred keys took longer than reading the layer's weights:
  // each warp gets about 32 keys instead.
  constexpr int64_t kBusyWarps = 132 * 16;
  constexpr int64_t kKeysPerWarp = 32;
  p.splits = 1;
  // The splits meet in float32 partials: float64 keeps one pass per row.
  if (rows < kBusyWarps && p.Lk >= 2 * kKeysPerWarp && out.dtype() != float64) {
    p.splits = static_cast<int>(
        std::min<int64_t>({(kBusyWarps + rows - 1) / rows, p.Lk / kKeysPerWarp, 64}));
    p.splits = std::max(p.splits, 1);
  }
  p.keys_per_split = (p.Lk + p.splits - 1) / p.splits;
  array partial({1}, float32, nullptr, {});
  if (p.splits > 1) {
    partial = array({static_cast<int32_t>(rows * p.splits * (2 + p.Dv))}, float32, nullptr, {});
    allocate_row_contiguous(partial);
    keep_until_done(st, partial);
    p.partial = partial.data<float>();
  }
  const unsigned blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  cudaStream_t cs = stream_of(prim);
  dispatch_float(out.dtype(), "scaled_dot_product_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    sdpa_kernel<T><<<dim3(blocks, static_cast<unsigned>(p.splits)), 32 * kWarpsPerBlock, 0, cs>>>(
        q.data<T>(), k.data<T>(), v.data<T>(), out.data<T>(), p);
    if (p.splits > 1) {
      sdpa_combine_kernel<T><<<blocks, 32 * kWarpsPerBlock, 0, cs>>>(v.data<T>(), out.data<T>(), p);
    }
  });
  check_launch("scaled_dot_product_attention");
}

const Register<fast::ScaledDotProductAttention> r_sdpa(&sdpa_gpu);

}  // namespace
}  // namespace mx::cuda
