// The matrix product of matmul_generic.h: integer, bool and complex64
// products (cuBLASLt has no int64 and we want NumPy's wrap-around for every
// integer width), and K = 0 with any beta. 16 x 16 output tiles, the operands
// staged through shared memory in the accumulator type; batches walk the
// broadcast batch strides of each operand.
#include <algorithm>

#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/backend/cuda/matmul_generic.h"

namespace mx::cuda {
namespace {

constexpr int kTile = 16;

// Integers (and bool) multiply and add in uint64 modulo 2^64, truncated on
// store: the low bits are those of the exact product in T's width.
template <typename T>
using gemm_acc_t =
    std::conditional_t<std::is_integral_v<T>, unsigned long long,
                       std::conditional_t<std::is_same_v<T, double>, double,
                                          std::conditional_t<is_complex_v<T>, cfloat, float>>>;

struct GemmArgs {
  int M, N, K;
  int64_t a_rs, a_cs, b_rs, b_cs;
  int64_t batch_count;
  Layout<3> batch;  // batch dims: a, b, out
  float alpha, beta;
};

template <typename Acc, typename T>
__device__ __forceinline__ Acc to_acc(T x) {
  if constexpr (std::is_integral_v<T>) {
    // Sign-extends signed types, so that the product's low bits are right.
    return static_cast<Acc>(static_cast<long long>(x));
  } else {
    return cast_to<Acc>(x);
  }
}

template <typename T>
__global__ void gemm_kernel(const T* a, const T* b, T* c, GemmArgs g) {
  using Acc = gemm_acc_t<T>;
  __shared__ Acc ta[kTile][kTile + 1];
  __shared__ Acc tb[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int row = blockIdx.y * kTile + ty, col = blockIdx.x * kTile + tx;
  for (int64_t z = blockIdx.z; z < g.batch_count; z += gridDim.z) {
    const T* ab = a + g.batch.offset(0, z);
    const T* bb = b + g.batch.offset(1, z);
    T* cb = c + g.batch.offset(2, z);
    Acc acc = Acc(0);
    for (int k0 = 0; k0 < g.K; k0 += kTile) {
      ta[ty][tx] = (row < g.M && k0 + tx < g.K) ? to_acc<Acc>(ab[row * g.a_rs + (k0 + tx) * g.a_cs])
                                                : Acc(0);
      tb[ty][tx] = (k0 + ty < g.K && col < g.N) ? to_acc<Acc>(bb[(k0 + ty) * g.b_rs + col * g.b_cs])
                                                : Acc(0);
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kTile; ++kk) acc = acc + ta[ty][kk] * tb[kk][tx];
      __syncthreads();
    }
    if (row < g.M && col < g.N) {
      T& dst = cb[static_cast<int64_t>(row) * g.N + col];
      if constexpr (std::is_same_v<T, bool>) {
        dst = acc != 0;
      } else if constexpr (std::is_integral_v<T>) {
        dst = static_cast<T>(acc);
      } else if constexpr (is_complex_v<T>) {
        Acc r = Acc(g.alpha) * acc;
        if (g.beta != 0.0f) r = r + Acc(g.beta) * dst;
        dst = r;
      } else {
        Acc r = static_cast<Acc>(g.alpha) * acc;
        if (g.beta != 0.0f) r += static_cast<Acc>(g.beta) * cast_to<Acc>(dst);
        dst = cast_to<T>(r);
      }
    }
  }
}

}  // namespace

void matmul_generic(const array& a, const array& b, array& out, float alpha, float beta,
                    const Stream& s) {
  if (out.size() == 0) return;
  const int nd = static_cast<int>(out.ndim());
  GemmArgs g{};
  g.M = out.shape(-2);
  g.N = out.shape(-1);
  g.K = a.shape(-1);
  g.a_rs = a.strides()[a.ndim() - 2];
  g.a_cs = a.strides()[a.ndim() - 1];
  g.b_rs = b.strides()[b.ndim() - 2];
  g.b_cs = b.strides()[b.ndim() - 1];
  g.alpha = alpha;
  g.beta = beta;
  // Batch dims of the output with each operand's strides (0 where broadcast).
  Shape batch(out.shape().begin(), out.shape().end() - 2);
  auto batch_strides = [&](const array& x) {
    Strides st(batch.size(), 0);
    const int off = nd - static_cast<int>(x.ndim());
    for (int d = 0; d < static_cast<int>(x.ndim()) - 2; ++d) {
      st[d + off] = x.shape(d) == 1 ? 0 : x.strides()[d];
    }
    return st;
  };
  Strides sa = batch_strides(a), sb = batch_strides(b), so(batch.size());
  int64_t count = 1;
  for (int d = static_cast<int>(batch.size()) - 1; d >= 0; --d) {
    so[d] = count * g.M * g.N;
    count *= batch[d];
  }
  if (batch.empty()) {
    batch = {1};
    sa = sb = so = {0};
  }
  g.batch_count = count;
  g.batch = make_layout<3>(batch, {sa, sb, so}, "matmul");
  const dim3 block(kTile, kTile);
  const dim3 grid(static_cast<unsigned>((g.N + kTile - 1) / kTile),
                  static_cast<unsigned>((g.M + kTile - 1) / kTile),
                  static_cast<unsigned>(std::min<int64_t>(count, 65535)));
  if (grid.y > 65535) {
    throw std::invalid_argument("[matmul] " + std::to_string(g.M) +
                                " rows exceed the GPU kernel's 65535 * 16 for dtype " +
                                dtype_name(out.dtype()));
  }
  if (a.dtype() != out.dtype() || b.dtype() != out.dtype()) {
    throw std::invalid_argument("[matmul] operands " + dtype_name(a.dtype()) + " and " +
                                dtype_name(b.dtype()) + " differ from the output dtype " +
                                dtype_name(out.dtype()));
  }
  dispatch_any(out.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    gemm_kernel<T>
        <<<grid, block, 0, resources(s).stream>>>(a.data<T>(), b.data<T>(), out.data<T>(), g);
  });
  check_launch("matmul");
}

}  // namespace mx::cuda
