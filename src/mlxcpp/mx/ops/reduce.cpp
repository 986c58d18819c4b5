// Reductions, scans, softmax and logsumexp: argument checks, MLX's output
// dtypes, and the composite ops (mean, var, std, logsumexp over several axes)
// built from the primitives.
#include <algorithm>
#include <numeric>
#include <sstream>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/reduce.h"

namespace mx {

namespace {

std::string axes_str(const std::vector<int>& axes) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < axes.size(); ++i) os << (i ? ", " : "") << axes[i];
  os << "]";
  return os.str();
}

Dtype at_least_float(Dtype d) { return is_inexact(d) ? d : float32; }

std::vector<int> all_axes(const array& a) {
  std::vector<int> axes(a.ndim());
  std::iota(axes.begin(), axes.end(), 0);
  return axes;
}

struct ReduceShape {
  Shape kept;             // reduced axes as size-1 dims (the primitive's output)
  Shape squeezed;         // reduced axes dropped
  std::vector<int> axes;  // sorted, non-negative
};

// Normalizes the axes (negative ones count from the end), rejects out of
// range and repeated axes naming the op, and computes both output shapes.
ReduceShape reduce_shape(const char* op, const std::vector<int>& axes, const Shape& shape) {
  int nd = static_cast<int>(shape.size());
  ReduceShape r;
  std::vector<bool> seen(nd, false);
  for (int ax : axes) {
    int a = normalize_axis(ax, nd, op);
    if (seen[a]) {
      throw std::invalid_argument(std::string("[") + op + "] received duplicate axis " +
                                  std::to_string(ax) + " in axes " + axes_str(axes) +
                                  " for an array of shape " + shape_str(shape));
    }
    seen[a] = true;
  }
  for (int i = 0; i < nd; ++i) {
    if (seen[i]) {
      r.axes.push_back(i);
      r.kept.push_back(1);
    } else {
      r.kept.push_back(shape[i]);
      r.squeezed.push_back(shape[i]);
    }
  }
  return r;
}

array make_reduce(const array& a, const std::vector<int>& axes, bool keepdims, Reduce::ReduceType t,
                  Dtype out_dtype, const char* op, S s) {
  auto r = reduce_shape(op, axes, a.shape());
  array out(r.kept, out_dtype, std::make_shared<Reduce>(to_stream(s), t, r.axes), {a});
  if (!keepdims) out = reshape(out, r.squeezed, s);
  return out;
}

// MLX widens integer sums and products to 32 bits (64 for 64-bit inputs) and
// counts bools as int32.
Dtype sum_dtype(Dtype d) {
  if (d == bool_) return int32;
  if (is_integral(d)) {
    if (is_unsigned(d)) return d.size <= 4 ? uint32 : uint64;
    return d.size <= 4 ? int32 : int64;
  }
  return d;
}

void reject_empty(const array& a, const char* op) {
  if (a.size() == 0) {
    throw std::invalid_argument(std::string("[") + op + "] cannot reduce an empty array of shape " +
                                shape_str(a.shape()));
  }
}

}  // namespace

// ---------------------------------------------------------------- all / any

array all(const array& a, const std::vector<int>& axes, bool keepdims, S s) {
  if (axes.empty()) return astype(a, bool_, s);
  return make_reduce(a, axes, keepdims, Reduce::And, bool_, "all", s);
}
array all(const array& a, bool keepdims, S s) { return all(a, all_axes(a), keepdims, s); }
array all(const array& a, int axis, bool keepdims, S s) {
  return all(a, std::vector<int>{axis}, keepdims, s);
}

array any(const array& a, const std::vector<int>& axes, bool keepdims, S s) {
  if (axes.empty()) return astype(a, bool_, s);
  return make_reduce(a, axes, keepdims, Reduce::Or, bool_, "any", s);
}
array any(const array& a, bool keepdims, S s) { return any(a, all_axes(a), keepdims, s); }
array any(const array& a, int axis, bool keepdims, S s) {
  return any(a, std::vector<int>{axis}, keepdims, s);
}

// ---------------------------------------------------------------- sum / prod

array sum(const array& a, const std::vector<int>& axes, bool keepdims, S s) {
  if (axes.empty()) return a;  // MLX: reducing over no axes is the identity
  return make_reduce(a, axes, keepdims, Reduce::Sum, sum_dtype(a.dtype()), "sum", s);
}
array sum(const array& a, bool keepdims, S s) { return sum(a, all_axes(a), keepdims, s); }
array sum(const array& a, int axis, bool keepdims, S s) {
  return sum(a, std::vector<int>{axis}, keepdims, s);
}

array prod(const array& a, const std::vector<int>& axes, bool keepdims, S s) {
  if (axes.empty()) return a;
  return make_reduce(a, axes, keepdims, Reduce::Prod, sum_dtype(a.dtype()), "prod", s);
}
array prod(const array& a, bool keepdims, S s) { return prod(a, all_axes(a), keepdims, s); }
array prod(const array& a, int axis, bool keepdims, S s) {
  return prod(a, std::vector<int>{axis}, keepdims, s);
}

// ---------------------------------------------------------------- max / min

array max(const array& a, const std::vector<int>& axes, bool keepdims, S s) {
  reject_empty(a, "max");
  if (axes.empty()) return a;
  return make_reduce(a, axes, keepdims, Reduce::Max, a.dtype(), "max", s);
}
array max(const array& a, bool keepdims, S s) { return max(a, all_axes(a), keepdims, s); }
array max(const array& a, int axis, bool keepdims, S s) {
  return max(a, std::vector<int>{axis}, keepdims, s);
}

array min(const array& a, const std::vector<int>& axes, bool keepdims, S s) {
  reject_empty(a, "min");
  if (axes.empty()) return a;
  return make_reduce(a, axes, keepdims, Reduce::Min, a.dtype(), "min", s);
}
array min(const array& a, bool keepdims, S s) { return min(a, all_axes(a), keepdims, s); }
array min(const array& a, int axis, bool keepdims, S s) {
  return min(a, std::vector<int>{axis}, keepdims, s);
}

// ---------------------------------------------------------------- mean / var / std

array number_of_elements(const array& a, std::vector<int> axes, bool inverted, Dtype dtype, S s) {
  if (axes.empty()) axes = all_axes(a);
  auto r = reduce_shape("number_of_elements", axes, a.shape());
  double n = 1;
  for (int ax : r.axes) n *= a.shape(ax);
  return array(inverted ? 1.0 / n : n, dtype);
}

array mean(const array& a, const std::vector<int>& axes, bool keepdims, S s) {
  Dtype d = at_least_float(a.dtype());
  // Integers are converted first so that the sum cannot overflow.
  array x = astype(a, d, s);
  if (axes.empty()) return x;
  reduce_shape("mean", axes, a.shape());
  return multiply(sum(x, axes, keepdims, s), number_of_elements(a, axes, true, d, s), s);
}
array mean(const array& a, bool keepdims, S s) {
  if (a.ndim() == 0) return astype(a, at_least_float(a.dtype()), s);
  return mean(a, all_axes(a), keepdims, s);
}
array mean(const array& a, int axis, bool keepdims, S s) {
  return mean(a, std::vector<int>{axis}, keepdims, s);
}

array var(const array& a, const std::vector<int>& axes, bool keepdims, int ddof, S s) {
  Dtype d = at_least_float(a.dtype());
  reduce_shape("var", axes, a.shape());
  array x = astype(a, d, s);
  array mu = mean(x, axes, true, s);
  array v = sum(square(subtract(x, mu, s), s), axes, keepdims, s);
  if (axes.empty()) return v;
  if (ddof != 0) {
    array n = number_of_elements(a, axes, false, d, s);
    // NumPy divides by max(n - ddof, 0): too large a ddof gives inf / nan.
    return divide(v, maximum(subtract(n, array(ddof, d), s), array(0, d), s), s);
  }
  return multiply(v, number_of_elements(a, axes, true, d, s), s);
}
array var(const array& a, bool keepdims, int ddof, S s) {
  if (a.ndim() == 0) return var(a, std::vector<int>{}, keepdims, ddof, s);
  return var(a, all_axes(a), keepdims, ddof, s);
}
array var(const array& a, int axis, bool keepdims, int ddof, S s) {
  return var(a, std::vector<int>{axis}, keepdims, ddof, s);
}

array std(const array& a, const std::vector<int>& axes, bool keepdims, int ddof, S s) {
  return sqrt(var(a, axes, keepdims, ddof, s), s);
}
array std(const array& a, bool keepdims, int ddof, S s) {
  return sqrt(var(a, keepdims, ddof, s), s);
}
array std(const array& a, int axis, bool keepdims, int ddof, S s) {
  return sqrt(var(a, axis, keepdims, ddof, s), s);
}

// ---------------------------------------------------------------- argmin / argmax

namespace {
array arg_reduce(const array& a, int axis, bool keepdims, ArgReduce::ReduceType t, const char* op,
                 S s) {
  int ax = normalize_axis(axis, static_cast<int>(a.ndim()), op);
  reject_empty(a, op);
  Shape kept = a.shape();
  kept[ax] = 1;
  array out(kept, uint32, std::make_shared<ArgReduce>(to_stream(s), t, ax), {a});
  if (!keepdims) {
    kept.erase(kept.begin() + ax);
    out = reshape(out, kept, s);
  }
  return out;
}

array arg_reduce_flat(const array& a, bool keepdims, ArgReduce::ReduceType t, const char* op, S s) {
  reject_empty(a, op);
  array out = arg_reduce(reshape(a, {-1}, s), 0, false, t, op, s);
  return reshape(out, keepdims ? Shape(a.ndim(), 1) : Shape{}, s);
}
}  // namespace

array argmin(const array& a, int axis, bool keepdims, S s) {
  return arg_reduce(a, axis, keepdims, ArgReduce::ArgMin, "argmin", s);
}
array argmin(const array& a, bool keepdims, S s) {
  return arg_reduce_flat(a, keepdims, ArgReduce::ArgMin, "argmin", s);
}
array argmax(const array& a, int axis, bool keepdims, S s) {
  return arg_reduce(a, axis, keepdims, ArgReduce::ArgMax, "argmax", s);
}
array argmax(const array& a, bool keepdims, S s) {
  return arg_reduce_flat(a, keepdims, ArgReduce::ArgMax, "argmax", s);
}

// ---------------------------------------------------------------- logsumexp / softmax

array logsumexp(const array& a, const std::vector<int>& axes, bool keepdims, S s) {
  if (a.size() == 0) {
    throw std::invalid_argument("[logsumexp] cannot reduce an empty array of shape " +
                                shape_str(a.shape()));
  }
  auto r = reduce_shape("logsumexp", axes, a.shape());
  Dtype d = at_least_float(a.dtype());
  array x = astype(a, d, s);
  if (axes.empty()) return x;
  if (r.axes.size() == 1 && is_floating_point(d)) {
    // One axis: the fused LogSumExp over the last axis (a single reduced axis
    // elsewhere is moved last first, as softmax does). Its output keeps that
    // axis as a size-1 dim, so a reshape puts it back wherever it was.
    int nd = static_cast<int>(a.ndim());
    if (r.axes[0] != nd - 1) x = moveaxis(x, r.axes[0], -1, s);
    Shape kept = x.shape();
    kept.back() = 1;
    array out(std::move(kept), d, std::make_shared<LogSumExp>(to_stream(s)), {x});
    return reshape(out, keepdims ? r.kept : r.squeezed, s);
  }
  // Shifting by the max keeps exp() in range; the shift carries no gradient
  // because logsumexp does not depend on it.
  array m = stop_gradient(max(x, axes, true, s), s);
  array out = add(log(sum(exp(subtract(x, m, s), s), axes, true, s), s), m, s);
  // An infinite max would give inf - inf = nan inside exp(); the answer is the max itself.
  out = where(isinf(m, s), m, out, s);
  if (!keepdims) out = reshape(out, r.squeezed, s);
  return out;
}
array logsumexp(const array& a, bool keepdims, S s) {
  if (a.ndim() == 0) {
    return logsumexp(a, std::vector<int>{}, keepdims, s);
  }
  return logsumexp(a, all_axes(a), keepdims, s);
}
array logsumexp(const array& a, int axis, bool keepdims, S s) {
  return logsumexp(a, std::vector<int>{axis}, keepdims, s);
}

array softmax(const array& a, const std::vector<int>& axes, bool precise, S s) {
  auto r = reduce_shape("softmax", axes, a.shape());
  Dtype d = at_least_float(a.dtype());
  array x = astype(a, d, s);
  if (a.size() == 0) return x;
  int nd = static_cast<int>(a.ndim());
  if (r.axes.size() == 1) {
    int ax = r.axes[0];
    if (ax != nd - 1) x = moveaxis(x, ax, -1, s);
    array out(x.shape(), d, std::make_shared<Softmax>(to_stream(s), precise), {x});
    if (ax != nd - 1) out = moveaxis(out, -1, ax, s);
    return out;
  }
  if (precise && d != float32 && d != float64) x = astype(x, float32, s);
  array m = stop_gradient(max(x, r.axes, true, s), s);
  array e = exp(subtract(x, m, s), s);
  return astype(divide(e, sum(e, r.axes, true, s), s), d, s);
}
array softmax(const array& a, bool precise, S s) { return softmax(a, all_axes(a), precise, s); }
array softmax(const array& a, int axis, bool precise, S s) {
  return softmax(a, std::vector<int>{axis}, precise, s);
}

// ---------------------------------------------------------------- scans

namespace {
array scan(const array& a, int axis, bool reverse, bool inclusive, Scan::ReduceType t,
           Dtype out_dtype, const char* op, S s) {
  int ax = normalize_axis(axis, static_cast<int>(a.ndim()), op);
  return array(a.shape(), out_dtype,
               std::make_shared<Scan>(to_stream(s), t, ax, reverse, inclusive), {a});
}
}  // namespace

array cumsum(const array& a, int axis, bool reverse, bool inclusive, S s) {
  Dtype d = a.dtype() == bool_ ? int32 : a.dtype();
  return scan(a, axis, reverse, inclusive, Scan::Sum, d, "cumsum", s);
}
array cumsum(const array& a, bool reverse, bool inclusive, S s) {
  return cumsum(reshape(a, {-1}, s), 0, reverse, inclusive, s);
}
array cumprod(const array& a, int axis, bool reverse, bool inclusive, S s) {
  return scan(a, axis, reverse, inclusive, Scan::Prod, a.dtype(), "cumprod", s);
}
array cumprod(const array& a, bool reverse, bool inclusive, S s) {
  return cumprod(reshape(a, {-1}, s), 0, reverse, inclusive, s);
}
array cummax(const array& a, int axis, bool reverse, bool inclusive, S s) {
  return scan(a, axis, reverse, inclusive, Scan::Max, a.dtype(), "cummax", s);
}
array cummax(const array& a, bool reverse, bool inclusive, S s) {
  return cummax(reshape(a, {-1}, s), 0, reverse, inclusive, s);
}
array cummin(const array& a, int axis, bool reverse, bool inclusive, S s) {
  return scan(a, axis, reverse, inclusive, Scan::Min, a.dtype(), "cummin", s);
}
array cummin(const array& a, bool reverse, bool inclusive, S s) {
  return cummin(reshape(a, {-1}, s), 0, reverse, inclusive, s);
}

}  // namespace mx
