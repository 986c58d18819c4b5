// Derivatives and batching rules of the elementwise primitives.
#include <cmath>
#include <numbers>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/elementwise.h"

namespace mx {

std::pair<std::vector<array>, std::vector<int>> vmap_elementwise(
    const std::vector<array>& inputs, const std::vector<int>& axes,
    const std::function<std::vector<array>(const std::vector<array>&)>& op) {
  int rank = 0;  // unbatched rank of the widest input
  for (size_t i = 0; i < inputs.size(); ++i) {
    rank = std::max(rank, static_cast<int>(inputs[i].ndim()) - (axes[i] >= 0 ? 1 : 0));
  }
  std::vector<array> moved;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (axes[i] < 0) {
      moved.push_back(inputs[i]);
      continue;
    }
    array x = moveaxis(inputs[i], axes[i], 0);
    int missing = rank - (static_cast<int>(x.ndim()) - 1);
    if (missing > 0) {
      Shape shape = x.shape();
      shape.insert(shape.begin() + 1, missing, 1);
      x = reshape(x, shape);
    }
    moved.push_back(x);
  }
  auto outs = op(moved);
  return {outs, std::vector<int>(outs.size(), 0)};
}

namespace {
array scalar_like(double v, const array& x) { return array(v, x.dtype()); }
}  // namespace

// Unary primitives whose derivative is rule(x, t); vjp applies the same rule
// to the cotangent (the derivative is a real scalar factor).
#define MX_UNARY_GRAD(NAME, OPFN, RULE)                                                          \
  std::vector<array> NAME::jvp(const std::vector<array>& primals,                                \
                               const std::vector<array>& tangents, const std::vector<int>&) {    \
    const array& x = primals[0];                                                                 \
    const array& t = tangents[0];                                                                \
    (void)x;                                                                                     \
    (void)t;                                                                                     \
    return {RULE};                                                                               \
  }                                                                                              \
  std::vector<array> NAME::vjp(const std::vector<array>& primals,                                \
                               const std::vector<array>& cotangents, const std::vector<int>& an, \
                               const std::vector<array>&) {                                      \
    return jvp(primals, cotangents, an);                                                         \
  }                                                                                              \
  std::pair<std::vector<array>, std::vector<int>> NAME::vmap(const std::vector<array>& inputs,   \
                                                             const std::vector<int>& axes) {     \
    return {{OPFN(inputs[0], stream())}, {axes[0]}};                                             \
  }

#define MX_ZERO_GRAD(NAME, OPFN) MX_UNARY_GRAD(NAME, OPFN, zeros_like(x, stream()))

MX_UNARY_GRAD(Abs, abs, multiply(t, sign(x, stream()), stream()))
MX_UNARY_GRAD(Negative, negative, negative(t, stream()))
MX_ZERO_GRAD(Sign, sign)
MX_ZERO_GRAD(LogicalNot, logical_not)
MX_ZERO_GRAD(BitwiseInvert, bitwise_invert)
MX_UNARY_GRAD(Square, square, multiply(t, multiply(scalar_like(2, x), x, stream()), stream()))
MX_UNARY_GRAD(Sqrt, sqrt,
              divide(t, multiply(scalar_like(2, x), sqrt(x, stream()), stream()), stream()))
MX_UNARY_GRAD(
    Rsqrt, rsqrt,
    multiply(t, divide(scalar_like(-0.5, x), multiply(x, sqrt(x, stream()), stream()), stream()),
             stream()))
MX_UNARY_GRAD(Exp, exp, multiply(t, exp(x, stream()), stream()))
MX_UNARY_GRAD(Expm1, expm1, multiply(t, exp(x, stream()), stream()))
MX_UNARY_GRAD(Log, log, divide(t, x, stream()))
MX_UNARY_GRAD(Log2, log2,
              divide(t, multiply(x, scalar_like(std::numbers::ln2, x), stream()), stream()))
MX_UNARY_GRAD(Log10, log10,
              divide(t, multiply(x, scalar_like(std::numbers::ln10, x), stream()), stream()))
MX_UNARY_GRAD(Log1p, log1p, divide(t, add(x, scalar_like(1, x), stream()), stream()))
MX_UNARY_GRAD(Sin, sin, multiply(t, cos(x, stream()), stream()))
MX_UNARY_GRAD(Cos, cos, negative(multiply(t, sin(x, stream()), stream()), stream()))
MX_UNARY_GRAD(Tan, tan, divide(t, square(cos(x, stream()), stream()), stream()))
MX_UNARY_GRAD(ArcSin, arcsin,
              divide(t, sqrt(subtract(scalar_like(1, x), square(x, stream()), stream()), stream()),
                     stream()))
MX_UNARY_GRAD(
    ArcCos, arccos,
    negative(divide(t, sqrt(subtract(scalar_like(1, x), square(x, stream()), stream()), stream()),
                    stream()),
             stream()))
MX_UNARY_GRAD(ArcTan, arctan,
              divide(t, add(scalar_like(1, x), square(x, stream()), stream()), stream()))
MX_UNARY_GRAD(Sinh, sinh, multiply(t, cosh(x, stream()), stream()))
MX_UNARY_GRAD(Cosh, cosh, multiply(t, sinh(x, stream()), stream()))
MX_UNARY_GRAD(Tanh, tanh,
              multiply(t,
                       subtract(scalar_like(1, x), square(tanh(x, stream()), stream()), stream()),
                       stream()))
MX_UNARY_GRAD(ArcSinh, arcsinh,
              divide(t, sqrt(add(square(x, stream()), scalar_like(1, x), stream()), stream()),
                     stream()))
MX_UNARY_GRAD(ArcCosh, arccosh,
              divide(t, sqrt(subtract(square(x, stream()), scalar_like(1, x), stream()), stream()),
                     stream()))
MX_UNARY_GRAD(ArcTanh, arctanh,
              divide(t, subtract(scalar_like(1, x), square(x, stream()), stream()), stream()))
MX_UNARY_GRAD(Sigmoid, sigmoid,
              multiply(t,
                       multiply(sigmoid(x, stream()),
                                subtract(scalar_like(1, x), sigmoid(x, stream()), stream()),
                                stream()),
                       stream()))
MX_UNARY_GRAD(Erf, erf,
              multiply(t,
                       multiply(scalar_like(2.0 / std::sqrt(std::numbers::pi), x),
                                exp(negative(square(x, stream()), stream()), stream()), stream()),
                       stream()))
MX_UNARY_GRAD(ErfInv, erfinv,
              multiply(t,
                       multiply(scalar_like(std::sqrt(std::numbers::pi) / 2, x),
                                exp(square(erfinv(x, stream()), stream()), stream()), stream()),
                       stream()))
MX_ZERO_GRAD(Floor, floor)
MX_ZERO_GRAD(Ceil, ceil)
MX_UNARY_GRAD(
    Round, [](const array& a, S s) { return round(a, 0, s); }, zeros_like(x, stream()))
MX_ZERO_GRAD(IsNaN, isnan)
MX_ZERO_GRAD(IsInf, isinf)
MX_ZERO_GRAD(IsPosInf, isposinf)
MX_ZERO_GRAD(IsNegInf, isneginf)
MX_UNARY_GRAD(Conjugate, conjugate, conjugate(t, stream()))
MX_UNARY_GRAD(StopGradient, stop_gradient, zeros_like(x, stream()))
MX_UNARY_GRAD(
    Copy, [](const array& a, S s) { return copy(a, s); }, t)
#undef MX_ZERO_GRAD
#undef MX_UNARY_GRAD

// real/imag map C to R: the forward rules take the part of the tangent; the
// reverse rules embed the real cotangent back into C (c and -i*c, as MLX).
std::vector<array> Real::jvp(const std::vector<array>&, const std::vector<array>& tangents,
                             const std::vector<int>&) {
  return {real(tangents[0], stream())};
}
std::vector<array> Real::vjp(const std::vector<array>&, const std::vector<array>& cot,
                             const std::vector<int>&, const std::vector<array>&) {
  return {astype(cot[0], complex64, stream())};
}
std::pair<std::vector<array>, std::vector<int>> Real::vmap(const std::vector<array>& inputs,
                                                           const std::vector<int>& axes) {
  return {{real(inputs[0], stream())}, {axes[0]}};
}
std::vector<array> Imag::jvp(const std::vector<array>&, const std::vector<array>& tangents,
                             const std::vector<int>&) {
  return {imag(tangents[0], stream())};
}
std::vector<array> Imag::vjp(const std::vector<array>&, const std::vector<array>& cot,
                             const std::vector<int>&, const std::vector<array>&) {
  return {multiply(array(complex64_t{0.0f, -1.0f}), cot[0], stream())};
}
std::pair<std::vector<array>, std::vector<int>> Imag::vmap(const std::vector<array>& inputs,
                                                           const std::vector<int>& axes) {
  return {{imag(inputs[0], stream())}, {axes[0]}};
}

std::vector<array> AsType::jvp(const std::vector<array>&, const std::vector<array>& tangents,
                               const std::vector<int>&) {
  return {astype(tangents[0], dtype_, stream())};
}
std::vector<array> AsType::vjp(const std::vector<array>& primals, const std::vector<array>& cot,
                               const std::vector<int>&, const std::vector<array>&) {
  return {astype(cot[0], primals[0].dtype(), stream())};
}
std::pair<std::vector<array>, std::vector<int>> AsType::vmap(const std::vector<array>& inputs,
                                                             const std::vector<int>& axes) {
  return {{astype(inputs[0], dtype_, stream())}, {axes[0]}};
}

// Binary primitives: PARTIAL(i) is the cotangent of input i given cotangent c
// (x, y are the primals). jvp sums the partials applied to the tangents.
#define MX_BINARY_GRAD(NAME, OPFN, PARTIAL0, PARTIAL1)                                         \
  std::vector<array> NAME::vjp(const std::vector<array>& primals,                              \
                               const std::vector<array>& cotangents,                           \
                               const std::vector<int>& argnums, const std::vector<array>&) {   \
    const array& x = primals[0];                                                               \
    const array& y = primals[1];                                                               \
    (void)x;                                                                                   \
    (void)y;                                                                                   \
    std::vector<array> out;                                                                    \
    for (int i : argnums) {                                                                    \
      const array& c = cotangents[0];                                                          \
      (void)c;                                                                                 \
      out.push_back(i == 0 ? (PARTIAL0) : (PARTIAL1));                                         \
    }                                                                                          \
    return out;                                                                                \
  }                                                                                            \
  std::vector<array> NAME::jvp(const std::vector<array>& primals,                              \
                               const std::vector<array>& tangents,                             \
                               const std::vector<int>& argnums) {                              \
    std::optional<array> acc;                                                                  \
    for (size_t k = 0; k < argnums.size(); ++k) {                                              \
      auto part = vjp(primals, {tangents[k]}, {argnums[k]}, {})[0];                            \
      acc = acc ? add(*acc, part, stream()) : part;                                            \
    }                                                                                          \
    return {*acc};                                                                             \
  }                                                                                            \
  std::pair<std::vector<array>, std::vector<int>> NAME::vmap(const std::vector<array>& inputs, \
                                                             const std::vector<int>& axes) {   \
    return vmap_elementwise(inputs, axes, [this](const std::vector<array>& in) {               \
      return std::vector<array>{OPFN(in[0], in[1], stream())};                                 \
    });                                                                                        \
  }

#define MX_ZERO_BINARY_GRAD(NAME, OPFN) \
  MX_BINARY_GRAD(NAME, OPFN, zeros_like(x, stream()), zeros_like(y, stream()))

MX_BINARY_GRAD(Add, add, c, c)
MX_BINARY_GRAD(Subtract, subtract, c, negative(c, stream()))
MX_BINARY_GRAD(Multiply, multiply, multiply(c, y, stream()), multiply(c, x, stream()))
MX_BINARY_GRAD(Divide, divide, divide(c, y, stream()),
               negative(divide(multiply(c, x, stream()), square(y, stream()), stream()), stream()))
MX_ZERO_BINARY_GRAD(FloorDivide, floor_divide)
MX_BINARY_GRAD(Remainder, remainder, c,
               negative(multiply(c, floor_divide(x, y, stream()), stream()), stream()))
MX_BINARY_GRAD(Power, power,
               multiply(c,
                        multiply(y, power(x, subtract(y, array(1, y.dtype()), stream()), stream()),
                                 stream()),
                        stream()),
               multiply(c,
                        multiply(power(x, y, stream()),
                                 log(where(greater(x, array(0, x.dtype()), stream()), x,
                                           array(1, x.dtype()), stream()),
                                     stream()),
                                 stream()),
                        stream()))
MX_BINARY_GRAD(Maximum, maximum,
               multiply(c, astype(greater_equal(x, y, stream()), c.dtype(), stream()), stream()),
               multiply(c, astype(less(x, y, stream()), c.dtype(), stream()), stream()))
MX_BINARY_GRAD(Minimum, minimum,
               multiply(c, astype(less_equal(x, y, stream()), c.dtype(), stream()), stream()),
               multiply(c, astype(greater(x, y, stream()), c.dtype(), stream()), stream()))
MX_BINARY_GRAD(ArcTan2, arctan2,
               divide(multiply(c, y, stream()),
                      add(square(x, stream()), square(y, stream()), stream()), stream()),
               negative(divide(multiply(c, x, stream()),
                               add(square(x, stream()), square(y, stream()), stream()), stream()),
                        stream()))
MX_BINARY_GRAD(LogAddExp, logaddexp,
               multiply(c, sigmoid(subtract(x, y, stream()), stream()), stream()),
               multiply(c, sigmoid(subtract(y, x, stream()), stream()), stream()))
MX_ZERO_BINARY_GRAD(Equal, equal)
MX_ZERO_BINARY_GRAD(NaNEqual, [this](const array& a, const array& b, S s) {
  auto in = broadcast_arrays({a, b}, s);
  return array(in[0].shape(), bool_, std::make_shared<NaNEqual>(stream()), in);
})
MX_ZERO_BINARY_GRAD(NotEqual, not_equal)
MX_ZERO_BINARY_GRAD(Greater, greater)
MX_ZERO_BINARY_GRAD(GreaterEqual, greater_equal)
MX_ZERO_BINARY_GRAD(Less, less)
MX_ZERO_BINARY_GRAD(LessEqual, less_equal)
MX_ZERO_BINARY_GRAD(LogicalAnd, logical_and)
MX_ZERO_BINARY_GRAD(LogicalOr, logical_or)
MX_ZERO_BINARY_GRAD(BitwiseAnd, bitwise_and)
MX_ZERO_BINARY_GRAD(BitwiseOr, bitwise_or)
MX_ZERO_BINARY_GRAD(BitwiseXor, bitwise_xor)
MX_ZERO_BINARY_GRAD(LeftShift, left_shift)
MX_ZERO_BINARY_GRAD(RightShift, right_shift)
#undef MX_ZERO_BINARY_GRAD
#undef MX_BINARY_GRAD

std::vector<array> Select::vjp(const std::vector<array>& primals,
                               const std::vector<array>& cotangents,
                               const std::vector<int>& argnums, const std::vector<array>&) {
  const array& cond = primals[0];
  const array& c = cotangents[0];
  std::vector<array> out;
  for (int i : argnums) {
    if (i == 0) {
      out.push_back(zeros_like(cond, stream()));
    } else if (i == 1) {
      out.push_back(where(cond, c, zeros_like(c, stream()), stream()));
    } else {
      out.push_back(where(cond, zeros_like(c, stream()), c, stream()));
    }
  }
  return out;
}

std::vector<array> Select::jvp(const std::vector<array>& primals,
                               const std::vector<array>& tangents,
                               const std::vector<int>& argnums) {
  std::optional<array> acc;
  for (size_t k = 0; k < argnums.size(); ++k) {
    if (argnums[k] == 0) continue;
    auto part = vjp(primals, {tangents[k]}, {argnums[k]}, {})[0];
    acc = acc ? add(*acc, part, stream()) : part;
  }
  if (!acc) return {zeros_like(primals[1], stream())};
  return {*acc};
}

std::pair<std::vector<array>, std::vector<int>> Select::vmap(const std::vector<array>& inputs,
                                                             const std::vector<int>& axes) {
  return vmap_elementwise(inputs, axes, [this](const std::vector<array>& in) {
    return std::vector<array>{where(in[0], in[1], in[2], stream())};
  });
}

}  // namespace mx
