// The prefill product (and every case the matrix-vector kernel leaves): a
// tiled GEMM that dequantizes each tile of W straight into shared memory, so
// W is read once per 64 rows of x in its packed form and never materialized.
// For bfloat16 and float16 x times W^T (prefill) the tiles hold x's type (the
// CPU's tile path rounds the dequantized weights to x's type too) and tensor
// cores (WMMA, float32 accumulators) multiply them; float32 and float64 x,
// and the products that are not transposed, take a SIMT kernel with the same
// tiling in float32 (float64 for float64 x), as the CPU computes them.
#include <mma.h>

#include "mlxcpp/mx/backend/cuda/quantized.cuh"

namespace mx::cuda::quant {
namespace {

constexpr int kThreads = 128;
constexpr int kBM = 64, kBN = 64;

size_t scale_bytes(ScaleType t) {
  switch (t) {
    case ScaleType::f16:
    case ScaleType::bf16:
      return 2;
    case ScaleType::f64:
      return 8;
    case ScaleType::u8:
      return 1;
    default:
      return 4;
  }
}

// One batch entry's operands.
struct Operands {
  const uint32_t* w;
  const char* scales;
  const char* biases;
};

// Decodes the 32-value block of packed row `row` starting at value `pos`
// (positions >= len are zeros) and hands value e to put(e, v). A is the
// arithmetic type (double for float64 x, float otherwise).
template <typename A, typename Put>
__device__ __forceinline__ void decode_block(const QmmArgs& a, const Operands& op, int64_t row,
                                             int len, int pos, Put&& put) {
  const int bits = a.bits;
  const int64_t words_per_row = int64_t{len} * bits / 32;
  const int valid = len - pos < 32 ? len - pos : 32;
  const int nw = (valid * bits + 31) / 32;
  uint32_t wv[9];
  const uint32_t* p = op.w + row * words_per_row + int64_t{pos} * bits / 32;
  for (int i = 0; i < 9; ++i) wv[i] = i < nw ? p[i] : 0u;
  const int groups = len / a.group_size;
  const int64_t s0 = row * groups;
  if (a.mode == QuantizationMode::affine) {
    // pos is a multiple of 32 and groups are at least 32: one scale per block.
    const A s = load_scale<A>(op.scales, s0 + pos / a.group_size, a.stype);
    const A b = load_scale<A>(op.biases, s0 + pos / a.group_size, a.stype);
    with_bits(bits, [&](auto bt) {
      constexpr int B = decltype(bt)::value;
#pragma unroll
      for (int e = 0; e < 32; ++e) {
        put(e, e < valid ? fma(s, static_cast<A>(code_at<B>(wv, e)), b) : A(0));
      }
    });
  } else {
    const uint8_t* sc = reinterpret_cast<const uint8_t*>(op.scales) + s0;
    const float s_lo = fp_scale(sc[pos / a.group_size], a.mode);
    const float s_hi =
        a.group_size < 32 && valid > 16 ? fp_scale(sc[pos / a.group_size + 1], a.mode) : s_lo;
#pragma unroll
    for (int e = 0; e < 32; ++e) {
      float v = 0.0f;
      if (e < valid) {
        v = a.mode == QuantizationMode::mxfp8 ? e4m3_decode(code_at<8>(wv, e))
                                              : fp4_decode(code_at<4>(wv, e));
        v = __fmul_rn(v, e < 16 ? s_lo : s_hi);
      }
      put(e, static_cast<A>(v));
    }
  }
}

// Fills Ws (BK x BN, element (k, n) at ws(k, n)) with tile (k0, n0) of W.
template <int BK, typename A, typename Store>
__device__ __forceinline__ void load_w_tile(const QmmArgs& a, const Operands& op, int k0, int n0,
                                            Store&& ws) {
  if (a.transpose) {
    // W [N, K]: BN rows of BK / 32 blocks.
    constexpr int per_row = BK / 32;
    for (int t = threadIdx.x; t < kBN * per_row; t += kThreads) {
      const int n = t / per_row, kb = (t % per_row) * 32;
      const int gn = n0 + n, gk = k0 + kb;
      if (gn < a.N && gk < a.K) {
        decode_block<A>(a, op, gn, a.K, gk, [&](int e, A v) { ws(kb + e, n, v); });
      } else {
        for (int e = 0; e < 32; ++e) ws(kb + e, n, A(0));
      }
    }
  } else {
    // W [K, N] quantized along N: BK rows of BN / 32 blocks.
    constexpr int per_row = kBN / 32;
    for (int t = threadIdx.x; t < BK * per_row; t += kThreads) {
      const int k = t / per_row, nb = (t % per_row) * 32;
      const int gk = k0 + k, gn = n0 + nb;
      if (gk < a.K && gn < a.N) {
        decode_block<A>(a, op, gk, a.N, gn, [&](int e, A v) { ws(k, nb + e, v); });
      } else {
        for (int e = 0; e < 32; ++e) ws(k, nb + e, A(0));
      }
    }
  }
}

__device__ Operands operands(const QmmArgs& a, int64_t b, size_t sb) {
  return {a.w + a.batch.offset(1, b),
          static_cast<const char*>(a.scales) + a.batch.offset(2, b) * sb,
          a.biases ? static_cast<const char*>(a.biases) + a.batch.offset(3, b) * sb : nullptr};
}

// Tile (k0, n0) of a transposed W [N, K] a block at a time: put(k, n, values)
// with the 32 values at (k + e, n).
template <int BK, typename Put>
__device__ __forceinline__ void load_w_blocks(const QmmArgs& a, const Operands& op, int k0, int n0,
                                              Put&& put) {
  float v[32];
  constexpr int per_row = BK / 32;
  for (int t = threadIdx.x; t < kBN * per_row; t += kThreads) {
    const int n = t / per_row, kb = (t % per_row) * 32;
    const int gn = n0 + n, gk = k0 + kb;
    if (gn < a.N && gk < a.K) {
      decode_block<float>(a, op, gn, a.K, gk, [&](int e, float x) { v[e] = x; });
    } else {
#pragma unroll
      for (int e = 0; e < 32; ++e) v[e] = 0.0f;
    }
    put(kb, n, v);
  }
}

// 32 floats as T into 16-byte aligned shared memory.
template <typename T>
__device__ __forceinline__ void store32(T* dst, const float* v) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    alignas(16) T h[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) h[j] = static_cast<T>(v[8 * i + j]);
    reinterpret_cast<uint4*>(dst)[i] = *reinterpret_cast<const uint4*>(h);
  }
}

// ---------------------------------------------------------------- tensor cores

template <typename T>
__global__ void __launch_bounds__(kThreads) qgemm_wmma_kernel(QmmArgs a, size_t sb) {
  namespace wmma = nvcuda::wmma;
  constexpr int BK = 64, LD = BK + 8, LDC = kBN + 4;
  // x tile [BM][BK]; W tile [BN][BK]; the accumulators are staged through C
  // for bounds-checked stores.
  __shared__ __align__(32) T xs[kBM * LD];
  __shared__ __align__(32) T ws[kBN * LD];
  __shared__ __align__(32) float cs[kBM * LDC];
  const int warp = threadIdx.x >> 5;
  const int wm = warp / 2, wn = warp % 2;  // 2 x 2 warps of 32 x 32
  const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
  const bool x_vec = a.K % 8 == 0;
  for (int64_t b = blockIdx.z; b < a.nbatch; b += gridDim.z) {
    const T* x = static_cast<const T*>(a.x) + a.batch.offset(0, b);
    const Operands op = operands(a, b, sb);
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
    }
    for (int k0 = 0; k0 < a.K; k0 += BK) {
      if (x_vec) {
        // 8 values (16 bytes) at a time: rows of x are 16-byte aligned when K % 8 == 0.
        for (int t = threadIdx.x; t < kBM * BK / 8; t += kThreads) {
          const int r = t / (BK / 8), c = (t % (BK / 8)) * 8;
          const int gm = m0 + r, gk = k0 + c;
          uint4 v = make_uint4(0, 0, 0, 0);
          if (gm < a.M && gk < a.K) v = *reinterpret_cast<const uint4*>(x + int64_t{gm} * a.K + gk);
          *reinterpret_cast<uint4*>(xs + r * LD + c) = v;
        }
      } else {
        for (int t = threadIdx.x; t < kBM * BK; t += kThreads) {
          const int r = t / BK, c = t % BK;
          const int gm = m0 + r, gk = k0 + c;
          xs[r * LD + c] = gm < a.M && gk < a.K ? x[int64_t{gm} * a.K + gk] : T(0.0f);
        }
      }
      // Each decoded block is 32 consecutive values of a row of the tile:
      // stored 16 bytes at a time.
      load_w_blocks<BK>(a, op, k0, n0,
                        [&](int k, int n, const float* v) { store32(ws + n * LD + k, v); });
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < BK; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          wmma::load_matrix_sync(fa[i], xs + (wm * 32 + i * 16) * LD + kk, LD);
        }
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb[2];
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          wmma::load_matrix_sync(fb[j], ws + (wn * 32 + j * 16) * LD + kk, LD);
        }
#pragma unroll
        for (int i = 0; i < 2; ++i) {
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::store_matrix_sync(cs + (wm * 32 + i * 16) * LDC + wn * 32 + j * 16, acc[i][j], LDC,
                                wmma::mem_row_major);
      }
    }
    __syncthreads();
    T* out = static_cast<T*>(a.out) + b * a.M * a.N;
    for (int t = threadIdx.x; t < kBM * kBN; t += kThreads) {
      const int r = t / kBN, c = t % kBN;
      if (m0 + r < a.M && n0 + c < a.N) {
        out[int64_t{m0 + r} * a.N + n0 + c] = static_cast<T>(cs[r * LDC + c]);
      }
    }
    __syncthreads();
  }
}

// ---------------------------------------------------------------- SIMT

// Each thread computes 4 x 8 outputs (rows ty + 16 i, columns tx + 8 j) in
// the arithmetic type A: x's type for float32 and float64, float32 for the
// 16-bit types where the weights must not be rounded (the products that are
// not transposed, which the CPU computes in float32 throughout).
template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) qgemm_simt_kernel(QmmArgs a, size_t sb) {
  constexpr int BK = 32, LDW = kBN + 1;
  __shared__ A xs[kBM][BK + 1];
  __shared__ A ws[BK * LDW];
  const int tx = threadIdx.x % 8, ty = threadIdx.x / 8;
  const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
  for (int64_t b = blockIdx.z; b < a.nbatch; b += gridDim.z) {
    const T* x = static_cast<const T*>(a.x) + a.batch.offset(0, b);
    const Operands op = operands(a, b, sb);
    A acc[4][8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = A(0);
    }
    for (int k0 = 0; k0 < a.K; k0 += BK) {
      for (int t = threadIdx.x; t < kBM * BK; t += kThreads) {
        const int r = t / BK, c = t % BK;
        const int gm = m0 + r, gk = k0 + c;
        xs[r][c] = gm < a.M && gk < a.K ? static_cast<A>(x[int64_t{gm} * a.K + gk]) : A(0);
      }
      load_w_tile<BK, A>(a, op, k0, n0, [&](int k, int n, A v) { ws[k * LDW + n] = v; });
      __syncthreads();
#pragma unroll 8
      for (int k = 0; k < BK; ++k) {
        A xv[4], wv[8];
#pragma unroll
        for (int i = 0; i < 4; ++i) xv[i] = xs[ty + 16 * i][k];
#pragma unroll
        for (int j = 0; j < 8; ++j) wv[j] = ws[k * LDW + tx + 8 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[i][j] = fma(xv[i], wv[j], acc[i][j]);
        }
      }
      __syncthreads();
    }
    T* out = static_cast<T*>(a.out) + b * a.M * a.N;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int r = m0 + ty + 16 * i, c = n0 + tx + 8 * j;
        if (r < a.M && c < a.N) out[int64_t{r} * a.N + c] = static_cast<T>(acc[i][j]);
      }
    }
  }
}

}  // namespace

void qgemm(const QmmArgs& a, Dtype xdtype, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((a.N + kBN - 1) / kBN),
                  static_cast<unsigned>((a.M + kBM - 1) / kBM),
                  static_cast<unsigned>(a.nbatch < 65535 ? a.nbatch : 65535));
  if (grid.y > 65535) {
    throw std::invalid_argument("[QuantizedMatmul] the GPU GEMM takes at most " +
                                std::to_string(65535 * kBM) + " rows of x, got " +
                                std::to_string(a.M));
  }
  const size_t sb = scale_bytes(a.stype);
  if (xdtype == bfloat16 && a.transpose) {
    qgemm_wmma_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(a, sb);
  } else if (xdtype == float16 && a.transpose) {
    qgemm_wmma_kernel<__half><<<grid, kThreads, 0, stream>>>(a, sb);
  } else if (xdtype == bfloat16) {
    qgemm_simt_kernel<__nv_bfloat16, float><<<grid, kThreads, 0, stream>>>(a, sb);
  } else if (xdtype == float16) {
    qgemm_simt_kernel<__half, float><<<grid, kThreads, 0, stream>>>(a, sb);
  } else if (xdtype == float64) {
    qgemm_simt_kernel<double, double><<<grid, kThreads, 0, stream>>>(a, sb);
  } else {
    qgemm_simt_kernel<float, float><<<grid, kThreads, 0, stream>>>(a, sb);
  }
  check_launch("QuantizedMatmul (GEMM)");
}

}  // namespace mx::cuda::quant
