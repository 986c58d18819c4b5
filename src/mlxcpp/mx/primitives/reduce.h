// Reductions over axes, scans along an axis, the fused softmax and logsumexp. A Reduce
// keeps the reduced axes as size-1 dims (the ops squeeze them), so that its
// cotangent broadcasts straight back onto the input.
#pragma once

#include <vector>

#include "mlxcpp/mx/primitive.h"

namespace mx {

#define MX_REDUCE_PRIMITIVE_COMMON(NAME)                                                          \
  void eval_cpu(const std::vector<array>& inputs, array& out) override;                           \
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,   \
                         const std::vector<int>& argnums) override;                               \
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents, \
                         const std::vector<int>& argnums, const std::vector<array>& outputs)      \
      override;                                                                                   \
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,          \
                                                       const std::vector<int>& axes) override;    \
  bool is_equivalent(const Primitive& other) const override;                                      \
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override;

class Reduce : public UnaryPrimitive {
 public:
  enum ReduceType { And, Or, Sum, Prod, Min, Max };

  // `axes` are sorted, non-negative and unique.
  Reduce(Stream s, ReduceType type, std::vector<int> axes)
      : UnaryPrimitive(s), type_(type), axes_(std::move(axes)) {}
  MX_REDUCE_PRIMITIVE_COMMON(Reduce)
  const char* name() const override;
  ReduceType type() const { return type_; }
  const std::vector<int>& axes() const { return axes_; }

 private:
  ReduceType type_;
  std::vector<int> axes_;
};

// Index of the first minimum / maximum along one axis (kept as a size-1 dim),
// as uint32.
class ArgReduce : public UnaryPrimitive {
 public:
  enum ReduceType { ArgMin, ArgMax };

  ArgReduce(Stream s, ReduceType type, int axis) : UnaryPrimitive(s), type_(type), axis_(axis) {}
  MX_REDUCE_PRIMITIVE_COMMON(ArgReduce)
  const char* name() const override { return type_ == ArgMin ? "ArgMin" : "ArgMax"; }
  ReduceType type() const { return type_; }
  int axis() const { return axis_; }

 private:
  ReduceType type_;
  int axis_;
};

// Cumulative sum / product / max / min along one axis.
class Scan : public UnaryPrimitive {
 public:
  enum ReduceType { Max, Min, Sum, Prod };

  Scan(Stream s, ReduceType type, int axis, bool reverse, bool inclusive)
      : UnaryPrimitive(s), type_(type), axis_(axis), reverse_(reverse), inclusive_(inclusive) {}
  MX_REDUCE_PRIMITIVE_COMMON(Scan)
  const char* name() const override;
  ReduceType type() const { return type_; }
  int axis() const { return axis_; }
  bool reverse() const { return reverse_; }
  bool inclusive() const { return inclusive_; }

 private:
  ReduceType type_;
  int axis_;
  bool reverse_;
  bool inclusive_;
};

// Softmax over the last axis, fused (max, exp, sum and scale in one pass over
// each row). 16-bit inputs are always accumulated in float32.
class Softmax : public UnaryPrimitive {
 public:
  Softmax(Stream s, bool precise) : UnaryPrimitive(s), precise_(precise) {}
  MX_REDUCE_PRIMITIVE_COMMON(Softmax)
  const char* name() const override { return "Softmax"; }
  bool precise() const { return precise_; }

 private:
  bool precise_;
};

// log(sum(exp(x))) over the last axis, fused: one pass over each row keeps a
// running max and the sum of the exponentials shifted by it, so a decode
// step's log-probabilities cost one kernel instead of a max, a subtract, an
// exp, a sum, a log, an add and an inf check. The last axis is kept as a
// size-1 dim (like Reduce). 16-bit inputs accumulate in float32; the result
// has the input's dtype. A row holding a NaN gives NaN, else one holding +inf
// gives +inf, and a row of -inf gives -inf.
class LogSumExp : public UnaryPrimitive {
 public:
  explicit LogSumExp(Stream s) : UnaryPrimitive(s) {}
  MX_REDUCE_PRIMITIVE_COMMON(LogSumExp)
  const char* name() const override { return "LogSumExp"; }
};

#undef MX_REDUCE_PRIMITIVE_COMMON

}  // namespace mx
