// The decode product: a few rows of x (M <= kQgemvMaxRows, or affine blocks
// of that many rows up to kQgemvBlockedRows, one per grid z index) against a
// quantized matrix W [N, K] in the nn.Linear layout, read once per block. Decode is
// memory-bound, so the kernel is built around the packed bytes: each lane
// takes a 32-value block of R rows at a time (BITS words each, loaded 16, 8
// or 4 bytes at a time), unpacks the codes with constant shifts and
// accumulates in float32
//   acc += scale * sum(x * q) + bias * sum(x)      (affine, per group)
//   acc += scale * sum(x * value(q))               (mxfp4, nvfp4, mxfp8)
// as the CPU kernels do. A block's warps split K when rows are long, so that
// enough bytes are in flight for the shorter matrices too; partial sums meet
// in shared memory.
#include "mlxcpp/mx/backend/cuda/quantized.cuh"

namespace mx::cuda::quant {
namespace {

constexpr int kWarps = 8;  // per block
constexpr int kRows = 4;   // rows of W per lane step (x is read once for all of them)

// Kernel flavours: the affine bit widths by value, the fp modes by code.
constexpr int kMxfp4 = 104, kMxfp8 = 108, kNvfp4 = 204;
constexpr int bits_of(int q) { return q % 100; }

template <int BITS>
__device__ __forceinline__ void load_block(const uint32_t* p, uint32_t* w) {
  if constexpr (BITS % 4 == 0) {
#pragma unroll
    for (int i = 0; i < BITS / 4; ++i) {
      const uint4 v = reinterpret_cast<const uint4*>(p)[i];
      w[4 * i] = v.x;
      w[4 * i + 1] = v.y;
      w[4 * i + 2] = v.z;
      w[4 * i + 3] = v.w;
    }
  } else if constexpr (BITS % 2 == 0) {
#pragma unroll
    for (int i = 0; i < BITS / 2; ++i) {
      const uint2 v = reinterpret_cast<const uint2*>(p)[i];
      w[2 * i] = v.x;
      w[2 * i + 1] = v.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < BITS; ++i) w[i] = p[i];
  }
  w[BITS] = 0;
}

// 32 values of x as float, 16 bytes at a time.
template <typename T>
__device__ __forceinline__ void load_x(const T* p, float* x) {
  if constexpr (std::is_same_v<T, float>) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float4 v = reinterpret_cast<const float4*>(p)[i];
      x[4 * i] = v.x;
      x[4 * i + 1] = v.y;
      x[4 * i + 2] = v.z;
      x[4 * i + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 v = reinterpret_cast<const uint4*>(p)[i];
      const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if constexpr (std::is_same_v<T, __nv_bfloat16>) {
          // bfloat16 is the top half of a float32.
          x[8 * i + 2 * j] = __uint_as_float(u[j] << 16);
          x[8 * i + 2 * j + 1] = __uint_as_float(u[j] & 0xffff0000u);
        } else {
          const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&u[j]));
          x[8 * i + 2 * j] = f.x;
          x[8 * i + 2 * j + 1] = f.y;
        }
      }
    }
  }
}

// Value e of a block as float. Affine codes become floats without the slow
// integer conversion: OR-ing the code into the mantissa of 2^23 gives
// 2^23 + code exactly (PRMT moves an 8-bit code and the exponent byte in one
// instruction), then one subtraction.
template <int Q>
__device__ __forceinline__ float value_of(const uint32_t* w, int e) {
  constexpr int BITS = bits_of(Q);
  if constexpr (Q == kMxfp8) {
    return e4m3_decode(code_at<8>(w, e));
  } else if constexpr (Q == kMxfp4 || Q == kNvfp4) {
    return fp4_decode(code_at<4>(w, e));
  } else if constexpr (BITS == 8) {
    return __uint_as_float(__byte_perm(w[e >> 2], 0x4b000000u, 0x7540u | (e & 3))) - 8388608.0f;
  } else {
    return __uint_as_float(code_at<BITS>(w, e) | 0x4b000000u) - 8388608.0f;
  }
}

template <typename T, int Q, int MM>
__global__ void __launch_bounds__(kWarps * 32)
    qgemv_kernel(QmmArgs a, int warps_per_row, size_t scale_bytes) {
  constexpr int BITS = bits_of(Q);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int row_groups = kWarps / warps_per_row;
  const int rg = warp / warps_per_row, wk = warp % warps_per_row;
  const int n0 = (blockIdx.x * row_groups + rg) * kRows;
  const int nblk = a.K / 32;
  const int groups = a.K / a.group_size;
  const int64_t words_per_row = int64_t{nblk} * BITS;
  // This block's rows of x: [m_first, m_first + m_count).
  const int m_first = static_cast<int>(blockIdx.z) * kQgemvMaxRows;
  const int m_count = min(a.M - m_first, MM);
  __shared__ float partial[kWarps][kRows * MM];
  for (int64_t b = blockIdx.y; b < a.nbatch; b += gridDim.y) {
    const T* x = static_cast<const T*>(a.x) + a.batch.offset(0, b) + int64_t{m_first} * a.K;
    const uint32_t* w = a.w + a.batch.offset(1, b);
    const char* sc = static_cast<const char*>(a.scales) + a.batch.offset(2, b) * scale_bytes;
    const char* bi = a.biases
                         ? static_cast<const char*>(a.biases) + a.batch.offset(3, b) * scale_bytes
                         : nullptr;
    float acc[kRows][MM];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
      for (int m = 0; m < MM; ++m) acc[r][m] = 0.0f;
    }
    for (int blk = wk * 32 + lane; blk < nblk; blk += warps_per_row * 32) {
      uint32_t wv[kRows][BITS + 1];
      float s[kRows], s2[kRows], bs[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int n = n0 + r < a.N ? n0 + r : a.N - 1;  // a clamped row's sums are dropped
        load_block<BITS>(w + n * words_per_row + int64_t{blk} * BITS, wv[r]);
        const int64_t gi = int64_t{n} * groups + blk * 32 / a.group_size;
        if constexpr (Q < 100) {
          s[r] = load_scale<float>(sc, gi, a.stype);
          bs[r] = load_scale<float>(bi, gi, a.stype);
        } else {
          s[r] = fp_scale(static_cast<const uint8_t*>(static_cast<const void*>(sc))[gi], a.mode);
          if constexpr (Q == kNvfp4) {
            s2[r] =
                fp_scale(static_cast<const uint8_t*>(static_cast<const void*>(sc))[gi + 1], a.mode);
          }
        }
      }
#pragma unroll
      for (int m = 0; m < MM; ++m) {
        if (m >= m_count) break;
        float xv[32];
        load_x<T>(x + int64_t{m} * a.K + blk * 32, xv);
        float xs = 0.0f;
        if constexpr (Q < 100) {
#pragma unroll
          for (int e = 0; e < 32; ++e) xs += xv[e];
        }
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          float d0 = 0.0f, d1 = 0.0f;
#pragma unroll
          for (int e = 0; e < 32; ++e) {
            const float v = value_of<Q>(wv[r], e);
            if (Q == kNvfp4 && e >= 16) {
              d1 = fmaf(xv[e], v, d1);
            } else {
              d0 = fmaf(xv[e], v, d0);
            }
          }
          if constexpr (Q < 100) {
            acc[r][m] += s[r] * d0 + bs[r] * xs;
          } else if constexpr (Q == kNvfp4) {
            acc[r][m] += s[r] * d0 + s2[r] * d1;
          } else {
            acc[r][m] += s[r] * d0;
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
      for (int m = 0; m < MM; ++m) {
        float v = acc[r][m];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        acc[r][m] = v;
      }
    }
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
#pragma unroll
        for (int m = 0; m < MM; ++m) partial[warp][r * MM + m] = acc[r][m];
      }
    }
    __syncthreads();
    if (wk == 0 && lane < kRows * MM) {
      const int r = lane / MM, m = lane % MM;
      float v = 0.0f;
      for (int i = 0; i < warps_per_row; ++i) v += partial[warp + i][lane];
      if (n0 + r < a.N && m < m_count) {
        static_cast<T*>(a.out)[(b * a.M + m_first + m) * a.N + n0 + r] = static_cast<T>(v);
      }
    }
    __syncthreads();
  }
}

size_t scale_size(ScaleType t) {
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

template <typename T, int Q>
void launch_q(const QmmArgs& a, cudaStream_t stream) {
  const int nblk = a.K / 32;
  // Warps per row: the fewest that cover a row's blocks in one pass (up to
  // the block's 8), so that short rows still spread over many warps and long
  // ones keep each lane streaming.
  int wpr = 1;
  while (wpr < kWarps && wpr * 32 < nblk) wpr *= 2;
  const int rows_per_block = kWarps / wpr * kRows;
  const unsigned gx = static_cast<unsigned>((a.N + rows_per_block - 1) / rows_per_block);
  const unsigned gy = static_cast<unsigned>(a.nbatch < 65535 ? a.nbatch : 65535);
  const unsigned gz = static_cast<unsigned>((a.M + kQgemvMaxRows - 1) / kQgemvMaxRows);
  const dim3 grid(gx, gy, gz);
  const size_t sb = scale_size(a.stype);
  if (a.M == 1) {
    qgemv_kernel<T, Q, 1><<<grid, kWarps * 32, 0, stream>>>(a, wpr, sb);
  } else if (a.M == 2) {
    qgemv_kernel<T, Q, 2><<<grid, kWarps * 32, 0, stream>>>(a, wpr, sb);
  } else if (a.M <= 4) {
    qgemv_kernel<T, Q, 4><<<grid, kWarps * 32, 0, stream>>>(a, wpr, sb);
  } else {
    qgemv_kernel<T, Q, 8><<<grid, kWarps * 32, 0, stream>>>(a, wpr, sb);
  }
}

template <typename T>
void launch_t(const QmmArgs& a, cudaStream_t stream) {
  switch (a.mode) {
    case QuantizationMode::mxfp4:
      return launch_q<T, kMxfp4>(a, stream);
    case QuantizationMode::mxfp8:
      return launch_q<T, kMxfp8>(a, stream);
    case QuantizationMode::nvfp4:
      return launch_q<T, kNvfp4>(a, stream);
    default:
      break;
  }
  switch (a.bits) {
    case 2:
      return launch_q<T, 2>(a, stream);
    case 3:
      return launch_q<T, 3>(a, stream);
    case 4:
      return launch_q<T, 4>(a, stream);
    case 5:
      return launch_q<T, 5>(a, stream);
    case 6:
      return launch_q<T, 6>(a, stream);
    default:
      return launch_q<T, 8>(a, stream);
  }
}

}  // namespace

void qgemv(const QmmArgs& a, Dtype xdtype, cudaStream_t stream) {
  if (xdtype == bfloat16) {
    launch_t<__nv_bfloat16>(a, stream);
  } else if (xdtype == float16) {
    launch_t<__half>(a, stream);
  } else {
    launch_t<float>(a, stream);
  }
  check_launch("QuantizedMatmul (matrix-vector)");
}

}  // namespace mx::cuda::quant
