// Derivatives and batching rules of Reduce, ArgReduce, Scan, Softmax and LogSumExp.
#include <numeric>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/reduce.h"

namespace mx {

namespace {

Shape kept_shape(const Shape& shape, const std::vector<int>& axes) {
  Shape s = shape;
  for (int ax : axes) s[ax] = 1;
  return s;
}

// Axis `ax` of the unbatched input, once a batch axis sits at `b`.
int shift_axis(int ax, int b) { return (b >= 0 && ax >= b) ? ax + 1 : ax; }

// d prod(x over axes) / dx for every element, times the (keepdims) cotangent
// c. Each partial is the product of all the other elements, computed as the
// exclusive prefix product times the exclusive suffix product, so that zeros
// in x need no division.
array prod_grad(const array& x, const array& c, const std::vector<int>& axes, const Stream& s) {
  int nd = static_cast<int>(x.ndim());
  std::vector<int> perm;
  std::vector<bool> red(nd, false);
  for (int ax : axes) red[ax] = true;
  Shape lead;
  int64_t r = 1;
  for (int i = 0; i < nd; ++i) {
    if (!red[i]) {
      perm.push_back(i);
      lead.push_back(x.shape(i));
    }
  }
  for (int ax : axes) {
    perm.push_back(ax);
    r *= x.shape(ax);
  }
  array xt = transpose(x, perm, s);
  Shape flat = lead;
  flat.push_back(static_cast<int>(r));
  array xr = reshape(xt, flat, s);
  array left = cumprod(xr, -1, false, false, s);
  array right = cumprod(xr, -1, true, false, s);
  Shape cshape = lead;
  cshape.push_back(1);
  array g = multiply(multiply(left, right, s), reshape(c, cshape, s), s);
  g = reshape(g, xt.shape(), s);
  std::vector<int> inv(nd);
  for (int i = 0; i < nd; ++i) inv[perm[i]] = i;
  return transpose(g, inv, s);
}

// Share of each element in a max / min: 1 where it equals the result, split
// evenly between ties (as MLX does).
array extremum_share(const array& x, const array& out, const std::vector<int>& axes, Dtype dtype,
                     const Stream& s) {
  array mask = astype(equal(x, out, s), dtype, s);
  return divide(mask, sum(mask, axes, true, s), s);
}

}  // namespace

// ---------------------------------------------------------------- Reduce

bool Reduce::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const Reduce*>(&other);
  return o && o->type_ == type_ && o->axes_ == axes_;
}

std::vector<Shape> Reduce::output_shapes(const std::vector<array>& inputs) {
  return {kept_shape(inputs[0].shape(), axes_)};
}

std::vector<array> Reduce::vjp(const std::vector<array>& primals,
                               const std::vector<array>& cotangents, const std::vector<int>&,
                               const std::vector<array>& outputs) {
  const array& x = primals[0];
  const array& c = cotangents[0];
  Stream s = stream();
  switch (type_) {
    case Sum:
      return {broadcast_to(c, x.shape(), s)};
    case Prod:
      return {prod_grad(x, c, axes_, s)};
    case Max:
    case Min: {
      array out = outputs.empty() ? (type_ == Max ? max(x, axes_, true, s) : min(x, axes_, true, s))
                                  : outputs[0];
      return {multiply(c, extremum_share(x, out, axes_, c.dtype(), s), s)};
    }
    case And:
    case Or:
      break;
  }
  return {zeros_like(x, s)};
}

std::vector<array> Reduce::jvp(const std::vector<array>& primals,
                               const std::vector<array>& tangents, const std::vector<int>&) {
  const array& x = primals[0];
  const array& t = tangents[0];
  Stream s = stream();
  switch (type_) {
    case Sum:
      return {sum(t, axes_, true, s)};
    case Prod: {
      array ones_c = ones(kept_shape(x.shape(), axes_), t.dtype(), s);
      return {sum(multiply(t, prod_grad(x, ones_c, axes_, s), s), axes_, true, s)};
    }
    case Max:
    case Min: {
      array out = type_ == Max ? max(x, axes_, true, s) : min(x, axes_, true, s);
      return {sum(multiply(t, extremum_share(x, out, axes_, t.dtype(), s), s), axes_, true, s)};
    }
    case And:
    case Or:
      break;
  }
  return {zeros(kept_shape(x.shape(), axes_), bool_, s)};
}

std::pair<std::vector<array>, std::vector<int>> Reduce::vmap(const std::vector<array>& inputs,
                                                             const std::vector<int>& axes) {
  int b = axes[0];
  std::vector<int> ax;
  for (int a : axes_) ax.push_back(shift_axis(a, b));
  const array& x = inputs[0];
  Stream s = stream();
  auto apply = [&]() -> array {
    switch (type_) {
      case And:
        return all(x, ax, true, s);
      case Or:
        return any(x, ax, true, s);
      case Sum:
        return sum(x, ax, true, s);
      case Prod:
        return prod(x, ax, true, s);
      case Max:
        return max(x, ax, true, s);
      case Min:
        return min(x, ax, true, s);
    }
    return sum(x, ax, true, s);
  };
  return {{apply()}, {b}};
}

// ---------------------------------------------------------------- ArgReduce

bool ArgReduce::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const ArgReduce*>(&other);
  return o && o->type_ == type_ && o->axis_ == axis_;
}

std::vector<Shape> ArgReduce::output_shapes(const std::vector<array>& inputs) {
  return {kept_shape(inputs[0].shape(), {axis_})};
}

std::vector<array> ArgReduce::vjp(const std::vector<array>& primals, const std::vector<array>&,
                                  const std::vector<int>&, const std::vector<array>&) {
  return {zeros_like(primals[0], stream())};
}

std::vector<array> ArgReduce::jvp(const std::vector<array>& primals, const std::vector<array>&,
                                  const std::vector<int>&) {
  return {zeros(kept_shape(primals[0].shape(), {axis_}), uint32, stream())};
}

std::pair<std::vector<array>, std::vector<int>> ArgReduce::vmap(const std::vector<array>& inputs,
                                                                const std::vector<int>& axes) {
  int b = axes[0];
  int ax = shift_axis(axis_, b);
  array out = type_ == ArgMax ? argmax(inputs[0], ax, true, stream())
                              : argmin(inputs[0], ax, true, stream());
  return {{out}, {b}};
}

// ---------------------------------------------------------------- Scan

bool Scan::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const Scan*>(&other);
  return o && o->type_ == type_ && o->axis_ == axis_ && o->reverse_ == reverse_ &&
         o->inclusive_ == inclusive_;
}

std::vector<Shape> Scan::output_shapes(const std::vector<array>& inputs) {
  return {inputs[0].shape()};
}

namespace {

// Pieces of the cumprod derivative that survive zeros in x. Let z be the
// first zero along the scan: every product reaching past z is zero unless it
// skips z itself, and the products that skip z are the scan of x with that
// one zero replaced by 1.
struct CumprodParts {
  array before;      // positions strictly before the first zero
  array first_zero;  // the first zero itself
  array x_safe;      // x with every zero replaced by 1 (for division)
  array y_skip;      // the scan of x with its first zero replaced by 1
};

CumprodParts cumprod_parts(const array& x, int axis, bool reverse, bool inclusive,
                           const Stream& s) {
  array zero(0, x.dtype());
  array one(1, x.dtype());
  array is_zero = equal(x, zero, s);
  array count = cumsum(astype(is_zero, int32, s), axis, reverse, true, s);
  array before = equal(count, array(0, int32), s);
  array first_zero = logical_and(is_zero, equal(count, array(1, int32), s), s);
  array x_safe = where(is_zero, one, x, s);
  array y_skip = cumprod(where(first_zero, one, x, s), axis, reverse, inclusive, s);
  return {before, first_zero, x_safe, y_skip};
}

// Index of each position along `axis`, shaped to broadcast against `x`.
array positions(const array& x, int axis, const Stream& s) {
  Shape shape(x.ndim(), 1);
  shape[axis] = x.shape(axis);
  return reshape(arange(0.0, static_cast<double>(x.shape(axis)), 1.0, int32, s), shape, s);
}

// cummax / cummin copy one input into each output: its "owner", the latest
// position (in scan order) whose value equals the inclusive running extremum.
// Ties therefore go to the most recent equal element. NaNs own themselves.
struct ScanOwners {
  array is_owner;
  array pos;
  int n;
};

ScanOwners scan_owners(const array& x, const array& y_incl, int axis, const Stream& s) {
  array is_owner = logical_or(equal(x, y_incl, s), isnan(x, s), s);
  return {is_owner, positions(x, axis, s), x.shape(axis)};
}

// Tangent of cummax / cummin: the tangent of each output's owner.
array scan_extremum_jvp(const array& x, const array& y_incl, const array& t, int axis, bool reverse,
                        bool inclusive, const Stream& s) {
  auto o = scan_owners(x, y_incl, axis, s);
  array n = array(o.n, int32);
  array owner =
      reverse ? cummin(where(o.is_owner, o.pos, n, s), axis, true, inclusive, s)
              : cummax(where(o.is_owner, o.pos, array(-1, int32), s), axis, false, inclusive, s);
  // An exclusive scan's first output has no owner (it is the identity).
  array valid = reverse ? less(owner, n, s) : greater_equal(owner, array(0, int32), s);
  array idx = where(valid, owner, array(0, int32), s);
  return where(valid, take_along_axis(t, idx, axis, s), zeros_like(t, s), s);
}

// Cotangent of cummax / cummin: each owner collects the cotangents of the
// contiguous run of outputs it owns, read off an exclusive running sum of the
// cotangent at the run's two ends.
array scan_extremum_vjp(const array& x, const array& y_incl, const array& c, int axis, bool reverse,
                        bool inclusive, const Stream& s) {
  auto o = scan_owners(x, y_incl, axis, s);
  array n = array(o.n, int32);
  array one = array(1, int32);
  array zero = array(0, int32);
  array total = sum(c, axis, true, s);
  // running(e): sum of c strictly before e in scan order; e past the end gives the total.
  array run = cumsum(c, axis, reverse, false, s);
  auto running_at = [&](const array& e) {
    array past = reverse ? less(e, zero, s) : greater_equal(e, n, s);
    array idx = reverse ? maximum(e, zero, s) : minimum(e, subtract(n, one, s), s);
    return where(past, total, take_along_axis(run, idx, axis, s), s);
  };
  // The owner following each position in scan order (past the end when none).
  array next =
      reverse
          ? maximum(cummax(where(o.is_owner, o.pos, array(-1, int32), s), axis, false, false, s),
                    array(-1, int32), s)
          : minimum(cummin(where(o.is_owner, o.pos, n, s), axis, true, false, s), n, s);
  // An owner at j owns inclusive outputs [j, next); an exclusive scan shifts
  // them one step along the scan.
  array step = reverse ? negative(one, s) : one;
  array start = inclusive ? o.pos : add(o.pos, step, s);
  array end = inclusive ? next : add(next, step, s);
  array g = subtract(running_at(end), running_at(start), s);
  return where(o.is_owner, g, zeros_like(c, s), s);
}
}  // namespace

std::vector<array> Scan::vjp(const std::vector<array>& primals,
                             const std::vector<array>& cotangents, const std::vector<int>&,
                             const std::vector<array>& outputs) {
  const array& x = primals[0];
  const array& c = cotangents[0];
  Stream s = stream();
  switch (type_) {
    case Sum:
      return {cumsum(c, axis_, !reverse_, inclusive_, s)};
    case Prod: {
      array y = outputs.empty() ? cumprod(x, axis_, reverse_, inclusive_, s) : outputs[0];
      auto p = cumprod_parts(x, axis_, reverse_, inclusive_, s);
      // Before the first zero: sum over later outputs of c * y, divided by x_j.
      array g_before =
          divide(cumsum(multiply(c, y, s), axis_, !reverse_, inclusive_, s), p.x_safe, s);
      // At the first zero: the same sum over the products that skip it.
      array g_zero = cumsum(multiply(c, p.y_skip, s), axis_, !reverse_, inclusive_, s);
      array zero = zeros_like(x, s);
      return {where(p.before, g_before, where(p.first_zero, g_zero, zero, s), s)};
    }
    case Max:
    case Min:
      break;
  }
  array y =
      type_ == Max ? cummax(x, axis_, reverse_, true, s) : cummin(x, axis_, reverse_, true, s);
  return {scan_extremum_vjp(x, y, c, axis_, reverse_, inclusive_, s)};
}

std::vector<array> Scan::jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                             const std::vector<int>&) {
  const array& x = primals[0];
  const array& t = tangents[0];
  Stream s = stream();
  switch (type_) {
    case Sum:
      return {cumsum(t, axis_, reverse_, inclusive_, s)};
    case Prod: {
      array y = cumprod(x, axis_, reverse_, inclusive_, s);
      auto p = cumprod_parts(x, axis_, reverse_, inclusive_, s);
      array ahead = multiply(y, cumsum(divide(t, p.x_safe, s), axis_, reverse_, inclusive_, s), s);
      array t_zero = sum(where(p.first_zero, t, zeros_like(t, s), s), axis_, true, s);
      // With an exclusive scan the output at the first zero does not include it yet.
      array reached = inclusive_
                          ? logical_not(p.before, s)
                          : logical_and(logical_not(p.before, s), logical_not(p.first_zero, s), s);
      return {where(reached, multiply(t_zero, p.y_skip, s), ahead, s)};
    }
    case Max:
    case Min:
      break;
  }
  array y =
      type_ == Max ? cummax(x, axis_, reverse_, true, s) : cummin(x, axis_, reverse_, true, s);
  return {scan_extremum_jvp(x, y, t, axis_, reverse_, inclusive_, s)};
}

std::pair<std::vector<array>, std::vector<int>> Scan::vmap(const std::vector<array>& inputs,
                                                           const std::vector<int>& axes) {
  int b = axes[0];
  int ax = shift_axis(axis_, b);
  const array& x = inputs[0];
  Stream s = stream();
  array out = [&] {
    switch (type_) {
      case Sum:
        return cumsum(x, ax, reverse_, inclusive_, s);
      case Prod:
        return cumprod(x, ax, reverse_, inclusive_, s);
      case Max:
        return cummax(x, ax, reverse_, inclusive_, s);
      case Min:
        return cummin(x, ax, reverse_, inclusive_, s);
    }
    return cumsum(x, ax, reverse_, inclusive_, s);
  }();
  return {{out}, {b}};
}

// ---------------------------------------------------------------- Softmax

bool Softmax::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const Softmax*>(&other);
  return o && o->precise_ == precise_;
}

std::vector<Shape> Softmax::output_shapes(const std::vector<array>& inputs) {
  return {inputs[0].shape()};
}

std::vector<array> Softmax::vjp(const std::vector<array>& primals,
                                const std::vector<array>& cotangents, const std::vector<int>&,
                                const std::vector<array>& outputs) {
  Stream s = stream();
  array y = outputs.empty() ? softmax(primals[0], -1, precise_, s) : outputs[0];
  const array& c = cotangents[0];
  // dx = y * (c - sum(c * y))
  return {multiply(y, subtract(c, sum(multiply(c, y, s), -1, true, s), s), s)};
}

std::vector<array> Softmax::jvp(const std::vector<array>& primals,
                                const std::vector<array>& tangents, const std::vector<int>&) {
  Stream s = stream();
  array y = softmax(primals[0], -1, precise_, s);
  const array& t = tangents[0];
  return {multiply(y, subtract(t, sum(multiply(t, y, s), -1, true, s), s), s)};
}

namespace {

// The input of an op over the last axis with its batch axis b moved out of the way when it is
// that axis (to the front, where b then points).
array batch_off_last_axis(const array& in, int& b, const Stream& s) {
  if (b >= 0 && b == static_cast<int>(in.ndim()) - 1) {
    b = 0;
    return moveaxis(in, static_cast<int>(in.ndim()) - 1, 0, s);
  }
  return in;
}

}  // namespace

std::pair<std::vector<array>, std::vector<int>> Softmax::vmap(const std::vector<array>& inputs,
                                                              const std::vector<int>& axes) {
  int b = axes[0];
  array x = batch_off_last_axis(inputs[0], b, stream());
  return {{softmax(x, -1, precise_, stream())}, {b}};
}

// ---------------------------------------------------------------- LogSumExp

bool LogSumExp::is_equivalent(const Primitive& other) const {
  return dynamic_cast<const LogSumExp*>(&other) != nullptr;
}

std::vector<Shape> LogSumExp::output_shapes(const std::vector<array>& inputs) {
  Shape s = inputs[0].shape();
  s.back() = 1;
  return {s};
}

// d logsumexp(x) / dx = softmax(x): the cotangent (one per row, a size-1 last
// dim) broadcasts over the row.
std::vector<array> LogSumExp::vjp(const std::vector<array>& primals,
                                  const std::vector<array>& cotangents, const std::vector<int>&,
                                  const std::vector<array>&) {
  Stream s = stream();
  return {multiply(cotangents[0], softmax(primals[0], -1, /*precise=*/true, s), s)};
}

std::vector<array> LogSumExp::jvp(const std::vector<array>& primals,
                                  const std::vector<array>& tangents, const std::vector<int>&) {
  Stream s = stream();
  array y = softmax(primals[0], -1, /*precise=*/true, s);
  return {sum(multiply(tangents[0], y, s), -1, true, s)};
}

std::pair<std::vector<array>, std::vector<int>> LogSumExp::vmap(const std::vector<array>& inputs,
                                                                const std::vector<int>& axes) {
  int b = axes[0];
  array x = batch_off_last_axis(inputs[0], b, stream());
  return {{logsumexp(x, -1, true, stream())}, {b}};
}

}  // namespace mx
