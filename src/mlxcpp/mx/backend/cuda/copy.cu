// Copies and conversions between layouts and dtypes (astype, contiguous copies
// of strided views, full), and the layout primitives: views only set strides,
// so their GPU "kernel" is the CPU one, which touches no data.
#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/backend/cuda/upload.h"
#include "mlxcpp/mx/primitives/elementwise.h"
#include "mlxcpp/mx/primitives/shape.h"

namespace mx {
namespace allocator::detail {
int placement_of(const void* block);  // allocator.cpp
}  // namespace allocator::detail

namespace cuda {

namespace {

template <typename In, typename Out>
__global__ void copy_kernel(const In* src, Out* dst, int64_t n, Layout<2> l) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) {
    if (l.contiguous) {
      dst[i] = cast_to<Out>(src[i]);
    } else {
      dst[l.offset(1, i)] = cast_to<Out>(src[l.offset(0, i)]);
    }
  }
}

// Bytes in units of U (the pointers and the count aligned to it).
template <typename U>
__global__ void copy_units_kernel(const U* src, U* dst, int64_t n) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) {
    dst[i] = src[i];
  }
}

// Copies of at most this many bytes between blocks of the buffer cache run as a kernel.
constexpr size_t kKernelCopyMax = size_t{1} << 20;

}  // namespace

void copy_bytes(void* dst, const void* src, size_t bytes, const Stream& s) {
  if (bytes == 0) return;
  cudaStream_t cs = resources(s).stream;
  const auto aligned = [&](size_t a) {
    return reinterpret_cast<uintptr_t>(dst) % a == 0 && reinterpret_cast<uintptr_t>(src) % a == 0 &&
           bytes % a == 0;
  };
  auto launch = [&](auto unit) {
    using U = decltype(unit);
    const int64_t n = static_cast<int64_t>(bytes / sizeof(U));
    copy_units_kernel<U>
        <<<grid_for(n), 256, 0, cs>>>(static_cast<const U*>(src), static_cast<U*>(dst), n);
  };
  if (aligned(16)) {
    launch(uint4{});
  } else if (aligned(4)) {
    launch(uint32_t{});
  } else {
    launch(uint8_t{});
  }
  check_launch("copy");
}

void copy_into(const array& src, array& dst, const Stream& s) {
  if (dst.size() == 0) return;
  if (src.ndim() != dst.ndim()) {
    throw std::invalid_argument("[copy] source of " + std::to_string(src.ndim()) +
                                " dims for a destination of " + std::to_string(dst.ndim()));
  }
  auto l = make_layout<2>(dst.shape(), {src.strides(), dst.strides()}, "copy");
  const int64_t n = static_cast<int64_t>(dst.size());
  cudaStream_t cs = resources(s).stream;
  if (src.dtype() == dst.dtype() && l.contiguous) {
    // A small copy between blocks of the buffer cache (unified memory) runs as a kernel: the
    // copy engine's call for unified memory can block the launching thread until the stream
    // has caught up (20 us to over a millisecond a call in a server's decode step, against a
    // few microseconds for a launch; tools/gpu/timeline.py), which starves the device of the
    // launches that follow. Memory the device cannot address (a host buffer from before the
    // GPU came into use) and large copies keep the copy engine.
    const size_t bytes = dst.nbytes();
    if (bytes <= kKernelCopyMax && allocator::detail::placement_of(src.buffer().ptr()) >= 0 &&
        allocator::detail::placement_of(dst.buffer().ptr()) >= 0) {
      copy_bytes(dst.data<char>(), src.data<char>(), bytes, s);
      return;
    }
    check(cudaMemcpyAsync(dst.data<char>(), src.data<char>(), bytes, cudaMemcpyDefault, cs),
          "copy");
    return;
  }
  dispatch_any(src.dtype(), "copy", [&](auto in_tag) {
    using In = typename decltype(in_tag)::type;
    dispatch_any(dst.dtype(), "copy", [&](auto out_tag) {
      using Out = typename decltype(out_tag)::type;
      copy_kernel<In, Out><<<grid_for(n), 256, 0, cs>>>(src.data<In>(), dst.data<Out>(), n, l);
    });
  });
  check_launch("copy");
}

array ensure_row_contiguous(const array& a, const Stream& s) {
  if (a.flags().row_contiguous) return a;
  array tmp(a.shape(), a.dtype(), nullptr, {});
  allocate_row_contiguous(tmp);
  copy_into(a, tmp, s);
  keep_until_done(s, tmp);
  return tmp;
}

namespace {

UnaryPrimitive& unary(Primitive& p) { return static_cast<UnaryPrimitive&>(p); }

void astype_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  allocate_row_contiguous(out[0]);
  copy_into(in[0], out[0], p.stream());
}

void copy_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  if (in[0].is_donatable() && in[0].flags().row_contiguous) {
    out[0].copy_shared_buffer(in[0]);
    return;
  }
  astype_gpu(p, in, out);
}

// Views (and a metadata-only CPU kernel): no data is read or written.
void view_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  unary(p).eval_cpu(in, out[0]);
}

void reshape_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  const array& x = in[0];
  if (x.flags().row_contiguous) {
    view_gpu(p, in, out);
    return;
  }
  // Copy in the input's row-major order into the new shape: write through a
  // row-contiguous view of the output with the input's shape.
  allocate_row_contiguous(out[0]);
  array as_in(x.shape(), x.dtype(), nullptr, {});
  Strides st(x.ndim(), 1);
  for (int i = static_cast<int>(x.ndim()) - 2; i >= 0; --i) {
    st[i] = st[i + 1] * std::max<int64_t>(x.shape(i + 1), 1);
  }
  as_in.copy_shared_buffer(out[0], st, array::Flags{true, true, false}, out[0].size());
  copy_into(x, as_in, p.stream());
}

void slice_update_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  auto& su = static_cast<SliceUpdate&>(p);
  const array& src = in[0];
  const array& upd = in[1];
  array& o = out[0];
  if (src.is_donatable() && src.flags().row_contiguous) {
    o.copy_shared_buffer(src);
  } else {
    allocate_row_contiguous(o);
    copy_into(src, o, p.stream());
  }
  if (upd.size() == 0) return;
  int64_t offset = 0;
  Strides strides(o.ndim());
  for (size_t i = 0; i < o.ndim(); ++i) {
    offset += static_cast<int64_t>(su.start()[i]) * o.strides()[i];
    strides[i] = o.strides()[i] * su.strides()[i];
  }
  array window(upd.shape(), o.dtype(), nullptr, {});
  window.copy_shared_buffer(o, strides, detail::view_flags(upd.shape(), strides, false), upd.size(),
                            offset);
  copy_into(upd, window, p.stream());
}

template <typename T>
__global__ void arange_kernel(T* out, int64_t n, double start, double step) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = cast_to<T>(start + static_cast<double>(i) * step);
}

void arange_gpu(Primitive& p, const std::vector<array>&, std::vector<array>& out) {
  auto& a = static_cast<Arange&>(p);
  allocate_row_contiguous(out[0]);
  const int64_t n = static_cast<int64_t>(out[0].size());
  if (n == 0) return;
  if (out[0].dtype() == bool_) throw std::invalid_argument("[arange] cannot produce bool");
  dispatch(out[0].dtype(), "arange", [&](auto tag) {
    using T = typename decltype(tag)::type;
    arange_kernel<T><<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream_of(p)>>>(
        out[0].data<T>(), n, a.start(), a.step());
  });
  check_launch("arange");
}

const Register<AsType> r_astype(&astype_gpu);
const Register<Copy> r_copy(&copy_gpu);
const Register<Full> r_full(&astype_gpu);
const Register<StopGradient> r_stop(&view_gpu);
const Register<Broadcast> r_broadcast(&view_gpu);
const Register<Transpose> r_transpose(&view_gpu);
const Register<Slice> r_slice(&view_gpu);
const Register<Reshape> r_reshape(&reshape_gpu);
const Register<SliceUpdate> r_slice_update(&slice_update_gpu);
const Register<Arange> r_arange(&arange_gpu);

}  // namespace
}  // namespace cuda
}  // namespace mx
