// GPU kernels of fast::rms_norm_f32 (one block per row), fast::gelu_approx_mul
// (one thread per element), fast::residual_rms_norm (one block per row) and
// fast::rms_norm_rope (one warp per row): each element is read in its own
// dtype, computed in float32 and rounded where the unfused graph rounds, so a
// 16-bit model's norms, residual adds, QK-norm + RoPE and MLP activation need
// no cast kernels or intermediate launches between them.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

#include "mlxcpp/mx/backend/cuda/gelu.cuh"
#include "mlxcpp/mx/backend/cuda/indexing.h"
#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/backend/cuda/residual_norm.cuh"
#include "mlxcpp/mx/backend/cuda/upload.h"
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
  allow_dependent_launch();
  wait_for_prerequisites();
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
  allow_dependent_launch();
  wait_for_prerequisites();
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
        launch_dependent(rms_norm_f32_block_vec_kernel<T>, dim3(static_cast<unsigned>(rows)),
                         dim3(block), stream_of(p), "rms_norm_f32", x.data<T>(), rows_layout,
                         w.data<float>(), out.data<T>(), d, op.eps());
      } else if (vector_rows(x, w, out, d)) {
        constexpr int64_t kRowsPerBlock = 8;
        const auto blocks = static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
        launch_dependent(rms_norm_f32_warp_kernel<T>, dim3(blocks), dim3(32 * kRowsPerBlock),
                         stream_of(p), "rms_norm_f32", x.data<T>(), rows_layout, w.data<float>(),
                         out.data<T>(), rows, d, op.eps());
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
  allow_dependent_launch();
  wait_for_prerequisites();
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) {
    y[i] = gelu_approx_mul_one(g[i], u[i]);
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
      launch_dependent(gelu_approx_mul_kernel<T>, dim3(grid_for(static_cast<size_t>(n))), dim3(256),
                       stream_of(p), "gelu_approx_mul", g.data<T>(), u.data<T>(), out.data<T>(), n);
    }
  });
  check_launch("gelu_approx_mul");
}

// ---------------------------------------------------------------- residual_rms_norm

// V consecutive elements of a row as floats: one 16-byte load when V * sizeof(T) == 16.
template <typename T, int V>
__device__ __forceinline__ void load_row(const T* p, float (&f)[V]) {
  if constexpr (V * sizeof(T) == 16) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < V; ++j) f[j] = cast_to<float>(e[j]);
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) f[j] = cast_to<float>(p[j]);
  }
}

template <typename T, int V>
__device__ __forceinline__ void store_row(T* p, const T (&v)[V]) {
  if constexpr (V * sizeof(T) == 16) {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int j = 0; j < V; ++j) e[j] = v[j];
    *reinterpret_cast<uint4*>(p) = raw;
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) p[j] = v[j];
  }
}

// V float32 weights: 16-byte loads when V is a multiple of 4 (the row is then 16-byte aligned).
template <int V>
__device__ __forceinline__ void load_weights(const float* p, float (&f)[V]) {
  if constexpr (V % 4 == 0) {
#pragma unroll
    for (int j = 0; j < V; j += 4) {
      const float4 q = *reinterpret_cast<const float4*>(p + j);
      f[j] = q.x;
      f[j + 1] = q.y;
      f[j + 2] = q.z;
      f[j + 3] = q.w;
    }
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) f[j] = p[j];
  }
}

// One block per row, each thread holding one group of V elements of every operand in
// registers: y, the residual and both weights are loaded before the first reduction, so a
// decode step's single row costs about one memory latency plus two block reductions. Rows of
// up to 1024 groups (8192 16-bit elements); 1024 threads leave 64 registers a thread.
template <typename T, int V>
__global__ void __launch_bounds__(1024)
    residual_rms_norm_kernel(const T* res, const T* y, const float* wy, const float* wo, T* h,
                             T* out, int64_t d, float eps) {
  allow_dependent_launch();
  const int64_t base = static_cast<int64_t>(blockIdx.x) * d;
  const int64_t i = threadIdx.x;
  const bool mine = i < d / V;
  // While the previous kernel finishes: L2 prefetches of the weights and the residual (the
  // step's weight traffic evicts them between layers), one per 128-byte line.
  if (mine && (i * V * sizeof(float)) % 128 == 0) {
    l2_prefetch_line(wy + i * V);
    l2_prefetch_line(wo + i * V);
  }
  if (mine && (i * V * sizeof(T)) % 128 == 0) l2_prefetch_line(res + base + i * V);
  wait_for_prerequisites();
  float fy[V], fr[V], w1[V], w2[V];
  float ss = 0;
  if (mine) {
    load_row<T, V>(y + base + i * V, fy);
    load_row<T, V>(res + base + i * V, fr);
    load_weights<V>(wy + i * V, w1);
    load_weights<V>(wo + i * V, w2);
#pragma unroll
    for (int j = 0; j < V; ++j) ss += fy[j] * fy[j];
  }
  ss = block_reduce(ss, 0.0f, [](float a, float b) { return a + b; });
  const float ny = 1.0f / sqrtf(ss / static_cast<float>(d) + eps);
  T hv[V];
  float ss2 = 0;
  if (mine) {
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const T a = cast_to<T>(fy[j] * ny * w1[j]);
      hv[j] = residual_sum<T>(fr[j], cast_to<float>(a));
      const float f = cast_to<float>(hv[j]);
      ss2 += f * f;
    }
    store_row<T, V>(h + base + i * V, hv);
  }
  ss2 = block_reduce(ss2, 0.0f, [](float a, float b) { return a + b; });
  const float nh = 1.0f / sqrtf(ss2 / static_cast<float>(d) + eps);
  if (mine) {
    T o[V];
#pragma unroll
    for (int j = 0; j < V; ++j) o[j] = cast_to<T>(cast_to<float>(hv[j]) * nh * w2[j]);
    store_row<T, V>(out + base + i * V, o);
  }
}

// Any row length: the same passes re-reading the row (h is read back by the thread that
// wrote it).
template <typename T>
__global__ void residual_rms_norm_loop_kernel(const T* res, const T* y, const float* wy,
                                              const float* wo, T* h, T* out, int64_t d, float eps) {
  allow_dependent_launch();
  wait_for_prerequisites();
  const int64_t base = static_cast<int64_t>(blockIdx.x) * d;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const float v = cast_to<float>(y[base + i]);
    ss += v * v;
  }
  ss = block_reduce(ss, 0.0f, [](float a, float b) { return a + b; });
  const float ny = 1.0f / sqrtf(ss / static_cast<float>(d) + eps);
  float ss2 = 0;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const T a = cast_to<T>(cast_to<float>(y[base + i]) * ny * wy[i]);
    const T hv = residual_sum<T>(cast_to<float>(res[base + i]), cast_to<float>(a));
    h[base + i] = hv;
    const float f = cast_to<float>(hv);
    ss2 += f * f;
  }
  ss2 = block_reduce(ss2, 0.0f, [](float a, float b) { return a + b; });
  const float nh = 1.0f / sqrtf(ss2 / static_cast<float>(d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    out[base + i] = cast_to<T>(cast_to<float>(h[base + i]) * nh * wo[i]);
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

void residual_rms_norm_gpu(Primitive& p, const std::vector<array>& inputs,
                           std::vector<array>& outputs) {
  auto& op = static_cast<fast::ResidualRMSNorm&>(p);
  array res = ensure_row_contiguous(inputs[0], p.stream());
  array y = ensure_row_contiguous(inputs[1], p.stream());
  array wy = ensure_row_contiguous(inputs[2], p.stream());
  array wo = ensure_row_contiguous(inputs[3], p.stream());
  for (auto& o : outputs) allocate_row_contiguous(o);
  if (outputs[0].size() == 0) return;
  if (wy.dtype() != float32 || wo.dtype() != float32) {
    throw std::invalid_argument("[residual_rms_norm] the weights must be float32");
  }
  const int64_t d = y.shape(-1);
  const int64_t rows = static_cast<int64_t>(y.size()) / d;
  if (rows > std::numeric_limits<int>::max()) {
    throw std::invalid_argument("[residual_rms_norm] too many rows for one launch: " +
                                std::to_string(rows));
  }
  dispatch_float(outputs[0].dtype(), "residual_rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, double>) {
      throw std::invalid_argument("[residual_rms_norm] float64 input takes the composed path");
    } else {
      constexpr int V = 16 / sizeof(T);
      const T* rp = res.data<T>();
      const T* yp = y.data<T>();
      const float* w1 = wy.data<float>();
      const float* w2 = wo.data<float>();
      T* hp = outputs[0].data<T>();
      T* op_ = outputs[1].data<T>();
      const auto grid = static_cast<unsigned>(rows);
      const bool vec = d % V == 0 && aligned16(rp) && aligned16(yp) && aligned16(w1) &&
                       aligned16(w2) && aligned16(hp) && aligned16(op_);
      const int64_t nv = d / V;
      if (vec && nv <= 1024) {
        const auto threads = static_cast<unsigned>(std::max<int64_t>(32, (nv + 31) / 32 * 32));
        launch_dependent(residual_rms_norm_kernel<T, V>, dim3(grid), dim3(threads), stream_of(p),
                         "residual_rms_norm", rp, yp, w1, w2, hp, op_, d, op.eps());
      } else {
        launch_dependent(residual_rms_norm_loop_kernel<T>, dim3(grid), dim3(512), stream_of(p),
                         "residual_rms_norm", rp, yp, w1, w2, hp, op_, d, op.eps());
      }
    }
  });
  check_launch("residual_rms_norm");
}

// ---------------------------------------------------------------- rms_norm_rope

constexpr int kNormRopeSegments = 4;

template <typename T>
struct NormRopeSegment {
  const T* x;
  T* y;
  const float* w;
  Layout<1> rows_layout;
  int64_t per_batch;     // rows per element of the first axis
  int64_t y_row_stride;  // elements between output rows: d, or a cache's capacity * d
  bool at_slot;          // output rows start at y + row * y_row_stride + slot * d
  const int32_t* slot;   // the slot on the device, or null: slot_value
  int32_t slot_value;
  int slots;  // the cache's capacity: the slot counts from the end if negative, clamped
  int d;
  bool plain;  // copied as it is (a cache's values): no norm, no rotation
};

template <typename T>
struct NormRopeArgs {
  NormRopeSegment<T> seg[kNormRopeSegments];
  int64_t first_row[kNormRopeSegments + 1];  // prefix sums of the segments' rows
  int nseg;
  const int32_t* offset;  // null: offset_value for every row
  int32_t offset_value;
  bool batched_offset;
  int64_t offset_stride;
  int L, dims, half;
  bool traditional;
  double scale, log_base;
  float eps;
};

// n elements copied by one warp: all of a round's loads before its stores (the compiler may
// not reorder them itself: the two could overlap).
template <typename E>
__device__ __forceinline__ void copy_warp(const E* x, E* y, int n, int lane) {
  constexpr int U = 4;
  for (int i0 = 0; i0 < n; i0 += 32 * U) {
    E v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int i = i0 + u * 32 + lane;
      if (i < n) v[u] = x[i];
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int i = i0 + u * 32 + lane;
      if (i < n) y[i] = v[u];
    }
  }
}

// A plain row (a cache's values), 16 bytes a lane where both ends are aligned to that.
template <typename T>
__device__ __forceinline__ void copy_row(const T* xr, T* yr, int d, int lane) {
  if ((d * sizeof(T)) % 16 == 0 && reinterpret_cast<uintptr_t>(xr) % 16 == 0 &&
      reinterpret_cast<uintptr_t>(yr) % 16 == 0) {
    copy_warp(reinterpret_cast<const uint4*>(xr), reinterpret_cast<uint4*>(yr),
              static_cast<int>(d * sizeof(T) / 16), lane);
  } else {
    copy_warp(xr, yr, d, lane);
  }
}

// One warp per row of any input: the sum of squares (the row's loads all in flight at once),
// then per pair the normalized values rounded to T (as the unfused norm stores them) and
// rotated by the angle fast::rope's kernels use (formed in double precision: exact at large
// positions).
template <typename T>
__global__ void __launch_bounds__(128) rms_norm_rope_kernel(NormRopeArgs<T> a) {
  allow_dependent_launch();
  const int lane = threadIdx.x & 31;
  int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= a.first_row[a.nseg]) {
    wait_for_prerequisites();
    return;
  }
  int s = 0;
  while (s + 1 < a.nseg && r >= a.first_row[s + 1]) ++s;
  const NormRopeSegment<T>& g = a.seg[s];
  r -= a.first_row[s];
  const T* xr = g.x + g.rows_layout.offset(0, r);
  const int d = g.d;
  const float* w = g.w;
  const int64_t l = r % a.L;
  const int64_t b = r / g.per_batch;
  const int32_t* offp =
      a.offset ? a.offset + (a.batched_offset ? b * a.offset_stride : 0) : nullptr;
  constexpr int P = 4;  // pairs per lane in a group: every load of a group before its stores
  // What does not depend on the kernels before this one comes first, while they finish: the
  // rotation's inverse frequencies of the first group (arithmetic on the arguments alone), and
  // L2 prefetches of the weights, the offset and the slot (hints: nothing is read yet).
  double inv0[P];
  auto inv_freqs = [&](int k0, double* inv) {
#pragma unroll
    for (int j = 0; j < P; ++j) {
      const int k = k0 + j * 32 + lane;
      inv[j] = k < a.half ? exp(-(2.0 * k / a.dims) * a.log_base) : 0.0;
    }
  };
  if (!g.plain) {
    inv_freqs(0, inv0);
    if (lane * 32 < d) l2_prefetch_line(w + lane * 32);
    if (lane == 0 && offp) l2_prefetch_line(offp);
  }
  if (lane == 0 && g.at_slot && g.slot) l2_prefetch_line(g.slot);
  wait_for_prerequisites();
  int64_t at = 0;
  if (g.at_slot) {
    at = g.slot ? *g.slot : g.slot_value;
    if (at < 0) at += g.slots;
    at = at < 0 ? 0 : (at >= g.slots ? g.slots - 1 : at);
  }
  T* yr = g.y + r * g.y_row_stride + at * d;
  if (g.plain) {
    copy_row(xr, yr, d, lane);
    return;
  }
  // Issued first: nothing below waits on it until the angles.
  const int32_t off = offp ? *offp : a.offset_value;
  auto pair_at = [&](int k, int& i1, int& i2) {
    i1 = a.traditional ? 2 * k : k;
    i2 = a.traditional ? 2 * k + 1 : k + a.half;
  };
  auto angles = [&](int k0, const double* inv, float* c, float* sn) {
    const double pos = static_cast<double>(static_cast<int64_t>(off) + l);
#pragma unroll
    for (int j = 0; j < P; ++j) {
      const int k = k0 + j * 32 + lane;
      if (k < a.half) sincos_reduced(a.scale * pos * inv[j], &sn[j], &c[j]);
    }
  };
  auto rotate_store = [&](int k0, const float* x1, const float* x2, const float* c,
                          const float* sn) {
#pragma unroll
    for (int j = 0; j < P; ++j) {
      const int k = k0 + j * 32 + lane;
      if (k < a.half) {
        int i1, i2;
        pair_at(k, i1, i2);
        yr[i1] = cast_to<T>(x1[j] * c[j] - x2[j] * sn[j]);
        yr[i2] = cast_to<T>(x1[j] * sn[j] + x2[j] * c[j]);
      }
    }
  };
  // The row's elements and weights of the pairs k0 + 32 j + lane (zeros past the last pair).
  auto load_pairs = [&](int k0, float* x1, float* x2, float* w1, float* w2) {
#pragma unroll
    for (int j = 0; j < P; ++j) {
      const int k = k0 + j * 32 + lane;
      x1[j] = x2[j] = w1[j] = w2[j] = 0.0f;
      if (k < a.half) {
        int i1, i2;
        pair_at(k, i1, i2);
        x1[j] = cast_to<float>(xr[i1]);
        x2[j] = cast_to<float>(xr[i2]);
        w1[j] = w[i1];
        w2[j] = w[i2];
      }
    }
  };
  // Normalized and rounded to T, as the unfused norm stores them.
  auto normalize = [&](float n, float* x1, float* x2, const float* w1, const float* w2) {
#pragma unroll
    for (int j = 0; j < P; ++j) {
      x1[j] = cast_to<float>(cast_to<T>(x1[j] * n * w1[j]));
      x2[j] = cast_to<float>(cast_to<T>(x2[j] * n * w2[j]));
    }
  };
  if (!a.traditional && a.dims == d && a.half <= 32 * P) {
    // The whole row is one group of pairs (every head dim up to 256 rotated in full, as in
    // Gemma 3): the row, its weights and the offset are all loaded before the first use, and
    // the angles computed while the sum of squares is reduced. A lane's elements are lane,
    // lane + 32, ... in order, as in the loop below: the same sum.
    float x1[P], x2[P], w1[P], w2[P], c[P], sn[P];
    float ss = 0;
    load_pairs(0, x1, x2, w1, w2);
#pragma unroll
    for (int j = 0; j < P; ++j) ss = fmaf(x1[j], x1[j], ss);
#pragma unroll
    for (int j = 0; j < P; ++j) ss = fmaf(x2[j], x2[j], ss);
    angles(0, inv0, c, sn);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    normalize(1.0f / sqrtf(ss / static_cast<float>(d) + a.eps), x1, x2, w1, w2);
    rotate_store(0, x1, x2, c, sn);
    return;
  }
  float ss = 0;
#pragma unroll 8
  for (int i = lane; i < d; i += 32) {
    const float v = cast_to<float>(xr[i]);
    ss += v * v;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  const float n = 1.0f / sqrtf(ss / static_cast<float>(d) + a.eps);
  for (int k0 = 0; k0 < a.half; k0 += 32 * P) {
    float x1[P], x2[P], w1[P], w2[P], c[P], sn[P];
    load_pairs(k0, x1, x2, w1, w2);
    normalize(n, x1, x2, w1, w2);
    double inv[P];
    if (k0 == 0) {
#pragma unroll
      for (int j = 0; j < P; ++j) inv[j] = inv0[j];
    } else {
      inv_freqs(k0, inv);
    }
    angles(k0, inv, c, sn);
    rotate_store(k0, x1, x2, c, sn);
  }
  for (int i = a.dims + lane; i < d; i += 32) yr[i] = cast_to<T>(cast_to<float>(xr[i]) * n * w[i]);
}

// One input of a norm-rope launch and where its rows go.
struct NormRopeJob {
  array x;
  std::optional<array> w;  // float32 norm weight; none: the rows are copied as they are
  void* y;
  int64_t y_row_stride;  // elements between output rows
  bool at_slot;          // rows written at a cache's slot: y + slot * d
  const int32_t* slot;   // the slot on the device, or null: slot_value
  int32_t slot_value;
  int slots;  // the cache's capacity
};

// QK-norm + RoPE of every job's rows in as few launches as the segments allow.
void launch_norm_rope(Primitive& p, const fast::RMSNormRoPE& op, array offset,
                      std::vector<NormRopeJob> jobs) {
  if (offset.dtype() != int32) {
    throw std::invalid_argument("[rms_norm_rope] the offset must be int32, got " +
                                dtype_name(offset.dtype()));
  }
  for (auto& j : jobs) {
    // Rows need only be contiguous themselves (a transposed view of heads is read in place).
    if (j.x.shape(-1) > 1 && j.x.strides().back() != 1) {
      j.x = ensure_row_contiguous(j.x, p.stream());
    }
    if (j.w) {
      j.w = ensure_row_contiguous(*j.w, p.stream());
      if (j.w->dtype() != float32) {
        throw std::invalid_argument("[rms_norm_rope] the weights must be float32");
      }
    }
  }
  const size_t n = jobs.size();
  dispatch_float(jobs[0].x.dtype(), "rms_norm_rope", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, double>) {
      throw std::invalid_argument("[rms_norm_rope] float64 input takes the composed path");
    } else {
      NormRopeArgs<T> a{};
      // A host-made offset (the eager decode step's position) is read here, not over the bus
      // by every row; host-made row offsets (a server batch's) are read from a device copy.
      if (host_made(offset) && offset.size() == 1) {
        a.offset = nullptr;
        a.offset_value = *offset.data<int32_t>();
      } else {
        if (host_made(offset)) offset = device_copy(offset, p.stream());
        a.offset = offset.data<int32_t>();
      }
      a.batched_offset = offset.size() != 1;
      a.offset_stride = offset.ndim() == 0 ? 0 : offset.strides()[0];
      a.L = jobs[0].x.shape(-2);
      a.dims = op.dims();
      a.half = op.dims() / 2;
      a.traditional = op.traditional();
      a.scale = op.scale();
      a.log_base = std::log(static_cast<double>(op.base()));
      a.eps = op.eps();
      // Up to kNormRopeSegments inputs per launch (a layer's queries and keys take one).
      for (size_t first = 0; first < n; first += kNormRopeSegments) {
        a.nseg = 0;
        a.first_row[0] = 0;
        for (size_t i = first; i < std::min(n, first + kNormRopeSegments); ++i) {
          const NormRopeJob& j = jobs[i];
          const array& x = j.x;
          if (x.size() == 0) continue;
          auto& g = a.seg[a.nseg];
          g.x = x.data<T>();
          g.y = static_cast<T*>(j.y);
          g.w = j.w ? j.w->template data<float>() : nullptr;
          g.plain = !j.w;
          g.d = x.shape(-1);
          g.y_row_stride = j.y_row_stride;
          g.at_slot = j.at_slot;
          g.slot = j.slot;
          g.slot_value = j.slot_value;
          g.slots = j.slots;
          const int64_t rows = static_cast<int64_t>(x.size()) / g.d;
          g.per_batch = rows / std::max(x.shape(0), 1);
          Shape outer(x.shape().begin(), x.shape().end() - 1);
          Strides outer_strides(x.strides().begin(), x.strides().end() - 1);
          g.rows_layout = make_layout<1>(outer, {outer_strides}, "rms_norm_rope");
          a.first_row[a.nseg + 1] = a.first_row[a.nseg] + rows;
          ++a.nseg;
        }
        const int64_t total = a.first_row[a.nseg];
        if (total == 0) continue;
        // Four rows (warps) per block (the kernel's launch bound): a decode step's dozen heads
        // spread over several SMs.
        constexpr int64_t kRowsPerBlock = 4;
        const int64_t blocks = (total + kRowsPerBlock - 1) / kRowsPerBlock;
        if (blocks > std::numeric_limits<int>::max()) {
          throw std::invalid_argument("[rms_norm_rope] too many rows for one launch: " +
                                      std::to_string(total));
        }
        launch_dependent(rms_norm_rope_kernel<T>, dim3(static_cast<unsigned>(blocks)),
                         dim3(32 * kRowsPerBlock), stream_of(p), "rms_norm_rope", a);
      }
    }
  });
  check_launch("rms_norm_rope");
}

void rms_norm_rope_gpu(Primitive& p, const std::vector<array>& inputs,
                       std::vector<array>& outputs) {
  const size_t n = outputs.size();
  std::vector<NormRopeJob> jobs;
  for (size_t i = 0; i < n; ++i) {
    allocate_row_contiguous(outputs[i]);
    jobs.push_back({inputs[i], inputs[n + i], outputs[i].data<char>(), outputs[i].shape(-1), false,
                    nullptr, 0, 0});
  }
  launch_norm_rope(p, static_cast<fast::RMSNormRoPE&>(p), inputs.back(), std::move(jobs));
}

// inputs: q, k, v, q_weight, k_weight, offset, k_cache, v_cache, slot. The caches' buffers
// become the outputs and are written in place (fast::rms_norm_rope_kv_write).
void rms_norm_rope_kv_write_gpu(Primitive& p, const std::vector<array>& inputs,
                                std::vector<array>& outputs) {
  const bool in_place = static_cast<fast::RMSNormRoPEKVWrite&>(p).in_place();
  for (int c = 6; c <= 7; ++c) {
    const array& cache = inputs[c];
    const bool contiguous = cache.flags().row_contiguous && cache.data_size() == cache.size();
    if (in_place && !contiguous) {
      throw std::invalid_argument("[rms_norm_rope_kv_write] the caches must be row-contiguous");
    }
    // Written in place when asked to or donated (nobody else holds the buffer); else a copy.
    if (in_place || (contiguous && cache.is_donatable(static_cast<long>(outputs.size())))) {
      outputs[c - 5].copy_shared_buffer(cache);
    } else {
      allocate_row_contiguous(outputs[c - 5]);
      copy_into(cache, outputs[c - 5], p.stream());
    }
  }
  allocate_row_contiguous(outputs[0]);
  // A host-made slot (a server batch's common position) is passed by value; a computed one
  // (a replayed step's) is read on the device.
  const array& slot = inputs[8];
  const bool by_value = host_made(slot);
  const int32_t* sp = by_value ? nullptr : slot.data<int32_t>();
  const int32_t sv = by_value ? *slot.data<int32_t>() : 0;
  const int C = inputs[6].shape(2);
  const int64_t cache_rows = static_cast<int64_t>(C) * inputs[6].shape(3);
  std::vector<NormRopeJob> jobs{
      {inputs[0], inputs[3], outputs[0].data<char>(), outputs[0].shape(-1), false, nullptr, 0, 0},
      {inputs[1], inputs[4], outputs[1].data<char>(), cache_rows, true, sp, sv, C},
      {inputs[2], std::optional<array>{}, outputs[2].data<char>(), cache_rows, true, sp, sv, C}};
  launch_norm_rope(p, static_cast<fast::RMSNormRoPE&>(p), inputs[5], std::move(jobs));
}

const Register<fast::RMSNormF32> r_rms_norm_f32(&rms_norm_f32_gpu);
const Register<fast::GeluApproxMul> r_gelu_approx_mul(&gelu_approx_mul_gpu);
const Register<fast::ResidualRMSNorm> r_residual_rms_norm(&residual_rms_norm_gpu);
const Register<fast::RMSNormRoPE> r_rms_norm_rope(&rms_norm_rope_gpu);
const Register<fast::RMSNormRoPEKVWrite> r_rms_norm_rope_kv_write(&rms_norm_rope_kv_write_gpu);

}  // namespace
}  // namespace mx::cuda
