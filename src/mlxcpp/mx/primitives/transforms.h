// Primitives that the function transforms insert into graphs: the entry nodes
// of a traced function and the wrapper behind custom_vjp and checkpoint.
#pragma once

#include <functional>
#include <unordered_set>

#include "mlxcpp/mx/primitive.h"

namespace mx {

// The node a traced function sees in place of a primal: it shares the primal's
// buffer and passes derivatives through unchanged. Giving every primal its own
// node keeps the gradients of the same array passed twice apart.
class TracerInput : public UnaryPrimitive {
 public:
  explicit TracerInput(Stream s) : UnaryPrimitive(s) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  // Sharing a buffer needs no device work, so the GPU path is the same.
  void eval_gpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                       const std::vector<int>& axes) override;
  const char* name() const override { return "TracerInput"; }
  bool is_equivalent(const Primitive& other) const override {
    return typeid(other) == typeid(*this);
  }
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape()};
  }
};

// One slice of a batched input while vmap traces the function. It has no
// value: vmap replaces it by the batched input before anything is evaluated,
// so evaluating it means the function read data of a batched value.
class VmapInput : public UnaryPrimitive {
 public:
  explicit VmapInput(Stream s) : UnaryPrimitive(s) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  void eval_gpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  const char* name() const override { return "VmapInput"; }
};

using VectorFn = std::function<std::vector<array>(const std::vector<array>&)>;
// (primals, cotangents of the outputs, outputs) -> cotangents of the primals.
using CustomVjpFn = std::function<std::vector<array>(
    const std::vector<array>&, const std::vector<array>&, const std::vector<array>&)>;

// The outputs of `fun` with a user-given reverse-mode rule. Its inputs are the
// primals followed by fun's outputs (under stop_gradient); evaluating it just
// shares the buffers of those outputs. Forward mode differentiates `fun`.
class CustomTransforms : public Primitive {
 public:
  CustomTransforms(Stream s, int num_primals, VectorFn fun, CustomVjpFn vjp_fun)
      : Primitive(s),
        num_primals_(num_primals),
        fun_(std::move(fun)),
        vjp_fun_(std::move(vjp_fun)) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  void eval_gpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                       const std::vector<int>& axes) override;
  const char* name() const override { return "CustomTransforms"; }

 private:
  int num_primals_;
  VectorFn fun_;
  CustomVjpFn vjp_fun_;
};

namespace detail {

// The part of the graph behind `outputs` that depends on `sources`, in
// topological order (inputs before the nodes that use them), found without
// recursion. For differentiation (`differentiable` true), dependence stops at
// StopGradient and at integer or bool values, whose derivative is zero, so
// rules are never asked for the derivative of an index.
struct DependentGraph {
  std::vector<array> tape;                // one entry per primitive node (any of its outputs)
  std::unordered_set<uintptr_t> depends;  // ids of the sources and of dependent outputs
  std::vector<array> keep_alive;          // sibling placeholders whose ids were recorded
};
DependentGraph dependent_graph(const std::vector<array>& outputs, const std::vector<array>& sources,
                               bool differentiable);

// Builds the CustomTransforms node over `primals` whose values are `outputs`.
std::vector<array> make_custom_transforms(const VectorFn& fun, const CustomVjpFn& vjp_fun,
                                          const std::vector<array>& primals,
                                          std::vector<array> outputs);

}  // namespace detail

}  // namespace mx
