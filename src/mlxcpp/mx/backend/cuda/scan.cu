// Scans (cumsum, cumprod, cummax, cummin): one block per row walks the row in
// chunks of its size, scanning each chunk in shared memory and carrying the
// running value into the next. 16-bit floats accumulate in float32.
#include <cuda/std/limits>

#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/reduce.h"

namespace mx::cuda {
namespace {

constexpr int kScanThreads = 256;

template <typename C>
__device__ __forceinline__ bool is_nan(C x) {
  if constexpr (std::is_floating_point_v<C>) {
    return x != x;
  } else {
    return false;
  }
}

template <typename C>
__device__ __forceinline__ C real_scan_op(Scan::ReduceType t, C a, C b) {
  switch (t) {
    case Scan::Sum:
      if constexpr (std::is_same_v<C, bool>) {
        return a || b;
      } else {
        return a + b;
      }
    case Scan::Prod:
      if constexpr (std::is_same_v<C, bool>) {
        return a && b;
      } else {
        return a * b;
      }
    case Scan::Max:
      return (is_nan(a) || a > b) ? a : b;  // NaN propagates
    default:
      return (is_nan(a) || a < b) ? a : b;
  }
}

template <typename C>
__device__ __forceinline__ C real_scan_identity(Scan::ReduceType t) {
  switch (t) {
    case Scan::Sum:
      return C(0);
    case Scan::Prod:
      return C(1);
    case Scan::Max:
      if constexpr (std::is_floating_point_v<C>) {
        return -::cuda::std::numeric_limits<C>::infinity();
      } else {
        return ::cuda::std::numeric_limits<C>::lowest();
      }
    default:
      if constexpr (std::is_floating_point_v<C>) {
        return ::cuda::std::numeric_limits<C>::infinity();
      } else {
        return ::cuda::std::numeric_limits<C>::max();
      }
  }
}

// complex64 sums and multiplies; it has no order, so cummax and cummin are
// refused before the launch.
template <typename C>
__device__ __forceinline__ C scan_op(Scan::ReduceType t, C a, C b) {
  if constexpr (is_complex_v<C>) {
    return t == Scan::Prod ? a * b : a + b;
  } else {
    return real_scan_op(t, a, b);
  }
}

template <typename C>
__device__ __forceinline__ C scan_identity(Scan::ReduceType t) {
  if constexpr (is_complex_v<C>) {
    return C(t == Scan::Prod ? 1.0f : 0.0f);
  } else {
    return real_scan_identity<C>(t);
  }
}

// x and y row-contiguous with shape (outer, n, inner); row r is
// (r / inner, r % inner).
template <typename T>
__global__ void scan_kernel(const T* x, T* y, int64_t rows, int64_t n, int64_t inner,
                            Scan::ReduceType type, bool reverse, bool inclusive) {
  using C = compute_t<T>;
  __shared__ C vals[kScanThreads];
  const int t = threadIdx.x;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t base = (r / inner) * n * inner + (r % inner);
    C carry = scan_identity<C>(type);
    for (int64_t c0 = 0; c0 < n; c0 += kScanThreads) {
      const int64_t k = c0 + t;
      const int64_t pos = reverse ? n - 1 - k : k;
      C v = k < n ? cast_to<C>(x[base + pos * inner]) : scan_identity<C>(type);
      vals[t] = v;
      __syncthreads();
      // Hillis-Steele inclusive scan of the chunk.
      for (int off = 1; off < kScanThreads; off <<= 1) {
        C other = t >= off ? vals[t - off] : scan_identity<C>(type);
        __syncthreads();
        vals[t] = scan_op(type, other, vals[t]);
        __syncthreads();
      }
      if (k < n) {
        C before = t == 0 ? carry : scan_op(type, carry, vals[t - 1]);
        C res = inclusive ? scan_op(type, carry, vals[t]) : before;
        y[base + pos * inner] = cast_to<T>(res);
      }
      carry = scan_op(type, carry, vals[kScanThreads - 1]);
      __syncthreads();
    }
  }
}

void scan_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& sc = static_cast<Scan&>(p);
  array& out = outputs[0];
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  // The input in the output's dtype, row-contiguous.
  array x = inputs[0];
  if (x.dtype() != out.dtype() || !x.flags().row_contiguous) {
    array tmp(x.shape(), out.dtype(), nullptr, {});
    allocate_row_contiguous(tmp);
    copy_into(x, tmp, p.stream());
    keep_until_done(p.stream(), tmp);
    x = tmp;
  }
  const int axis = sc.axis() < 0 ? sc.axis() + static_cast<int>(x.ndim()) : sc.axis();
  const int64_t n = x.shape(axis);
  int64_t inner = 1;
  for (size_t d = axis + 1; d < x.ndim(); ++d) inner *= x.shape(static_cast<int>(d));
  const int64_t rows = static_cast<int64_t>(x.size()) / n;
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{1} << 20));
  if (out.dtype() == complex64 && (sc.type() == Scan::Max || sc.type() == Scan::Min)) {
    throw std::invalid_argument(std::string("[") + (sc.type() == Scan::Max ? "cummax" : "cummin") +
                                "] does not support complex64");
  }
  dispatch_any(out.dtype(), sc.name(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    scan_kernel<T><<<grid, kScanThreads, 0, stream_of(p)>>>(
        x.data<T>(), out.data<T>(), rows, n, inner, sc.type(), sc.reverse(), sc.inclusive());
  });
  check_launch(sc.name());
}

const Register<Scan> r_scan(&scan_gpu);

}  // namespace
}  // namespace mx::cuda
