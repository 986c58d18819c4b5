// CPU kernel of Scatter. Updates at duplicate positions must apply in index
// order (last write wins for plain scatter), so threads only ever split the
// destination: each one owns a set of positions inside the window and walks
// every index tuple in order over them.
#include <cmath>
#include <cstring>

#include "mlxcpp/mx/backend/cpu/elementwise.h"
#include "mlxcpp/mx/backend/cpu/indexing.h"
#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/primitives/indexing.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx {
namespace {

using Reduce = Scatter::ReduceType;

template <typename T>
inline bool is_nan_value(T v) {
  if constexpr (is_half_v<T>) {
    return std::isnan(static_cast<float>(v));
  } else if constexpr (std::is_floating_point_v<T>) {
    return std::isnan(v);
  } else {
    return false;
  }
}

// d <- d (op) u. Integers wrap like NumPy (computed modulo 2^64, then
// truncated, so signed overflow is defined); bool sums are "or", products
// "and"; max/min propagate NaN like np.maximum / np.minimum.
template <Reduce R, typename T>
inline void combine(T& d, T u) {
  if constexpr (R == Reduce::None) {
    d = u;
  } else if constexpr (std::is_same_v<T, bool>) {
    if constexpr (R == Reduce::Sum || R == Reduce::Max) {
      d = d || u;
    } else {
      d = d && u;
    }
  } else if constexpr (R == Reduce::Sum || R == Reduce::Prod) {
    if constexpr (std::is_integral_v<T>) {
      uint64_t x = static_cast<uint64_t>(d), y = static_cast<uint64_t>(u);
      d = static_cast<T>(R == Reduce::Sum ? x + y : x * y);
    } else if constexpr (is_half_v<T>) {
      float x = static_cast<float>(d), y = static_cast<float>(u);
      d = T(R == Reduce::Sum ? x + y : x * y);
    } else {
      d = R == Reduce::Sum ? d + u : d * u;
    }
  } else if constexpr (is_complex_v<T>) {
    throw std::invalid_argument("[scatter] max and min are not defined for complex64");
  } else {
    acc_t<T> x = static_cast<acc_t<T>>(d), y = static_cast<acc_t<T>>(u);
    bool take = R == Reduce::Max ? y > x : y < x;
    if (take || is_nan_value(u)) d = u;
  }
}

const char* op_name(Reduce r) {
  switch (r) {
    case Reduce::Sum:
      return "scatter_add";
    case Reduce::Prod:
      return "scatter_prod";
    case Reduce::Max:
      return "scatter_max";
    case Reduce::Min:
      return "scatter_min";
    default:
      return "scatter";
  }
}

struct Geometry {
  std::vector<int64_t> dst;  // window start in out, per index tuple
  std::vector<int64_t> upd;  // update slice start, per index tuple
  int64_t rows, inner, us, ds;
  Shape outer;
  Strides uo, dout;
};

// Applies the update slices of tuples [0, n) to window rows [rb, re) and,
// within each row, elements [jb, je).
template <Reduce R, typename T>
void apply(T* out, const T* upd, const Geometry& g, int64_t rb, int64_t re, int64_t jb,
           int64_t je) {
  if (g.outer.empty()) {  // one row per window: no cursor (and no allocation) per tuple
    for (size_t i = 0; i < g.dst.size(); ++i) {
      T* dp = out + g.dst[i];
      const T* up = upd + g.upd[i];
      for (int64_t j = jb; j < je; ++j) combine<R>(dp[j * g.ds], up[j * g.us]);
    }
    return;
  }
  for (size_t i = 0; i < g.dst.size(); ++i) {
    cpu::StridedCursor cur(g.outer, {&g.uo, &g.dout}, rb);
    for (int64_t r = rb; r < re; ++r) {
      T* dp = out + g.dst[i] + cur.offset(1);
      const T* up = upd + g.upd[i] + cur.offset(0);
      if (g.us == 1 && g.ds == 1) {
        for (int64_t j = jb; j < je; ++j) combine<R>(dp[j], up[j]);
      } else {
        for (int64_t j = jb; j < je; ++j) combine<R>(dp[j * g.ds], up[j * g.us]);
      }
      cur.step();
    }
  }
}

template <Reduce R, typename T>
void scatter_typed(const array& updates, array& out, const Geometry& g, bool can_split) {
  T* dst = out.data<T>();
  const T* upd = updates.data<T>();
  int64_t n = static_cast<int64_t>(g.dst.size());
  int64_t work = n * g.rows * g.inner;
  if (!can_split || work < static_cast<int64_t>(cpu::kParallelGrain)) {
    apply<R>(dst, upd, g, 0, g.rows, 0, g.inner);
    return;
  }
  if (g.rows > 1) {
    size_t grain = std::max<int64_t>(1, cpu::kParallelGrain / (n * g.inner));
    scheduler::parallel_for(g.rows, grain, [&](size_t b, size_t e) {
      apply<R>(dst, upd, g, static_cast<int64_t>(b), static_cast<int64_t>(e), 0, g.inner);
    });
  } else {
    size_t grain = std::max<int64_t>(1, cpu::kParallelGrain / n);
    scheduler::parallel_for(g.inner, grain, [&](size_t b, size_t e) {
      apply<R>(dst, upd, g, 0, 1, static_cast<int64_t>(b), static_cast<int64_t>(e));
    });
  }
}

template <Reduce R>
void dispatch_reduce(const array& updates, array& out, const Geometry& g, bool can_split) {
  if constexpr (R == Reduce::None) {
    // Plain assignment only moves bytes.
    switch (out.itemsize()) {
      case 1:
        return scatter_typed<R, uint8_t>(updates, out, g, can_split);
      case 2:
        return scatter_typed<R, uint16_t>(updates, out, g, can_split);
      case 4:
        return scatter_typed<R, uint32_t>(updates, out, g, can_split);
      case 8:
        return scatter_typed<R, uint64_t>(updates, out, g, can_split);
      default:
        throw std::invalid_argument("[scatter] unsupported element size");
    }
  } else {
    dispatch_all(out.dtype(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      scatter_typed<R, T>(updates, out, g, can_split);
    });
  }
}

}  // namespace

void Scatter::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& a = inputs[0];
  if (a.is_donatable() && a.flags().row_contiguous) {
    out.copy_shared_buffer(a);
  } else {
    cpu::allocate_row_contiguous(out);
    cpu::copy_into(a, out);
  }
  const array& updates = inputs.back();
  if (updates.size() == 0 || out.size() == 0) return;

  int r = static_cast<int>(updates.ndim() - a.ndim());
  Shape ishape(updates.shape().begin(), updates.shape().begin() + r);
  Shape ushape(updates.shape().begin() + r, updates.shape().end());
  Strides uis(updates.strides().begin(), updates.strides().begin() + r);
  Strides uus(updates.strides().begin() + r, updates.strides().end());
  std::vector<array> indices(inputs.begin() + 1, inputs.end() - 1);

  Geometry g;
  g.dst = cpu::index_offsets(op_name(reduce_), indices, axes_, out.shape(), ushape, out.strides());
  g.upd.resize(g.dst.size());
  {
    cpu::StridedCursor cur(ishape, {&uis}, 0);
    for (auto& o : g.upd) {
      o = cur.offset(0);
      cur.step();
    }
  }
  auto [shape, strides] = cpu::collapse_contiguous_dims(ushape, {uus, out.strides()});
  g.inner = shape.back();
  g.us = strides[0].back();
  g.ds = strides[1].back();
  g.outer.assign(shape.begin(), shape.end() - 1);
  g.uo.assign(strides[0].begin(), strides[0].end() - 1);
  g.dout.assign(strides[1].begin(), strides[1].end() - 1);
  int64_t window = 1;
  for (auto s : ushape) window *= s;
  g.rows = window / g.inner;

  // Splitting the window between threads is safe when every indexed axis has
  // a window of 1: then the index only moves the window along indexed axes and
  // the window position only along the others, so two different window
  // positions never meet at one destination.
  bool can_split = true;
  for (int ax : axes_) can_split &= ushape[ax] == 1;

  switch (reduce_) {
    case Reduce::None:
      dispatch_reduce<Reduce::None>(updates, out, g, can_split);
      break;
    case Reduce::Sum:
      dispatch_reduce<Reduce::Sum>(updates, out, g, can_split);
      break;
    case Reduce::Prod:
      dispatch_reduce<Reduce::Prod>(updates, out, g, can_split);
      break;
    case Reduce::Max:
      dispatch_reduce<Reduce::Max>(updates, out, g, can_split);
      break;
    case Reduce::Min:
      dispatch_reduce<Reduce::Min>(updates, out, g, can_split);
      break;
  }
}

}  // namespace mx
