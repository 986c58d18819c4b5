// Fused transformer kernels: RMS normalization (one block per row) and rotary
// position embeddings (one thread per rotated pair). Offsets and frequencies
// are read on the device, so a decode step needs no host round trip.
#include <algorithm>
#include <cmath>

#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/fast.h"

namespace mx::cuda {
namespace {

template <typename T>
using acc_float_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// y = round_T(x * rsqrt(mean(x^2) + eps)) * w, rounding before the weight as
// the CPU kernel (and MLX) do.
template <typename T>
__global__ void rms_norm_kernel(const T* x, const T* w, int64_t w_stride, T* y, int64_t rows,
                                int64_t d, float eps) {
  using A = acc_float_t<T>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    A ss = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      A v = cast_to<A>(xr[i]);
      ss += v * v;
    }
    ss = block_reduce(ss, A(0), [](A a, A b) { return a + b; });
    const A n = A(1) / sqrt(ss / static_cast<A>(d) + static_cast<A>(eps));
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      T v = cast_to<T>(cast_to<A>(xr[i]) * n);
      yr[i] = w ? cast_to<T>(cast_to<A>(v) * cast_to<A>(w[i * w_stride])) : v;
    }
  }
}

void rms_norm_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& op = static_cast<fast::RMSNorm&>(p);
  array x = ensure_row_contiguous(inputs[0], p.stream());
  array& out = outputs[0];
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  const int64_t d = x.shape(-1);
  const int64_t rows = static_cast<int64_t>(x.size()) / d;
  unsigned threads = 32;
  while (threads < 1024 && static_cast<int64_t>(threads) < d) threads <<= 1;
  unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{1} << 20));
  dispatch_float(out.dtype(), "rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* w = nullptr;
    int64_t ws = 0;
    if (op.has_weight()) {
      const array& wa = inputs[1];
      if (wa.dtype() != out.dtype()) {
        throw std::invalid_argument("[rms_norm] weight dtype " + dtype_name(wa.dtype()) +
                                    " differs from the input's " + dtype_name(out.dtype()));
      }
      w = wa.data<T>();
      ws = wa.ndim() == 0 ? 0 : wa.strides().back();
    }
    rms_norm_kernel<T>
        <<<grid, threads, 0, stream_of(p)>>>(x.data<T>(), w, ws, out.data<T>(), rows, d, op.eps());
  });
  check_launch("rms_norm");
}

struct RopeParams {
  int64_t rows;
  int d, dims, half, L;
  int64_t per_batch;    // rows per element of the first axis
  bool batched_offset;  // one offset per element of the first axis
  int64_t offset_stride;
  bool traditional, forward;
  double scale, log_base;
  const float* freqs;  // dims / 2 periods, or null for base ** (-2i / dims)
};

// cos and sin (negated backwards) of pair k's angle at position l of batch element b. The angle
// is formed in double precision: exact at large positions, where a float32 angle would not be.
template <typename A>
__device__ __forceinline__ void rope_cos_sin(const RopeParams& p, const int32_t* offset, int64_t b,
                                             int64_t l, int k, A& c, A& s) {
  const int64_t pos = static_cast<int64_t>(offset[p.batched_offset ? b * p.offset_stride : 0]) + l;
  const double inv =
      p.freqs ? 1.0 / static_cast<double>(p.freqs[k]) : exp(-(2.0 * k / p.dims) * p.log_base);
  const double theta = p.scale * static_cast<double>(pos) * inv;
  if constexpr (std::is_same_v<A, double>) {
    double sd, cd;
    sincos(theta, &sd, &cd);
    c = cd;
    s = p.forward ? sd : -sd;
  } else {
    float sf, cf;
    sincos_reduced(theta, &sf, &cf);
    c = static_cast<A>(cf);
    s = static_cast<A>(p.forward ? sf : -sf);
  }
}

template <typename T>
__global__ void rope_kernel(const T* x, T* y, const int32_t* offset, Layout<1> rows_layout,
                            RopeParams p) {
  using A = acc_float_t<T>;
  const int per_row = p.half + (p.d - p.dims);
  const int64_t n = p.rows * per_row;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n; t += step) {
    const int64_t r = t / per_row;
    const int k = static_cast<int>(t - r * per_row);
    const T* xr = x + rows_layout.offset(0, r);
    T* yr = y + r * p.d;
    if (k >= p.half) {  // dims past the rotated ones pass through
      const int i = p.dims + (k - p.half);
      yr[i] = xr[i];
      continue;
    }
    const int64_t l = r % p.L;
    const int64_t b = r / p.per_batch;
    A c, s;
    rope_cos_sin(p, offset, b, l, k, c, s);
    const int i1 = p.traditional ? 2 * k : k;
    const int i2 = p.traditional ? 2 * k + 1 : k + p.half;
    const A x1 = cast_to<A>(xr[i1]);
    const A x2 = cast_to<A>(xr[i2]);
    yr[i1] = cast_to<T>(x1 * c - x2 * s);
    yr[i2] = cast_to<T>(x1 * s + x2 * c);
  }
}

// The same rotation with one thread per (batch, position, pair) looping over the rows that
// share them (the heads of a [B, H, L, D] input): the angle, computed in double precision as
// above, is computed once per head group instead of once per row.
template <typename T>
__global__ void rope_grouped_kernel(const T* x, T* y, const int32_t* offset, Layout<1> rows_layout,
                                    RopeParams p, int64_t groups) {
  using A = acc_float_t<T>;
  const int per_row = p.half + (p.d - p.dims);
  const int64_t heads = p.per_batch / p.L;
  const int64_t n = groups * p.L * per_row;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n; t += step) {
    const int64_t bl = t / per_row;
    const int k = static_cast<int>(t - bl * per_row);
    const int64_t b = bl / p.L;
    const int64_t l = bl - b * p.L;
    const int64_t r0 = b * p.per_batch + l;
    if (k >= p.half) {
      const int i = p.dims + (k - p.half);
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t r = r0 + h * p.L;
        y[r * p.d + i] = x[rows_layout.offset(0, r) + i];
      }
      continue;
    }
    A c, s;
    rope_cos_sin(p, offset, b, l, k, c, s);
    const int i1 = p.traditional ? 2 * k : k;
    const int i2 = p.traditional ? 2 * k + 1 : k + p.half;
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t r = r0 + h * p.L;
      const T* xr = x + rows_layout.offset(0, r);
      T* yr = y + r * p.d;
      const A x1 = cast_to<A>(xr[i1]);
      const A x2 = cast_to<A>(xr[i2]);
      yr[i1] = cast_to<T>(x1 * c - x2 * s);
      yr[i2] = cast_to<T>(x1 * s + x2 * c);
    }
  }
}

void rope_gpu(Primitive& prim, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& op = static_cast<fast::RoPE&>(prim);
  array x = inputs[0];
  if (x.ndim() > 0 && x.shape(-1) > 1 && x.strides().back() != 1) {
    x = ensure_row_contiguous(x, prim.stream());
  }
  array& out = outputs[0];
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  const array& offset = inputs[1];
  if (offset.dtype() != int32) {
    throw std::invalid_argument("[rope] the offset must be int32, got " +
                                dtype_name(offset.dtype()));
  }
  RopeParams p{};
  p.d = x.shape(-1);
  p.dims = op.dims();
  p.half = op.dims() / 2;
  p.L = x.shape(-2);
  p.rows = static_cast<int64_t>(x.size()) / p.d;
  p.per_batch = p.rows / std::max(x.shape(0), 1);
  p.batched_offset = offset.size() != 1;
  p.offset_stride = offset.ndim() == 0 ? 0 : offset.strides()[0];
  p.traditional = op.traditional();
  p.forward = op.forward();
  p.scale = op.scale();
  p.log_base = std::log(static_cast<double>(op.base()));
  if (inputs.size() > 2) {
    array f = inputs[2];
    if (f.dtype() != float32 || !f.flags().row_contiguous) {
      array g(f.shape(), float32, nullptr, {});
      allocate_row_contiguous(g);
      copy_into(f, g, prim.stream());
      keep_until_done(prim.stream(), g);
      f = g;
    }
    p.freqs = f.data<float>();
  }
  Shape outer(x.shape().begin(), x.shape().end() - 1);
  Strides outer_strides(x.strides().begin(), x.strides().end() - 1);
  auto rows_layout = make_layout<1>(outer, {outer_strides}, "rope");
  const int64_t n = p.rows * (p.half + (p.d - p.dims));
  if (n == 0) return;
  dispatch_float(x.dtype(), "rope", [&](auto tag) {
    using T = typename decltype(tag)::type;
    // Rows [B, ..., L] with several rows per (batch, position): the grouped kernel, which
    // computes each angle once per head group. A few rows (a decode step's heads) take the
    // flat kernel instead: one thread per pair and no loop over the heads, whose chain of
    // loads would be the kernel's whole latency.
    const int64_t groups = std::max(x.shape(0), 1);
    constexpr int64_t kFewPairs = int64_t{1} << 14;
    if (n > kFewPairs && x.ndim() >= 3 && p.per_batch > p.L && p.per_batch % p.L == 0 &&
        groups * p.per_batch == p.rows) {
      const int64_t m = groups * p.L * (p.half + (p.d - p.dims));
      rope_grouped_kernel<T><<<grid_for(m), 256, 0, stream_of(prim)>>>(
          x.data<T>(), out.data<T>(), offset.data<int32_t>(), rows_layout, p, groups);
    } else {
      const unsigned block = n > kFewPairs ? 256 : 128;
      rope_kernel<T><<<grid_for(n, block), block, 0, stream_of(prim)>>>(
          x.data<T>(), out.data<T>(), offset.data<int32_t>(), rows_layout, p);
    }
  });
  check_launch("rope");
}

const Register<fast::RMSNorm> r_rms_norm(&rms_norm_gpu);
const Register<fast::RoPE> r_rope(&rope_gpu);

}  // namespace
}  // namespace mx::cuda
