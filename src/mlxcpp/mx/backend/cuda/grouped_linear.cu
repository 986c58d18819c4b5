// GPU kernel of fast::grouped_linear for one row of x (a decode step's
// projections): y_i = x @ w_i^T for every w_i in one launch, one warp per
// output element reading its weight row with 16-byte loads. A decode step is
// bound by the host's launches, so one launch for q, k and v (or gate and up)
// instead of one GEMM call each is the point; the rows stream at close to the
// memory bandwidth.
#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/fast.h"

namespace mx::cuda {
namespace {

constexpr int kMaxItems = 8;
constexpr int kWarpsPerBlock = 8;

struct GemvItem {
  const void* w;
  int64_t ldw;        // elements between weight rows
  int64_t row_start;  // first output row of this item in the launch
  void* y;
};

struct GemvGroup {
  GemvItem items[kMaxItems];
  int n_items;
  int64_t total_rows;
  int K;
  int64_t xcs;  // x's element stride
  const void* x;
  bool vec;  // 16-byte loads: x contiguous, K and every row start aligned
};

template <typename T>
using acc_float_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
__global__ void grouped_gemv_kernel(GemvGroup g) {
  using A = acc_float_t<T>;
  const int64_t row_all = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (row_all >= g.total_rows) return;
  int it = 0;
  while (it + 1 < g.n_items && row_all >= g.items[it + 1].row_start) ++it;
  const GemvItem& item = g.items[it];
  const int64_t row = row_all - item.row_start;
  const T* w = static_cast<const T*>(item.w) + row * item.ldw;
  const T* x = static_cast<const T*>(g.x);
  A acc = 0;
  if constexpr (sizeof(T) <= 4) {
    constexpr int V = 16 / sizeof(T);
    if (g.vec) {
      const uint4* wv = reinterpret_cast<const uint4*>(w);
      const uint4* xv = reinterpret_cast<const uint4*>(x);
      const int n = g.K / V;
      for (int c = lane; c < n; c += 32) {
        uint4 a = __ldg(wv + c);
        uint4 b = xv[c];
        const T* ae = reinterpret_cast<const T*>(&a);
        const T* be = reinterpret_cast<const T*>(&b);
#pragma unroll
        for (int j = 0; j < V; ++j) acc += cast_to<A>(ae[j]) * cast_to<A>(be[j]);
      }
    } else {
      for (int k = lane; k < g.K; k += 32) acc += cast_to<A>(w[k]) * cast_to<A>(x[k * g.xcs]);
    }
  } else {
    for (int k = lane; k < g.K; k += 32) acc += cast_to<A>(w[k]) * cast_to<A>(x[k * g.xcs]);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
  if (lane == 0) static_cast<T*>(item.y)[row] = cast_to<T>(acc);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

void grouped_linear_gpu(Primitive& p, const std::vector<array>& inputs,
                        std::vector<array>& outputs) {
  const array& x0 = inputs[0];
  const int K = x0.shape(-1);
  if (x0.size() != static_cast<size_t>(K)) {
    throw std::invalid_argument("[grouped_linear] the GPU kernel takes one row of x, got shape " +
                                shape_str(x0.shape()));
  }
  const Dtype t = x0.dtype();
  array x = x0;
  std::vector<array> ws;
  for (size_t i = 1; i < inputs.size(); ++i) {
    array w = inputs[i];
    if (w.dtype() != t) {
      throw std::invalid_argument("[grouped_linear] weight dtype " + dtype_name(w.dtype()) +
                                  " differs from x's " + dtype_name(t));
    }
    const int N = w.shape(0);
    if (!(w.strides()[1] == 1 && (N <= 1 || w.strides()[0] >= K))) {
      w = ensure_row_contiguous(w, p.stream());
    }
    ws.push_back(std::move(w));
    allocate_row_contiguous(outputs[i - 1]);
  }
  if (K == 0) {
    for (auto& y : outputs) {
      if (y.size() > 0) cudaMemsetAsync(y.data<char>(), 0, y.nbytes(), stream_of(p));
    }
    check_launch("grouped_linear");
    return;
  }
  const int64_t xcs = x.ndim() > 0 ? x.strides().back() : 1;
  const size_t esize = size_of(t);
  for (size_t base = 0; base < ws.size(); base += kMaxItems) {
    GemvGroup g{};
    g.K = K;
    g.xcs = xcs;
    g.x = x.data<char>();
    g.vec = esize <= 4 && xcs == 1 && (static_cast<size_t>(K) * esize) % 16 == 0 && aligned16(g.x);
    int64_t rows = 0;
    for (size_t i = base; i < ws.size() && i < base + kMaxItems; ++i) {
      const array& w = ws[i];
      const int N = w.shape(0);
      const int64_t ldw = N <= 1 ? K : w.strides()[0];
      GemvItem& item = g.items[g.n_items++];
      item.w = w.data<char>();
      item.ldw = ldw;
      item.row_start = rows;
      item.y = outputs[i].data<char>();
      g.vec = g.vec && aligned16(item.w) && (static_cast<size_t>(ldw) * esize) % 16 == 0;
      rows += N;
    }
    g.total_rows = rows;
    if (rows == 0) continue;
    const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
    dispatch_float(t, "grouped_linear", [&](auto tag) {
      using T = typename decltype(tag)::type;
      grouped_gemv_kernel<T>
          <<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, stream_of(p)>>>(g);
    });
    check_launch("grouped_linear");
  }
}

const Register<fast::GroupedLinear> r_grouped_linear(&grouped_linear_gpu);

}  // namespace
}  // namespace mx::cuda
