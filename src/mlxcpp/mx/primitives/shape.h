// Primitives that change shape or layout: most are views that share the
// input's buffer through strides.
#pragma once

#include "mlxcpp/mx/primitive.h"

namespace mx {

#define MX_PRIMITIVE_COMMON(NAME)                                                                 \
  void eval_cpu(const std::vector<array>& inputs, array& out) override;                           \
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,   \
                         const std::vector<int>& argnums) override;                               \
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents, \
                         const std::vector<int>& argnums, const std::vector<array>& outputs)      \
      override;                                                                                   \
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,          \
                                                       const std::vector<int>& axes) override;    \
  const char* name() const override { return #NAME; }                                             \
  bool is_equivalent(const Primitive& other) const override;

class Broadcast : public UnaryPrimitive {
 public:
  Broadcast(Stream s, Shape shape) : UnaryPrimitive(s), shape_(std::move(shape)) {}
  MX_PRIMITIVE_COMMON(Broadcast)
  const Shape& shape() const { return shape_; }

 private:
  Shape shape_;
};

class Reshape : public UnaryPrimitive {
 public:
  Reshape(Stream s, Shape shape) : UnaryPrimitive(s), shape_(std::move(shape)) {}
  MX_PRIMITIVE_COMMON(Reshape)

 private:
  Shape shape_;
};

class Transpose : public UnaryPrimitive {
 public:
  Transpose(Stream s, std::vector<int> axes) : UnaryPrimitive(s), axes_(std::move(axes)) {}
  MX_PRIMITIVE_COMMON(Transpose)

 private:
  std::vector<int> axes_;
};

class Slice : public UnaryPrimitive {
 public:
  Slice(Stream s, Shape start, Shape stop, Shape strides)
      : UnaryPrimitive(s),
        start_(std::move(start)),
        stop_(std::move(stop)),
        strides_(std::move(strides)) {}
  MX_PRIMITIVE_COMMON(Slice)

 private:
  Shape start_, stop_, strides_;
};

// inputs: src, update. Writes update into the strided window of a copy of src.
class SliceUpdate : public UnaryPrimitive {
 public:
  SliceUpdate(Stream s, Shape start, Shape stop, Shape strides)
      : UnaryPrimitive(s),
        start_(std::move(start)),
        stop_(std::move(stop)),
        strides_(std::move(strides)) {}
  MX_PRIMITIVE_COMMON(SliceUpdate)
  const Shape& start() const { return start_; }
  const Shape& stop() const { return stop_; }
  const Shape& strides() const { return strides_; }

 private:
  Shape start_, stop_, strides_;
};

class Arange : public UnaryPrimitive {
 public:
  Arange(Stream s, double start, double stop, double step)
      : UnaryPrimitive(s), start_(start), stop_(stop), step_(step) {}
  MX_PRIMITIVE_COMMON(Arange)
  double start() const { return start_; }
  double step() const { return step_; }

 private:
  double start_, stop_, step_;
};

// Creates the array from a template (broadcast + copy): full(), zeros(), ...
class Full : public UnaryPrimitive {
 public:
  explicit Full(Stream s) : UnaryPrimitive(s) {}
  MX_PRIMITIVE_COMMON(Full)
};

namespace detail {
// Flags of a strided view of `size` elements.
array::Flags view_flags(const Shape& shape, const Strides& strides, bool dense);
}  // namespace detail

}  // namespace mx
