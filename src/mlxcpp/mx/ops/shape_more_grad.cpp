// Derivatives and batching rules of the primitives in primitives/shape_more.h.
#include <numeric>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/shape_more.h"

namespace mx {

namespace {

// Moves the batch axis of `x` to the front; an unbatched input is broadcast
// to `batch` copies.
array batch_front(const array& x, int ax, int batch, const Stream& s) {
  if (ax >= 0) return moveaxis(x, ax, 0, s);
  Shape sh = x.shape();
  sh.insert(sh.begin(), batch);
  return broadcast_to(expand_dims(x, 0, s), sh, s);
}

int batch_size(const std::vector<array>& inputs, const std::vector<int>& axes) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (axes[i] >= 0) return inputs[i].shape(axes[i]);
  }
  return 1;
}

std::vector<int> shifted(const std::vector<int>& axes) {
  std::vector<int> out;
  for (int a : axes) out.push_back(a + 1);
  return out;
}

}  // namespace

// ---------------------------------------------------------------- Concatenate

bool Concatenate::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const Concatenate*>(&o);
  return p && p->axis_ == axis_;
}
std::vector<array> Concatenate::jvp(const std::vector<array>& primals,
                                    const std::vector<array>& tangents,
                                    const std::vector<int>& argnums) {
  std::vector<array> parts;
  for (const auto& p : primals) parts.push_back(zeros_like(p, stream()));
  for (size_t k = 0; k < argnums.size(); ++k) parts[argnums[k]] = tangents[k];
  return {concatenate(std::move(parts), axis_, stream())};
}
std::vector<array> Concatenate::vjp(const std::vector<array>& primals,
                                    const std::vector<array>& cot, const std::vector<int>& argnums,
                                    const std::vector<array>&) {
  std::vector<int> starts{0};
  for (const auto& p : primals) starts.push_back(starts.back() + p.shape(axis_));
  std::vector<array> out;
  for (int i : argnums) {
    Shape start(cot[0].ndim(), 0), stop = cot[0].shape();
    start[axis_] = starts[i];
    stop[axis_] = starts[i + 1];
    out.push_back(slice(cot[0], start, stop, stream()));
  }
  return out;
}
std::pair<std::vector<array>, std::vector<int>> Concatenate::vmap(const std::vector<array>& inputs,
                                                                  const std::vector<int>& axes) {
  int b = batch_size(inputs, axes);
  std::vector<array> parts;
  for (size_t i = 0; i < inputs.size(); ++i) {
    parts.push_back(batch_front(inputs[i], axes[i], b, stream()));
  }
  return {{concatenate(std::move(parts), axis_ + 1, stream())}, {0}};
}

// ---------------------------------------------------------------- Pad

bool Pad::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const Pad*>(&o);
  return p && p->axes_ == axes_ && p->low_ == low_ && p->high_ == high_;
}
std::vector<array> Pad::jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                            const std::vector<int>& argnums) {
  // Pad is linear in (a, value) together.
  array ta = zeros_like(primals[0], stream());
  array tv = zeros_like(primals[1], stream());
  for (size_t k = 0; k < argnums.size(); ++k) {
    if (argnums[k] == 0) {
      ta = tangents[k];
    } else {
      tv = tangents[k];
    }
  }
  return {pad(ta, axes_, low_, high_, tv, "constant", stream())};
}
std::vector<array> Pad::vjp(const std::vector<array>& primals, const std::vector<array>& cot,
                            const std::vector<int>& argnums, const std::vector<array>&) {
  Shape start(cot[0].ndim(), 0), stop = cot[0].shape();
  for (size_t i = 0; i < axes_.size(); ++i) {
    start[axes_[i]] = low_[i];
    stop[axes_[i]] = low_[i] + primals[0].shape(axes_[i]);
  }
  array inner = slice(cot[0], start, stop, stream());
  std::vector<array> out;
  for (int i : argnums) {
    if (i == 0) {
      out.push_back(inner);
    } else {
      // The value lands everywhere outside the window.
      out.push_back(subtract(sum(cot[0], stream()), sum(inner, stream()), stream()));
    }
  }
  return out;
}
std::pair<std::vector<array>, std::vector<int>> Pad::vmap(const std::vector<array>& inputs,
                                                          const std::vector<int>& axes) {
  if (axes[1] >= 0) {
    throw std::invalid_argument("[pad] vmap over the pad value is not supported");
  }
  array x = moveaxis(inputs[0], axes[0], 0, stream());
  return {{pad(x, shifted(axes_), low_, high_, inputs[1], "constant", stream())}, {0}};
}

// ---------------------------------------------------------------- Diagonal

bool Diagonal::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const Diagonal*>(&o);
  return p && p->offset_ == offset_ && p->axis1_ == axis1_ && p->axis2_ == axis2_;
}
std::vector<array> Diagonal::jvp(const std::vector<array>&, const std::vector<array>& tangents,
                                 const std::vector<int>&) {
  return {diagonal(tangents[0], offset_, axis1_, axis2_, stream())};
}
std::vector<array> Diagonal::vjp(const std::vector<array>& primals, const std::vector<array>& cot,
                                 const std::vector<int>&, const std::vector<array>&) {
  const array& x = primals[0];
  int nd = static_cast<int>(x.ndim());
  array d = detail::embed_diagonal(cot[0], x.shape(axis1_), x.shape(axis2_), offset_, stream());
  // d's axes are (other axes in order..., axis1, axis2); put them back.
  std::vector<int> order;
  for (int i = 0; i < nd; ++i) {
    if (i != axis1_ && i != axis2_) order.push_back(i);
  }
  order.push_back(axis1_);
  order.push_back(axis2_);
  std::vector<int> perm(nd);
  for (int j = 0; j < nd; ++j) perm[order[j]] = j;
  return {transpose(d, perm, stream())};
}
std::pair<std::vector<array>, std::vector<int>> Diagonal::vmap(const std::vector<array>& inputs,
                                                               const std::vector<int>& axes) {
  array x = moveaxis(inputs[0], axes[0], 0, stream());
  return {{diagonal(x, offset_, axis1_ + 1, axis2_ + 1, stream())}, {0}};
}

// ---------------------------------------------------------------- AsStrided

bool AsStrided::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const AsStrided*>(&o);
  return p && p->shape_ == shape_ && p->strides_ == strides_ && p->offset_ == offset_;
}
std::vector<array> AsStrided::jvp(const std::vector<array>&, const std::vector<array>& tangents,
                                  const std::vector<int>&) {
  return {as_strided(tangents[0], shape_, strides_, offset_, stream())};
}
std::vector<array> AsStrided::vjp(const std::vector<array>& primals, const std::vector<array>& cot,
                                  const std::vector<int>&, const std::vector<array>&) {
  // Every output element reads one input element (windows may overlap), so
  // the cotangents are added back at the flat positions they were read from.
  const array& x = primals[0];
  size_t m = cot[0].size();
  if (m == 0) return {zeros_like(x, stream())};
  array pos = array(static_cast<int64_t>(offset_), int64);
  for (size_t d = 0; d < shape_.size(); ++d) {
    Shape sh(shape_.size(), 1);
    sh[d] = shape_[d];
    array steps = multiply(arange(0.0, static_cast<double>(shape_[d]), int64, stream()),
                           array(strides_[d], int64), stream());
    pos = add(pos, reshape(steps, sh, stream()), stream());
  }
  pos = flatten(broadcast_to(pos, shape_, stream()), stream());
  int n = static_cast<int>(m);
  array upd = reshape(cot[0], {n, 1}, stream());
  array g = scatter_add(zeros({static_cast<int>(x.size())}, cot[0].dtype(), stream()), {pos}, upd,
                        std::vector<int>{0}, stream());
  return {reshape(g, x.shape(), stream())};
}
std::pair<std::vector<array>, std::vector<int>> AsStrided::vmap(const std::vector<array>& inputs,
                                                                const std::vector<int>& axes) {
  array x = moveaxis(inputs[0], axes[0], 0, stream());
  int64_t per = 1;
  for (size_t i = 1; i < x.ndim(); ++i) per *= x.shape(static_cast<int>(i));
  Shape shape = shape_;
  shape.insert(shape.begin(), x.shape(0));
  Strides strides = strides_;
  strides.insert(strides.begin(), per);
  return {{as_strided(x, shape, strides, offset_, stream())}, {0}};
}

// ---------------------------------------------------------------- View

bool View::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const View*>(&o);
  return p && p->dtype_ == dtype_;
}
std::vector<array> View::jvp(const std::vector<array>&, const std::vector<array>&,
                             const std::vector<int>&) {
  throw std::invalid_argument("[view] is not differentiable (it reinterprets bytes)");
}
std::vector<array> View::vjp(const std::vector<array>&, const std::vector<array>&,
                             const std::vector<int>&, const std::vector<array>&) {
  throw std::invalid_argument("[view] is not differentiable (it reinterprets bytes)");
}
std::pair<std::vector<array>, std::vector<int>> View::vmap(const std::vector<array>& inputs,
                                                           const std::vector<int>& axes) {
  array x = moveaxis(inputs[0], axes[0], 0, stream());
  if (x.ndim() == 1 && x.itemsize() != size_of(dtype_)) {
    throw std::invalid_argument("[view] cannot view 0-d " + dtype_name(x.dtype()) +
                                " elements as " + dtype_name(dtype_) + " under vmap");
  }
  return {{view(x, dtype_, stream())}, {0}};
}

// ---------------------------------------------------------------- DynamicSlice

bool DynamicSlice::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const DynamicSlice*>(&o);
  return p && p->axes_ == axes_ && p->slice_size_ == slice_size_;
}
std::vector<array> DynamicSlice::jvp(const std::vector<array>& primals,
                                     const std::vector<array>& tangents,
                                     const std::vector<int>& argnums) {
  for (size_t k = 0; k < argnums.size(); ++k) {
    if (argnums[k] == 0) return {slice(tangents[k], primals[1], axes_, slice_size_, stream())};
  }
  return {zeros(slice_size_, primals[0].dtype(), stream())};
}
std::vector<array> DynamicSlice::vjp(const std::vector<array>& primals,
                                     const std::vector<array>& cot, const std::vector<int>& argnums,
                                     const std::vector<array>&) {
  std::vector<array> out;
  for (int i : argnums) {
    if (i == 0) {
      out.push_back(
          slice_update(zeros_like(primals[0], stream()), cot[0], primals[1], axes_, stream()));
    } else {
      // The start indices are integers: no gradient flows to them.
      out.push_back(zeros_like(primals[1], stream()));
    }
  }
  return out;
}
std::pair<std::vector<array>, std::vector<int>> DynamicSlice::vmap(const std::vector<array>& inputs,
                                                                   const std::vector<int>& axes) {
  if (axes[1] >= 0) {
    throw std::invalid_argument("[slice] vmap over the start indices is not supported");
  }
  array x = moveaxis(inputs[0], axes[0], 0, stream());
  Shape size = slice_size_;
  size.insert(size.begin(), x.shape(0));
  return {{slice(x, inputs[1], shifted(axes_), size, stream())}, {0}};
}

// ---------------------------------------------------------------- DynamicSliceUpdate

bool DynamicSliceUpdate::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const DynamicSliceUpdate*>(&o);
  return p && p->axes_ == axes_ && p->in_place_ == in_place_;
}
std::vector<array> DynamicSliceUpdate::jvp(const std::vector<array>& primals,
                                           const std::vector<array>& tangents,
                                           const std::vector<int>& argnums) {
  array ts = zeros_like(primals[0], stream());
  array tu = zeros_like(primals[1], stream());
  for (size_t k = 0; k < argnums.size(); ++k) {
    if (argnums[k] == 0) ts = tangents[k];
    if (argnums[k] == 1) tu = tangents[k];
  }
  return {slice_update(ts, tu, primals[2], axes_, stream())};
}
std::vector<array> DynamicSliceUpdate::vjp(const std::vector<array>& primals,
                                           const std::vector<array>& cot,
                                           const std::vector<int>& argnums,
                                           const std::vector<array>&) {
  std::vector<array> out;
  for (int i : argnums) {
    if (i == 0) {
      out.push_back(
          slice_update(cot[0], zeros_like(primals[1], stream()), primals[2], axes_, stream()));
    } else if (i == 1) {
      out.push_back(slice(cot[0], primals[2], axes_, primals[1].shape(), stream()));
    } else {
      out.push_back(zeros_like(primals[2], stream()));
    }
  }
  return out;
}
std::pair<std::vector<array>, std::vector<int>> DynamicSliceUpdate::vmap(
    const std::vector<array>& inputs, const std::vector<int>& axes) {
  if (axes[2] >= 0) {
    throw std::invalid_argument("[slice_update] vmap over the start indices is not supported");
  }
  int b = batch_size(inputs, axes);
  array src = batch_front(inputs[0], axes[0], b, stream());
  array upd = batch_front(inputs[1], axes[1], b, stream());
  return {{slice_update(src, upd, inputs[2], shifted(axes_), stream())}, {0}};
}

}  // namespace mx
