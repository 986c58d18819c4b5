// Gather (take, take_along_axis, embedding lookups): the index arrays are
// first converted to contiguous int64 over their broadcast shape, then one
// thread per output element finds its source element.
#include "mlxcpp/mx/backend/cpu/indexing.h"
#include "mlxcpp/mx/backend/cuda/indexing.h"
#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/backend/cuda/upload.h"
#include "mlxcpp/mx/primitives/indexing.h"

namespace mx::cuda {
namespace {

struct GatherParams {
  int ndim = 0;
  int64_t slice_total = 1;
  int32_t a_shape[kMaxDims] = {};
  int64_t a_strides[kMaxDims] = {};
  int32_t slice[kMaxDims] = {};
  int index_of[kMaxDims] = {};  // which index array moves dim d (-1: none)
  const int64_t* idx[kMaxDims] = {};
};

// An index that leaves its axis is clamped to it: a kernel cannot throw, and
// reading outside the buffer would fault the whole context. Indices the host
// can already read were checked before the launch (check_indices).
template <typename T>
__global__ void gather_kernel(const T* a, T* out, int64_t n, GatherParams p) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < n; o += step) {
    const int64_t i = o / p.slice_total;
    int64_t j = o - i * p.slice_total;
    int64_t off = 0;
    for (int d = p.ndim - 1; d >= 0; --d) {
      const int64_t jd = j % p.slice[d];
      j /= p.slice[d];
      int64_t pos = jd;
      if (p.index_of[d] >= 0) {
        int64_t start = p.idx[p.index_of[d]][i];
        if (start < 0) start += p.a_shape[d];
        pos += start;
        pos = pos < 0 ? 0 : (pos >= p.a_shape[d] ? p.a_shape[d] - 1 : pos);
      }
      off += pos * p.a_strides[d];
    }
    out[o] = a[off];
  }
}

}  // namespace

bool host_made(const array& a) {
  // Every array a primitive produced carries its evaluation's event (set when
  // it was scheduled, never cleared); an output of a GPU kernel is marked
  // available as soon as its buffer exists, long before the kernel has run.
  return !a.has_primitive() && !a.event();
}

void check_indices(const char* op, const std::vector<array>& indices, const std::vector<int>& axes,
                   const Shape& shape, const Shape& window, const Strides& strides) {
  for (const auto& idx : indices) {
    if (!host_made(idx)) return;
  }
  cpu::index_offsets(op, indices, axes, shape, window, strides);
}

namespace {

void gather_gpu(Primitive& prim, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& g = static_cast<Gather&>(prim);
  const array& a = inputs[0];
  array& out = outputs[0];
  allocate_row_contiguous(out);
  const int64_t n = static_cast<int64_t>(out.size());
  if (n == 0) return;
  if (a.ndim() > static_cast<size_t>(kMaxDims) || g.axes().size() > static_cast<size_t>(kMaxDims)) {
    throw std::invalid_argument("[Gather] the GPU kernel handles at most " +
                                std::to_string(kMaxDims) + " dims");
  }
  GatherParams p;
  p.ndim = static_cast<int>(a.ndim());
  for (int d = 0; d < p.ndim; ++d) {
    p.a_shape[d] = a.shape(d);
    p.a_strides[d] = a.strides()[d];
    p.slice[d] = std::max(g.slice_sizes()[d], 1);
    p.slice_total *= g.slice_sizes()[d];
    p.index_of[d] = -1;
  }
  if (p.slice_total == 0) return;
  check_indices("gather", std::vector<array>(inputs.begin() + 1, inputs.end()), g.axes(), a.shape(),
                g.slice_sizes(), a.strides());
  for (size_t m = 0; m < g.axes().size(); ++m) {
    const array& idx = inputs[m + 1];
    array idx64(idx.shape(), int64, nullptr, {});
    allocate_row_contiguous(idx64);
    // Host-made indices (checked on the host above) are widened from a device copy: read
    // where they lie, every thread of the copy would reach over the bus.
    copy_into(host_made(idx) ? device_copy(idx, prim.stream()) : idx, idx64, prim.stream());
    keep_until_done(prim.stream(), idx64);
    p.idx[m] = idx64.data<int64_t>();
    p.index_of[g.axes()[m]] = static_cast<int>(m);
  }
  dispatch_any(a.dtype(), "Gather", [&](auto tag) {
    using T = typename decltype(tag)::type;
    gather_kernel<T><<<grid_for(n), 256, 0, stream_of(prim)>>>(a.data<T>(), out.data<T>(), n, p);
  });
  check_launch("Gather");
}

const Register<Gather> r_gather(&gather_gpu);

}  // namespace
}  // namespace mx::cuda
