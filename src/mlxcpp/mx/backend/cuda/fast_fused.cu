// GPU kernels of fast::rms_norm_f32 (one block per row) and
// fast::gelu_approx_mul (one thread per element): each element is read once in
// its own dtype, computed in float32 and rounded once, so a 16-bit model's norm
// and MLP activation are one launch each with no cast kernels around them.
#include <cmath>
#include <cstdint>

#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/fast.h"

namespace mx::cuda {
namespace {

template <typename T>
__global__ void rms_norm_f32_kernel(const T* x, Layout<1> rows_layout, const float* w,
                                    int64_t w_stride, T* y, int64_t rows, int64_t d, float eps) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + rows_layout.offset(0, r);
    T* yr = y + r * d;
    float ss = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      float v = cast_to<float>(xr[i]);
      ss += v * v;
    }
    ss = block_reduce(ss, 0.0f, [](float a, float b) { return a + b; });
    const float n = 1.0f / sqrtf(ss / static_cast<float>(d) + eps);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      yr[i] = cast_to<T>(cast_to<float>(xr[i]) * n * w[i * w_stride]);
    }
  }
}

// Rows of 16-byte vectors (d a multiple of 16 / sizeof(T), rows 16-byte aligned, w contiguous):
// one warp per row, each lane reading whole vectors, so a prefill's [T, H] norm moves at memory
// speed instead of one 2-byte load per thread with a block-wide reduction per row. The row is
// read twice (the second time from L1/L2); the formula is the one above.
template <typename T>
__global__ void rms_norm_f32_warp_kernel(const T* x, Layout<1> rows_layout, const float* w, T* y,
                                         int64_t rows, int64_t d, float eps) {
  constexpr int V = 16 / sizeof(T);
  const int lane = threadIdx.x & 31;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= rows) return;
  const T* xr = x + rows_layout.offset(0, r);
  const int64_t nv = d / V;
  float ss = 0;
#pragma unroll 4
  for (int64_t i = lane; i < nv; i += 32) {
    const uint4 raw = *reinterpret_cast<const uint4*>(xr + i * V);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const float v = cast_to<float>(e[j]);
      ss += v * v;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  const float n = 1.0f / sqrtf(ss / static_cast<float>(d) + eps);
  T* yr = y + r * d;
#pragma unroll 4
  for (int64_t i = lane; i < nv; i += 32) {
    const uint4 raw = *reinterpret_cast<const uint4*>(xr + i * V);
    const T* e = reinterpret_cast<const T*>(&raw);
    uint4 packed;
    T* o = reinterpret_cast<T*>(&packed);
#pragma unroll
    for (int j = 0; j < V; ++j) o[j] = cast_to<T>(cast_to<float>(e[j]) * n * w[i * V + j]);
    *reinterpret_cast<uint4*>(yr + i * V) = packed;
  }
}

// The same for a few rows (a decode step's [1, 1, H]): a whole block per row, so one row's
// loads are spread over many warps instead of a chain of them in one.
template <typename T>
__global__ void rms_norm_f32_block_vec_kernel(const T* x, Layout<1> rows_layout, const float* w,
                                              T* y, int64_t d, float eps) {
  constexpr int V = 16 / sizeof(T);
  const int64_t r = blockIdx.x;
  const T* xr = x + rows_layout.offset(0, r);
  const int64_t nv = d / V;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
    const uint4 raw = *reinterpret_cast<const uint4*>(xr + i * V);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const float v = cast_to<float>(e[j]);
      ss += v * v;
    }
  }
  ss = block_reduce(ss, 0.0f, [](float a, float b) { return a + b; });
  const float n = 1.0f / sqrtf(ss / static_cast<float>(d) + eps);
  T* yr = y + r * d;
  for (int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
    const uint4 raw = *reinterpret_cast<const uint4*>(xr + i * V);
    const T* e = reinterpret_cast<const T*>(&raw);
    uint4 packed;
    T* o = reinterpret_cast<T*>(&packed);
#pragma unroll
    for (int j = 0; j < V; ++j) o[j] = cast_to<T>(cast_to<float>(e[j]) * n * w[i * V + j]);
    *reinterpret_cast<uint4*>(yr + i * V) = packed;
  }
}

// Whether rms_norm_f32_warp_kernel can read x's rows and w as 16-byte vectors.
bool vector_rows(const array& x, const array& w, const array& out, int64_t d) {
  const int64_t isz = static_cast<int64_t>(x.itemsize());
  if (isz > 4 || (d * isz) % 16 != 0 || d > (int64_t{1} << 16)) return false;
  if (w.ndim() == 0 || w.strides().back() != 1 || w.size() < static_cast<size_t>(d)) return false;
  if (reinterpret_cast<uintptr_t>(x.data<char>()) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(out.data<char>()) % 16 != 0) {
    return false;
  }
  for (size_t i = 0; i + 1 < x.ndim(); ++i) {
    if (x.shape(static_cast<int>(i)) > 1 && (x.strides()[i] * isz) % 16 != 0) return false;
  }
  return true;
}

void rms_norm_f32_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& op = static_cast<fast::RMSNormF32&>(p);
  // Rows need only be contiguous themselves (a transposed view of heads, as
  // the QK-norm sees, is read in place).
  array x = inputs[0];
  if (x.shape(-1) > 1 && x.strides().back() != 1) x = ensure_row_contiguous(x, p.stream());
  const array& w = inputs[1];
  array& out = outputs[0];
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  if (w.dtype() != float32) {
    throw std::invalid_argument("[rms_norm_f32] weight must be float32, got " +
                                dtype_name(w.dtype()));
  }
  const int64_t d = x.shape(-1);
  const int64_t rows = static_cast<int64_t>(x.size()) / d;
  unsigned threads = 32;
  while (threads < 1024 && static_cast<int64_t>(threads) < d) threads <<= 1;
  unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{1} << 20));
  const int64_t ws = w.ndim() == 0 ? 0 : w.strides().back();
  Shape outer(x.shape().begin(), x.shape().end() - 1);
  Strides outer_strides(x.strides().begin(), x.strides().end() - 1);
  auto rows_layout = make_layout<1>(outer, {outer_strides}, "rms_norm_f32");
  dispatch_float(out.dtype(), "rms_norm_f32", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, double>) {
      throw std::invalid_argument("[rms_norm_f32] float64 input takes the composed path");
    } else {
      constexpr int64_t kFewRows = 64;
      const int64_t nv = d / static_cast<int64_t>(16 / sizeof(T));
      if (rows <= kFewRows && nv >= 128 && vector_rows(x, w, out, d)) {
        const auto block = static_cast<unsigned>(std::min<int64_t>(1024, (nv + 31) / 32 * 32));
        rms_norm_f32_block_vec_kernel<T><<<static_cast<unsigned>(rows), block, 0, stream_of(p)>>>(
            x.data<T>(), rows_layout, w.data<float>(), out.data<T>(), d, op.eps());
      } else if (vector_rows(x, w, out, d)) {
        constexpr int64_t kRowsPerBlock = 8;
        const auto blocks = static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
        rms_norm_f32_warp_kernel<T><<<blocks, 32 * kRowsPerBlock, 0, stream_of(p)>>>(
            x.data<T>(), rows_layout, w.data<float>(), out.data<T>(), rows, d, op.eps());
      } else {
        rms_norm_f32_kernel<T><<<grid, threads, 0, stream_of(p)>>>(
            x.data<T>(), rows_layout, w.data<float>(), ws, out.data<T>(), rows, d, op.eps());
      }
    }
  });
  check_launch("rms_norm_f32");
}

template <typename T>
__global__ void gelu_approx_mul_kernel(const T* g, const T* u, T* y, int64_t n) {
  const float k = 0.7978845608028654f;  // sqrt(2 / pi)
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) {
    const float x = cast_to<float>(g[i]);
    const float inner = k * (x + 0.044715f * x * x * x);
    // tanh through double rounds correctly (tanhf is off by up to 2 ulps), as
    // the Tanh kernel does.
    const float t = static_cast<float>(tanh(static_cast<double>(inner)));
    const T a = cast_to<T>(0.5f * x * (1.0f + t));
    y[i] = cast_to<T>(cast_to<float>(a) * cast_to<float>(u[i]));
  }
}

void gelu_approx_mul_gpu(Primitive& p, const std::vector<array>& inputs,
                         std::vector<array>& outputs) {
  array g = ensure_row_contiguous(inputs[0], p.stream());
  array u = ensure_row_contiguous(inputs[1], p.stream());
  array& out = outputs[0];
  allocate_row_contiguous(out);
  const int64_t n = static_cast<int64_t>(out.size());
  if (n == 0) return;
  dispatch_float(out.dtype(), "gelu_approx_mul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, double>) {
      throw std::invalid_argument("[gelu_approx_mul] float64 input takes the composed path");
    } else {
      gelu_approx_mul_kernel<T><<<grid_for(static_cast<size_t>(n)), 256, 0, stream_of(p)>>>(
          g.data<T>(), u.data<T>(), out.data<T>(), n);
    }
  });
  check_launch("gelu_approx_mul");
}

const Register<fast::RMSNormF32> r_rms_norm_f32(&rms_norm_f32_gpu);
const Register<fast::GeluApproxMul> r_gelu_approx_mul(&gelu_approx_mul_gpu);

}  // namespace
}  // namespace mx::cuda
