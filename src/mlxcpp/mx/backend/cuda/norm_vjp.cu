// Backward passes of rms_norm and layer_norm (the CPU kernels in
// backend/cpu/fast_norm.cpp are the reference semantics). One block takes a
// fixed chunk of rows: per row it reduces the row sums it needs, writes dx,
// and adds the row's terms of the parameter gradients into the chunk's own
// slice of a partial buffer (no atomics, so the summation order and the
// result are deterministic); a second kernel sums the chunks per column.
// Sums are in float (double for float64).
#include <algorithm>

#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/fast.h"

namespace mx::cuda {
namespace {

template <typename T>
using acc_float_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

constexpr int64_t kMaxChunks = 256;

struct NormVjpArgs {
  int64_t rows, d, chunks;
  float eps;
  int64_t ws;  // the weight's stride (null weight: none)
};

template <typename A>
__device__ __forceinline__ A sum_all(A v) {
  return block_reduce(v, A(0), [](A a, A b) { return a + b; });
}

// dx = n * (w*g) - x * n^3 * mean(w*g*x);  dw += g * x * n (per chunk).
template <typename T>
__global__ void rms_norm_vjp_kernel(const T* x, const T* w, const T* g, T* dx,
                                    acc_float_t<T>* partial, NormVjpArgs p) {
  using A = acc_float_t<T>;
  const int64_t c = blockIdx.x;
  A* dw = partial ? partial + c * p.d : nullptr;
  if (dw) {
    for (int64_t i = threadIdx.x; i < p.d; i += blockDim.x) dw[i] = A(0);
  }
  for (int64_t r = p.rows * c / p.chunks; r < p.rows * (c + 1) / p.chunks; ++r) {
    const T* xr = x + r * p.d;
    const T* gr = g + r * p.d;
    A ss = 0, wgx = 0;
    for (int64_t i = threadIdx.x; i < p.d; i += blockDim.x) {
      const A xv = cast_to<A>(xr[i]);
      const A wv = w ? cast_to<A>(w[i * p.ws]) : A(1);
      ss += xv * xv;
      wgx += cast_to<A>(gr[i]) * wv * xv;
    }
    ss = sum_all(ss);
    wgx = sum_all(wgx);
    const A n = A(1) / sqrt(ss / static_cast<A>(p.d) + static_cast<A>(p.eps));
    const A c3 = n * n * n * wgx / static_cast<A>(p.d);
    for (int64_t i = threadIdx.x; i < p.d; i += blockDim.x) {
      const A xv = cast_to<A>(xr[i]);
      const A gv = cast_to<A>(gr[i]);
      const A wg = gv * (w ? cast_to<A>(w[i * p.ws]) : A(1));
      dx[r * p.d + i] = cast_to<T>(n * wg - xv * c3);
      if (dw) dw[i] += gv * xv * n;
    }
  }
}

// With xh = (x - mean) * n and wg = w * g:
// dx = n * (wg - mean(wg) - xh * mean(wg * xh));  dw += g * xh;  db += g.
template <typename T>
__global__ void layer_norm_vjp_kernel(const T* x, const T* w, const T* g, T* dx,
                                      acc_float_t<T>* partial, NormVjpArgs p) {
  using A = acc_float_t<T>;
  const int64_t c = blockIdx.x;
  A* dw = partial ? partial + c * 2 * p.d : nullptr;
  A* db = partial ? dw + p.d : nullptr;
  if (dw) {
    for (int64_t i = threadIdx.x; i < 2 * p.d; i += blockDim.x) dw[i] = A(0);
  }
  for (int64_t r = p.rows * c / p.chunks; r < p.rows * (c + 1) / p.chunks; ++r) {
    const T* xr = x + r * p.d;
    const T* gr = g + r * p.d;
    A s = 0;
    for (int64_t i = threadIdx.x; i < p.d; i += blockDim.x) s += cast_to<A>(xr[i]);
    const A mu = sum_all(s) / static_cast<A>(p.d);
    A ss = 0;
    for (int64_t i = threadIdx.x; i < p.d; i += blockDim.x) {
      const A cv = cast_to<A>(xr[i]) - mu;
      ss += cv * cv;
    }
    ss = sum_all(ss);
    const A n = A(1) / sqrt(ss / static_cast<A>(p.d) + static_cast<A>(p.eps));
    A swg = 0, swgxh = 0;
    for (int64_t i = threadIdx.x; i < p.d; i += blockDim.x) {
      const A xh = (cast_to<A>(xr[i]) - mu) * n;
      const A wg = cast_to<A>(gr[i]) * (w ? cast_to<A>(w[i * p.ws]) : A(1));
      swg += wg;
      swgxh += wg * xh;
    }
    const A mean_wg = sum_all(swg) / static_cast<A>(p.d);
    const A mean_wgxh = sum_all(swgxh) / static_cast<A>(p.d);
    for (int64_t i = threadIdx.x; i < p.d; i += blockDim.x) {
      const A xh = (cast_to<A>(xr[i]) - mu) * n;
      const A gv = cast_to<A>(gr[i]);
      const A wg = gv * (w ? cast_to<A>(w[i * p.ws]) : A(1));
      dx[r * p.d + i] = cast_to<T>(n * (wg - mean_wg - xh * mean_wgxh));
      if (dw) {
        dw[i] += gv * xh;
        db[i] += gv;
      }
    }
  }
}

// out[i] = sum over chunks of partial[c * stride + i], for i < d.
template <typename A, typename To>
__global__ void sum_chunks_kernel(const A* partial, To* out, int64_t chunks, int64_t stride,
                                  int64_t d) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= d) return;
  A s = 0;
  for (int64_t c = 0; c < chunks; ++c) s += partial[c * stride + i];
  out[i] = cast_to<To>(s);
}

template <typename A>
void write_param_grad(const array& partial, int64_t chunks, int64_t stride, int64_t offset,
                      int64_t d, array& out, cudaStream_t cs) {
  allocate_row_contiguous(out);
  if (d == 0) return;
  if (chunks == 0) {
    check(cudaMemsetAsync(out.data<char>(), 0, out.nbytes(), cs), "norm vjp");
    return;
  }
  dispatch_float(out.dtype(), "norm vjp", [&](auto tag) {
    using To = typename decltype(tag)::type;
    sum_chunks_kernel<A, To><<<grid_for(d), 256, 0, cs>>>(partial.data<A>() + offset,
                                                          out.data<To>(), chunks, stride, d);
  });
}

// Shared by both: x[, w], g in; dx[, dw][, db] out. Each chunk keeps partial
// sums of d values for dw (and, for layer_norm, d more for db).
template <bool kLayer>
void norm_vjp_gpu(Primitive& prim, const std::vector<array>& inputs, std::vector<array>& outputs,
                  float eps, bool has_weight, bool has_bias) {
  const int params = static_cast<int>(has_weight) + static_cast<int>(has_bias);
  const Stream& s = prim.stream();
  const char* name = kLayer ? "layer_norm" : "rms_norm";
  array x = ensure_row_contiguous(inputs[0], s);
  array g = ensure_row_contiguous(inputs.back(), s);
  if (g.dtype() != x.dtype()) {
    throw std::invalid_argument(std::string("[") + name + "] cotangent dtype " +
                                dtype_name(g.dtype()) + " differs from the input's " +
                                dtype_name(x.dtype()));
  }
  array& dx = outputs[0];
  allocate_row_contiguous(dx);
  const int64_t d = x.ndim() == 0 ? 1 : x.shape(-1);
  const int64_t rows = d == 0 ? 0 : static_cast<int64_t>(x.size()) / d;
  const int64_t chunks = std::min(rows, kMaxChunks);
  const int per_chunk = kLayer ? 2 : 1;
  cudaStream_t cs = resources(s).stream;
  unsigned threads = 32;
  while (threads < 1024 && static_cast<int64_t>(threads) < d) threads <<= 1;
  dispatch_float(x.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_float_t<T>;
    NormVjpArgs p{rows, d, chunks, eps, 0};
    const T* w = nullptr;
    if (has_weight) {
      const array& wa = inputs[1];
      if (wa.dtype() != x.dtype()) {
        throw std::invalid_argument(std::string("[") + name + "] weight dtype " +
                                    dtype_name(wa.dtype()) + " differs from the input's " +
                                    dtype_name(x.dtype()));
      }
      w = wa.data<T>();
      p.ws = wa.ndim() == 0 ? 0 : wa.strides().back();
    }
    array partial({1}, dtype_of<A>(), nullptr, {});
    A* pp = nullptr;
    if (params > 0 && chunks > 0) {
      partial = array({static_cast<int32_t>(chunks * per_chunk * d)}, dtype_of<A>(), nullptr, {});
      allocate_row_contiguous(partial);
      keep_until_done(s, partial);
      pp = partial.data<A>();
    }
    if (chunks > 0) {
      if constexpr (kLayer) {
        layer_norm_vjp_kernel<T><<<static_cast<unsigned>(chunks), threads, 0, cs>>>(
            x.data<T>(), w, g.data<T>(), dx.data<T>(), pp, p);
      } else {
        rms_norm_vjp_kernel<T><<<static_cast<unsigned>(chunks), threads, 0, cs>>>(
            x.data<T>(), w, g.data<T>(), dx.data<T>(), pp, p);
      }
    }
    // Parameter gradients: dw (partial offset 0), then db (offset d).
    size_t k = 1;
    if (has_weight) write_param_grad<A>(partial, chunks, per_chunk * d, 0, d, outputs[k++], cs);
    if (has_bias) write_param_grad<A>(partial, chunks, per_chunk * d, d, d, outputs[k++], cs);
  });
  check_launch(name);
}

void rms_norm_vjp_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  auto& op = static_cast<fast::RMSNormVJP&>(p);
  norm_vjp_gpu<false>(p, in, out, op.eps(), op.has_weight(), false);
}

void layer_norm_vjp_gpu(Primitive& p, const std::vector<array>& in, std::vector<array>& out) {
  auto& op = static_cast<fast::LayerNormVJP&>(p);
  norm_vjp_gpu<true>(p, in, out, op.eps(), op.has_weight(), op.has_bias());
}

const Register<fast::RMSNormVJP> r_rms_norm_vjp(&rms_norm_vjp_gpu);
const Register<fast::LayerNormVJP> r_layer_norm_vjp(&layer_norm_vjp_gpu);

}  // namespace
}  // namespace mx::cuda
