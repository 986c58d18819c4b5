// Concatenate, pad, the dynamic (array-start) slices of KV caches, and the
// views diagonal / as_strided / view. Windows of the output are strided views
// filled by copy_into; dynamic starts are read on the device, so a decode step
// that slices a cache at a position held in an array needs no host round trip.
#include "mlxcpp/mx/backend/cuda/indexing.h"
#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/shape_more.h"

namespace mx::cuda {
namespace {

// A view of `out` with `shape` starting `offset` elements into its buffer.
array window_of(const array& out, const Shape& shape, int64_t offset) {
  array w(shape, out.dtype(), nullptr, {});
  w.copy_shared_buffer(out, out.strides(), detail::view_flags(shape, out.strides(), false),
                       static_cast<size_t>(w.size()), offset);
  return w;
}

void concatenate_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  auto& c = static_cast<Concatenate&>(p);
  array& o = out[0];
  allocate_row_contiguous(o);
  int64_t offset = 0;
  const int64_t step = o.strides()[c.axis()];
  for (const auto& x : in) {
    if (x.size() > 0) {
      array w = window_of(o, x.shape(), offset);
      copy_into(x, w, p.stream());
    }
    offset += x.shape(c.axis()) * step;
  }
}

void pad_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  auto& pad = static_cast<Pad&>(p);
  array& o = out[0];
  allocate_row_contiguous(o);
  if (o.size() == 0) return;
  // The pad value (a scalar array on the device) broadcast over the output.
  array fill(o.shape(), in[1].dtype(), nullptr, {});
  fill.copy_shared_buffer(in[1], Strides(o.ndim(), 0),
                          detail::view_flags(o.shape(), Strides(o.ndim(), 0), false), 1, 0);
  copy_into(fill, o, p.stream());
  if (in[0].size() == 0) return;
  int64_t offset = 0;
  for (size_t i = 0; i < pad.axes().size(); ++i) {
    offset += static_cast<int64_t>(pad.low()[i]) * o.strides()[pad.axes()[i]];
  }
  array w = window_of(o, in[0].shape(), offset);
  copy_into(in[0], w, p.stream());
}

// The element offset of a dynamic window, as detail::dynamic_slice_offset
// computes it on the host: negative starts count from the end, then clamp so
// that the window fits.
struct DynamicStart {
  int n = 0;
  int64_t extent[kMaxDims] = {};  // size of the axis minus the window's
  int64_t axis_size[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};
};

template <typename I>
__device__ __forceinline__ int64_t dynamic_offset(const I* start, int64_t start_stride,
                                                  const DynamicStart& d) {
  int64_t off = 0;
  for (int i = 0; i < d.n; ++i) {
    int64_t v = static_cast<int64_t>(start[i * start_stride]);
    if (v < 0) v += d.axis_size[i];
    v = v < 0 ? 0 : (v > d.extent[i] ? d.extent[i] : v);
    off += v * d.stride[i];
  }
  return off;
}

// out[i] (row-contiguous window) = src[offset + window layout]; or, for an
// update, dst[offset + window layout] = upd[i].
template <typename T, typename I, bool kUpdate>
__global__ void dynamic_copy_kernel(const T* src, T* dst, const I* start, int64_t start_stride,
                                    DynamicStart d, int64_t n, Layout<2> l) {
  // A decode step's cache write: started while the kernel before it (RMSNormRoPE) finishes.
  allow_dependent_launch();
  wait_for_prerequisites();
  const int64_t off = dynamic_offset(start, start_stride, d);
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) {
    if constexpr (kUpdate) {
      dst[off + l.offset(1, i)] = src[l.offset(0, i)];
    } else {
      dst[l.offset(1, i)] = src[off + l.offset(0, i)];
    }
  }
}

template <bool kUpdate>
void dynamic_copy(Primitive& p, const array& start, const std::vector<int>& axes, const array& big,
                  const array& small, const char* op) {
  if (start.size() != axes.size()) {
    throw std::invalid_argument(std::string("[") + op + "] start has " +
                                std::to_string(start.size()) + " elements but " +
                                std::to_string(axes.size()) + " axes were given");
  }
  if (axes.size() > static_cast<size_t>(kMaxDims)) {
    throw std::invalid_argument(std::string("[") + op + "] at most " + std::to_string(kMaxDims) +
                                " dynamic axes on the GPU");
  }
  DynamicStart d;
  d.n = static_cast<int>(axes.size());
  for (int i = 0; i < d.n; ++i) {
    const int ax = axes[i];
    d.axis_size[i] = big.shape(ax);
    d.extent[i] = big.shape(ax) - small.shape(ax);
    d.stride[i] = big.strides()[ax];
  }
  const int64_t n = static_cast<int64_t>(small.size());
  if (n == 0) return;
  // Operand 0 is what is read, 1 what is written (the window walks big's strides).
  auto l = kUpdate ? make_layout<2>(small.shape(), {small.strides(), big.strides()}, op)
                   : make_layout<2>(small.shape(), {big.strides(), small.strides()}, op);
  const int64_t ss = start.ndim() == 0 ? 0 : start.strides()[0];
  auto launch = [&](auto itag) {
    using I = typename decltype(itag)::type;
    dispatch_any(big.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* src = kUpdate ? small.data<T>() : big.data<T>();
      T* dst = kUpdate ? const_cast<T*>(big.data<T>()) : const_cast<T*>(small.data<T>());
      launch_dependent(dynamic_copy_kernel<T, I, kUpdate>, dim3(grid_for(n)), dim3(256),
                       stream_of(p), op, src, dst, start.data<I>(), ss, d, n, l);
    });
  };
  switch (start.dtype().val) {
    case Dtype::Val::int32:
      launch(Tag<int32_t>{});
      break;
    case Dtype::Val::int64:
      launch(Tag<int64_t>{});
      break;
    case Dtype::Val::uint32:
      launch(Tag<uint32_t>{});
      break;
    case Dtype::Val::uint64:
      launch(Tag<uint64_t>{});
      break;
    default:
      throw std::invalid_argument(std::string("[") + op +
                                  "] start must be an int32, int64, uint32 or uint64 array on " +
                                  "the GPU, got " + dtype_name(start.dtype()));
  }
  check_launch(op);
}

void dynamic_slice_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  auto& ds = static_cast<DynamicSlice&>(p);
  // A start made on the host gives a view as on the CPU: no copy and no
  // kernel. A computed start is read on the device instead of waiting for it.
  if (host_made(in[1])) {
    static_cast<UnaryPrimitive&>(p).eval_cpu(in, out[0]);
    return;
  }
  allocate_row_contiguous(out[0]);
  dynamic_copy<false>(p, in[1], ds.axes(), in[0], out[0], "DynamicSlice");
}

void dynamic_slice_update_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  auto& du = static_cast<DynamicSliceUpdate&>(p);
  const array& src = in[0];
  array& o = out[0];
  if (du.in_place() && !(src.flags().row_contiguous && src.data_size() == src.size())) {
    throw std::invalid_argument("[slice_update_in_place] src must be row-contiguous");
  }
  if (du.in_place() || (src.is_donatable() && src.flags().row_contiguous)) {
    o.copy_shared_buffer(src);
  } else {
    allocate_row_contiguous(o);
    copy_into(src, o, p.stream());
  }
  dynamic_copy<true>(p, in[2], du.axes(), o, in[1], "DynamicSliceUpdate");
}

// Views: the CPU kernels only set strides over a row-contiguous input, which
// the GPU makes first when it needs one.
void view_of_contiguous_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  array x = ensure_row_contiguous(in[0], p.stream());
  static_cast<UnaryPrimitive&>(p).eval_cpu({x}, out[0]);
}

void diagonal_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  static_cast<UnaryPrimitive&>(p).eval_cpu(in, out[0]);
}

const Register<Concatenate> r_concatenate(&concatenate_gpu);
const Register<Pad> r_pad(&pad_gpu);
const Register<DynamicSlice> r_dynamic_slice(&dynamic_slice_gpu);
const Register<DynamicSliceUpdate> r_dynamic_slice_update(&dynamic_slice_update_gpu);
const Register<Diagonal> r_diagonal(&diagonal_gpu);
const Register<AsStrided> r_as_strided(&view_of_contiguous_gpu);
const Register<View> r_view(&view_of_contiguous_gpu);

}  // namespace
}  // namespace mx::cuda
