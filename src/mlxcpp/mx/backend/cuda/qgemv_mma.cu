// The decode product on the tensor cores for the common cases: affine 4- or
// 8-bit weights, groups of 32, 64 or 128, bfloat16 / float16 x (up to 8 rows
// of x per block; grid z index i takes rows 8i .. 8i + 7), one to four weight
// matrices that share x (q/k/v or gate/up in one launch).
//
// Decode reads each weight byte once, so the kernel is built to keep the
// memory system busy with few instructions per byte:
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
//   order the unpacked codes come out; each lane then reads its B fragment
//   with one shared load per word of codes, and sum(x) per group comes from
//   shared memory too.
// - Lane (g, t) of a warp takes rows g and g + 8 of a 16-row tile; per group
//   the four lanes t read consecutive pieces of gs * bits / 32 bytes of each
//   row (one 32-byte sector per row and group at 4 bits, g = 64), so one mma
//   never mixes groups. Each warp loads the codes and scales of several groups
//   before using them; warps of a block split K when tiles are few, and
//   blocks loop over tiles so x is rearranged once per block.
#include <mutex>
#include <unordered_map>

#include "mlxcpp/mx/backend/cuda/quantized.cuh"

namespace mx::cuda::quant {
namespace {

constexpr int kWarps = 8;  // per block
constexpr int kThreads = kWarps * 32;
// Shared memory a block may use for x (beyond it the SIMT kernel runs).
constexpr size_t kMaxSmem = 64 * 1024;

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
};

// Nibbles c and c + 4 (as 16-bit halves: bits 4c.. of each half) of w as MAGIC + nibble.
template <typename T, int C>
__device__ __forceinline__ uint32_t nib_pair(uint32_t w) {
  return ((w >> (4 * C)) & 0x000f000fu) | Mma<T>::kMagic;
}

// W words of a row at p (W * 4 bytes, aligned to that).
template <int W>
__device__ __forceinline__ void load_words(const uint32_t* p, uint32_t* w) {
  if constexpr (W == 1) {
    w[0] = __ldg(p);
  } else if constexpr (W == 2) {
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
    w[0] = v.x, w[1] = v.y;
  } else {
#pragma unroll
    for (int i = 0; i < W / 4; ++i) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(p) + i);
      w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
    }
  }
}

// Rearranges rows [m_first, m_first + Mpad) of x into the B-fragment order
// and sums each group (float32). Shared layout:
//   4 bits: uint4 per (group gi, word jw, column col, lane t): x at word
//           positions (0,4), (1,5), (2,6), (3,7) of lane t's piece;
//   8 bits: uint2 per (gi, jw, col, t): positions (0,2), (1,3);
//   sums:   float [gi][8] (columns past Mpad zero).
template <typename T, int BITS, int GS>
__device__ void stage_x(const T* x, int K, int M, int Mpad, uint32_t* xs, float* sums) {
  constexpr int W = GS * BITS / 128;  // words per lane and group
  constexpr int SEG = GS / 8;         // 8-value chunks per group
  const int G = K / GS;
  const int chunks_per_col = K / 8;
  const int chunks = Mpad * chunks_per_col;
  const int tid = threadIdx.x;
  for (int i = tid; i < G * (8 - Mpad); i += kThreads) {
    sums[(i / (8 - Mpad)) * 8 + Mpad + i % (8 - Mpad)] = 0.0f;
  }
  for (int base = 0; base < chunks; base += kThreads) {
    const int c = base + tid;
    const bool active = c < chunks;
    const int col = active ? c / chunks_per_col : 0;
    const int p = active ? (c - col * chunks_per_col) * 8 : 0;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (active && col < M) v = *reinterpret_cast<const uint4*>(x + int64_t{col} * K + p);
    const int gi = p / GS, o = p % GS;
    if (active) {
      if constexpr (BITS == 4) {
        const int t = o / (8 * W), jw = (o / 8) % W;
        uint4 r;
        r.x = __byte_perm(v.x, v.z, 0x5410);
        r.y = __byte_perm(v.x, v.z, 0x7632);
        r.z = __byte_perm(v.y, v.w, 0x5410);
        r.w = __byte_perm(v.y, v.w, 0x7632);
        reinterpret_cast<uint4*>(xs)[((gi * W + jw) * Mpad + col) * 4 + t] = r;
      } else {
        const int t = o / (4 * W), jw = (o / 4) % W;
        auto* dst = reinterpret_cast<uint2*>(xs);
        dst[((gi * W + jw) * Mpad + col) * 4 + t] =
            make_uint2(__byte_perm(v.x, v.y, 0x5410), __byte_perm(v.x, v.y, 0x7632));
        dst[((gi * W + jw + 1) * Mpad + col) * 4 + t] =
            make_uint2(__byte_perm(v.z, v.w, 0x5410), __byte_perm(v.z, v.w, 0x7632));
      }
    }
    float s = 0.0f;
    const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if constexpr (std::is_same_v<T, __nv_bfloat16>) {
        s += __uint_as_float(u[j] << 16) + __uint_as_float(u[j] & 0xffff0000u);
      } else {
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&u[j]));
        s += f.x + f.y;
      }
    }
    // Chunks of one group are SEG consecutive lanes (SEG divides 32).
#pragma unroll
    for (int off = SEG / 2; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (active && (c % SEG) == 0) sums[gi * 8 + col] = s;
  }
}

struct Segments {
  const uint32_t* w[kMaxGroupedQmm];
  const void* scales[kMaxGroupedQmm];
  const void* biases[kMaxGroupedQmm];
  void* out[kMaxGroupedQmm];
  int N[kMaxGroupedQmm];
  int tile_start[kMaxGroupedQmm + 1];  // first 16-row tile of each matrix; [count] = all tiles
  int count;
};

template <typename T, int BITS, int GS>
__global__ void __launch_bounds__(kThreads)
    qgemv_mma_kernel(Segments seg, const T* x_all, int M, int K, int Mpad, int ksplit) {
  constexpr int W = GS * BITS / 128;     // words per lane per group
  constexpr int U = W >= 8 ? 1 : 8 / W;  // groups whose codes a warp loads ahead
  extern __shared__ __align__(16) uint32_t smem[];
  const int G = K / GS;
  uint32_t* xs = smem;
  float* sums = reinterpret_cast<float*>(smem + Mpad * K / 2);
  __shared__ float partial[kWarps][32][4];

  const int m_first = static_cast<int>(blockIdx.z) * kQgemvMaxRows;
  const int m_count = min(M - m_first, kQgemvMaxRows);
  stage_x<T, BITS, GS>(x_all + int64_t{m_first} * K, K, m_count, Mpad, xs, sums);
  __syncthreads();

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int tiles_per_block = kWarps / ksplit;
  const int wt = warp / ksplit, wk = warp % ksplit;
  const int col = g & (Mpad - 1);  // B column of this lane (columns past M are ignored)
  const int words_per_row = K * BITS / 32;
  const int total_tiles = seg.tile_start[seg.count];
  constexpr float kOff = Mma<T>::kOff * (BITS == 8 ? 17.0f : 1.0f);

  for (int tb = blockIdx.x * tiles_per_block; tb < total_tiles; tb += gridDim.x * tiles_per_block) {
    const int tile = tb + wt;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int s_idx = 0;
#pragma unroll
    for (int i = 1; i < kMaxGroupedQmm; ++i) {
      if (i < seg.count && tile >= seg.tile_start[i]) s_idx = i;
    }
    const int N = seg.N[s_idx];
    const int r0 = (tile - seg.tile_start[s_idx]) * 16;
    if (tile < total_tiles) {
      // Rows past the matrix read its last row; their sums are dropped.
      const int ra = min(r0 + g, N - 1), rb = min(r0 + g + 8, N - 1);
      const uint32_t* wa = seg.w[s_idx] + int64_t{ra} * words_per_row + t * W;
      const uint32_t* wb = seg.w[s_idx] + int64_t{rb} * words_per_row + t * W;
      const T* sc = static_cast<const T*>(seg.scales[s_idx]);
      const T* bi = static_cast<const T*>(seg.biases[s_idx]);
      const int64_t ga = int64_t{ra} * G, gb = int64_t{rb} * G;
      for (int gi0 = wk; gi0 < G; gi0 += ksplit * U) {
        uint32_t ca[U][W], cb[U][W];
        float sa[U], ba[U], sb[U], bb[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int gi = gi0 + u * ksplit;
          if (gi < G) {
            load_words<W>(wa + gi * 4 * W, ca[u]);
            load_words<W>(wb + gi * 4 * W, cb[u]);
            sa[u] = static_cast<float>(sc[ga + gi]);
            ba[u] = static_cast<float>(bi[ga + gi]);
            sb[u] = static_cast<float>(sc[gb + gi]);
            bb[u] = static_cast<float>(bi[gb + gi]);
          }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int gi = gi0 + u * ksplit;
          if (gi >= G) break;
          float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
          if constexpr (BITS == 4) {
            const uint4* xb = reinterpret_cast<const uint4*>(xs) + (gi * W * Mpad + col) * 4 + t;
#pragma unroll
            for (int jw = 0; jw < W; ++jw) {
              const uint4 b = xb[jw * Mpad * 4];
              const uint32_t a = ca[u][jw], c = cb[u][jw];
              Mma<T>::mma(d, nib_pair<T, 0>(a), nib_pair<T, 0>(c), nib_pair<T, 1>(a),
                          nib_pair<T, 1>(c), b.x, b.y);
              Mma<T>::mma(d, nib_pair<T, 2>(a), nib_pair<T, 2>(c), nib_pair<T, 3>(a),
                          nib_pair<T, 3>(c), b.z, b.w);
            }
          } else {
            float h[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            const uint2* xb = reinterpret_cast<const uint2*>(xs) + (gi * W * Mpad + col) * 4 + t;
#pragma unroll
            for (int jw = 0; jw < W; ++jw) {
              const uint2 b = xb[jw * Mpad * 4];
              const uint32_t a = ca[u][jw], c = cb[u][jw];
              // Low nibbles of bytes (0, 2) and (1, 3), then the high ones.
              Mma<T>::mma(d, nib_pair<T, 0>(a), nib_pair<T, 0>(c), nib_pair<T, 2>(a),
                          nib_pair<T, 2>(c), b.x, b.y);
              Mma<T>::mma(h, nib_pair<T, 1>(a), nib_pair<T, 1>(c), nib_pair<T, 3>(a),
                          nib_pair<T, 3>(c), b.x, b.y);
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) d[i] = fmaf(16.0f, h[i], d[i]);
          }
          // D: [0], [1] row g, columns 2t, 2t + 1; [2], [3] row g + 8.
          const float2 sx = reinterpret_cast<const float2*>(sums)[gi * 4 + t];
          acc[0] = fmaf(sa[u], fmaf(-kOff, sx.x, d[0]), fmaf(ba[u], sx.x, acc[0]));
          acc[1] = fmaf(sa[u], fmaf(-kOff, sx.y, d[1]), fmaf(ba[u], sx.y, acc[1]));
          acc[2] = fmaf(sb[u], fmaf(-kOff, sx.x, d[2]), fmaf(bb[u], sx.x, acc[2]));
          acc[3] = fmaf(sb[u], fmaf(-kOff, sx.y, d[3]), fmaf(bb[u], sx.y, acc[3]));
        }
      }
    }
    if (ksplit > 1) {
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
    if (wk == 0 && tile < total_tiles) {
      T* out = static_cast<T*>(seg.out[s_idx]);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int row = r0 + g + (i >= 2 ? 8 : 0), m = 2 * t + (i & 1);
        if (row < N && m < m_count) out[int64_t{m_first + m} * N + row] = static_cast<T>(acc[i]);
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
// memory (also raises the kernel's dynamic shared memory limit past 48 KB
// where needed); cached per kernel and size.
int blocks_per_sm(const void* kernel, size_t smem) {
  static std::mutex mu;
  static std::unordered_map<const void*, std::unordered_map<size_t, int>> cache;
  std::lock_guard<std::mutex> lk(mu);
  if (cache.find(kernel) == cache.end()) {
    // Static (the partial sums) plus dynamic shared memory may pass the 48 KB
    // a launch gets without opting in.
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(kMaxSmem)),
          "QuantizedMatmul: shared memory limit");
  }
  auto& per = cache[kernel];
  if (auto it = per.find(smem); it != per.end()) return it->second;
  int n = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kThreads, smem),
        "QuantizedMatmul: occupancy");
  per[smem] = n < 1 ? 1 : n;
  return per[smem];
}

int padded_rows(int M) {
  const int m = M < kQgemvMaxRows ? M : kQgemvMaxRows;
  int p = 1;
  while (p < m) p *= 2;
  return p;
}

size_t smem_bytes(int K, int group_size, int Mpad) {
  return size_t{2} * K * Mpad + size_t{32} * (K / group_size);
}

template <typename T, int BITS, int GS>
void launch(const Segments& seg, const QmmArgs& a, cudaStream_t stream) {
  const int G = a.K / GS;
  const int tiles = seg.tile_start[seg.count];
  const int Mpad = padded_rows(a.M);
  const int row_blocks = (a.M + kQgemvMaxRows - 1) / kQgemvMaxRows;
  // Split K over more warps while the tiles alone give fewer than ~16 warps
  // per SM and each warp keeps at least two groups.
  int ksplit = 1;
  const int target = sm_count() * 16;
  while (ksplit < kWarps && int64_t{tiles} * ksplit * row_blocks < target && G >= 4 * ksplit) {
    ksplit *= 2;
  }
  const int tiles_per_block = kWarps / ksplit;
  const size_t smem = smem_bytes(a.K, GS, Mpad);
  auto* kernel = qgemv_mma_kernel<T, BITS, GS>;
  const int resident = blocks_per_sm(reinterpret_cast<const void*>(kernel), smem) * sm_count();
  const int needed = (tiles + tiles_per_block - 1) / tiles_per_block;
  const int per_z = row_blocks > 1 ? (resident + row_blocks - 1) / row_blocks : resident;
  const dim3 grid(static_cast<unsigned>(needed < per_z ? needed : per_z), 1,
                  static_cast<unsigned>(row_blocks));
  kernel<<<grid, kThreads, smem, stream>>>(seg, static_cast<const T*>(a.x), a.M, a.K, Mpad, ksplit);
}

template <typename T>
void launch_ts(const Segments& seg, const QmmArgs& a, cudaStream_t stream) {
  const int key = a.bits * 1000 + a.group_size;
  switch (key) {
    case 4032:
      return launch<T, 4, 32>(seg, a, stream);
    case 4064:
      return launch<T, 4, 64>(seg, a, stream);
    case 4128:
      return launch<T, 4, 128>(seg, a, stream);
    case 8032:
      return launch<T, 8, 32>(seg, a, stream);
    case 8064:
      return launch<T, 8, 64>(seg, a, stream);
    default:
      return launch<T, 8, 128>(seg, a, stream);
  }
}

}  // namespace

bool qgemv_mma_supported(const QmmArgs& a, Dtype xdtype) {
  // Scales of x's type (float32 scales promote x to float32 in the op).
  const bool scales_ok = (xdtype == bfloat16 && a.stype == ScaleType::bf16) ||
                         (xdtype == float16 && a.stype == ScaleType::f16);
  return a.transpose && a.mode == QuantizationMode::affine && (a.bits == 4 || a.bits == 8) &&
         (a.group_size == 32 || a.group_size == 64 || a.group_size == 128) && a.biases &&
         a.M >= 1 && a.M <= kQgemvBlockedRows && a.nbatch == 1 && a.K % a.group_size == 0 &&
         scales_ok && (xdtype == bfloat16 || xdtype == float16) &&
         smem_bytes(a.K, a.group_size, padded_rows(a.M)) <= kMaxSmem;
}

void qgemv_mma_grouped(const QmmArgs& a, const QmmGroup* groups, int count, Dtype xdtype,
                       cudaStream_t stream) {
  if (count < 1 || count > kMaxGroupedQmm) {
    throw std::invalid_argument("QuantizedMatmul: the grouped kernel takes 1 to " +
                                std::to_string(kMaxGroupedQmm) + " matrices, got " +
                                std::to_string(count));
  }
  Segments seg{};
  seg.count = count;
  seg.tile_start[0] = 0;
  for (int i = 0; i < count; ++i) {
    seg.w[i] = groups[i].w;
    seg.scales[i] = groups[i].scales;
    seg.biases[i] = groups[i].biases;
    seg.out[i] = groups[i].out;
    seg.N[i] = groups[i].N;
    seg.tile_start[i + 1] = seg.tile_start[i] + (groups[i].N + 15) / 16;
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
