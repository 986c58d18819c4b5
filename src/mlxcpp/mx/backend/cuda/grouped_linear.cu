// The few-row product kernel (gemv.h) and fast::grouped_linear's GPU kernel on
// it. A decode step's projections read every weight once per token, so the
// kernel is judged by the bandwidth it reaches: G threads share each output's
// dot product (G grows while the outputs are too few to fill the GPU, i.e.
// split-K within a block, reduced through shared memory), each thread keeps
// several 16-byte weight loads in flight that bypass L1, and x, small and
// read by every block, comes through the L1 cache. One launch covers q, k and
// v (or gate and up): a decode step is also bound by the host's launches.
// Small matrices (o_proj: 10 MB, 3.5 us at 3 TB/s) lose much of their time to
// the kernel's start and drain, so each block first asks L2 for its weight
// rows in bulk, and the kernel is launched as a programmatic dependent: it
// starts, and prefetches, while the previous kernel finishes. Matrices of many
// rows (gate and up) go to cuBLASLt instead (grouped_linear_gpu).
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "mlxcpp/mx/backend/cuda/gemv.h"
#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/backend/cuda/matmul_generic.h"
#include "mlxcpp/mx/primitives/fast.h"

namespace mx::cuda {
namespace {

constexpr int kBlock = 256;

struct GemvItem {
  const void* w;
  int64_t ldw;        // elements between weight rows
  int64_t row_start;  // first output of this matrix among the launch's outputs
  void* y;
  int64_t ldy;  // elements between the outputs of consecutive rows of x
};

struct GemvArgs {
  GemvItem items[kGemvMaxMatrices];
  int n_items;
  int64_t total_rows;  // outputs per row of x, all matrices together
  int K;
  int rows;       // rows of x
  int log2g;      // log2 of the threads per output
  bool prefetch;  // bulk-prefetch each weight row into L2 first (aligned rows only)
  const void* x;  // (rows, K) row-contiguous
};

template <typename T>
using gemv_acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// A 16-byte weight load that leaves L1 to x: each weight is read exactly once.
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// The 16 / sizeof(T) elements of a 16-byte chunk in the accumulator type.
template <typename T, typename A>
__device__ __forceinline__ void unpack16(const uint4& v, A* out) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    // bfloat16 is the high half of a float32.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = __uint_as_float(u[i] << 16);
      out[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
    }
  } else if constexpr (std::is_same_v<T, __half>) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      __half2 h;
      static_assert(sizeof(h) == sizeof(u[i]));
      memcpy(&h, &u[i], sizeof(h));
      const float2 f = __half22float2(h);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  } else if constexpr (std::is_same_v<T, float>) {
#pragma unroll
    for (int i = 0; i < 4; ++i) out[i] = __uint_as_float(u[i]);
  } else {
    static_assert(std::is_same_v<T, double>);
    out[0] = __hiloint2double(static_cast<int>(u[1]), static_cast<int>(u[0]));
    out[1] = __hiloint2double(static_cast<int>(u[3]), static_cast<int>(u[2]));
  }
}

// R: rows of x the accumulators hold (g.rows <= R). VEC: weight rows and x
// rows start 16-byte aligned, so whole 16-byte chunks are loaded.
template <typename T, int R, bool VEC>
__global__ void __launch_bounds__(kBlock, 3) gemv_kernel(GemvArgs g) {
  using A = gemv_acc_t<T>;
  constexpr int kVel = 16 / sizeof(T);
  // Loads in flight per thread: enough to cover the memory latency with a
  // few warps per SM.
  constexpr int kUnroll = 8;
  const int G = 1 << g.log2g;
  const int t = threadIdx.x & (G - 1);
  const int64_t out_row =
      static_cast<int64_t>(blockIdx.x) * (kBlock >> g.log2g) + (threadIdx.x >> g.log2g);
  // Whole warps share an output (G >= 32), so `active` is warp-uniform.
  const bool active = out_row < g.total_rows;
  A acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = A(0);
  // The output's matrix, selected with static indices: a dynamically indexed
  // parameter array would be copied to local memory.
  const void* wp = g.items[0].w;
  void* yp = g.items[0].y;
  int64_t ldw = g.items[0].ldw, ldy = g.items[0].ldy, row_start = 0;
#pragma unroll
  for (int i = 1; i < kGemvMaxMatrices; ++i) {
    if (i < g.n_items && out_row >= g.items[i].row_start) {
      wp = g.items[i].w;
      yp = g.items[i].y;
      ldw = g.items[i].ldw;
      ldy = g.items[i].ldy;
      row_start = g.items[i].row_start;
    }
  }
  const int64_t n = out_row - row_start;
  const T* x = static_cast<const T*>(g.x);
  const int K = g.K;
  const T* w = static_cast<const T*>(wp) + n * ldw;
  if constexpr (VEC) {
    // Only a hint, and L2 is where the device's writes meet: should the kernel
    // this one overlaps still write the weights, L2 holds its values by the
    // time the loads below (after the wait) read them.
    if (g.prefetch && active && t == 0 && K >= kVel) {
      l2_prefetch(w, static_cast<uint32_t>(K / kVel) * 16u);  // the row: its DRAM reads start now
    }
  }
  // Programmatic dependent launch: the next kernel may start now; this one waits for the
  // previous kernel's writes.
  allow_dependent_launch();
  wait_for_prerequisites();
  if (active) {
    int k_tail = 0;
    if constexpr (VEC) {
      const int nv = K / kVel;
      const uint4* wv = reinterpret_cast<const uint4*>(w);
      for (int c0 = t; c0 < nv; c0 += kUnroll * G) {
        uint4 wb[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          if (c0 + u * G < nv) wb[u] = load_stream(wv + c0 + u * G);
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int c = c0 + u * G;
          if (c < nv) {
            A wf[kVel];
            unpack16<T>(wb[u], wf);
#pragma unroll
            for (int r = 0; r < R; ++r) {
              if (r < g.rows) {
                const uint4 xb =
                    __ldg(reinterpret_cast<const uint4*>(x + static_cast<int64_t>(r) * K) + c);
                A xf[kVel];
                unpack16<T>(xb, xf);
#pragma unroll
                for (int j = 0; j < kVel; ++j) acc[r] = fma(wf[j], xf[j], acc[r]);
              }
            }
          }
        }
      }
      k_tail = nv * kVel;
    }
    // Elements past the last whole chunk (or all of them for unaligned rows).
    for (int k = k_tail + t; k < K; k += G) {
      const A wk = cast_to<A>(w[k]);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r < g.rows) acc[r] = fma(wk, cast_to<A>(x[static_cast<int64_t>(r) * K + k]), acc[r]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
  }
  if (G > 32) {
    // The G / 32 warps of an output add their sums, in warp order.
    __shared__ A part[kBlock / 32][R];
    const int warp = threadIdx.x >> 5;
    if ((threadIdx.x & 31) == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) part[warp][r] = acc[r];
    }
    __syncthreads();
    if (t == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        A s = part[warp][r];
        for (int i = 1; i < (G >> 5); ++i) s += part[warp + i][r];
        acc[r] = s;
      }
    }
  }
  if (active && t == 0) {
    T* y = static_cast<T*>(yp);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r < g.rows) y[static_cast<int64_t>(r) * ldy + n] = cast_to<T>(acc[r]);
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();
      return 132;
    }
    return v;
  }();
  return n;
}

bool pdl_enabled() {
  static const bool on = !switched_off("MLXCPP_GEMV_PDL");
  return on;
}

template <typename T, int R, bool VEC>
void launch(const GemvArgs& g, unsigned blocks, bool overlap, cudaStream_t s) {
  if (!overlap) {
    gemv_kernel<T, R, VEC><<<blocks, kBlock, 0, s>>>(g);
    return;
  }
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(kBlock);
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  check(cudaLaunchKernelEx(&cfg, gemv_kernel<T, R, VEC>, g), "gemv");
}

template <typename T, int R>
void launch_rows(const GemvArgs& g, bool vec, unsigned blocks, bool overlap, cudaStream_t s) {
  if (vec) {
    launch<T, R, true>(g, blocks, overlap, s);
  } else {
    launch<T, R, false>(g, blocks, overlap, s);
  }
}

}  // namespace

int gemv_threads_per_row(Dtype t, int64_t total_rows, int K) {
  const int64_t vel = 16 / static_cast<int64_t>(size_of(t));
  const int64_t chunks = (K + vel - 1) / vel;
  // More threads per output while the outputs fill fewer than about two waves
  // of resident threads and each thread has more than one unrolled batch of
  // loads (8 chunks) of its row. Measured on Gemma 3 4B's shapes (H100, H200:
  // bench/gpu/gemv_bench.cu): o_proj (256 chunks a row) is fastest at 32
  // threads, qkv (320) at 64, down (1280) at 256, gate/up and the LM head
  // (enough rows) at 32.
  const int64_t target = static_cast<int64_t>(sm_count()) * 2048 * 2;
  int G = 32;
  while (G < kBlock && total_rows * G < target && chunks > 8 * static_cast<int64_t>(G)) G *= 2;
  return G;
}

void gemv(Dtype t, const void* x, int rows, int K, const GemvMatrix* mats, int n_mats,
          cudaStream_t s, const GemvOptions& opt) {
  if (rows < 1 || rows > kGemvMaxRows || K < 1 || n_mats < 1 || n_mats > kGemvMaxMatrices) {
    throw std::invalid_argument("[gemv] takes 1.." + std::to_string(kGemvMaxRows) +
                                " rows of x, K >= 1 and 1.." + std::to_string(kGemvMaxMatrices) +
                                " matrices; got rows " + std::to_string(rows) + ", K " +
                                std::to_string(K) + ", " + std::to_string(n_mats) + " matrices");
  }
  const size_t esize = size_of(t);
  GemvArgs g{};
  g.K = K;
  g.rows = rows;
  g.x = x;
  bool vec = aligned16(x) && (rows == 1 || (static_cast<size_t>(K) * esize) % 16 == 0);
  int64_t total = 0;
  for (int i = 0; i < n_mats; ++i) {
    const GemvMatrix& m = mats[i];
    if (m.n <= 0) continue;
    GemvItem& item = g.items[g.n_items++];
    item.w = m.w;
    item.ldw = m.n == 1 ? K : m.ldw;
    item.row_start = total;
    item.y = m.y;
    item.ldy = m.ldy;
    vec = vec && aligned16(m.w) && (static_cast<size_t>(item.ldw) * esize) % 16 == 0;
    total += m.n;
  }
  if (total == 0) return;
  g.total_rows = total;
  int G = opt.threads_per_row ? opt.threads_per_row : gemv_threads_per_row(t, total, K);
  if (G != 32 && G != 64 && G != 128 && G != 256) {
    throw std::invalid_argument("[gemv] threads_per_row must be 32, 64, 128 or 256, got " +
                                std::to_string(G));
  }
  g.log2g = __builtin_ctz(static_cast<unsigned>(G));
  g.prefetch = opt.prefetch != 0;
  const bool overlap =
      opt.overlap < 0 ? pdl_enabled() && is_sm90_or_later() : opt.overlap > 0 && is_sm90_or_later();
  const int64_t per_block = kBlock / G;
  const auto blocks = static_cast<unsigned>((total + per_block - 1) / per_block);
  dispatch_float(t, "gemv", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (rows == 1) {
      launch_rows<T, 1>(g, vec, blocks, overlap, s);
    } else {
      launch_rows<T, 2>(g, vec, blocks, overlap, s);
    }
  });
  check_launch("gemv");
}

namespace {

void grouped_linear_gpu(Primitive& p, const std::vector<array>& inputs,
                        std::vector<array>& outputs) {
  const array& x0 = inputs[0];
  const int K = x0.shape(-1);
  if (x0.size() != static_cast<size_t>(K)) {
    throw std::invalid_argument("[grouped_linear] the GPU kernel takes one row of x, got shape " +
                                shape_str(x0.shape()));
  }
  const Dtype t = x0.dtype();
  std::vector<array> ws;
  for (size_t i = 1; i < inputs.size(); ++i) {
    array w = inputs[i];
    if (w.dtype() != t) {
      throw std::invalid_argument("[grouped_linear] weight dtype " + dtype_name(w.dtype()) +
                                  " differs from x's " + dtype_name(t));
    }
    const int N = w.shape(0);
    if (!(w.strides()[1] == 1 && (N <= 1 || w.strides()[0] >= K))) {
      w = ensure_row_contiguous(w, p.stream());
    }
    ws.push_back(std::move(w));
    allocate_row_contiguous(outputs[i - 1]);
  }
  if (K == 0) {
    for (auto& y : outputs) {
      if (y.size() > 0) cudaMemsetAsync(y.data<char>(), 0, y.nbytes(), stream_of(p));
    }
    check_launch("grouped_linear");
    return;
  }
  // One row: contiguous unless x is a strided view (copying it is cheap).
  const array x = x0.ndim() == 0 || x0.strides().back() == 1 || K == 1
                      ? x0
                      : ensure_row_contiguous(x0, p.stream());
  // Matrices of 8192 rows or more go through cuBLASLt (matmul's path): its
  // one-row algorithm streams Gemma 3 4B's gate and up projections (10240 x
  // 2560) at 3.7 TB/s on an H200 where this kernel reaches 3.0 (28.4 against
  // 34.5 us; on an H100 the two were even), and the 4B's decode went 289.8 /
  // 291.0 -> 295.5 / 294.7 tok/s; smaller ones (o, down, q/k/v) were no
  // faster there (293.2 / 293.3 with o and down too). MLXCPP_GEMV_LT_ROWS=N
  // moves the threshold, 0 keeps every matrix here.
  static const int64_t lt_rows = [] {
    const char* e = std::getenv("MLXCPP_GEMV_LT_ROWS");
    return e ? std::atoll(e) : int64_t{8192};
  }();
  std::vector<size_t> ours;
  for (size_t i = 0; i < ws.size(); ++i) {
    const array& w = ws[i];
    const int N = w.shape(0);
    if (lt_rows > 0 && N >= lt_rows && t != float64) {
      const int64_t ldw = N <= 1 ? K : w.strides()[0];
      array xa(Shape{1, K}, t, nullptr, {});
      xa.copy_shared_buffer(x, Strides{K, 1}, {true, true, true}, static_cast<size_t>(K));
      array wt(Shape{K, N}, t, nullptr, {});
      wt.copy_shared_buffer(w, Strides{1, ldw}, {ldw == K, false, ldw == K}, w.data_size());
      array ya(Shape{1, N}, t, nullptr, {});
      ya.copy_shared_buffer(outputs[i], Strides{N, 1}, {true, true, true}, static_cast<size_t>(N));
      cublaslt_product(p, xa, wt, ya);
    } else {
      ours.push_back(i);
    }
  }
  for (size_t base = 0; base < ours.size(); base += kGemvMaxMatrices) {
    GemvMatrix mats[kGemvMaxMatrices];
    int n = 0;
    for (size_t j = base; j < ours.size() && j < base + kGemvMaxMatrices; ++j) {
      const size_t i = ours[j];
      const array& w = ws[i];
      const int N = w.shape(0);
      mats[n++] = {w.data<char>(), N, N <= 1 ? K : w.strides()[0], outputs[i].data<char>(), N};
    }
    gemv(t, x.data<char>(), 1, K, mats, n, stream_of(p));
  }
}

const Register<fast::GroupedLinear> r_grouped_linear(&grouped_linear_gpu);

}  // namespace
}  // namespace mx::cuda
