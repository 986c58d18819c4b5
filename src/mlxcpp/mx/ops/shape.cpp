// Shape and view ops, creation ops, and the rules of their primitives.
#include <cmath>
#include <numeric>
#include <sstream>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/shape.h"

namespace mx {

int normalize_axis(int axis, int ndim, const char* op) {
  int a = axis < 0 ? axis + ndim : axis;
  if (a < 0 || a >= ndim) {
    throw std::invalid_argument(std::string("[") + op + "] axis " + std::to_string(axis) +
                                " is out of bounds for an array with " + std::to_string(ndim) +
                                " dimensions");
  }
  return a;
}

Shape broadcast_shapes(const Shape& s1, const Shape& s2) {
  size_t n = std::max(s1.size(), s2.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int a = i < s1.size() ? s1[s1.size() - 1 - i] : 1;
    int b = i < s2.size() ? s2[s2.size() - 1 - i] : 1;
    if (a != b && a != 1 && b != 1) {
      throw std::invalid_argument("[broadcast_shapes] shapes " + shape_str(s1) + " and " +
                                  shape_str(s2) + " cannot be broadcast");
    }
    out[n - 1 - i] = a == 1 ? b : a;
  }
  return out;
}

array broadcast_to(const array& a, const Shape& shape, S s) {
  if (a.shape() == shape) return a;
  bool ok = true;
  try {
    ok = broadcast_shapes(a.shape(), shape) == shape;
  } catch (const std::invalid_argument&) {
    ok = false;
  }
  if (!ok) {
    throw std::invalid_argument("[broadcast_to] cannot broadcast an array of shape " +
                                shape_str(a.shape()) + " to shape " + shape_str(shape));
  }
  return array(shape, a.dtype(), std::make_shared<Broadcast>(to_stream(s), shape), {a});
}

std::vector<array> broadcast_arrays(const std::vector<array>& inputs, S s) {
  Shape shape;
  for (auto& x : inputs) {
    try {
      shape = broadcast_shapes(shape, x.shape());
    } catch (const std::invalid_argument&) {
      std::string msg = "[broadcast_arrays] shapes";
      for (auto& y : inputs) msg += " " + shape_str(y.shape());
      throw std::invalid_argument(msg + " cannot be broadcast together");
    }
  }
  std::vector<array> out;
  for (auto& x : inputs) out.push_back(broadcast_to(x, shape, s));
  return out;
}

array reshape(const array& a, Shape shape, S s) {
  int infer = -1;
  size_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) throw std::invalid_argument("[reshape] only one dimension can be -1");
      infer = static_cast<int>(i);
    } else if (shape[i] < 0) {
      throw std::invalid_argument("[reshape] invalid dimension " + std::to_string(shape[i]));
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || a.size() % known != 0) {
      throw std::invalid_argument("[reshape] cannot infer the -1 dimension of " + shape_str(shape) +
                                  " for an array of shape " + shape_str(a.shape()));
    }
    shape[infer] = static_cast<int>(a.size() / known);
    known = a.size();
  }
  if (known != a.size()) {
    throw std::invalid_argument("[reshape] cannot reshape an array of shape " +
                                shape_str(a.shape()) + " into shape " + shape_str(shape));
  }
  if (shape == a.shape()) return a;
  Shape sh = shape;
  return array(std::move(sh), a.dtype(), std::make_shared<Reshape>(to_stream(s), shape), {a});
}

array flatten(const array& a, int start_axis, int end_axis, S s) {
  int nd = static_cast<int>(a.ndim());
  if (nd == 0) return reshape(a, {1}, s);
  int b = normalize_axis(start_axis, nd, "flatten");
  int e = normalize_axis(end_axis, nd, "flatten");
  if (b > e) throw std::invalid_argument("[flatten] start_axis must not come after end_axis");
  Shape shape(a.shape().begin(), a.shape().begin() + b);
  int64_t m = 1;
  for (int i = b; i <= e; ++i) m *= a.shape(i);
  shape.push_back(static_cast<int>(m));
  shape.insert(shape.end(), a.shape().begin() + e + 1, a.shape().end());
  return reshape(a, shape, s);
}

array flatten(const array& a, S s) { return flatten(a, 0, -1, s); }

array unflatten(const array& a, int axis, Shape shape, S s) {
  int ax = normalize_axis(axis, static_cast<int>(a.ndim()), "unflatten");
  Shape out(a.shape().begin(), a.shape().begin() + ax);
  out.insert(out.end(), shape.begin(), shape.end());
  out.insert(out.end(), a.shape().begin() + ax + 1, a.shape().end());
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1)
      infer = static_cast<int>(i);
    else
      known *= shape[i];
  }
  if (infer >= 0) out[ax + infer] = static_cast<int>(a.shape(ax) / std::max<int64_t>(known, 1));
  return reshape(a, out, s);
}

array squeeze(const array& a, const std::vector<int>& axes, S s) {
  int nd = static_cast<int>(a.ndim());
  std::vector<bool> drop(nd, false);
  for (int ax : axes) {
    int x = normalize_axis(ax, nd, "squeeze");
    if (a.shape(x) != 1) {
      throw std::invalid_argument("[squeeze] cannot squeeze axis " + std::to_string(ax) +
                                  " of size " + std::to_string(a.shape(x)) + " in shape " +
                                  shape_str(a.shape()));
    }
    drop[x] = true;
  }
  Shape shape;
  for (int i = 0; i < nd; ++i) {
    if (!drop[i]) shape.push_back(a.shape(i));
  }
  return reshape(a, shape, s);
}

array squeeze(const array& a, int axis, S s) { return squeeze(a, std::vector<int>{axis}, s); }

array squeeze(const array& a, S s) {
  std::vector<int> axes;
  for (size_t i = 0; i < a.ndim(); ++i) {
    if (a.shape(i) == 1) axes.push_back(static_cast<int>(i));
  }
  return squeeze(a, axes, s);
}

array expand_dims(const array& a, const std::vector<int>& axes, S s) {
  int out_nd = static_cast<int>(a.ndim() + axes.size());
  std::vector<bool> is_new(out_nd, false);
  for (int ax : axes) {
    int x = normalize_axis(ax, out_nd, "expand_dims");
    if (is_new[x]) throw std::invalid_argument("[expand_dims] repeated axis " + std::to_string(ax));
    is_new[x] = true;
  }
  Shape shape;
  int k = 0;
  for (int i = 0; i < out_nd; ++i) shape.push_back(is_new[i] ? 1 : a.shape(k++));
  return reshape(a, shape, s);
}

array expand_dims(const array& a, int axis, S s) {
  return expand_dims(a, std::vector<int>{axis}, s);
}

array transpose(const array& a, std::vector<int> axes, S s) {
  int nd = static_cast<int>(a.ndim());
  if (static_cast<int>(axes.size()) != nd) {
    throw std::invalid_argument("[transpose] got " + std::to_string(axes.size()) +
                                " axes for an array with " + std::to_string(nd) + " dimensions");
  }
  std::vector<bool> used(nd, false);
  Shape shape;
  for (auto& ax : axes) {
    ax = normalize_axis(ax, nd, "transpose");
    if (used[ax]) throw std::invalid_argument("[transpose] repeated axis " + std::to_string(ax));
    used[ax] = true;
    shape.push_back(a.shape(ax));
  }
  bool identity = true;
  for (int i = 0; i < nd; ++i) identity &= axes[i] == i;
  if (identity) return a;
  return array(std::move(shape), a.dtype(), std::make_shared<Transpose>(to_stream(s), axes), {a});
}

array transpose(const array& a, S s) {
  std::vector<int> axes(a.ndim());
  std::iota(axes.rbegin(), axes.rend(), 0);
  return transpose(a, axes, s);
}

array swapaxes(const array& a, int axis1, int axis2, S s) {
  int nd = static_cast<int>(a.ndim());
  axis1 = normalize_axis(axis1, nd, "swapaxes");
  axis2 = normalize_axis(axis2, nd, "swapaxes");
  std::vector<int> axes(nd);
  std::iota(axes.begin(), axes.end(), 0);
  std::swap(axes[axis1], axes[axis2]);
  return transpose(a, axes, s);
}

array moveaxis(const array& a, int source, int destination, S s) {
  int nd = static_cast<int>(a.ndim());
  source = normalize_axis(source, nd, "moveaxis");
  destination = normalize_axis(destination, nd, "moveaxis");
  std::vector<int> axes;
  for (int i = 0; i < nd; ++i) {
    if (i != source) axes.push_back(i);
  }
  axes.insert(axes.begin() + destination, source);
  return transpose(a, axes, s);
}

array atleast_1d(const array& a, S s) { return a.ndim() == 0 ? reshape(a, {1}, s) : a; }
array atleast_2d(const array& a, S s) {
  if (a.ndim() == 0) return reshape(a, {1, 1}, s);
  if (a.ndim() == 1) return expand_dims(a, 0, s);
  return a;
}
array atleast_3d(const array& a, S s) {
  if (a.ndim() == 0) return reshape(a, {1, 1, 1}, s);
  if (a.ndim() == 1) return reshape(a, {1, a.shape(0), 1}, s);
  if (a.ndim() == 2) return expand_dims(a, 2, s);
  return a;
}

// ---------------------------------------------------------------- slicing

namespace {
// Clamps start/stop per NumPy for each axis and returns the result shape.
Shape normalize_slice(const Shape& in_shape, Shape& start, Shape& stop, const Shape& strides) {
  Shape out(in_shape.size());
  for (size_t i = 0; i < in_shape.size(); ++i) {
    int n = in_shape[i];
    int st = strides[i];
    if (st == 0) throw std::invalid_argument("[slice] slice step cannot be zero");
    int b = start[i], e = stop[i];
    if (b < 0) b += n;
    if (e < 0) e += n;
    if (st > 0) {
      b = std::clamp(b, 0, n);
      e = std::clamp(e, 0, n);
      out[i] = e > b ? (e - b + st - 1) / st : 0;
    } else {
      b = std::clamp(b, -1, n - 1);
      e = std::clamp(e, -1, n - 1);
      out[i] = b > e ? (b - e - st - 1) / (-st) : 0;
    }
    start[i] = b;
    stop[i] = e;
  }
  return out;
}
}  // namespace

array slice(const array& a, Shape start, Shape stop, Shape strides, S s) {
  if (start.size() != a.ndim() || stop.size() != a.ndim() || strides.size() != a.ndim()) {
    throw std::invalid_argument("[slice] start, stop and strides need " + std::to_string(a.ndim()) +
                                " entries for an array of shape " + shape_str(a.shape()));
  }
  Shape out = normalize_slice(a.shape(), start, stop, strides);
  if (out == a.shape()) {
    bool trivial = true;
    for (size_t i = 0; i < a.ndim(); ++i) trivial &= strides[i] == 1;
    if (trivial) return a;
  }
  return array(
      std::move(out), a.dtype(),
      std::make_shared<Slice>(to_stream(s), std::move(start), std::move(stop), std::move(strides)),
      {a});
}

array slice(const array& a, Shape start, Shape stop, S s) {
  return slice(a, std::move(start), std::move(stop), Shape(a.ndim(), 1), s);
}

array slice_update(const array& src, const array& update, Shape start, Shape stop, Shape strides,
                   S s) {
  if (start.size() != src.ndim() || stop.size() != src.ndim() || strides.size() != src.ndim()) {
    throw std::invalid_argument("[slice_update] start, stop and strides need " +
                                std::to_string(src.ndim()) + " entries");
  }
  Shape window = normalize_slice(src.shape(), start, stop, strides);
  array upd = broadcast_to(astype(update, src.dtype(), s), window, s);
  return array(src.shape(), src.dtype(),
               std::make_shared<SliceUpdate>(to_stream(s), std::move(start), std::move(stop),
                                             std::move(strides)),
               {src, upd});
}

array slice_update(const array& src, const array& update, Shape start, Shape stop, S s) {
  return slice_update(src, update, std::move(start), std::move(stop), Shape(src.ndim(), 1), s);
}

// ---------------------------------------------------------------- creation

array arange(double start, double stop, double step, Dtype dtype, S s) {
  if (step == 0) throw std::invalid_argument("[arange] step cannot be 0");
  if (std::isnan(start) || std::isnan(stop) || std::isnan(step)) {
    throw std::invalid_argument("[arange] cannot use NaN for start, stop or step");
  }
  if (dtype == bool_) throw std::invalid_argument("[arange] cannot produce bool");
  double n = std::ceil((stop - start) / step);
  if (n > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument("[arange] the range has more elements than an array can hold");
  }
  int size = std::max(static_cast<int>(n), 0);
  return array({size}, dtype, std::make_shared<Arange>(to_stream(s), start, stop, step), {});
}
array arange(double start, double stop, double step, S s) {
  return arange(start, stop, step, float32, s);
}
array arange(double start, double stop, Dtype dtype, S s) {
  return arange(start, stop, 1.0, dtype, s);
}
array arange(double start, double stop, S s) { return arange(start, stop, 1.0, float32, s); }
array arange(double stop, Dtype dtype, S s) { return arange(0.0, stop, 1.0, dtype, s); }
array arange(double stop, S s) { return arange(0.0, stop, 1.0, float32, s); }
array arange(int start, int stop, int step, S s) {
  return arange(static_cast<double>(start), static_cast<double>(stop), static_cast<double>(step),
                int32, s);
}
array arange(int start, int stop, S s) { return arange(start, stop, 1, s); }
array arange(int stop, S s) { return arange(0, stop, 1, s); }

array linspace(double start, double stop, int num, Dtype dtype, S s) {
  if (num < 0)
    throw std::invalid_argument("[linspace] num must be non-negative, got " + std::to_string(num));
  // Computed in float64 so that float64 results keep their precision.
  if (num == 1) return astype(array(std::vector<double>{start}, {1}, float64), dtype, s);
  array t = divide(arange(0, num, float64, s), array(static_cast<double>(std::max(num - 1, 1))), s);
  array out = add(multiply(t, array(stop - start), s), array(start), s);
  return astype(out, dtype, s);
}

array full(Shape shape, array vals, Dtype dtype, S s) {
  for (auto d : shape) {
    if (d < 0)
      throw std::invalid_argument("[full] negative dimension in shape " + shape_str(shape));
  }
  auto in = broadcast_to(astype(std::move(vals), dtype, s), shape, s);
  return array(std::move(shape), dtype, std::make_shared<Full>(to_stream(s)), {in});
}
array full(Shape shape, array vals, S s) {
  Dtype d = vals.dtype();
  return full(std::move(shape), std::move(vals), d, s);
}
array zeros(const Shape& shape, Dtype dtype, S s) { return full(shape, array(0, dtype), dtype, s); }
array zeros_like(const array& a, S s) { return zeros(a.shape(), a.dtype(), s); }
array ones(const Shape& shape, Dtype dtype, S s) { return full(shape, array(1, dtype), dtype, s); }
array ones_like(const array& a, S s) { return ones(a.shape(), a.dtype(), s); }
array full_like(const array& a, array vals, S s) {
  return full(a.shape(), std::move(vals), a.dtype(), s);
}

// ---------------------------------------------------------------- primitive rules

bool Broadcast::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const Broadcast*>(&o);
  return p && p->shape_ == shape_;
}
std::vector<array> Broadcast::jvp(const std::vector<array>&, const std::vector<array>& t,
                                  const std::vector<int>&) {
  return {broadcast_to(t[0], shape_, stream())};
}
std::vector<array> Broadcast::vjp(const std::vector<array>& primals, const std::vector<array>& cot,
                                  const std::vector<int>&, const std::vector<array>&) {
  // Sum over the dims that were added or stretched.
  const Shape& in = primals[0].shape();
  int diff = static_cast<int>(shape_.size() - in.size());
  std::vector<int> axes;
  for (int i = 0; i < static_cast<int>(shape_.size()); ++i) {
    if (i < diff || (in[i - diff] == 1 && shape_[i] != 1)) axes.push_back(i);
  }
  array g = axes.empty() ? cot[0] : sum(cot[0], axes, true, stream());
  return {reshape(g, in, stream())};
}
std::pair<std::vector<array>, std::vector<int>> Broadcast::vmap(const std::vector<array>& inputs,
                                                                const std::vector<int>& axes) {
  array x = inputs[0];
  int ax = axes[0];
  // Put the batch axis first, pad the rest to the target rank, then broadcast.
  x = moveaxis(x, ax, 0);
  int rest = static_cast<int>(x.ndim()) - 1;
  int missing = static_cast<int>(shape_.size()) - rest;
  Shape sh = x.shape();
  sh.insert(sh.begin() + 1, missing, 1);
  x = reshape(x, sh, stream());
  Shape target = shape_;
  target.insert(target.begin(), x.shape(0));
  return {{broadcast_to(x, target, stream())}, {0}};
}

bool Reshape::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const Reshape*>(&o);
  return p && p->shape_ == shape_;
}
std::vector<array> Reshape::jvp(const std::vector<array>&, const std::vector<array>& t,
                                const std::vector<int>&) {
  return {reshape(t[0], shape_, stream())};
}
std::vector<array> Reshape::vjp(const std::vector<array>& primals, const std::vector<array>& cot,
                                const std::vector<int>&, const std::vector<array>&) {
  return {reshape(cot[0], primals[0].shape(), stream())};
}
std::pair<std::vector<array>, std::vector<int>> Reshape::vmap(const std::vector<array>& inputs,
                                                              const std::vector<int>& axes) {
  array x = moveaxis(inputs[0], axes[0], 0, stream());
  Shape target = shape_;
  target.insert(target.begin(), x.shape(0));
  return {{reshape(x, target, stream())}, {0}};
}

bool Transpose::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const Transpose*>(&o);
  return p && p->axes_ == axes_;
}
std::vector<array> Transpose::jvp(const std::vector<array>&, const std::vector<array>& t,
                                  const std::vector<int>&) {
  return {transpose(t[0], axes_, stream())};
}
std::vector<array> Transpose::vjp(const std::vector<array>&, const std::vector<array>& cot,
                                  const std::vector<int>&, const std::vector<array>&) {
  std::vector<int> inv(axes_.size());
  for (size_t i = 0; i < axes_.size(); ++i) inv[axes_[i]] = static_cast<int>(i);
  return {transpose(cot[0], inv, stream())};
}
std::pair<std::vector<array>, std::vector<int>> Transpose::vmap(const std::vector<array>& inputs,
                                                                const std::vector<int>& axes) {
  array x = moveaxis(inputs[0], axes[0], 0, stream());
  std::vector<int> perm{0};
  for (int a : axes_) perm.push_back(a + 1);
  return {{transpose(x, perm, stream())}, {0}};
}

bool Slice::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const Slice*>(&o);
  return p && p->start_ == start_ && p->stop_ == stop_ && p->strides_ == strides_;
}
std::vector<array> Slice::jvp(const std::vector<array>&, const std::vector<array>& t,
                              const std::vector<int>&) {
  return {slice(t[0], start_, stop_, strides_, stream())};
}
std::vector<array> Slice::vjp(const std::vector<array>& primals, const std::vector<array>& cot,
                              const std::vector<int>&, const std::vector<array>&) {
  return {
      slice_update(zeros_like(primals[0], stream()), cot[0], start_, stop_, strides_, stream())};
}
std::pair<std::vector<array>, std::vector<int>> Slice::vmap(const std::vector<array>& inputs,
                                                            const std::vector<int>& axes) {
  array x = moveaxis(inputs[0], axes[0], 0, stream());
  Shape b{0}, e{x.shape(0)}, st{1};
  b.insert(b.end(), start_.begin(), start_.end());
  e.insert(e.end(), stop_.begin(), stop_.end());
  st.insert(st.end(), strides_.begin(), strides_.end());
  return {{slice(x, b, e, st, stream())}, {0}};
}

bool SliceUpdate::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const SliceUpdate*>(&o);
  return p && p->start_ == start_ && p->stop_ == stop_ && p->strides_ == strides_;
}
std::vector<array> SliceUpdate::vjp(const std::vector<array>& primals,
                                    const std::vector<array>& cot, const std::vector<int>& argnums,
                                    const std::vector<array>&) {
  std::vector<array> out;
  for (int i : argnums) {
    if (i == 0) {
      out.push_back(slice_update(cot[0], zeros_like(primals[1], stream()), start_, stop_, strides_,
                                 stream()));
    } else {
      out.push_back(slice(cot[0], start_, stop_, strides_, stream()));
    }
  }
  return out;
}
std::vector<array> SliceUpdate::jvp(const std::vector<array>& primals, const std::vector<array>& t,
                                    const std::vector<int>& argnums) {
  array src_t = zeros_like(primals[0], stream());
  array upd_t = zeros_like(primals[1], stream());
  for (size_t k = 0; k < argnums.size(); ++k) {
    if (argnums[k] == 0)
      src_t = t[k];
    else
      upd_t = t[k];
  }
  return {slice_update(src_t, upd_t, start_, stop_, strides_, stream())};
}
std::pair<std::vector<array>, std::vector<int>> SliceUpdate::vmap(const std::vector<array>& inputs,
                                                                  const std::vector<int>& axes) {
  int B = axes[0] >= 0 ? inputs[0].shape(axes[0]) : inputs[1].shape(axes[1]);
  auto front = [&](const array& x, int ax, const Shape& unbatched) {
    if (ax >= 0) return moveaxis(x, ax, 0, stream());
    Shape sh = unbatched;
    sh.insert(sh.begin(), B);
    return broadcast_to(expand_dims(x, 0, stream()), sh, stream());
  };
  array src = front(inputs[0], axes[0], inputs[0].shape());
  array upd = front(inputs[1], axes[1], inputs[1].shape());
  Shape b{0}, e{B}, st{1};
  b.insert(b.end(), start_.begin(), start_.end());
  e.insert(e.end(), stop_.begin(), stop_.end());
  st.insert(st.end(), strides_.begin(), strides_.end());
  return {{slice_update(src, upd, b, e, st, stream())}, {0}};
}

bool Arange::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const Arange*>(&o);
  return p && p->start_ == start_ && p->stop_ == stop_ && p->step_ == step_;
}
std::vector<array> Arange::jvp(const std::vector<array>&, const std::vector<array>&,
                               const std::vector<int>&) {
  return {};
}
std::vector<array> Arange::vjp(const std::vector<array>&, const std::vector<array>&,
                               const std::vector<int>&, const std::vector<array>&) {
  return {};
}
std::pair<std::vector<array>, std::vector<int>> Arange::vmap(const std::vector<array>&,
                                                             const std::vector<int>&) {
  throw std::invalid_argument("[Arange] has no inputs to batch over");
}

bool Full::is_equivalent(const Primitive& o) const {
  return dynamic_cast<const Full*>(&o) != nullptr;
}
std::vector<array> Full::jvp(const std::vector<array>&, const std::vector<array>& t,
                             const std::vector<int>&) {
  return {copy(t[0], stream())};
}
std::vector<array> Full::vjp(const std::vector<array>&, const std::vector<array>& cot,
                             const std::vector<int>&, const std::vector<array>&) {
  return {cot[0]};
}
std::pair<std::vector<array>, std::vector<int>> Full::vmap(const std::vector<array>& inputs,
                                                           const std::vector<int>& axes) {
  return {{copy(inputs[0], stream())}, {axes[0]}};
}

}  // namespace mx
