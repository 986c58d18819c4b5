// Reductions (sum, prod, max, min, all, any over any axes), argmin/argmax
// along one axis and the fused softmax over the last axis. One block per
// output element: its threads stride over the reduced elements (contiguous
// for last-axis reductions, so reads coalesce) and combine through warp
// shuffles. Floats accumulate in float (double for float64), integers in the
// widened output type with wrap-around, as on the CPU.
#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>

#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/reduce.h"

namespace mx::cuda {
namespace {

template <typename T>
struct Widened {
  using type = T;
};
template <>
struct Widened<bool> {
  using type = int32_t;
};
template <>
struct Widened<int8_t> {
  using type = int32_t;
};
template <>
struct Widened<uint8_t> {
  using type = uint32_t;
};
template <>
struct Widened<int16_t> {
  using type = int32_t;
};
template <>
struct Widened<uint16_t> {
  using type = uint32_t;
};

// Wrapping integer arithmetic (signed overflow is undefined in C++).
template <typename T>
__device__ __forceinline__ T wrap_add(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using W = std::conditional_t<sizeof(T) <= 4, uint32_t, unsigned long long>;
    return static_cast<T>(static_cast<W>(a) + static_cast<W>(b));
  } else {
    return a + b;
  }
}
template <typename T>
__device__ __forceinline__ T wrap_mul(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using W = std::conditional_t<sizeof(T) <= 4, uint32_t, unsigned long long>;
    return static_cast<T>(static_cast<W>(a) * static_cast<W>(b));
  } else {
    return a * b;
  }
}

template <typename In>
using float_acc_t = std::conditional_t<std::is_same_v<In, double>, double, float>;

template <typename In>
struct SumR {
  using Out = std::conditional_t<is_float_v<In>, In, typename Widened<In>::type>;
  using Acc = std::conditional_t<is_float_v<In>, float_acc_t<In>, Out>;
  static __device__ Acc init() { return Acc(0); }
  __device__ Acc operator()(Acc a, Acc b) const { return wrap_add(a, b); }
};
template <typename In>
struct ProdR {
  using Out = std::conditional_t<is_float_v<In>, In, typename Widened<In>::type>;
  using Acc = std::conditional_t<is_float_v<In>, float_acc_t<In>, Out>;
  static __device__ Acc init() { return Acc(1); }
  __device__ Acc operator()(Acc a, Acc b) const { return wrap_mul(a, b); }
};
// Max and min propagate NaN.
template <typename In>
struct MaxR {
  using Out = In;
  using Acc = std::conditional_t<is_float_v<In>, float_acc_t<In>, In>;
  static __device__ Acc init() {
    if constexpr (std::is_floating_point_v<Acc>) {
      return -INFINITY;
    } else {
      return std::numeric_limits<Acc>::lowest();
    }
  }
  __device__ Acc operator()(Acc a, Acc b) const {
    if constexpr (std::is_floating_point_v<Acc>) {
      if (isnan(a) || isnan(b)) return NAN;
    }
    return a > b ? a : b;
  }
};
template <typename In>
struct MinR {
  using Out = In;
  using Acc = std::conditional_t<is_float_v<In>, float_acc_t<In>, In>;
  static __device__ Acc init() {
    if constexpr (std::is_floating_point_v<Acc>) {
      return INFINITY;
    } else {
      return std::numeric_limits<Acc>::max();
    }
  }
  __device__ Acc operator()(Acc a, Acc b) const {
    if constexpr (std::is_floating_point_v<Acc>) {
      if (isnan(a) || isnan(b)) return NAN;
    }
    return a < b ? a : b;
  }
};
template <typename In>
struct AndR {
  using Out = bool;
  using Acc = bool;
  static __device__ Acc init() { return true; }
  __device__ Acc operator()(Acc a, Acc b) const { return a && b; }
};
template <typename In>
struct OrR {
  using Out = bool;
  using Acc = bool;
  static __device__ Acc init() { return false; }
  __device__ Acc operator()(Acc a, Acc b) const { return a || b; }
};

// One block reduces the `n` values of each row, or (split: `part` given) its share of a long
// row: block (c, r) takes positions [c * chunk, (c + 1) * chunk) of row r and leaves its
// partial result in part[r * gridDim.x + c] for reduce_merge_kernel.
template <typename Op, typename In>
__global__ void reduce_kernel(const In* x, typename Op::Out* y, int64_t rows, int64_t n,
                              Layout<1> outer, Layout<1> inner, int64_t chunk,
                              typename Op::Acc* part) {
  using Acc = typename Op::Acc;
  Op op;
  const bool split = part != nullptr;
  const int64_t j0 = split ? blockIdx.x * chunk : 0;
  const int64_t j1 = split ? (j0 + chunk < n ? j0 + chunk : n) : n;
  for (int64_t r = split ? blockIdx.y : blockIdx.x; r < rows; r += split ? rows : gridDim.x) {
    const In* xr = x + outer.offset(0, r);
    Acc acc = Op::init();
#pragma unroll 4
    for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
      acc = op(acc, cast_to<Acc>(xr[inner.contiguous ? j : inner.offset(0, j)]));
    }
    acc = block_reduce(acc, Op::init(), op);
    if (threadIdx.x == 0) {
      if (split) {
        part[r * gridDim.x + blockIdx.x] = acc;
      } else {
        y[r] = cast_to<typename Op::Out>(acc);
      }
    }
  }
}

// One block of 32 threads per row combines the `parts` partial results of a split row.
template <typename Op>
__global__ void reduce_merge_kernel(const typename Op::Acc* part, typename Op::Out* y, int64_t rows,
                                    int parts) {
  using Acc = typename Op::Acc;
  Op op;
  const int64_t r = blockIdx.x;
  if (r >= rows) return;
  Acc acc = Op::init();
  for (int c = threadIdx.x; c < parts; c += blockDim.x) acc = op(acc, part[r * parts + c]);
  acc = block_reduce(acc, Op::init(), op);
  if (threadIdx.x == 0) y[r] = cast_to<typename Op::Out>(acc);
}

// Long rows few enough to leave SMs idle with a block per row are cut into chunks of at
// least 4096 values, one block each, for about eight blocks per SM in all (a 64-row argmax
// over a vocabulary of 262144: 16 blocks a row).
int reduce_parts(int64_t rows, int64_t n) {
  constexpr int64_t kMinChunk = 4096, kBusyBlocks = 1056;
  if (rows >= kBusyBlocks || n < 2 * kMinChunk) return 1;
  return static_cast<int>(
      std::max<int64_t>(std::min<int64_t>({n / kMinChunk, kBusyBlocks / rows, 1024}), 1));
}

unsigned threads_for(int64_t n) {
  unsigned t = 32;
  while (t < 256 && static_cast<int64_t>(t) < n) t <<= 1;
  return t;
}

// Splits `in`'s dims into kept (outer, in output order) and reduced (inner).
std::pair<Layout<1>, Layout<1>> split_layouts(const array& in, const std::vector<int>& axes,
                                              const char* op, int64_t& rows, int64_t& n) {
  Shape os, is;
  Strides ost, ist;
  for (int d = 0; d < static_cast<int>(in.ndim()); ++d) {
    bool red = std::find(axes.begin(), axes.end(), d) != axes.end();
    (red ? is : os).push_back(in.shape(d));
    (red ? ist : ost).push_back(in.strides()[d]);
  }
  rows = 1;
  for (auto s : os) rows *= s;
  n = 1;
  for (auto s : is) n *= s;
  if (os.empty()) {
    os.push_back(1);
    ost.push_back(0);
  }
  if (is.empty()) {
    is.push_back(1);
    ist.push_back(0);
  }
  return {make_layout<1>(os, {ost}, op), make_layout<1>(is, {ist}, op)};
}

// complex64 has no order: max and min refuse it (the others reduce cfloat).
template <template <typename> class Op>
inline constexpr bool kComplexReduce = true;
template <>
inline constexpr bool kComplexReduce<MaxR> = false;
template <>
inline constexpr bool kComplexReduce<MinR> = false;

template <template <typename> class Op>
void run_reduce(Primitive& p, const array& in, array& out, const std::vector<int>& axes,
                const char* name) {
  int64_t rows, n;
  auto [outer, inner] = split_layouts(in, axes, name, rows, n);
  if (rows == 0) return;
  if (in.dtype() == complex64 && !kComplexReduce<Op>) {
    throw std::invalid_argument(std::string("[") + name + "] does not support complex64");
  }
  dispatch_any(in.dtype(), name, [&](auto tag) {
    using In = typename decltype(tag)::type;
    if constexpr (!is_complex_v<In> || kComplexReduce<Op>) {
      using R = Op<In>;
      if (out.dtype() != dtype_of<typename R::Out>()) {
        throw std::invalid_argument(std::string("[") + name + "] unexpected output dtype " +
                                    dtype_name(out.dtype()));
      }
      using Acc = typename R::Acc;
      unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{1} << 20));
      // A few long rows (the max and sum of a logsumexp over a vocabulary when sampling)
      // would leave all but a few SMs idle with one block per row: floating-point rows are
      // cut as argmax's are (reduce_parts) and the chunks' results combined by a second kernel.
      int parts = 1;
      if constexpr (std::is_floating_point_v<Acc>) parts = reduce_parts(rows, n);
      const int64_t chunk = (n + parts - 1) / parts;
      Acc* part = nullptr;
      dim3 blocks(grid);
      if (parts > 1) {
        array scratch({static_cast<int32_t>(rows * parts)}, dtype_of<Acc>(), nullptr, {});
        allocate_row_contiguous(scratch);
        keep_until_done(p.stream(), scratch);
        part = scratch.data<Acc>();
        blocks = dim3(static_cast<unsigned>(parts), static_cast<unsigned>(rows));
      }
      reduce_kernel<R, In><<<blocks, threads_for(parts > 1 ? chunk : n), 0, stream_of(p)>>>(
          in.data<In>(), out.data<typename R::Out>(), rows, n, outer, inner, chunk, part);
      if (parts > 1) {
        reduce_merge_kernel<R><<<static_cast<unsigned>(rows), 32, 0, stream_of(p)>>>(
            part, out.data<typename R::Out>(), rows, parts);
      }
    }
  });
  check_launch(name);
}

void reduce_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& r = static_cast<Reduce&>(p);
  const array& in = inputs[0];
  array& out = outputs[0];
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  switch (r.type()) {
    case Reduce::And:
      return run_reduce<AndR>(p, in, out, r.axes(), "all");
    case Reduce::Or:
      return run_reduce<OrR>(p, in, out, r.axes(), "any");
    case Reduce::Sum:
      return run_reduce<SumR>(p, in, out, r.axes(), "sum");
    case Reduce::Prod:
      return run_reduce<ProdR>(p, in, out, r.axes(), "prod");
    case Reduce::Max:
      return run_reduce<MaxR>(p, in, out, r.axes(), "max");
    case Reduce::Min:
      return run_reduce<MinR>(p, in, out, r.axes(), "min");
  }
}

// ---------------------------------------------------------------- ArgReduce

// Whether (a, ia) beats (b, ib): the first extremum wins ties and a NaN counts
// as the extremum (NumPy's rule).
template <bool kMax, typename A>
__device__ __forceinline__ bool arg_better(A a, uint32_t ia, A b, uint32_t ib) {
  if constexpr (std::is_floating_point_v<A>) {
    const bool na = isnan(a), nb = isnan(b);
    if (na || nb) return na && (!nb || ia < ib);
  }
  if (a == b) return ia < ib;
  return kMax ? a > b : a < b;
}

// One block reduces `n` values of each row, or (split) its share of a long row: block
// (c, r) takes positions [c * chunk, (c + 1) * chunk) of row r and leaves its best value and
// index in part_val / part_idx[r * gridDim.x + c] for arg_reduce_merge_kernel.
template <bool kMax, typename In>
__global__ void arg_reduce_kernel(const In* x, uint32_t* y, int64_t rows, int64_t n, int64_t stride,
                                  Layout<1> outer, int64_t chunk, compute_t<In>* part_val,
                                  uint32_t* part_idx) {
  using A = compute_t<In>;
  __shared__ A sval[32];
  __shared__ uint32_t sidx[32];
  const bool split = part_val != nullptr;
  const int64_t j0 = split ? blockIdx.x * chunk : 0;
  const int64_t j1 = split ? (j0 + chunk < n ? j0 + chunk : n) : n;
  for (int64_t r = split ? blockIdx.y : blockIdx.x; r < rows; r += split ? rows : gridDim.x) {
    const In* xr = x + outer.offset(0, r);
    A best = cast_to<A>(xr[j0 * stride]);
    uint32_t bi = static_cast<uint32_t>(j0);
    auto take = [&](A v, int64_t j) {
      if (arg_better<kMax>(v, static_cast<uint32_t>(j), best, bi)) {
        best = v;
        bi = static_cast<uint32_t>(j);
      }
    };
    // Eight loads in flight before their comparisons (one load then one dependent compare at
    // a time left a [64, 262208] float32 argmax at 0.3 TB/s); the order of preference does not
    // depend on the visiting order (ties go to the lower index).
    constexpr int U = 8;
    const int64_t step = blockDim.x;
    int64_t j = j0 + threadIdx.x;
    for (; j + (U - 1) * step < j1; j += U * step) {
      A v[U];
#pragma unroll
      for (int u = 0; u < U; ++u) v[u] = cast_to<A>(xr[(j + u * step) * stride]);
#pragma unroll
      for (int u = 0; u < U; ++u) take(v[u], j + u * step);
    }
    for (; j < j1; j += step) take(cast_to<A>(xr[j * stride]), j);
    for (int o = 16; o > 0; o >>= 1) {
      A ov = shfl_down(best, o);
      uint32_t oi = __shfl_down_sync(0xffffffffu, bi, o);
      if (arg_better<kMax>(ov, oi, best, bi)) {
        best = ov;
        bi = oi;
      }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) {
      sval[warp] = best;
      sidx[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      const int nwarps = (blockDim.x + 31) >> 5;
      for (int w = 1; w < nwarps; ++w) {
        if (arg_better<kMax>(sval[w], sidx[w], best, bi)) {
          best = sval[w];
          bi = sidx[w];
        }
      }
      if (split) {
        part_val[r * gridDim.x + blockIdx.x] = best;
        part_idx[r * gridDim.x + blockIdx.x] = bi;
      } else {
        y[r] = bi;
      }
    }
  }
}

// One warp per row merges the `parts` partial results of a split row, in the same order of
// preference (first extremum, NaN first).
template <bool kMax, typename A>
__global__ void arg_reduce_merge_kernel(const A* part_val, const uint32_t* part_idx, uint32_t* y,
                                        int64_t rows, int parts) {
  const int64_t r = blockIdx.x;
  if (r >= rows) return;
  const int lane = threadIdx.x;
  A best = part_val[r * parts];
  uint32_t bi = part_idx[r * parts];
  for (int c = lane; c < parts; c += 32) {
    if (arg_better<kMax>(part_val[r * parts + c], part_idx[r * parts + c], best, bi)) {
      best = part_val[r * parts + c];
      bi = part_idx[r * parts + c];
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    A ov = shfl_down(best, o);
    uint32_t oi = __shfl_down_sync(0xffffffffu, bi, o);
    if (arg_better<kMax>(ov, oi, best, bi)) {
      best = ov;
      bi = oi;
    }
  }
  if (lane == 0) y[r] = bi;
}

void arg_reduce_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& r = static_cast<ArgReduce&>(p);
  const array& in = inputs[0];
  array& out = outputs[0];
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  int64_t rows, n;
  auto outer = split_layouts(in, {r.axis()}, p.name(), rows, n).first;
  const int64_t stride = in.strides()[r.axis()];
  unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{1} << 20));
  // A few long rows (the argmax over a vocabulary when sampling) would leave all but a few
  // SMs idle with one block per row: they are cut into chunks, one block each, and merged by
  // a second kernel.
  const int parts = reduce_parts(rows, n);
  const int64_t chunk = (n + parts - 1) / parts;
  const Stream& st = p.stream();
  dispatch(in.dtype(), p.name(), [&](auto tag) {
    using In = typename decltype(tag)::type;
    using A = compute_t<In>;
    A* part_val = nullptr;
    uint32_t* part_idx = nullptr;
    dim3 blocks(grid);
    if (parts > 1) {
      const auto count = static_cast<int32_t>(rows * parts);
      array vals({count}, TypeToDtype<A>::value, nullptr, {});
      array idx({count}, uint32, nullptr, {});
      allocate_row_contiguous(vals);
      allocate_row_contiguous(idx);
      keep_until_done(st, vals);
      keep_until_done(st, idx);
      part_val = vals.data<A>();
      part_idx = idx.data<uint32_t>();
      blocks = dim3(static_cast<unsigned>(parts), static_cast<unsigned>(rows));
    }
    const bool is_max = r.type() == ArgReduce::ArgMax;
    auto launch = [&](auto max_tag) {
      constexpr bool kMax = decltype(max_tag)::value;
      arg_reduce_kernel<kMax, In><<<blocks, threads_for(parts > 1 ? chunk : n), 0, stream_of(p)>>>(
          in.data<In>(), out.data<uint32_t>(), rows, n, stride, outer, chunk, part_val, part_idx);
      if (parts > 1) {
        arg_reduce_merge_kernel<kMax, A><<<static_cast<unsigned>(rows), 32, 0, stream_of(p)>>>(
            part_val, part_idx, out.data<uint32_t>(), rows, parts);
      }
    };
    if (is_max) {
      launch(std::true_type{});
    } else {
      launch(std::false_type{});
    }
  });
  check_launch(p.name());
}

// ---------------------------------------------------------------- Softmax

template <typename T>
__global__ void softmax_kernel(const T* x, T* y, int64_t rows, int64_t n) {
  using A = float_acc_t<T>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    A m = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      A v = cast_to<A>(xr[j]);
      m = v > m || isnan(v) ? v : m;
    }
    m = block_reduce(m, A(-INFINITY), [](A a, A b) { return a > b || isnan(a) ? a : b; });
    A total = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) total += exp(cast_to<A>(xr[j]) - m);
    total = block_reduce(total, A(0), [](A a, A b) { return a + b; });
    const A inv = A(1) / total;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      yr[j] = cast_to<T>(exp(cast_to<A>(xr[j]) - m) * inv);
    }
  }
}

void softmax_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  array in = ensure_row_contiguous(inputs[0], p.stream());
  array& out = outputs[0];
  if (in.is_donatable()) {
    out.copy_shared_buffer(in);
  } else {
    allocate_row_contiguous(out);
  }
  if (out.size() == 0) return;
  const int64_t n = in.shape(-1);
  const int64_t rows = static_cast<int64_t>(in.size()) / n;
  unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{1} << 20));
  dispatch_float(in.dtype(), "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_kernel<T>
        <<<grid, threads_for(n), 0, stream_of(p)>>>(in.data<T>(), out.data<T>(), rows, n);
  });
  check_launch("softmax");
}

const Register<Reduce> r_reduce(&reduce_gpu);
const Register<ArgReduce> r_arg_reduce(&arg_reduce_gpu);
const Register<Softmax> r_softmax(&softmax_gpu);

}  // namespace
}  // namespace mx::cuda
