// CPU kernels of Reduce and ArgReduce. The input's dims are split into kept
// and reduced groups (each collapsed where contiguous); the loop order then
// follows the memory layout: contiguous reduced runs are folded with several
// independent accumulators, contiguous kept runs are accumulated a row at a
// time, and anything else takes a strided walk.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "mlxcpp/mx/backend/cpu/elementwise.h"
#include "mlxcpp/mx/backend/cpu/reduce_ops.h"
#include "mlxcpp/mx/primitives/reduce.h"

namespace mx {
namespace {

using cpu::kParallelGrain;
using cpu::StridedCursor;

// Folds n contiguous elements. Eight lanes break the dependency chain so the
// compiler can keep several additions in flight (and vectorize them).
template <typename In, typename Op>
typename Op::Acc fold_contiguous(const In* x, int64_t n, const Op& op) {
  using Acc = typename Op::Acc;
  if constexpr (std::is_integral_v<Acc>) {
    // Integer folds are exact in any order, so a plain loop vectorizes as is
    // (and GCC 12 at -O3 miscompiled the lane version for int8 inputs).
    Acc acc = op.init();
    for (int64_t i = 0; i < n; ++i) acc = op(acc, x[i]);
    return acc;
  }
  constexpr int kLanes = 8;
  Acc lanes[kLanes];
  for (auto& l : lanes) l = op.init();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lanes[j] = op(lanes[j], x[i + j]);
  }
  for (; i < n; ++i) lanes[0] = op(lanes[0], x[i]);
  Acc acc = lanes[0];
  for (int j = 1; j < kLanes; ++j) acc = op.combine(acc, lanes[j]);
  return acc;
}

struct Split {
  Shape kept_shape, red_shape;
  Strides kept_strides, red_strides;
};

// Kept and reduced dims of `in` (each group collapsed), in the input's order.
Split split_dims(const array& in, const std::vector<int>& axes) {
  Shape ks, rs;
  Strides kst, rst;
  std::vector<bool> red(in.ndim(), false);
  for (int ax : axes) red[ax] = true;
  for (size_t d = 0; d < in.ndim(); ++d) {
    if (red[d]) {
      rs.push_back(in.shape(d));
      rst.push_back(in.strides()[d]);
    } else {
      ks.push_back(in.shape(d));
      kst.push_back(in.strides()[d]);
    }
  }
  auto [kshape, kstr] = cpu::collapse_contiguous_dims(ks, {kst});
  auto [rshape, rstr] = cpu::collapse_contiguous_dims(rs, {rst});
  return {kshape, rshape, kstr[0], rstr[0]};
}

template <typename In, typename Out, typename Op>
void reduce_typed(const array& in, array& out, const std::vector<int>& axes, const Op& op) {
  using Acc = typename Op::Acc;
  cpu::allocate_row_contiguous(out);
  Out* dst = out.data<Out>();
  int64_t n_out = static_cast<int64_t>(out.size());
  if (n_out == 0) return;
  int64_t n_red = static_cast<int64_t>(in.size()) / n_out;
  if (in.size() == 0) {
    std::fill(dst, dst + n_out, op.finalize(op.init()));
    return;
  }
  const In* src = in.data<In>();
  Split sp = split_dims(in, axes);
  const Shape& kshape = sp.kept_shape;
  const Strides& kstr = sp.kept_strides;

  // Contiguous runs along the reduction.
  if (sp.red_shape.size() == 1 && sp.red_strides[0] == 1) {
    int64_t n = sp.red_shape[0];
    if (n_out < scheduler::num_threads() && n >= 4 * static_cast<int64_t>(kParallelGrain)) {
      // Few long rows (e.g. a full reduction): split each row across the pool.
      StridedCursor cur(kshape, {&kstr}, 0);
      for (int64_t o = 0; o < n_out; ++o) {
        const In* x = src + cur.offset(0);
        int64_t chunks = std::min<int64_t>(scheduler::num_threads(), n / kParallelGrain);
        int64_t per = (n + chunks - 1) / chunks;
        std::vector<Acc> partial(chunks, op.init());
        scheduler::parallel_for(chunks, 1, [&](size_t b, size_t e) {
          for (size_t c = b; c < e; ++c) {
            int64_t s = static_cast<int64_t>(c) * per;
            int64_t len = std::max<int64_t>(0, std::min(n, s + per) - s);
            partial[c] = fold_contiguous(x + s, len, op);
          }
        });
        Acc acc = partial[0];
        for (int64_t c = 1; c < chunks; ++c) acc = op.combine(acc, partial[c]);
        dst[o] = op.finalize(acc);
        cur.step();
      }
      return;
    }
    size_t grain = std::max<size_t>(1, kParallelGrain / std::max<int64_t>(n, 1));
    scheduler::parallel_for(n_out, grain, [&](size_t b, size_t e) {
      StridedCursor cur(kshape, {&kstr}, static_cast<int64_t>(b));
      for (size_t o = b; o < e; ++o) {
        dst[o] = op.finalize(fold_contiguous(src + cur.offset(0), n, op));
        cur.step();
      }
    });
    return;
  }

  // Contiguous runs along the kept dims: fold whole rows into a row of accumulators.
  if (kstr.back() == 1 && kshape.back() >= 4) {
    constexpr int64_t kCols = 512;
    int64_t m = kshape.back();
    Shape oshape(kshape.begin(), kshape.end() - 1);
    Strides ostr(kstr.begin(), kstr.end() - 1);
    int64_t col_chunks = (m + kCols - 1) / kCols;
    int64_t units = (n_out / m) * col_chunks;
    size_t grain = std::max<size_t>(1, kParallelGrain / (kCols * std::max<int64_t>(n_red, 1)));
    const Shape& rshape = sp.red_shape;
    const Strides& rstr = sp.red_strides;
    scheduler::parallel_for(units, grain, [&](size_t b, size_t e) {
      std::vector<Acc> acc(kCols);
      for (size_t u = b; u < e; ++u) {
        int64_t row = static_cast<int64_t>(u) / col_chunks;
        int64_t c0 = (static_cast<int64_t>(u) % col_chunks) * kCols;
        int64_t len = std::min(kCols, m - c0);
        const In* base = src + cpu::elem_to_loc(row, oshape, ostr) + c0;
        std::fill(acc.begin(), acc.begin() + len, op.init());
        StridedCursor rc(rshape, {&rstr}, 0);
        for (int64_t r = 0; r < n_red; ++r) {
          const In* x = base + rc.offset(0);
          for (int64_t j = 0; j < len; ++j) acc[j] = op(acc[j], x[j]);
          rc.step();
        }
        Out* d = dst + row * m + c0;
        for (int64_t j = 0; j < len; ++j) d[j] = op.finalize(acc[j]);
      }
    });
    return;
  }

  // General strided walk: one output at a time.
  int64_t rin = sp.red_shape.back(), rist = sp.red_strides.back();
  Shape roshape(sp.red_shape.begin(), sp.red_shape.end() - 1);
  Strides rostr(sp.red_strides.begin(), sp.red_strides.end() - 1);
  int64_t n_router = n_red / rin;
  size_t grain = std::max<size_t>(1, kParallelGrain / std::max<int64_t>(n_red, 1));
  scheduler::parallel_for(n_out, grain, [&](size_t b, size_t e) {
    StridedCursor cur(kshape, {&kstr}, static_cast<int64_t>(b));
    for (size_t o = b; o < e; ++o) {
      Acc acc = op.init();
      StridedCursor rc(roshape, {&rostr}, 0);
      for (int64_t q = 0; q < n_router; ++q) {
        const In* x = src + cur.offset(0) + rc.offset(0);
        for (int64_t i = 0; i < rin; ++i) acc = op(acc, x[i * rist]);
        rc.step();
      }
      dst[o] = op.finalize(acc);
      cur.step();
    }
  });
}

template <template <typename, typename> class Op, typename In, typename Out>
void run_reduce(const array& in, array& out, const std::vector<int>& axes, const char* name) {
  if (out.dtype() != dtype_of<Out>) {
    throw std::invalid_argument(std::string("[") + name + "] unexpected output dtype " +
                                dtype_name(out.dtype()) + " for input " + dtype_name(in.dtype()));
  }
  reduce_typed<In, Out>(in, out, axes, Op<In, Out>{});
}

}  // namespace

const char* Reduce::name() const {
  switch (type_) {
    case And:
      return "All";
    case Or:
      return "Any";
    case Sum:
      return "Sum";
    case Prod:
      return "Prod";
    case Min:
      return "Min";
    case Max:
      return "Max";
  }
  return "Reduce";
}

void Reduce::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  dispatch_all(in.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using W = typename cpu::WidenedInt<T>::type;
    switch (type_) {
      case And:
        run_reduce<cpu::AndOp, T, bool>(in, out, axes_, "all");
        break;
      case Or:
        run_reduce<cpu::OrOp, T, bool>(in, out, axes_, "any");
        break;
      case Sum:
        run_reduce<cpu::SumOp, T, W>(in, out, axes_, "sum");
        break;
      case Prod:
        run_reduce<cpu::ProdOp, T, W>(in, out, axes_, "prod");
        break;
      case Max:
      case Min:
        if constexpr (is_complex_v<T>) {
          throw std::invalid_argument(std::string("[") + (type_ == Max ? "max" : "min") +
                                      "] does not support complex64");
        } else if (type_ == Max) {
          run_reduce<cpu::MaxOp, T, T>(in, out, axes_, "max");
        } else {
          run_reduce<cpu::MinOp, T, T>(in, out, axes_, "min");
        }
        break;
    }
  });
}

// ---------------------------------------------------------------- ArgReduce

namespace {

// The first extremum wins ties; a NaN counts as the extremum (NumPy's rule),
// so the index of the first NaN is returned when there is one.
template <typename T, bool kMax>
uint32_t arg_extremum_scalar(const T* x, int64_t n, int64_t stride) {
  using A = acc_t<T>;
  A best = static_cast<A>(x[0]);
  uint32_t idx = 0;
  if (cpu::is_nan_value(x[0])) return 0;
  for (int64_t i = 1; i < n; ++i) {
    A v = static_cast<A>(x[i * stride]);
    if (cpu::is_nan_value(x[i * stride])) return static_cast<uint32_t>(i);
    if (kMax ? v > best : v < best) {
      best = v;
      idx = static_cast<uint32_t>(i);
    }
  }
  return idx;
}

// A contiguous float32 / 16-bit row (the argmax over a vocabulary in greedy
// decoding): 16 lanes (two vectors of 8) each keep their extremum and its
// first index. Written with vector types: the compiler will not turn the
// scalar version's float compares into vector selects (they may trap on NaN).
// A NaN anywhere sends the row to the scalar loop, which returns the first.
using F8 = float __attribute__((vector_size(32)));
using I8 = int32_t __attribute__((vector_size(32)));

template <typename T, bool kMax>
uint32_t arg_extremum_lanes(const T* x, int64_t n) {
  auto load = [&](int64_t i) {
    F8 v;
    for (int l = 0; l < 8; ++l) v[l] = static_cast<float>(x[i + l]);
    return v;
  };
  F8 best0 = load(0), best1 = load(8);
  I8 idx0 = {0, 1, 2, 3, 4, 5, 6, 7}, idx1 = idx0 + 8;
  I8 nan = (best0 != best0) | (best1 != best1);
  I8 cur0 = idx0 + 16, cur1 = idx0 + 24;
  const int64_t full = n / 16 * 16;
  for (int64_t i = 16; i < full; i += 16) {
    const F8 v0 = load(i), v1 = load(i + 8);
    const I8 b0 = kMax ? v0 > best0 : v0 < best0;
    const I8 b1 = kMax ? v1 > best1 : v1 < best1;
    best0 = b0 ? v0 : best0;
    best1 = b1 ? v1 : best1;
    idx0 = b0 ? cur0 : idx0;
    idx1 = b1 ? cur1 : idx1;
    nan |= (v0 != v0) | (v1 != v1);
    cur0 += 16;
    cur1 += 16;
  }
  bool any_nan = false;
  for (int l = 0; l < 8; ++l) any_nan |= nan[l] != 0;
  if (any_nan) return arg_extremum_scalar<T, kMax>(x, n, 1);
  // Across lanes: the extremum, the smallest index among equal values.
  float b = best0[0];
  int32_t bi = idx0[0];
  auto take = [&](float v, int32_t i) {
    if ((kMax ? v > b : v < b) || (v == b && i < bi)) {
      b = v;
      bi = i;
    }
  };
  for (int l = 0; l < 8; ++l) {
    take(best0[l], idx0[l]);
    take(best1[l], idx1[l]);
  }
  for (int64_t i = full; i < n; ++i) {
    const float v = static_cast<float>(x[i]);
    if (v != v) return static_cast<uint32_t>(i);
    if (kMax ? v > b : v < b) {
      b = v;
      bi = static_cast<int32_t>(i);
    }
  }
  return static_cast<uint32_t>(bi);
}

template <typename T, bool kMax>
uint32_t arg_extremum(const T* x, int64_t n, int64_t stride) {
  if constexpr (std::is_same_v<T, float> || is_half_v<T>) {
    // Indices stay below 2^31 in the lanes' int32.
    if (stride == 1 && n >= 64 && n < (int64_t{1} << 31)) return arg_extremum_lanes<T, kMax>(x, n);
  }
  return arg_extremum_scalar<T, kMax>(x, n, stride);
}

}  // namespace

void ArgReduce::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  cpu::allocate_row_contiguous(out);
  if (out.size() == 0) return;
  uint32_t* dst = out.data<uint32_t>();
  Split sp = split_dims(in, {axis_});
  int64_t n = in.shape(axis_);
  int64_t st = in.strides()[axis_];
  const Shape& kshape = sp.kept_shape;
  const Strides& kstr = sp.kept_strides;
  dispatch_all(in.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (is_complex_v<T>) {
      throw std::invalid_argument(std::string("[") + (type_ == ArgMax ? "argmax" : "argmin") +
                                  "] does not support complex64");
    } else {
      const T* src = in.data<T>();
      size_t grain = std::max<size_t>(1, kParallelGrain / std::max<int64_t>(n, 1));
      scheduler::parallel_for(out.size(), grain, [&](size_t b, size_t e) {
        StridedCursor cur(kshape, {&kstr}, static_cast<int64_t>(b));
        for (size_t o = b; o < e; ++o) {
          const T* x = src + cur.offset(0);
          dst[o] =
              type_ == ArgMax ? arg_extremum<T, true>(x, n, st) : arg_extremum<T, false>(x, n, st);
          cur.step();
        }
      });
    }
  });
}

}  // namespace mx
