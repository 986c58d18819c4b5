// Tensor-core attention for prefill (flash attention, forward only): a CTA
// owns 64 query rows of one head (16 rows per warp) and streams 64-key tiles
// of K and V through shared memory with cp.async, overlapping the load of V
// with Q K^T and the load of the next K with P V. Both products run on
// mma.sync m16n8k16 (bf16/f16 in, fp32 accumulate); the softmax is online in
// fp32 with the scores kept in registers, so the Lq x Lk score matrix never
// exists. The causal and sliding-window masks bound the key tiles a CTA
// visits, and only the tiles crossing a mask edge test keys one by one.
#include "mlxcpp/mx/backend/cuda/sdpa_flash.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace mx::cuda {
namespace {

constexpr int kBM = 64;  // query rows per CTA
constexpr int kBN = 64;  // keys per tile
constexpr int kWarps = kBM / 16;
constexpr int kThreads = 32 * kWarps;
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared; fill with zeros when !valid (keys or queries past
// the end must read as 0 so that 0 * value stays 0).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c += a (16x16, row) * b (16x8, col).
template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats as the 16-bit pair of an mma fragment register (lo: the lower
// column).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
}

template <typename T>
__device__ __forceinline__ float to_float(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(x);
  } else {
    return __half2float(x);
  }
}

// Rows [r0, r0 + 64) of a (rows, D) matrix with row stride rs into shared
// memory (row stride D + 8: the 16-byte skew puts the 8 rows an ldmatrix
// reads in different banks).
template <typename T, int D>
__device__ __forceinline__ void load_tile(T* s, const T* g, int64_t rs, int r0, int rows) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int kS = D + 8;
  for (int c = threadIdx.x; c < 64 * kChunks; c += kThreads) {
    const int r = c / kChunks;
    const int col = (c % kChunks) * 8;
    const int gr = r0 + r;
    const bool ok = gr < rows;
    cp_async16(s + r * kS + col, g + static_cast<int64_t>(ok ? gr : 0) * rs + col, ok);
  }
}

// Whether any of the 64 x D values of a tile in shared memory is inf or NaN
// (exponent bits all ones), this thread's share of it.
template <typename T, int D>
__device__ __forceinline__ bool tile_has_nonfinite(const T* s) {
  constexpr int kChunks = D / 8;
  constexpr int kS = D + 8;
  constexpr uint32_t kExp = std::is_same_v<T, __nv_bfloat16> ? 0x7f80u : 0x7c00u;
  constexpr uint32_t kExp2 = kExp | (kExp << 16);
  bool bad = false;
  for (int c = threadIdx.x; c < 64 * kChunks; c += kThreads) {
    const uint4 v = *reinterpret_cast<const uint4*>(s + (c / kChunks) * kS + (c % kChunks) * 8);
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t e = w[i] & kExp2;
      bad |= (e & 0xffffu) == kExp || (e >> 16) == kExp;
    }
  }
  return bad;
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
    flash_fwd_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                     T* __restrict__ out, const T* __restrict__ sinks, FlashParams p) {
  constexpr int kS = D + 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sK = sQ + kBM * kS;
  T* sV = sK + kBN * kS;

  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2;
  const int t = lane & 3;
  // Causal CTAs with later queries have more keys: start them first.
  const int qt = p.causal ? static_cast<int>(gridDim.x) - 1 - static_cast<int>(blockIdx.x)
                          : static_cast<int>(blockIdx.x);
  const int h = blockIdx.y;
  const int b = blockIdx.z;
  const int kvh = h / p.rep;
  const int m0 = qt * kBM;
  const int off = p.Lk - p.Lq;  // query i sits at key position i + off
  const T* qh = q + b * p.q_s[0] + h * p.q_s[1];
  const T* kh = k + b * p.k_s[0] + kvh * p.k_s[1];
  const T* vh = v + b * p.v_s[0] + kvh * p.v_s[1];

  int klo = 0;
  int khi = p.Lk - 1;
  if (p.causal) khi = min(khi, m0 + kBM - 1 + off);
  if (p.window > 0) klo = max(klo, m0 + off - p.window + 1);
  const int jt0 = klo / kBN;
  const int jt1 = khi / kBN;

  load_tile<T, D>(sQ, qh, p.q_s[2], m0, p.Lq);
  load_tile<T, D>(sK, kh, p.k_s[2], jt0 * kBN, p.Lk);
  cp_async_commit();

  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_r[2] = {-INFINITY, -INFINITY};
  float l_r[2] = {0.f, 0.f};  // this thread's part of the row sums
  const float sl2 = p.scale * kLog2e;
  const int row0 = m0 + warp * 16 + g;  // this thread's rows: row0, row0 + 8
  const T* qw = sQ + (warp * 16 + (lane & 7) + 8 * ((lane >> 3) & 1)) * kS + 8 * (lane >> 4);
  const T* kw = sK + ((lane & 7) + 8 * (lane >> 4)) * kS + 8 * ((lane >> 3) & 1);
  const T* vw = sV + ((lane & 7) + 8 * ((lane >> 3) & 1)) * kS + 8 * (lane >> 4);

  for (int jt = jt0; jt <= jt1; ++jt) {
    const int n0 = jt * kBN;
    cp_async_wait_all();
    __syncthreads();  // K tile (and Q) in place; every warp is done with the last V
    load_tile<T, D>(sV, vh, p.v_s[2], n0, p.Lk);
    cp_async_commit();

    float s[kBN / 8][4];
#pragma unroll
    for (int i = 0; i < kBN / 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D; kk += 16) {
      uint32_t a[4];
      ldmatrix_x4(a, qw + kk);
#pragma unroll
      for (int nn = 0; nn < kBN; nn += 16) {
        uint32_t bb[4];
        ldmatrix_x4(bb, kw + nn * kS + kk);
        mma16816<T>(s[nn / 8], a, bb[0], bb[1]);
        mma16816<T>(s[nn / 8 + 1], a, bb[2], bb[3]);
      }
    }

    const bool edge = n0 + kBN > p.Lk || (p.causal && n0 + kBN - 1 > m0 + off) ||
                      (p.window > 0 && n0 < m0 + kBM - 1 + off - p.window + 1);
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int i = 0; i < kBN / 8; ++i) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float x = s[i][c] * sl2;
        if (edge) {
          const int pos = row0 + (c >> 1) * 8 + off;
          const int key = n0 + i * 8 + 2 * t + (c & 1);
          if (key >= p.Lk || (p.causal && key > pos) ||
              (p.window > 0 && key < pos - p.window + 1)) {
            x = -INFINITY;
          }
        }
        s[i][c] = x;
        mx[c >> 1] = fmaxf(mx[c >> 1], x);
      }
    }
    float corr[2];
    float base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m_new = fmaxf(m_r[r], mx[r]);
      // A row with no key yet keeps m = -inf; subtracting 0 avoids -inf - -inf.
      base[r] = m_new == -INFINITY ? 0.f : m_new;
      corr[r] = exp2f(m_r[r] - base[r]);
      m_r[r] = m_new;
    }
    float sum[2] = {0.f, 0.f};
#pragma unroll
    for (int i = 0; i < kBN / 8; ++i) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const float e = exp2f(s[i][c] - base[c >> 1]);
        s[i][c] = e;
        sum[c >> 1] += e;
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) l_r[r] = l_r[r] * corr[r] + sum[r];
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      o[i][0] *= corr[0];
      o[i][1] *= corr[0];
      o[i][2] *= corr[1];
      o[i][3] *= corr[1];
    }

    cp_async_wait_all();
    __syncthreads();  // V tile in place; every warp is done with this K tile
    if (jt < jt1) {
      load_tile<T, D>(sK, kh, p.k_s[2], n0 + kBN, p.Lk);
      cp_async_commit();
    }
    // In a tile that crosses a mask edge, a key masked out for one row may be
    // visible to another, so its value row is in the tile; the tensor cores
    // would multiply its zero probability by it, and 0 * inf or 0 * NaN is
    // NaN. Such tiles (rare: inf / NaN values are) take a path that adds only
    // the visible keys, as the row kernels and the CPU do. The test is
    // uniform over the CTA (edge depends on the tile only).
    if (edge && __syncthreads_or(tile_has_nonfinite<T, D>(sV))) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int pos = row0 + r * 8 + off;
#pragma unroll
        for (int i = 0; i < kBN / 8; ++i) {
          for (int tt = 0; tt < 4; ++tt) {
#pragma unroll
            for (int c = 0; c < 2; ++c) {
              // Key 8i + 2tt + c's probability for this row is s[i][2r + c]
              // of lane tt of the quad.
              float pj = __shfl_sync(0xffffffffu, s[i][2 * r + c], (lane & ~3) | tt);
              const int j = 8 * i + 2 * tt + c;
              const int key = n0 + j;
              const bool masked = key >= p.Lk || (p.causal && key > pos) ||
                                  (p.window > 0 && key < pos - p.window + 1);
              if (masked) continue;
              // Rounded as the tensor-core path rounds P.
              pj = to_float(static_cast<T>(pj));
              const T* vr = sV + j * kS + 2 * t;
#pragma unroll
              for (int d = 0; d < D / 8; ++d) {
                o[d][2 * r] += pj * to_float(vr[d * 8]);
                o[d][2 * r + 1] += pj * to_float(vr[d * 8 + 1]);
              }
            }
          }
        }
      }
      continue;
    }

    // The score accumulators of two adjacent 8-key tiles form the A fragment
    // of a 16-key step of P V.
#pragma unroll
    for (int kk = 0; kk < kBN; kk += 16) {
      uint32_t a[4];
      a[0] = pack2<T>(s[kk / 8][0], s[kk / 8][1]);
      a[1] = pack2<T>(s[kk / 8][2], s[kk / 8][3]);
      a[2] = pack2<T>(s[kk / 8 + 1][0], s[kk / 8 + 1][1]);
      a[3] = pack2<T>(s[kk / 8 + 1][2], s[kk / 8 + 1][3]);
#pragma unroll
      for (int dn = 0; dn < D; dn += 16) {
        uint32_t bb[4];
        ldmatrix_x4_trans(bb, vw + kk * kS + dn);
        mma16816<T>(o[dn / 8], a, bb[0], bb[1]);
        mma16816<T>(o[dn / 8 + 1], a, bb[2], bb[3]);
      }
    }
  }

  float scale_out[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_r[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    float a = 1.f;
    if (sinks) {
      // The sink is one more logit (natural units) in the denominator.
      const float sk = to_float(sinks[h * p.sink_stride]) * kLog2e;
      const float mm = fmaxf(m_r[r], sk);
      a = m_r[r] == -INFINITY ? 0.f : exp2f(m_r[r] - mm);
      l = l * a + exp2f(sk - mm);
    }
    scale_out[r] = l > 0.f ? a / l : 0.f;
  }
  T* oh = out + (static_cast<int64_t>(b) * p.Hq + h) * p.Lq * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row0 + r * 8;
    if (row >= p.Lq) continue;
    T* dst = oh + static_cast<int64_t>(row) * D + 2 * t;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      *reinterpret_cast<uint32_t*>(dst + i * 8) =
          pack2<T>(o[i][2 * r] * scale_out[r], o[i][2 * r + 1] * scale_out[r]);
    }
  }
}

template <typename T, int D>
void launch(const void* q, const void* k, const void* v, void* out, const void* sinks,
            const FlashParams& p, cudaStream_t stream) {
  constexpr size_t smem = static_cast<size_t>(kBM + 2 * kBN) * (D + 8) * sizeof(T);
  static const cudaError_t attr = cudaFuncSetAttribute(
      flash_fwd_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (attr != cudaSuccess) {
    throw std::runtime_error(std::string("[scaled_dot_product_attention] flash kernel: ") +
                             cudaGetErrorString(attr));
  }
  const dim3 grid(static_cast<unsigned>((p.Lq + kBM - 1) / kBM), static_cast<unsigned>(p.Hq),
                  static_cast<unsigned>(p.B));
  flash_fwd_kernel<T, D><<<grid, kThreads, smem, stream>>>(
      static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
      static_cast<T*>(out), static_cast<const T*>(sinks), p);
}

template <typename T>
void launch_dim(const void* q, const void* k, const void* v, void* out, const void* sinks,
                const FlashParams& p, cudaStream_t stream) {
  switch (p.D) {
    case 64:
      launch<T, 64>(q, k, v, out, sinks, p, stream);
      break;
    case 128:
      launch<T, 128>(q, k, v, out, sinks, p, stream);
      break;
    default:
      launch<T, 256>(q, k, v, out, sinks, p, stream);
      break;
  }
}

}  // namespace

bool flash_sdpa_supported(const FlashParams& p, bool half_dtype, bool array_mask,
                          const void* const (&ptrs)[4]) {
  if (!half_dtype || array_mask || p.Lq < kFlashMinQueries) return false;
  if (p.D != 64 && p.D != 128 && p.D != 256) return false;
  // A causal row before the first key sees nothing: the old kernel handles it.
  if (p.causal && p.Lk < p.Lq) return false;
  if (p.Hq > 65535 || p.B > 65535 || p.Lk <= 0) return false;
  // cp.async moves 16-byte chunks: rows and heads must start 16-byte aligned.
  for (int d = 0; d < 3; ++d) {
    if (p.q_s[d] % 8 != 0 || p.k_s[d] % 8 != 0 || p.v_s[d] % 8 != 0) return false;
  }
  for (const void* ptr : ptrs) {
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return false;
  }
  return true;
}

void flash_sdpa(bool bf16, const void* q, const void* k, const void* v, void* out,
                const void* sinks, const FlashParams& p, cudaStream_t stream) {
  if (bf16) {
    launch_dim<__nv_bfloat16>(q, k, v, out, sinks, p, stream);
  } else {
    launch_dim<__half>(q, k, v, out, sinks, p, stream);
  }
}

}  // namespace mx::cuda
