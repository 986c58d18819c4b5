// Indexing primitives (MLX's Gather and Scatter). take, take_along_axis and
// put_along_axis are built from them, so they inherit their derivatives.
#pragma once

#include "mlxcpp/mx/primitive.h"

namespace mx {

// inputs: a, idx_0 .. idx_{k-1}. The index arrays share one (broadcast) shape
// I and may have different integer dtypes. out[i..., j...] reads
// a[idx_0[i] + j_{axes[0]}, ..., j_d ...]: for each index tuple a window of
// `slice_sizes` starting at the indexed position (0 on other axes).
// Output shape: I + slice_sizes. Negative indices count from the end of their
// axis; an index whose window leaves the array throws at evaluation.
class Gather : public UnaryPrimitive {
 public:
  Gather(Stream s, std::vector<int> axes, Shape slice_sizes)
      : UnaryPrimitive(s), axes_(std::move(axes)), slice_sizes_(std::move(slice_sizes)) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                       const std::vector<int>& axes) override;
  const char* name() const override { return "Gather"; }
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override;

  const std::vector<int>& axes() const { return axes_; }
  const Shape& slice_sizes() const { return slice_sizes_; }

 private:
  std::vector<int> axes_;
  Shape slice_sizes_;
};

// inputs: a, idx_0 .. idx_{k-1}, updates. updates has shape I + U with U of
// a's rank (U[d] <= a.shape(d)); out is a copy of a where the window U at each
// index tuple is combined with the update slice by the reduce type. Duplicate
// positions apply in index order: None keeps the last write, the others
// accumulate (sum, product, max, min).
class Scatter : public UnaryPrimitive {
 public:
  enum class ReduceType { None, Sum, Prod, Max, Min };

  Scatter(Stream s, ReduceType reduce, std::vector<int> axes)
      : UnaryPrimitive(s), reduce_(reduce), axes_(std::move(axes)) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                       const std::vector<int>& axes) override;
  const char* name() const override;
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape()};
  }

  ReduceType reduce_type() const { return reduce_; }
  const std::vector<int>& axes() const { return axes_; }

 private:
  ReduceType reduce_;
  std::vector<int> axes_;
};

}  // namespace mx
