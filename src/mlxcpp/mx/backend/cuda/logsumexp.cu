// CUDA kernel of the fused LogSumExp over the last axis. Each thread keeps an
// online (max, sum of exp(x - max)) over its share of a row, read in 16-byte
// vectors where the row is aligned (a few scalar loads at either end where it
// is not); the block merges its threads' states through warp shuffles. Rows
// too few to fill the GPU (a decode step's [1, 262208] or [64, 262208]
// log-probabilities) are cut into chunks, one block each, for about two
// blocks per SM; the chunks leave their states in a scratch buffer and one
// small kernel merges them. Both launches are plain stream work on a buffer
// from the allocator, so a captured CUDA graph replays them as they are.
#include <algorithm>
#include <cmath>

#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/reduce.h"

namespace mx::cuda {
namespace {

// float for float, bfloat16 and float16; double for double.
template <typename T>
using lse_acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Shifted arguments are <= 0, where __expf's error (a few ulp, growing with
// |x| for results far below the max's own exp(0) = 1) does not show in the sum.
__device__ __forceinline__ float exp_shifted(float x) { return __expf(x); }
__device__ __forceinline__ double exp_shifted(double x) { return exp(x); }

// The state of what a thread (warp, block) has read: max m and sum s of
// exp(x - m). m is NaN once a NaN was read (and stays so: every comparison
// with it fails); with m infinite the sum is moot (the answer is m).
template <typename A>
struct Lse {
  A m;
  A s;
};

template <typename A>
__device__ __forceinline__ Lse<A> lse_empty() {
  return {A(-INFINITY), A(0)};
}

// Folds in K values: one rescale for their max, then K exponentials.
template <int K, typename A>
__device__ __forceinline__ void lse_push(Lse<A>& st, const A (&v)[K]) {
  A vm = v[0];
  bool nan = isnan(v[0]);
#pragma unroll
  for (int k = 1; k < K; ++k) {
    nan = nan || isnan(v[k]);
    vm = v[k] > vm ? v[k] : vm;
  }
  if (nan) {
    st.m = A(NAN);
    return;
  }
  if (vm > st.m) {
    st.s *= exp_shifted(st.m - vm);  // exp(-inf) = 0 when nothing was read yet
    st.m = vm;
  }
  if (isfinite(st.m)) {
#pragma unroll
    for (int k = 0; k < K; ++k) st.s += exp_shifted(v[k] - st.m);
  }
}

template <typename A>
__device__ __forceinline__ Lse<A> lse_merge(Lse<A> a, Lse<A> b) {
  if (isnan(a.m) || isnan(b.m)) return {A(NAN), A(0)};
  const A m = b.m > a.m ? b.m : a.m;
  if (!isfinite(m)) return {m, A(0)};
  return {m, a.s * exp_shifted(a.m - m) + b.s * exp_shifted(b.m - m)};
}

template <typename A>
__device__ __forceinline__ Lse<A> warp_merge(Lse<A> st) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    Lse<A> other{__shfl_down_sync(0xffffffffu, st.m, o), __shfl_down_sync(0xffffffffu, st.s, o)};
    st = lse_merge(st, other);
  }
  return st;
}

// The block's merged state, valid in thread 0.
template <typename A>
__device__ Lse<A> block_merge(Lse<A> st) {
  __shared__ A sm[32], ss[32];
  st = warp_merge(st);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // the shared arrays may still be read for the previous row
  if (lane == 0) {
    sm[warp] = st.m;
    ss[warp] = st.s;
  }
  __syncthreads();
  if (warp == 0) {
    const int nwarps = (blockDim.x + 31) >> 5;
    st = lane < nwarps ? Lse<A>{sm[lane], ss[lane]} : lse_empty<A>();
    st = warp_merge(st);
  }
  return st;
}

// NaN wins, then an infinite max (+inf, or -inf for a row of -inf), else m + log(s).
template <typename A>
__device__ __forceinline__ A lse_finalize(Lse<A> st) {
  if (isnan(st.m) || !isfinite(st.m)) return st.m;
  return st.m + log(st.s);
}

// One block per row (grid-stride), or (split: part_m given) block (c, r) takes
// positions [c * chunk, (c + 1) * chunk) of row r and leaves its state in
// part_m / part_s[r * gridDim.x + c]. Rows start at outer.offset(0, r) and
// are contiguous.
template <typename T>
__global__ void logsumexp_kernel(const T* x, Layout<1> outer, int64_t rows, int64_t n,
                                 int64_t chunk, T* y, lse_acc_t<T>* part_m, lse_acc_t<T>* part_s) {
  using A = lse_acc_t<T>;
  constexpr int V = 16 / sizeof(T);
  const bool split = part_m != nullptr;
  const int64_t j0 = split ? blockIdx.x * chunk : 0;
  const int64_t j1 = split ? (j0 + chunk < n ? j0 + chunk : n) : n;
  for (int64_t r = split ? blockIdx.y : blockIdx.x; r < rows; r += split ? rows : gridDim.x) {
    const T* xr = x + outer.offset(0, r);
    // [a0, a1): the 16-byte-aligned whole vectors of [j0, j1).
    const auto addr = reinterpret_cast<uintptr_t>(xr + j0);
    const int64_t head = static_cast<int64_t>((16 - (addr & 15)) & 15) / sizeof(T);
    const int64_t a0 = j0 + head < j1 ? j0 + head : j1;
    const int64_t nvec = (j1 - a0) / V;
    const int64_t a1 = a0 + nvec * V;
    Lse<A> st = lse_empty<A>();
    for (int64_t j = j0 + threadIdx.x; j < a0; j += blockDim.x) {
      const A v[1] = {cast_to<A>(xr[j])};
      lse_push(st, v);
    }
    for (int64_t j = a1 + threadIdx.x; j < j1; j += blockDim.x) {
      const A v[1] = {cast_to<A>(xr[j])};
      lse_push(st, v);
    }
    const uint4* vp = reinterpret_cast<const uint4*>(xr + a0);
#pragma unroll 4
    for (int64_t q = threadIdx.x; q < nvec; q += blockDim.x) {
      const uint4 raw = vp[q];
      const T* e = reinterpret_cast<const T*>(&raw);
      A v[V];
#pragma unroll
      for (int k = 0; k < V; ++k) v[k] = cast_to<A>(e[k]);
      lse_push(st, v);
    }
    st = block_merge(st);
    if (threadIdx.x == 0) {
      if (split) {
        part_m[r * gridDim.x + blockIdx.x] = st.m;
        part_s[r * gridDim.x + blockIdx.x] = st.s;
      } else {
        y[r] = cast_to<T>(lse_finalize(st));
      }
    }
  }
}

// One warp per row merges the `parts` chunk states of a split row.
template <typename T>
__global__ void logsumexp_merge_kernel(const lse_acc_t<T>* part_m, const lse_acc_t<T>* part_s, T* y,
                                       int64_t rows, int parts) {
  using A = lse_acc_t<T>;
  const int64_t r = blockIdx.x;
  if (r >= rows) return;
  Lse<A> st = lse_empty<A>();
  for (int c = threadIdx.x; c < parts; c += 32) {
    st = lse_merge(st, Lse<A>{part_m[r * parts + c], part_s[r * parts + c]});
  }
  st = warp_merge(st);
  if (threadIdx.x == 0) y[r] = cast_to<T>(lse_finalize(st));
}

int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev),
          "cudaDeviceGetAttribute(multiprocessors)");
    return v > 0 ? v : 1;
  }();
  return n;
}

// Threads for `units` 16-byte vectors per block: a power of two in [32, 256].
unsigned threads_for_units(int64_t units) {
  unsigned t = 32;
  while (t < 256 && static_cast<int64_t>(t) < units) t <<= 1;
  return t;
}

void logsumexp_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  const array& in_arr = inputs[0];
  array& out = outputs[0];
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  const int64_t n = in_arr.shape(-1);
  const Stream& st = p.stream();
  // Rows are read in place whatever the leading strides; a strided last axis
  // is made contiguous first.
  array in = (n == 1 || in_arr.strides().back() == 1) ? in_arr : ensure_row_contiguous(in_arr, st);
  Shape lead(in.shape().begin(), in.shape().end() - 1);
  Strides lead_strides(in.strides().begin(), in.strides().end() - 1);
  if (lead.empty()) {
    lead.push_back(1);
    lead_strides.push_back(0);
  }
  const Layout<1> outer = make_layout<1>(lead, {lead_strides}, "logsumexp");
  const int64_t rows = static_cast<int64_t>(out.size());

  // Few rows: chunks of at least kMinChunk values (a multiple of 64, so most
  // chunks start on a 16-byte boundary when the row does), ~2 blocks per SM.
  constexpr int64_t kMinChunk = 2048;
  const int64_t busy = 2 * static_cast<int64_t>(sm_count());
  int64_t parts = 1;
  if (rows < busy && n >= 2 * kMinChunk) {
    parts = std::clamp<int64_t>(std::min(n / kMinChunk, busy / rows), 1, 1024);
  }
  int64_t chunk = n;
  if (parts > 1) {
    chunk = ((n + parts - 1) / parts + 63) / 64 * 64;
    parts = (n + chunk - 1) / chunk;
  }

  dispatch_float(in.dtype(), "logsumexp", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = lse_acc_t<T>;
    constexpr int64_t V = 16 / sizeof(T);
    const unsigned threads = threads_for_units((chunk + V - 1) / V);
    if (parts == 1) {
      const auto grid = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{1} << 20));
      logsumexp_kernel<T><<<grid, threads, 0, stream_of(p)>>>(in.data<T>(), outer, rows, n, chunk,
                                                              out.data<T>(), nullptr, nullptr);
      return;
    }
    const auto count = static_cast<int32_t>(rows * parts);
    array scratch({2 * count}, dtype_of<A>(), nullptr, {});
    allocate_row_contiguous(scratch);
    keep_until_done(st, scratch);
    A* part_m = scratch.data<A>();
    A* part_s = part_m + count;
    const dim3 blocks(static_cast<unsigned>(parts), static_cast<unsigned>(rows));
    logsumexp_kernel<T><<<blocks, threads, 0, stream_of(p)>>>(in.data<T>(), outer, rows, n, chunk,
                                                              out.data<T>(), part_m, part_s);
    logsumexp_merge_kernel<T><<<static_cast<unsigned>(rows), 32, 0, stream_of(p)>>>(
        part_m, part_s, out.data<T>(), rows, static_cast<int>(parts));
  });
  check_launch("logsumexp");
}

const Register<LogSumExp> r_logsumexp(&logsumexp_gpu);

}  // namespace
}  // namespace mx::cuda
