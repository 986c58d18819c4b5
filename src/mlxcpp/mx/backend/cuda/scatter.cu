// Scatter (put_along_axis, index updates, scatter_add and its kin): the output
// starts as a copy of the input, then one thread per update element combines
// it into its place. Sum / prod / max / min combine atomically (a
// compare-and-swap on the aligned 32-bit word holding the element), so
// duplicate indices accumulate as on the CPU; with no reduction the last
// index tuple writing a place wins, as on the CPU.
#include "mlxcpp/mx/backend/cuda/indexing.h"
#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/backend/cuda/upload.h"
#include "mlxcpp/mx/primitives/indexing.h"

namespace mx::cuda {
namespace {

using ReduceType = Scatter::ReduceType;

struct ScatterParams {
  int ndim = 0;
  int64_t upd_total = 1;  // elements of one update window
  int32_t out_shape[kMaxDims] = {};
  int64_t out_strides[kMaxDims] = {};
  int32_t window[kMaxDims] = {};
  int index_of[kMaxDims] = {};  // which index array moves dim d (-1: none)
  const int64_t* idx[kMaxDims] = {};
};

template <typename T>
__device__ __forceinline__ T combine(ReduceType r, T a, T b) {
  using C = compute_t<T>;
  const C x = cast_to<C>(a), y = cast_to<C>(b);
  switch (r) {
    case ReduceType::Sum:
      if constexpr (std::is_same_v<T, bool>) {
        return a || b;
      } else {
        return cast_to<T>(x + y);
      }
    case ReduceType::Prod:
      if constexpr (std::is_same_v<T, bool>) {
        return a && b;
      } else {
        return cast_to<T>(x * y);
      }
    case ReduceType::Max:
      // A NaN already in place stays. complex64 has no order (the op refuses it).
      if constexpr (is_complex_v<C>) {
        return b;
      } else {
        if constexpr (std::is_floating_point_v<C>) {
          if (x != x) return a;
        }
        return x > y ? a : b;
      }
    case ReduceType::Min:
      if constexpr (is_complex_v<C>) {
        return b;
      } else {
        if constexpr (std::is_floating_point_v<C>) {
          if (x != x) return a;
        }
        return x < y ? a : b;
      }
    default:
      return b;
  }
}

// Read-modify-write of one element through a CAS on its aligned word.
template <typename T>
__device__ void atomic_combine(T* p, T v, ReduceType r) {
  if constexpr (sizeof(T) == 8) {
    auto* w = reinterpret_cast<unsigned long long*>(p);
    unsigned long long old = *w, assumed;
    do {
      assumed = old;
      T cur;
      memcpy(&cur, &assumed, 8);
      T next = combine(r, cur, v);
      unsigned long long nw;
      memcpy(&nw, &next, 8);
      old = atomicCAS(w, assumed, nw);
    } while (old != assumed);
  } else {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
    auto* w = reinterpret_cast<unsigned int*>(addr & ~uintptr_t{3});
    const unsigned shift = static_cast<unsigned>(addr & 3) * 8;
    unsigned int old = *w, assumed;
    do {
      assumed = old;
      T cur;
      unsigned int bits = assumed >> shift;
      memcpy(&cur, &bits, sizeof(T));
      T next = combine(r, cur, v);
      unsigned int nb = 0;
      memcpy(&nb, &next, sizeof(T));
      const unsigned int mask = sizeof(T) == 4 ? 0xffffffffu : ((1u << (8 * sizeof(T))) - 1u);
      const unsigned int nw = (assumed & ~(mask << shift)) | ((nb & mask) << shift);
      old = atomicCAS(w, assumed, nw);
    } while (old != assumed);
  }
}

// Index arrays share one (broadcast) shape I; updates are I + window,
// row-contiguous. Update element u belongs to index tuple u / upd_total; its
// place in out is `off`. Windows whose place leaves the array are skipped (the
// CPU throws; a kernel cannot; host-made indices were checked before).
__device__ __forceinline__ bool place_of(int64_t u, const ScatterParams& p, int64_t& off) {
  const int64_t i = u / p.upd_total;
  int64_t j = u - i * p.upd_total;
  off = 0;
  bool inside = true;
  for (int d = p.ndim - 1; d >= 0; --d) {
    const int64_t jd = j % p.window[d];
    j /= p.window[d];
    int64_t pos = jd;
    if (p.index_of[d] >= 0) {
      int64_t start = p.idx[p.index_of[d]][i];
      if (start < 0) start += p.out_shape[d];
      pos += start;
    }
    inside = inside && pos >= 0 && pos < p.out_shape[d];
    off += pos * p.out_strides[d];
  }
  return inside;
}

// Plain scatter: the last index tuple writing a place wins, as on the CPU.
// A first pass keeps the largest tuple per place (atomicMax), the second
// writes only the winners.
__global__ void scatter_winner_kernel(int64_t n, ScatterParams p, int* winner) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; u < n; u += step) {
    int64_t off;
    if (place_of(u, p, off)) atomicMax(winner + off, static_cast<int>(u / p.upd_total));
  }
}

template <typename T>
__global__ void scatter_kernel(const T* upd, T* out, int64_t n, ScatterParams p, ReduceType r,
                               const int* winner) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; u < n; u += step) {
    int64_t off;
    if (!place_of(u, p, off)) continue;
    if (r == ReduceType::None) {
      if (winner[off] == static_cast<int>(u / p.upd_total)) out[off] = upd[u];
    } else {
      atomic_combine(out + off, upd[u], r);
    }
  }
}

// The op's name in the CPU kernels' messages.
const char* scatter_op_name(ReduceType r) {
  switch (r) {
    case ReduceType::Sum:
      return "scatter_add";
    case ReduceType::Prod:
      return "scatter_prod";
    case ReduceType::Max:
      return "scatter_max";
    case ReduceType::Min:
      return "scatter_min";
    default:
      return "scatter";
  }
}

void scatter_gpu(Primitive& prim, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& sc = static_cast<Scatter&>(prim);
  const array& a = inputs[0];
  const size_t k = sc.axes().size();
  array upd = ensure_row_contiguous(inputs[k + 1], prim.stream());
  array& out = outputs[0];
  if (a.is_donatable() && a.flags().row_contiguous) {
    out.copy_shared_buffer(a);
  } else {
    allocate_row_contiguous(out);
    copy_into(a, out, prim.stream());
  }
  const int64_t n = static_cast<int64_t>(upd.size());
  if (n == 0) return;
  if (out.ndim() > static_cast<size_t>(kMaxDims)) {
    throw std::invalid_argument("[" + std::string(sc.name()) + "] the GPU kernel handles at most " +
                                std::to_string(kMaxDims) + " dims");
  }
  if (upd.dtype() != out.dtype()) {
    throw std::invalid_argument("[" + std::string(sc.name()) + "] updates of dtype " +
                                dtype_name(upd.dtype()) + " for an array of dtype " +
                                dtype_name(out.dtype()));
  }
  ScatterParams p;
  p.ndim = static_cast<int>(out.ndim());
  const int uoff = static_cast<int>(upd.ndim()) - p.ndim;
  for (int d = 0; d < p.ndim; ++d) {
    p.out_shape[d] = out.shape(d);
    p.out_strides[d] = out.strides()[d];
    p.window[d] = std::max(upd.shape(uoff + d), 1);
    p.upd_total *= upd.shape(uoff + d);
    p.index_of[d] = -1;
  }
  if (p.upd_total == 0) return;
  {
    Shape window(upd.shape().begin() + uoff, upd.shape().end());
    check_indices(scatter_op_name(sc.reduce_type()),
                  std::vector<array>(inputs.begin() + 1, inputs.begin() + 1 + k), sc.axes(),
                  out.shape(), window, out.strides());
  }
  for (size_t m = 0; m < k; ++m) {
    const array& idx = inputs[m + 1];
    array idx64(idx.shape(), int64, nullptr, {});
    allocate_row_contiguous(idx64);
    // Host-made indices (checked on the host above) are widened from a device copy: read
    // where they lie, every thread of the copy would reach over the bus.
    copy_into(host_made(idx) ? device_copy(idx, prim.stream()) : idx, idx64, prim.stream());
    keep_until_done(prim.stream(), idx64);
    p.idx[m] = idx64.data<int64_t>();
    p.index_of[sc.axes()[m]] = static_cast<int>(m);
  }
  cudaStream_t cs = stream_of(prim);
  array winner({1}, int32, nullptr, {});
  if (sc.reduce_type() == ReduceType::None) {
    if (n / p.upd_total > INT32_MAX || out.size() > static_cast<size_t>(INT32_MAX)) {
      throw std::invalid_argument("[scatter] more than 2^31 index tuples or elements on the GPU");
    }
    winner = array({static_cast<int32_t>(out.size())}, int32, nullptr, {});
    allocate_row_contiguous(winner);
    keep_until_done(prim.stream(), winner);
    check(cudaMemsetAsync(winner.data<char>(), 0xff, winner.nbytes(), cs), "scatter");  // -1
    scatter_winner_kernel<<<grid_for(n), 256, 0, cs>>>(n, p, winner.data<int>());
  }
  dispatch_any(out.dtype(), sc.name(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    scatter_kernel<T><<<grid_for(n), 256, 0, cs>>>(upd.data<T>(), out.data<T>(), n, p,
                                                   sc.reduce_type(), winner.data<int>());
  });
  check_launch(sc.name());
}

const Register<Scatter> r_scatter(&scatter_gpu);

}  // namespace
}  // namespace mx::cuda
