// Primitives behind concatenate, pad, diagonal, as_strided, view and the
// dynamic (array-start) slices used by KV caches.
#pragma once

#include "mlxcpp/mx/primitives/shape.h"

namespace mx {

// Copies each input into its window of the output along `axis`.
class Concatenate : public UnaryPrimitive {
 public:
  Concatenate(Stream s, int axis) : UnaryPrimitive(s), axis_(axis) {}
  MX_PRIMITIVE_COMMON(Concatenate)
  int axis() const { return axis_; }
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    Shape out = inputs[0].shape();
    out[axis_] = 0;
    for (const auto& x : inputs) out[axis_] += x.shape(axis_);
    return {out};
  }

 private:
  int axis_;
};

// inputs: a, pad value (a scalar of a's dtype). Fills the output with the
// value and copies `a` into the window [low, low + shape) of `axes`.
class Pad : public UnaryPrimitive {
 public:
  Pad(Stream s, std::vector<int> axes, Shape low, Shape high)
      : UnaryPrimitive(s), axes_(std::move(axes)), low_(std::move(low)), high_(std::move(high)) {}
  MX_PRIMITIVE_COMMON(Pad)
  const std::vector<int>& axes() const { return axes_; }
  const Shape& low() const { return low_; }
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    Shape out = inputs[0].shape();
    for (size_t i = 0; i < axes_.size(); ++i) out[axes_[i]] += low_[i] + high_[i];
    return {out};
  }

 private:
  std::vector<int> axes_;
  Shape low_, high_;
};

// A strided view of the diagonal of axes (axis1, axis2), placed last.
class Diagonal : public UnaryPrimitive {
 public:
  Diagonal(Stream s, int offset, int axis1, int axis2)
      : UnaryPrimitive(s), offset_(offset), axis1_(axis1), axis2_(axis2) {}
  MX_PRIMITIVE_COMMON(Diagonal)

 private:
  int offset_, axis1_, axis2_;
};

// A view with explicit shape/strides/offset (in elements) over the row-major
// layout of the input.
class AsStrided : public UnaryPrimitive {
 public:
  AsStrided(Stream s, Shape shape, Strides strides, size_t offset)
      : UnaryPrimitive(s),
        shape_(std::move(shape)),
        strides_(std::move(strides)),
        offset_(offset) {}
  MX_PRIMITIVE_COMMON(AsStrided)
  std::vector<Shape> output_shapes(const std::vector<array>&) override { return {shape_}; }

 private:
  Shape shape_;
  Strides strides_;
  size_t offset_;
};

// Reinterprets the bytes of the input as another dtype.
class View : public UnaryPrimitive {
 public:
  View(Stream s, Dtype dtype) : UnaryPrimitive(s), dtype_(dtype) {}
  MX_PRIMITIVE_COMMON(View)

 private:
  Dtype dtype_;
};

// inputs: a, start (integers, one per axis in `axes`). A view of size
// `slice_size` whose start is read at evaluation time.
class DynamicSlice : public UnaryPrimitive {
 public:
  DynamicSlice(Stream s, std::vector<int> axes, Shape slice_size)
      : UnaryPrimitive(s), axes_(std::move(axes)), slice_size_(std::move(slice_size)) {}
  MX_PRIMITIVE_COMMON(DynamicSlice)
  const std::vector<int>& axes() const { return axes_; }
  std::vector<Shape> output_shapes(const std::vector<array>&) override { return {slice_size_}; }

 private:
  std::vector<int> axes_;
  Shape slice_size_;
};

// inputs: src, update, start. Writes update into a copy of src at start, or, in_place, into
// src's own buffer, which the output then shares (slice_update_in_place).
class DynamicSliceUpdate : public UnaryPrimitive {
 public:
  DynamicSliceUpdate(Stream s, std::vector<int> axes, bool in_place = false)
      : UnaryPrimitive(s), axes_(std::move(axes)), in_place_(in_place) {}
  MX_PRIMITIVE_COMMON(DynamicSliceUpdate)
  const std::vector<int>& axes() const { return axes_; }
  bool in_place() const { return in_place_; }
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape()};
  }

 private:
  std::vector<int> axes_;
  bool in_place_;
};

namespace detail {
// The element offset of a dynamic slice: start[i] applies to axes[i];
// negative starts count from the end, then clamp so the window fits.
int64_t dynamic_slice_offset(const array& start, const std::vector<int>& axes,
                             const Shape& in_shape, const Shape& window, const Strides& strides);
// Places d[..., i] at [..., i, i + k] of a zero (..., n1, n2) array; d's last
// axis must hold the length of that diagonal.
array embed_diagonal(const array& d, int n1, int n2, int k, StreamOrDevice s);
}  // namespace detail

}  // namespace mx
