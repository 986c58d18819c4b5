// Sort, argsort, partition and argpartition along one axis: a bitonic sort of
// (value, index) pairs per row, padded to a power of two. Comparing the index
// on ties makes it stable (argsort's contract) and NaNs sort last, as on the
// CPU. Chunks of 2048 pairs sort in shared memory; longer rows (a vocabulary
// for top-p sampling) add the merge steps whose partners are further apart
// through global memory. A full sort is a valid partition, so the
// partitions share it.
#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/sort.h"

namespace mx::cuda {
namespace {

constexpr int64_t kChunk = 2048;  // pairs sorted by one block in shared memory

template <typename K>
__device__ __forceinline__ bool key_nan(K x) {
  if constexpr (std::is_floating_point_v<K>) {
    return x != x;
  } else {
    return false;
  }
}

// complex64 orders by real part, then imaginary part (as on the CPU).
template <typename K>
__device__ __forceinline__ bool key_less(K a, K b) {
  if constexpr (is_complex_v<K>) {
    if (a.re != b.re) return a.re < b.re;
    return a.im < b.im;
  } else {
    return a < b;
  }
}

// Whether (a, ia) orders before (b, ib). Indices >= n are padding, last.
template <typename K>
__device__ __forceinline__ bool before(K a, uint32_t ia, K b, uint32_t ib, uint32_t n) {
  const bool pa = ia >= n, pb = ib >= n;
  if (pa != pb) return pb;
  const bool na = key_nan(a), nb = key_nan(b);
  if (na != nb) return nb;
  if (!na && a != b) return key_less(a, b);
  return ia < ib;
}

// One compare-exchange of the bitonic network at in-row position i (< its
// partner i ^ j); the merge of size k sorts ascending where (i & k) == 0.
template <typename K>
__device__ __forceinline__ void exchange(K* keys, uint32_t* idx, int64_t i, int64_t j, int64_t k,
                                         uint32_t n, int64_t row_pos) {
  const int64_t l = i ^ j;
  const bool up = ((row_pos & k) == 0);
  K a = keys[i], b = keys[l];
  uint32_t ia = idx[i], ib = idx[l];
  if (before(b, ib, a, ia, n) == up) {
    keys[i] = b;
    keys[l] = a;
    idx[i] = ib;
    idx[l] = ia;
  }
}

// Loads rows (strided by `inner` along the axis) into padded pair arrays.
template <typename T, typename K>
__global__ void load_kernel(const T* x, K* keys, uint32_t* idx, int64_t rows, int64_t n,
                            int64_t inner, int64_t p) {
  const int64_t total = rows * p;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; g < total;
       g += step) {
    const int64_t r = g / p, k = g - r * p;
    if (k < n) {
      keys[g] = cast_to<K>(x[(r / inner) * n * inner + (r % inner) + k * inner]);
    } else {
      keys[g] = K(0);
    }
    idx[g] = static_cast<uint32_t>(k);
  }
}

// Sorts (first = true: merges k = 2 .. chunk) or finishes the merge of size k
// for partners closer than the chunk, on chunks of `chunk` pairs in shared
// memory. blockDim.x == chunk / 2.
template <typename K>
__global__ void local_kernel(K* keys, uint32_t* idx, int64_t p, int64_t chunk, int64_t k_only,
                             uint32_t n) {
  extern __shared__ __align__(16) unsigned char smem[];
  K* sk = reinterpret_cast<K*>(smem);
  uint32_t* si = reinterpret_cast<uint32_t*>(sk + chunk);
  const int64_t base = static_cast<int64_t>(blockIdx.x) * chunk;
  const int64_t row_start = (base / p) * p;
  for (int64_t t = threadIdx.x; t < chunk; t += blockDim.x) {
    sk[t] = keys[base + t];
    si[t] = idx[base + t];
  }
  __syncthreads();
  const int64_t k_lo = k_only ? k_only : 2;
  const int64_t k_hi = k_only ? k_only : chunk;
  for (int64_t k = k_lo; k <= k_hi; k <<= 1) {
    for (int64_t j = (k_only ? chunk : k) >> 1; j > 0; j >>= 1) {
      const int64_t t = threadIdx.x;
      // The t-th pair (i, i ^ j) with i having bit j clear.
      const int64_t i = ((t / j) * 2 * j) + (t % j);
      exchange(sk, si, i, j, k, n, base - row_start + i);
      __syncthreads();
    }
  }
  for (int64_t t = threadIdx.x; t < chunk; t += blockDim.x) {
    keys[base + t] = sk[t];
    idx[base + t] = si[t];
  }
}

// One merge step whose partners are j >= chunk apart, over every row.
template <typename K>
__global__ void global_kernel(K* keys, uint32_t* idx, int64_t rows, int64_t p, int64_t j, int64_t k,
                              uint32_t n) {
  const int64_t pairs = rows * (p / 2);
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < pairs;
       t += step) {
    const int64_t r = t / (p / 2), q = t - r * (p / 2);
    const int64_t i = ((q / j) * 2 * j) + (q % j);
    exchange(keys + r * p, idx + r * p, i, j, k, n, i);
  }
}

template <typename T, typename K, bool kIndices>
__global__ void store_kernel(const K* keys, const uint32_t* idx, T* vals, uint32_t* out_idx,
                             int64_t rows, int64_t n, int64_t inner, int64_t p) {
  const int64_t total = rows * n;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; g < total;
       g += step) {
    const int64_t r = g / n, k = g - r * n;
    const int64_t o = (r / inner) * n * inner + (r % inner) + k * inner;
    if constexpr (kIndices) {
      out_idx[o] = idx[r * p + k];
    } else {
      vals[o] = cast_to<T>(keys[r * p + k]);
    }
  }
}

template <bool kIndices>
void sort_gpu(Primitive& prim, int axis_arg, const std::vector<array>& inputs, array& out) {
  const Stream& s = prim.stream();
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  array x = ensure_row_contiguous(inputs[0], s);
  const int axis = axis_arg < 0 ? axis_arg + static_cast<int>(x.ndim()) : axis_arg;
  const int64_t n = x.shape(axis);
  if (n > (int64_t{1} << 31)) {
    throw std::invalid_argument(std::string("[") + prim.name() + "] rows of " + std::to_string(n) +
                                " elements exceed the GPU kernel's 2^31");
  }
  int64_t inner = 1;
  for (size_t d = axis + 1; d < x.ndim(); ++d) inner *= x.shape(static_cast<int>(d));
  const int64_t rows = static_cast<int64_t>(x.size()) / n;
  int64_t p = 1;
  while (p < n) p <<= 1;
  p = std::max<int64_t>(p, 2);
  const int64_t chunk = std::min(p, kChunk);
  cudaStream_t cs = stream_of(prim);
  dispatch_any(x.dtype(), prim.name(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using K = compute_t<T>;
    const int64_t key_bytes = rows * p * static_cast<int64_t>(sizeof(K));
    if (key_bytes > INT32_MAX) {
      throw std::invalid_argument(std::string("[") + prim.name() + "] " + std::to_string(rows) +
                                  " rows of " + std::to_string(n) +
                                  " elements exceed the GPU kernel's 2 GiB of scratch");
    }
    // Scratch pairs: the keys as bytes (their type is the kernel's), the indices.
    array keys({static_cast<int32_t>(key_bytes)}, uint8, nullptr, {});
    array idx({static_cast<int32_t>(rows * p)}, uint32, nullptr, {});
    allocate_row_contiguous(keys);
    allocate_row_contiguous(idx);
    keep_until_done(s, keys);
    keep_until_done(s, idx);
    K* kp = reinterpret_cast<K*>(keys.data<char>());
    uint32_t* ip = idx.data<uint32_t>();
    const uint32_t nn = static_cast<uint32_t>(n);
    load_kernel<T, K><<<grid_for(rows * p), 256, 0, cs>>>(x.data<T>(), kp, ip, rows, n, inner, p);
    const unsigned blocks = static_cast<unsigned>(rows * p / chunk);
    const unsigned threads = static_cast<unsigned>(chunk / 2);
    const size_t smem = static_cast<size_t>(chunk) * (sizeof(K) + sizeof(uint32_t));
    local_kernel<K><<<blocks, threads, smem, cs>>>(kp, ip, p, chunk, 0, nn);
    for (int64_t k = chunk * 2; k <= p; k <<= 1) {
      for (int64_t j = k / 2; j >= chunk; j >>= 1) {
        global_kernel<K><<<grid_for(rows * p / 2), 256, 0, cs>>>(kp, ip, rows, p, j, k, nn);
      }
      local_kernel<K><<<blocks, threads, smem, cs>>>(kp, ip, p, chunk, k, nn);
    }
    const int64_t total = rows * n;
    if constexpr (kIndices) {
      store_kernel<T, K, true><<<grid_for(total), 256, 0, cs>>>(
          kp, ip, nullptr, out.data<uint32_t>(), rows, n, inner, p);
    } else {
      store_kernel<T, K, false>
          <<<grid_for(total), 256, 0, cs>>>(kp, ip, out.data<T>(), nullptr, rows, n, inner, p);
    }
  });
  check_launch(prim.name());
}

void sort_values_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  sort_gpu<false>(p, static_cast<Sort&>(p).axis(), in, out[0]);
}
void argsort_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  sort_gpu<true>(p, static_cast<ArgSort&>(p).axis(), in, out[0]);
}
void partition_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  sort_gpu<false>(p, static_cast<Partition&>(p).axis(), in, out[0]);
}
void argpartition_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  sort_gpu<true>(p, static_cast<ArgPartition&>(p).axis(), in, out[0]);
}

const Register<Sort> r_sort(&sort_values_gpu);
const Register<ArgSort> r_argsort(&argsort_gpu);
const Register<Partition> r_partition(&partition_gpu);
const Register<ArgPartition> r_argpartition(&argpartition_gpu);

}  // namespace
}  // namespace mx::cuda
