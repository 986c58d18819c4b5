// Sorting primitives: full sorts and partitions along one axis, of values or
// of the indices that order them (uint32, as in MLX).
#pragma once

#include "mlxcpp/mx/primitives/shape.h"

namespace mx {

class Sort : public UnaryPrimitive {
 public:
  Sort(Stream s, int axis) : UnaryPrimitive(s), axis_(axis) {}
  MX_PRIMITIVE_COMMON(Sort)
  int axis() const { return axis_; }
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape()};
  }

 private:
  int axis_;
};

// Stable: equal values keep their order.
class ArgSort : public UnaryPrimitive {
 public:
  ArgSort(Stream s, int axis) : UnaryPrimitive(s), axis_(axis) {}
  MX_PRIMITIVE_COMMON(ArgSort)
  int axis() const { return axis_; }
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape()};
  }

 private:
  int axis_;
};

// The element at kth is the one a sort would put there; smaller (or equal)
// elements come before it, larger (or equal) after, in no particular order.
class Partition : public UnaryPrimitive {
 public:
  Partition(Stream s, int kth, int axis) : UnaryPrimitive(s), kth_(kth), axis_(axis) {}
  MX_PRIMITIVE_COMMON(Partition)
  int axis() const { return axis_; }
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape()};
  }

 private:
  int kth_, axis_;
};

class ArgPartition : public UnaryPrimitive {
 public:
  ArgPartition(Stream s, int kth, int axis) : UnaryPrimitive(s), kth_(kth), axis_(axis) {}
  MX_PRIMITIVE_COMMON(ArgPartition)
  int axis() const { return axis_; }
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape()};
  }

 private:
  int kth_, axis_;
};

}  // namespace mx
