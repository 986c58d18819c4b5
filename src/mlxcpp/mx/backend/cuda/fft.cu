// The FFT primitive on the GPU through cuFFT, with the CPU kernel's semantics
// (backend/cpu/fft.cpp) in float32 / complex64: each axis is transformed in
// turn by batched 1-D plans over the lines along it, inverses are scaled by
// 1/n, a real forward transform keeps the half-spectrum of its last axis, and
// a real inverse drops the imaginary parts of the DC and Nyquist bins of that
// axis (as the CPU does by taking the real part of the completed spectrum).
#include <string>

#include "mlxcpp/mx/backend/cuda/cufft.h"
#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/fft.h"

namespace mx::cuda {
namespace {

// ---------------------------------------------------------------- kernels

template <typename To, typename From>
__device__ __forceinline__ To convert(From x) {
  if constexpr (std::is_same_v<To, From>) {
    return x;
  } else {
    return make_float2(x, 0.0f);  // float32 into complex64
  }
}

// dst (row-contiguous) = src (any layout), float32 widened to complex64.
template <typename From, typename To>
__global__ void gather_kernel(const From* src, To* dst, int64_t n, Layout<1> l) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) {
    dst[i] = convert<To>(src[l.offset(0, i)]);
  }
}

template <typename T>
__global__ void scale_kernel(T* x, int64_t n, float s) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) {
    if constexpr (std::is_same_v<T, float2>) {
      x[i] = make_float2(x[i].x * s, x[i].y * s);
    } else {
      x[i] *= s;
    }
  }
}

// Zeroes the imaginary parts of bin 0 and, when the real length n is even,
// bin n / 2 of every line along the middle axis of (outer, h, inner).
__global__ void real_bins_kernel(float2* x, int64_t outer, int64_t h, int64_t inner, bool even) {
  const int64_t lines = outer * inner;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < lines;
       i += step) {
    const int64_t base = (i / inner) * h * inner + i % inner;
    x[base].y = 0.0f;
    if (even) x[base + (h - 1) * inner].y = 0.0f;
  }
}

__global__ void real_part_kernel(const float2* x, float* y, int64_t n) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) {
    y[i] = x[i].x;
  }
}

// dst (outer, b, a) = src (outer, a, b): the last two axes swapped.
template <typename T>
__global__ void swap_kernel(const T* src, T* dst, int64_t outer, int64_t a, int64_t b) {
  const int64_t mat = a * b, total = outer * mat;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += step) {
    const int64_t o = i / mat, r = i - o * mat;
    const int64_t j = r / a, k = r - j * a;  // dst[o][j][k] = src[o][k][j]
    dst[i] = src[o * mat + k * b + j];
  }
}

// ---------------------------------------------------------------- helpers

// dst (row-contiguous, To = float or float2) = src (float32 or complex64, any
// layout), on the stream.
template <typename To>
void gather_into(const array& src, array& dst, const Stream& st) {
  const int64_t n = static_cast<int64_t>(dst.size());
  if (n == 0) return;
  cudaStream_t s = resources(st).stream;
  auto l = make_layout<1>(src.shape(), {src.strides()}, "fft");
  if (src.dtype() == dst.dtype() && l.contiguous) {
    check(cudaMemcpyAsync(dst.data<char>(), src.data<char>(), dst.nbytes(), cudaMemcpyDefault, s),
          "copying the fft input");
    return;
  }
  if (src.dtype() == float32) {
    gather_kernel<float, To><<<grid_for(n), 256, 0, s>>>(src.data<float>(), dst.data<To>(), n, l);
  } else if (src.dtype() == complex64 && std::is_same_v<To, float2>) {
    if constexpr (std::is_same_v<To, float2>) {
      gather_kernel<float2, To>
          <<<grid_for(n), 256, 0, s>>>(src.data<float2>(), dst.data<To>(), n, l);
    }
  } else {
    throw std::invalid_argument(std::string("[FFT] the GPU kernel cannot read ") +
                                dtype_name(src.dtype()) + " into " + dtype_name(dst.dtype()));
  }
  check_launch("fft gather");
}

// A row-contiguous buffer of `shape`, kept alive until the stream has used it.
array scratch(const Shape& shape, Dtype dtype, const Stream& st) {
  array a(shape, dtype, nullptr, {});
  allocate_row_contiguous(a);
  keep_until_done(st, a);
  return a;
}

// A row-contiguous copy of `in` as To (float or float2), kept alive until the
// stream has used it. The transforms write their inputs (cuFFT's
// complex-to-real ones always do), so the input is never used in place.
template <typename To>
array contiguous_copy(const array& in, Dtype dtype, const Stream& s) {
  array dst = scratch(in.shape(), dtype, s);
  gather_into<To>(in, dst, s);
  return dst;
}

// Strided lines along `axis` of a row-contiguous shape: (outer, n, inner).
struct Lines {
  int64_t outer = 1, inner = 1;
};
Lines lines_of(const Shape& shape, int axis) {
  Lines l;
  for (int d = 0; d < axis; ++d) l.outer *= shape[d];
  for (size_t d = axis + 1; d < shape.size(); ++d) l.inner *= shape[d];
  return l;
}

// `shape` with `axis` moved to the end and given length `len`.
Shape moved_last(Shape shape, int axis, int64_t len) {
  shape.erase(shape.begin() + axis);
  shape.push_back(static_cast<int32_t>(len));
  return shape;
}

template <typename T>
void swap_last_two(const T* src, T* dst, int64_t outer, int64_t a, int64_t b, cudaStream_t s) {
  const int64_t total = outer * a * b;
  swap_kernel<T><<<grid_for(total), 256, 0, s>>>(src, dst, outer, a, b);
  check_launch("fft swap");
}

// A real transform (R2C or C2R) of length n over `lines` contiguous lines of
// in_len inputs and out_len outputs each.
template <typename In, typename Out>
void real_lines(cufftType type, int64_t n, int64_t in_len, int64_t out_len, int64_t lines, In* in,
                Out* out, cudaStream_t s) {
  with_fft_plan({type, n, 1, in_len, 1, out_len, lines}, s, [&](cufftHandle plan) {
    if constexpr (std::is_same_v<In, float>) {
      check_cufft(cufft().exec_r2c(plan, in, out), "a real-to-complex transform");
    } else {
      check_cufft(cufft().exec_c2r(plan, in, out), "a complex-to-real transform");
    }
  });
}

// In-place complex transform along `axis` of the row-contiguous `x`, whose
// lines are (outer, n, inner). cuFFT batches lines that sit at one distance
// from each other: all of them when inner is 1, else those of one outer index
// (or of one inner index), one call per group, whichever makes fewer calls.
void c2c_axis(float2* x, const Shape& shape, int axis, bool inverse, cudaStream_t s) {
  const int64_t n = shape[axis];
  if (n <= 1) return;
  const int dir = inverse ? CUFFT_INVERSE : CUFFT_FORWARD;
  Lines l = lines_of(shape, axis);
  FftLayout layout{CUFFT_C2C, n, 1, n, 1, n, l.outer};
  int64_t calls = 1, step = 0;
  if (l.inner > 1 && l.outer <= l.inner) {
    layout = {CUFFT_C2C, n, l.inner, 1, l.inner, 1, l.inner};
    calls = l.outer;
    step = n * l.inner;
  } else if (l.inner > 1) {
    layout = {CUFFT_C2C, n, l.inner, n * l.inner, l.inner, n * l.inner, l.outer};
    calls = l.inner;
    step = 1;
  }
  with_fft_plan(layout, s, [&](cufftHandle plan) {
    for (int64_t c = 0; c < calls; ++c) {
      check_cufft(cufft().exec_c2c(plan, x + c * step, x + c * step, dir), "a complex transform");
    }
  });
}

template <typename T>
void scale(T* x, size_t n, double factor, cudaStream_t s) {
  if (n == 0 || factor == 1.0) return;
  scale_kernel<T><<<grid_for(n), 256, 0, s>>>(x, n, static_cast<float>(factor));
  check_launch("fft scale");
}

void fft_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& f = static_cast<FFT&>(p);
  array& out = outputs[0];
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  const array& in = inputs[0];
  const Stream& st = p.stream();
  cudaStream_t s = stream_of(p);
  const auto& axes = f.axes();
  const int last = axes.back();
  // The inverse's 1/n over every axis (the real lengths are the output's).
  double count = 1;
  for (int ax : axes) count *= out.shape(ax);

  if (f.real() && f.inverse()) {
    const int64_t n = out.shape(last), h = in.shape(last);
    if (h != n / 2 + 1) {
      throw std::invalid_argument("[FFT] a real inverse of length " + std::to_string(n) +
                                  " needs " + std::to_string(n / 2 + 1) + " bins on axis " +
                                  std::to_string(last) + ", got input shape " +
                                  shape_str(in.shape()));
    }
    // Inverse over the other axes first: each line of the last axis is then
    // the half-spectrum of a real signal.
    array work = contiguous_copy<float2>(in, complex64, st);
    float2* w = work.data<float2>();
    for (size_t i = 0; i + 1 < axes.size(); ++i) c2c_axis(w, in.shape(), axes[i], true, s);
    Lines l = lines_of(in.shape(), last);
    real_bins_kernel<<<grid_for(l.outer * l.inner), 256, 0, s>>>(w, l.outer, h, l.inner,
                                                                 n % 2 == 0);
    check_launch("fft real bins");
    float* y = out.data<float>();
    if (n == 1) {
      real_part_kernel<<<grid_for(out.size()), 256, 0, s>>>(w, y, out.size());
      check_launch("fft real part");
    } else if (l.inner == 1) {
      real_lines(CUFFT_C2R, n, h, n, l.outer, w, y, s);
    } else {
      // Lines along the axis made contiguous: cuFFT's real transforms need
      // their real pointers aligned to complex elements.
      array wt = scratch(moved_last(in.shape(), last, h), complex64, st);
      array yt = scratch(moved_last(out.shape(), last, n), float32, st);
      swap_last_two(w, wt.data<float2>(), l.outer, h, l.inner, s);
      real_lines(CUFFT_C2R, n, h, n, l.outer * l.inner, wt.data<float2>(), yt.data<float>(), s);
      swap_last_two(yt.data<float>(), y, l.outer, l.inner, n, s);
    }
    scale(y, out.size(), 1.0 / count, s);
    return;
  }

  float2* y = out.data<float2>();
  if (f.real()) {
    // The half-spectrum of the last axis first, then the other axes (the
    // transforms along different axes commute with the cropping).
    const int64_t n = in.shape(last), h = out.shape(last);
    if (n == 1) {
      gather_into<float2>(in, out, st);
    } else {
      array x = contiguous_copy<float>(in, float32, st);
      Lines l = lines_of(in.shape(), last);
      if (l.inner == 1) {
        real_lines(CUFFT_R2C, n, n, h, l.outer, x.data<float>(), y, s);
      } else {
        array xt = scratch(moved_last(in.shape(), last, n), float32, st);
        array yt = scratch(moved_last(out.shape(), last, h), complex64, st);
        swap_last_two(x.data<float>(), xt.data<float>(), l.outer, n, l.inner, s);
        real_lines(CUFFT_R2C, n, n, h, l.outer * l.inner, xt.data<float>(), yt.data<float2>(), s);
        swap_last_two(yt.data<float2>(), y, l.outer, l.inner, h, s);
      }
    }
    for (size_t i = 0; i + 1 < axes.size(); ++i) c2c_axis(y, out.shape(), axes[i], false, s);
    return;
  }

  gather_into<float2>(in, out, st);
  for (int ax : axes) c2c_axis(y, out.shape(), ax, f.inverse(), s);
  if (f.inverse()) scale(y, out.size(), 1.0 / count, s);
}

const Register<FFT> r_fft(&fft_gpu);

}  // namespace
}  // namespace mx::cuda
