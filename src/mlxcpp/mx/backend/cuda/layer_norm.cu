// Layer normalization, one block per row: two passes over the row (mean,
// then the centred sum of squares, which does not cancel catastrophically),
// rounding the normalized value to T before the weight and bias as the CPU
// kernel does.
#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/fast.h"

namespace mx::cuda {
namespace {

template <typename T>
using acc_float_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
__global__ void layer_norm_kernel(const T* x, const T* w, int64_t ws, const T* b, int64_t bs, T* y,
                                  int64_t rows, int64_t d, float eps) {
  using A = acc_float_t<T>;
  auto add = [](A u, A v) { return u + v; };
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    A s = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) s += cast_to<A>(xr[i]);
    const A mu = block_reduce(s, A(0), add) / static_cast<A>(d);
    A ss = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      const A c = cast_to<A>(xr[i]) - mu;
      ss += c * c;
    }
    ss = block_reduce(ss, A(0), add);
    const A n = A(1) / sqrt(ss / static_cast<A>(d) + static_cast<A>(eps));
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      A v = cast_to<A>(cast_to<T>((cast_to<A>(xr[i]) - mu) * n));
      if (w) v *= cast_to<A>(w[i * ws]);
      if (b) v += cast_to<A>(b[i * bs]);
      yr[i] = cast_to<T>(v);
    }
  }
}

void layer_norm_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& op = static_cast<fast::LayerNorm&>(p);
  array x = ensure_row_contiguous(inputs[0], p.stream());
  array& out = outputs[0];
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  const int64_t d = x.shape(-1);
  const int64_t rows = static_cast<int64_t>(x.size()) / d;
  unsigned threads = 32;
  while (threads < 1024 && static_cast<int64_t>(threads) < d) threads <<= 1;
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{1} << 20));
  dispatch_float(out.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto param = [&](size_t i, const char* what, int64_t& stride) -> const T* {
      const array& a = inputs[i];
      if (a.dtype() != out.dtype()) {
        throw std::invalid_argument(std::string("[layer_norm] ") + what + " dtype " +
                                    dtype_name(a.dtype()) + " differs from the input's " +
                                    dtype_name(out.dtype()));
      }
      stride = a.ndim() == 0 ? 0 : a.strides().back();
      return a.data<T>();
    };
    int64_t ws = 0, bs = 0;
    const T* w = op.has_weight() ? param(1, "weight", ws) : nullptr;
    const T* b = op.has_bias() ? param(op.has_weight() ? 2 : 1, "bias", bs) : nullptr;
    layer_norm_kernel<T><<<grid, threads, 0, stream_of(p)>>>(x.data<T>(), w, ws, b, bs,
                                                             out.data<T>(), rows, d, op.eps());
  });
  check_launch("layer_norm");
}

const Register<fast::LayerNorm> r_layer_norm(&layer_norm_gpu);

}  // namespace
}  // namespace mx::cuda
