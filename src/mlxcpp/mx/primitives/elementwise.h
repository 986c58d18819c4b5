// Elementwise primitives: unary, binary and ternary maps over same-shaped
// inputs (the ops broadcast and promote before building them).
#pragma once

#include <typeinfo>

#include "mlxcpp/mx/primitive.h"

namespace mx {

// Batches an elementwise op: moves the batch axes to the front, aligns ranks
// and applies `op` to the result.
std::pair<std::vector<array>, std::vector<int>> vmap_elementwise(
    const std::vector<array>& inputs, const std::vector<int>& axes,
    const std::function<std::vector<array>(const std::vector<array>&)>& op);

#define MX_ELEMENTWISE_PRIMITIVE_BODY(NAME)                                                       \
 public:                                                                                          \
  void eval_cpu(const std::vector<array>& inputs, array& out) override;                           \
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,   \
                         const std::vector<int>& argnums) override;                               \
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents, \
                         const std::vector<int>& argnums, const std::vector<array>& outputs)      \
      override;                                                                                   \
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,          \
                                                       const std::vector<int>& axes) override;    \
  const char* name() const override { return #NAME; }                                             \
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {                   \
    return {inputs[0].shape()};                                                                   \
  }

#define MX_ELEMENTWISE_PRIMITIVE(NAME)                          \
  class NAME : public UnaryPrimitive {                          \
   public:                                                      \
    explicit NAME(Stream s) : UnaryPrimitive(s) {}              \
    MX_ELEMENTWISE_PRIMITIVE_BODY(NAME)                         \
    bool is_equivalent(const Primitive& other) const override { \
      return typeid(other) == typeid(*this);                    \
    }                                                           \
  };

// unary
MX_ELEMENTWISE_PRIMITIVE(Abs)
MX_ELEMENTWISE_PRIMITIVE(Negative)
MX_ELEMENTWISE_PRIMITIVE(Sign)
MX_ELEMENTWISE_PRIMITIVE(LogicalNot)
MX_ELEMENTWISE_PRIMITIVE(BitwiseInvert)
MX_ELEMENTWISE_PRIMITIVE(Square)
MX_ELEMENTWISE_PRIMITIVE(Sqrt)
MX_ELEMENTWISE_PRIMITIVE(Rsqrt)
MX_ELEMENTWISE_PRIMITIVE(Exp)
MX_ELEMENTWISE_PRIMITIVE(Expm1)
MX_ELEMENTWISE_PRIMITIVE(Log)
MX_ELEMENTWISE_PRIMITIVE(Log2)
MX_ELEMENTWISE_PRIMITIVE(Log10)
MX_ELEMENTWISE_PRIMITIVE(Log1p)
MX_ELEMENTWISE_PRIMITIVE(Sin)
MX_ELEMENTWISE_PRIMITIVE(Cos)
MX_ELEMENTWISE_PRIMITIVE(Tan)
MX_ELEMENTWISE_PRIMITIVE(ArcSin)
MX_ELEMENTWISE_PRIMITIVE(ArcCos)
MX_ELEMENTWISE_PRIMITIVE(ArcTan)
MX_ELEMENTWISE_PRIMITIVE(Sinh)
MX_ELEMENTWISE_PRIMITIVE(Cosh)
MX_ELEMENTWISE_PRIMITIVE(Tanh)
MX_ELEMENTWISE_PRIMITIVE(ArcSinh)
MX_ELEMENTWISE_PRIMITIVE(ArcCosh)
MX_ELEMENTWISE_PRIMITIVE(ArcTanh)
MX_ELEMENTWISE_PRIMITIVE(Sigmoid)
MX_ELEMENTWISE_PRIMITIVE(Erf)
MX_ELEMENTWISE_PRIMITIVE(ErfInv)
MX_ELEMENTWISE_PRIMITIVE(Floor)
MX_ELEMENTWISE_PRIMITIVE(Ceil)
MX_ELEMENTWISE_PRIMITIVE(Round)
MX_ELEMENTWISE_PRIMITIVE(IsNaN)
MX_ELEMENTWISE_PRIMITIVE(IsInf)
MX_ELEMENTWISE_PRIMITIVE(IsPosInf)
MX_ELEMENTWISE_PRIMITIVE(IsNegInf)
MX_ELEMENTWISE_PRIMITIVE(Conjugate)
MX_ELEMENTWISE_PRIMITIVE(Real)
MX_ELEMENTWISE_PRIMITIVE(Imag)
MX_ELEMENTWISE_PRIMITIVE(StopGradient)
// binary
MX_ELEMENTWISE_PRIMITIVE(Add)
MX_ELEMENTWISE_PRIMITIVE(Subtract)
MX_ELEMENTWISE_PRIMITIVE(Multiply)
MX_ELEMENTWISE_PRIMITIVE(Divide)
MX_ELEMENTWISE_PRIMITIVE(FloorDivide)
MX_ELEMENTWISE_PRIMITIVE(Remainder)
MX_ELEMENTWISE_PRIMITIVE(Power)
MX_ELEMENTWISE_PRIMITIVE(Maximum)
MX_ELEMENTWISE_PRIMITIVE(Minimum)
MX_ELEMENTWISE_PRIMITIVE(ArcTan2)
MX_ELEMENTWISE_PRIMITIVE(LogAddExp)
MX_ELEMENTWISE_PRIMITIVE(Equal)
MX_ELEMENTWISE_PRIMITIVE(NaNEqual)
MX_ELEMENTWISE_PRIMITIVE(NotEqual)
MX_ELEMENTWISE_PRIMITIVE(Greater)
MX_ELEMENTWISE_PRIMITIVE(GreaterEqual)
MX_ELEMENTWISE_PRIMITIVE(Less)
MX_ELEMENTWISE_PRIMITIVE(LessEqual)
MX_ELEMENTWISE_PRIMITIVE(LogicalAnd)
MX_ELEMENTWISE_PRIMITIVE(LogicalOr)
MX_ELEMENTWISE_PRIMITIVE(BitwiseAnd)
MX_ELEMENTWISE_PRIMITIVE(BitwiseOr)
MX_ELEMENTWISE_PRIMITIVE(BitwiseXor)
MX_ELEMENTWISE_PRIMITIVE(LeftShift)
MX_ELEMENTWISE_PRIMITIVE(RightShift)
// ternary
MX_ELEMENTWISE_PRIMITIVE(Select)

// Element type conversion (astype); also the plain copy (same dtype).
class AsType : public UnaryPrimitive {
 public:
  AsType(Stream s, Dtype dtype) : UnaryPrimitive(s), dtype_(dtype) {}
  MX_ELEMENTWISE_PRIMITIVE_BODY(AsType)
  bool is_equivalent(const Primitive& other) const override {
    auto* o = dynamic_cast<const AsType*>(&other);
    return o && o->dtype_ == dtype_;
  }
  Dtype dtype() const { return dtype_; }

 private:
  Dtype dtype_;
};

class Copy : public UnaryPrimitive {
 public:
  explicit Copy(Stream s) : UnaryPrimitive(s) {}
  MX_ELEMENTWISE_PRIMITIVE_BODY(Copy)
  bool is_equivalent(const Primitive& other) const override {
    return typeid(other) == typeid(*this);
  }
};

}  // namespace mx
