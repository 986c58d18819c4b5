// The decode product for the common case, 4-bit affine weights with groups of
// 64 or 128 and bfloat16 / float16 activations (8 rows of x per block: grid
// z index i takes rows 8i .. 8i + 7, up to kQgemvBlockedRows), on the
// tensor cores: the integer codes and x are both exact in x's 16-bit type,
// so mma.sync multiplies them with float32 accumulation and the group's scale
// and bias are applied per 64 values:
//   acc += scale * sum(x * q) + bias * sum(x)
// as the CPU and the SIMT kernel (qgemv.cu) compute it. Unpacking costs one
// shift-and-mask per two codes (a code OR-ed into the mantissa of 128 in
// bfloat16, 1024 in float16, is 128 + code exactly; one packed subtraction
// removes the 128), against a multiply-add per code in the SIMT kernel.
//
// A warp takes 16 rows of W and a strided share of the row's 64-value chunks
// (the warps of a block split K when rows are few); per chunk, thread
// (g = lane / 4, t = lane % 4) loads 8 bytes (16 codes) of rows g and g + 8
// and 16 values of x row g. mma.m16n8k16's fragments give thread t the
// k-slots {2t, 2t+1, 2t+8, 2t+9} of A (W, rows g and g + 8) and of B (x^T,
// column g); any bijection between slots and positions works as long as A
// and B agree, so each slot pair takes the two codes that one mask puts in a
// register's halves (nibbles s and s + 4 of a word) and x is paired to match.
// A second mma with an all-ones A gives sum(x) per chunk for the bias term.
#include "mlxcpp/mx/backend/cuda/quantized.cuh"

namespace mx::cuda::quant {
namespace {

constexpr int kWarps = 8;   // per block
constexpr int kUnroll = 4;  // chunks whose codes each warp loads before using them

template <typename T>
struct Mma;

template <>
struct Mma<__nv_bfloat16> {
  static constexpr uint32_t kMagic = 0x43004300u;  // (128, 128)
  static constexpr uint32_t kOnes = 0x3f803f80u;   // (1, 1)
  // v * 1 - 128 in each half (exact: v holds 128 + code).
  __device__ __forceinline__ static uint32_t minus_magic(uint32_t v) {
    uint32_t r;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(r) : "r"(v), "r"(kOnes), "r"(0xc300c300u));
    return r;
  }
  __device__ __forceinline__ static void mma(float* d, const uint32_t* a, const uint32_t* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

template <>
struct Mma<__half> {
  static constexpr uint32_t kMagic = 0x64006400u;  // (1024, 1024)
  static constexpr uint32_t kOnes = 0x3c003c00u;   // (1, 1)
  // v * 1 - 1024 in each half (exact: v holds 1024 + code).
  __device__ __forceinline__ static uint32_t minus_magic(uint32_t v) {
    uint32_t r;
    asm("fma.rn.f16x2 %0, %1, %2, %3;\n" : "=r"(r) : "r"(v), "r"(kOnes), "r"(0xe400e400u));
    return r;
  }
  __device__ __forceinline__ static void mma(float* d, const uint32_t* a, const uint32_t* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

// Nibbles s and s + 4 of w (s < 4) as two 16-bit values of x's type, low half first.
template <typename T>
__device__ __forceinline__ uint32_t code_pair(uint32_t w, int s) {
  return Mma<T>::minus_magic(((w >> (4 * s)) & 0x000f000fu) | Mma<T>::kMagic);
}

// Values s and s + 4 of the 8 consecutive x values in X[0..3] (two per word).
__device__ __forceinline__ uint32_t x_pair(const uint32_t* X, int s) {
  return __byte_perm(X[s >> 1], X[2 + (s >> 1)], (s & 1) ? 0x7632 : 0x5410);
}

template <typename T>
__global__ void __launch_bounds__(kWarps * 32, 2)
    qgemv_mma_kernel(QmmArgs a, int warps_per_tile, size_t scale_bytes) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int tile = warp / warps_per_tile, wk = warp % warps_per_tile;
  const int r0 = (blockIdx.x * (kWarps / warps_per_tile) + tile) * 16;
  const int nchunk = a.K / 64;
  const int64_t words_per_row = a.K / 8;
  const int groups = a.K / a.group_size;
  // This block's rows of x: [m_first, m_first + m_count).
  const int m_first = static_cast<int>(blockIdx.z) * kQgemvMaxRows;
  const int m_count = min(a.M - m_first, kQgemvMaxRows);
  __shared__ float partial[kWarps][32][4];
  for (int64_t b = blockIdx.y; b < a.nbatch; b += gridDim.y) {
    const T* x = static_cast<const T*>(a.x) + a.batch.offset(0, b) + int64_t{m_first} * a.K;
    const uint32_t* w = a.w + a.batch.offset(1, b);
    const char* sc = static_cast<const char*>(a.scales) + a.batch.offset(2, b) * scale_bytes;
    const char* bi = static_cast<const char*>(a.biases) + a.batch.offset(3, b) * scale_bytes;
    // Rows past the matrix read its last row; their sums are dropped.
    const int ra = min(r0 + g, a.N - 1), rb = min(r0 + g + 8, a.N - 1);
    const uint32_t* wa = w + ra * words_per_row + 2 * t;
    const uint32_t* wb = w + rb * words_per_row + 2 * t;
    const bool has_x = g < m_count;
    const T* xr = x + int64_t{has_x ? g : 0} * a.K + 16 * t;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c0 = wk; c0 < nchunk; c0 += warps_per_tile * kUnroll) {
      uint2 ca[kUnroll], cb[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int c = c0 + u * warps_per_tile;
        ca[u] = make_uint2(0, 0);
        cb[u] = make_uint2(0, 0);
        if (c < nchunk) {
          ca[u] = *reinterpret_cast<const uint2*>(wa + int64_t{c} * 8);
          cb[u] = *reinterpret_cast<const uint2*>(wb + int64_t{c} * 8);
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int c = c0 + u * warps_per_tile;
        if (c >= nchunk) break;
        uint32_t X[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if (has_x) {
          const uint4 v0 = *reinterpret_cast<const uint4*>(xr + int64_t{c} * 64);
          const uint4 v1 = *reinterpret_cast<const uint4*>(xr + int64_t{c} * 64 + 8);
          X[0] = v0.x, X[1] = v0.y, X[2] = v0.z, X[3] = v0.w;
          X[4] = v1.x, X[5] = v1.y, X[6] = v1.z, X[7] = v1.w;
        }
        float dw[4] = {0.0f, 0.0f, 0.0f, 0.0f}, dx[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        const uint32_t ones[4] = {Mma<T>::kOnes, Mma<T>::kOnes, Mma<T>::kOnes, Mma<T>::kOnes};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          // Steps 0, 1 take each row's first word (positions 0-7), 2, 3 the second.
          const uint32_t wrow_a = j < 2 ? ca[u].x : ca[u].y;  // row g
          const uint32_t wrow_b = j < 2 ? cb[u].x : cb[u].y;  // row g + 8
          const int s = 2 * (j & 1);
          const uint32_t A[4] = {code_pair<T>(wrow_a, s), code_pair<T>(wrow_b, s),
                                 code_pair<T>(wrow_a, s + 1), code_pair<T>(wrow_b, s + 1)};
          const uint32_t* Xw = X + (j < 2 ? 0 : 4);
          const uint32_t B[2] = {x_pair(Xw, s), x_pair(Xw, s + 1)};
          Mma<T>::mma(dw, A, B);
          Mma<T>::mma(dx, ones, B);
        }
        const int64_t gi = int64_t{c} * 64 / a.group_size;
        const float sa = load_scale<float>(sc, ra * int64_t{groups} + gi, a.stype);
        const float ba = load_scale<float>(bi, ra * int64_t{groups} + gi, a.stype);
        const float sb = load_scale<float>(sc, rb * int64_t{groups} + gi, a.stype);
        const float bb = load_scale<float>(bi, rb * int64_t{groups} + gi, a.stype);
        // D fragment: [0], [1] row g, x rows 2t and 2t + 1; [2], [3] row g + 8.
        acc[0] += sa * dw[0] + ba * dx[0];
        acc[1] += sa * dw[1] + ba * dx[1];
        acc[2] += sb * dw[2] + bb * dx[2];
        acc[3] += sb * dw[3] + bb * dx[3];
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) partial[warp][lane][i] = acc[i];
    __syncthreads();
    if (wk == 0) {
      float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (int k = 0; k < warps_per_tile; ++k) {
#pragma unroll
        for (int i = 0; i < 4; ++i) v[i] += partial[warp + k][lane][i];
      }
      T* out = static_cast<T*>(a.out) + b * a.M * a.N;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int row = r0 + g + (i >= 2 ? 8 : 0), m = 2 * t + (i & 1);
        if (row < a.N && m < m_count) out[int64_t{m_first + m} * a.N + row] = static_cast<T>(v[i]);
      }
    }
    __syncthreads();
  }
}

}  // namespace

bool qgemv_mma_supported(const QmmArgs& a, Dtype xdtype) {
  return a.transpose && a.mode == QuantizationMode::affine && a.bits == 4 &&
         a.group_size % 64 == 0 && a.M <= kQgemvBlockedRows && a.stype != ScaleType::f64 &&
         (xdtype == bfloat16 || xdtype == float16);
}

void qgemv_mma(const QmmArgs& a, Dtype xdtype, cudaStream_t stream) {
  const int tiles = (a.N + 15) / 16;
  const int nchunk = a.K / 64;
  // Split K over more warps while that keeps each at kUnroll chunks or more
  // and the grid has fewer than ~2048 warps (16 per SM on 132 SMs).
  int wpt = 1;
  const int row_blocks = (a.M + kQgemvMaxRows - 1) / kQgemvMaxRows;
  while (wpt < kWarps && int64_t{tiles} * wpt * a.nbatch * row_blocks < 2048 &&
         nchunk >= 2 * wpt * kUnroll) {
    wpt *= 2;
  }
  const int tiles_per_block = kWarps / wpt;
  const dim3 grid(static_cast<unsigned>((tiles + tiles_per_block - 1) / tiles_per_block),
                  static_cast<unsigned>(a.nbatch < 65535 ? a.nbatch : 65535),
                  static_cast<unsigned>(row_blocks));
  size_t sb = 4;
  if (a.stype == ScaleType::f16 || a.stype == ScaleType::bf16) sb = 2;
  if (xdtype == bfloat16) {
    qgemv_mma_kernel<__nv_bfloat16><<<grid, kWarps * 32, 0, stream>>>(a, wpt, sb);
  } else {
    qgemv_mma_kernel<__half><<<grid, kWarps * 32, 0, stream>>>(a, wpt, sb);
  }
  check_launch("QuantizedMatmul (tensor-core matrix-vector)");
}

}  // namespace mx::cuda::quant
