// Elementwise ops: promotion and broadcasting, then one primitive.
#include <cmath>
#include <numbers>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/elementwise.h"

namespace mx {

namespace {

// Integers and bools become float32 for ops that need a floating result.
Dtype at_least_float(Dtype d) { return is_inexact(d) ? d : float32; }

template <typename P>
array unary(const array& a, Dtype out_dtype, S s, Dtype in_dtype) {
  array in = a.dtype() == in_dtype ? a : astype(a, in_dtype, s);
  return array(a.shape(), out_dtype, std::make_shared<P>(to_stream(s)), {in});
}

template <typename P>
array unary_same(const array& a, S s) {
  return unary<P>(a, a.dtype(), s, a.dtype());
}

template <typename P>
array unary_float(const array& a, S s) {
  Dtype d = at_least_float(a.dtype());
  return unary<P>(a, d, s, d);
}

template <typename P>
array unary_bool(const array& a, S s) {
  return unary<P>(a, bool_, s, a.dtype());
}

// Promotes to a common dtype (at least `min` when given) and broadcasts.
std::vector<array> prepare_binary(const array& a, const array& b, Dtype dtype, S s) {
  auto x = a.dtype() == dtype ? a : astype(a, dtype, s);
  auto y = b.dtype() == dtype ? b : astype(b, dtype, s);
  if (x.shape() == y.shape()) return {x, y};
  return broadcast_arrays({x, y}, s);
}

template <typename P>
array binary(const array& a, const array& b, Dtype in_dtype, Dtype out_dtype, S s) {
  auto in = prepare_binary(a, b, in_dtype, s);
  Shape shape = in[0].shape();
  return array(std::move(shape), out_dtype, std::make_shared<P>(to_stream(s)), std::move(in));
}

template <typename P>
array binary_promoted(const array& a, const array& b, S s) {
  Dtype d = promote_types(a.dtype(), b.dtype());
  return binary<P>(a, b, d, d, s);
}

template <typename P>
array binary_compare(const array& a, const array& b, S s) {
  return binary<P>(a, b, promote_types(a.dtype(), b.dtype()), bool_, s);
}

}  // namespace

array abs(const array& a, S s) {
  return unary<Abs>(a, a.dtype() == complex64 ? float32 : a.dtype(), s, a.dtype());
}
array negative(const array& a, S s) {
  if (a.dtype() == bool_) {
    throw std::invalid_argument("[negative] not supported for bool, use logical_not instead");
  }
  return unary_same<Negative>(a, s);
}
array operator-(const array& a) { return negative(a); }
array sign(const array& a, S s) { return unary_same<Sign>(a, s); }
array logical_not(const array& a, S s) { return unary_bool<LogicalNot>(a, s); }
array operator!(const array& a) { return logical_not(a); }
array bitwise_invert(const array& a, S s) {
  if (is_inexact(a.dtype())) {
    throw std::invalid_argument("[bitwise_invert] needs an integer or bool array, got " +
                                dtype_name(a.dtype()));
  }
  return unary_same<BitwiseInvert>(a, s);
}
array operator~(const array& a) { return bitwise_invert(a); }
array reciprocal(const array& a, S s) {
  Dtype d = at_least_float(a.dtype());
  return divide(array(1.0f, d), a, s);
}
array square(const array& a, S s) { return unary_same<Square>(a, s); }
array sqrt(const array& a, S s) { return unary_float<Sqrt>(a, s); }
array rsqrt(const array& a, S s) { return unary_float<Rsqrt>(a, s); }
array exp(const array& a, S s) { return unary_float<Exp>(a, s); }
array expm1(const array& a, S s) { return unary_float<Expm1>(a, s); }
array log(const array& a, S s) { return unary_float<Log>(a, s); }
array log2(const array& a, S s) { return unary_float<Log2>(a, s); }
array log10(const array& a, S s) { return unary_float<Log10>(a, s); }
array log1p(const array& a, S s) { return unary_float<Log1p>(a, s); }
array sin(const array& a, S s) { return unary_float<Sin>(a, s); }
array cos(const array& a, S s) { return unary_float<Cos>(a, s); }
array tan(const array& a, S s) { return unary_float<Tan>(a, s); }
array arcsin(const array& a, S s) { return unary_float<ArcSin>(a, s); }
array arccos(const array& a, S s) { return unary_float<ArcCos>(a, s); }
array arctan(const array& a, S s) { return unary_float<ArcTan>(a, s); }
array sinh(const array& a, S s) { return unary_float<Sinh>(a, s); }
array cosh(const array& a, S s) { return unary_float<Cosh>(a, s); }
array tanh(const array& a, S s) { return unary_float<Tanh>(a, s); }
array arcsinh(const array& a, S s) { return unary_float<ArcSinh>(a, s); }
array arccosh(const array& a, S s) { return unary_float<ArcCosh>(a, s); }
array arctanh(const array& a, S s) { return unary_float<ArcTanh>(a, s); }
array degrees(const array& a, S s) {
  Dtype d = at_least_float(a.dtype());
  return multiply(a, array(180.0 / std::numbers::pi, d), s);
}
array radians(const array& a, S s) {
  Dtype d = at_least_float(a.dtype());
  return multiply(a, array(std::numbers::pi / 180.0, d), s);
}
array sigmoid(const array& a, S s) { return unary_float<Sigmoid>(a, s); }
array erf(const array& a, S s) { return unary_float<Erf>(a, s); }
array erfinv(const array& a, S s) { return unary_float<ErfInv>(a, s); }
array floor(const array& a, S s) {
  if (is_complex(a.dtype())) throw std::invalid_argument("[floor] not supported for complex64");
  return unary_same<Floor>(a, s);
}
array ceil(const array& a, S s) {
  if (is_complex(a.dtype())) throw std::invalid_argument("[ceil] not supported for complex64");
  return unary_same<Ceil>(a, s);
}
array round(const array& a, int decimals, S s) {
  if (decimals == 0) return unary_same<Round>(a, s);
  if (!is_inexact(a.dtype())) return a;
  array scale(std::pow(10.0, decimals), a.dtype());
  return divide(unary_same<Round>(multiply(a, scale, s), s), scale, s);
}
array isnan(const array& a, S s) { return unary_bool<IsNaN>(a, s); }
array isinf(const array& a, S s) { return unary_bool<IsInf>(a, s); }
array isfinite(const array& a, S s) {
  return logical_not(logical_or(isinf(a, s), isnan(a, s), s), s);
}
array isposinf(const array& a, S s) { return unary_bool<IsPosInf>(a, s); }
array isneginf(const array& a, S s) { return unary_bool<IsNegInf>(a, s); }
array nan_to_num(const array& a, float nan, std::optional<float> posinf,
                 std::optional<float> neginf, S s) {
  Dtype d = a.dtype();
  if (!is_floating_point(d)) return a;
  auto big = [&](bool positive) -> double {
    switch (d.val) {
      case Dtype::Val::float16:
        return positive ? 65504.0 : -65504.0;
      case Dtype::Val::bfloat16:
        return positive ? 3.3895313892515355e38 : -3.3895313892515355e38;
      case Dtype::Val::float64:
        return positive ? std::numeric_limits<double>::max()
                        : std::numeric_limits<double>::lowest();
      default:
        return positive ? std::numeric_limits<float>::max() : std::numeric_limits<float>::lowest();
    }
  };
  array pi(posinf ? static_cast<double>(*posinf) : big(true), d);
  array ni(neginf ? static_cast<double>(*neginf) : big(false), d);
  array out = where(isnan(a, s), array(nan, d), a, s);
  out = where(isposinf(a, s), pi, out, s);
  return where(isneginf(a, s), ni, out, s);
}
array conjugate(const array& a, S s) { return unary_same<Conjugate>(a, s); }
array real(const array& a, S s) {
  if (!is_complex(a.dtype())) return a;
  return unary<Real>(a, float32, s, complex64);
}
array imag(const array& a, S s) {
  if (!is_complex(a.dtype())) return zeros_like(a, s);
  return unary<Imag>(a, float32, s, complex64);
}
array stop_gradient(const array& a, S s) { return unary_same<StopGradient>(a, s); }

array add(const array& a, const array& b, S s) { return binary_promoted<Add>(a, b, s); }
array subtract(const array& a, const array& b, S s) {
  Dtype d = promote_types(a.dtype(), b.dtype());
  if (d == bool_) {
    throw std::invalid_argument("[subtract] not supported for bool, use logical_xor instead");
  }
  return binary_promoted<Subtract>(a, b, s);
}
array multiply(const array& a, const array& b, S s) { return binary_promoted<Multiply>(a, b, s); }
array divide(const array& a, const array& b, S s) {
  Dtype d = at_least_float(promote_types(a.dtype(), b.dtype()));
  return binary<Divide>(a, b, d, d, s);
}
array floor_divide(const array& a, const array& b, S s) {
  Dtype d = promote_types(a.dtype(), b.dtype());
  if (is_floating_point(d)) return floor(divide(a, b, s), s);
  return binary_promoted<FloorDivide>(a, b, s);
}
array remainder(const array& a, const array& b, S s) { return binary_promoted<Remainder>(a, b, s); }
std::vector<array> divmod(const array& a, const array& b, S s) {
  return {floor_divide(a, b, s), remainder(a, b, s)};
}
array power(const array& a, const array& b, S s) { return binary_promoted<Power>(a, b, s); }
array maximum(const array& a, const array& b, S s) { return binary_promoted<Maximum>(a, b, s); }
array minimum(const array& a, const array& b, S s) { return binary_promoted<Minimum>(a, b, s); }
array arctan2(const array& a, const array& b, S s) {
  Dtype d = at_least_float(promote_types(a.dtype(), b.dtype()));
  return binary<ArcTan2>(a, b, d, d, s);
}
array logaddexp(const array& a, const array& b, S s) {
  Dtype d = at_least_float(promote_types(a.dtype(), b.dtype()));
  return binary<LogAddExp>(a, b, d, d, s);
}
array equal(const array& a, const array& b, S s) { return binary_compare<Equal>(a, b, s); }
array not_equal(const array& a, const array& b, S s) { return binary_compare<NotEqual>(a, b, s); }
array greater(const array& a, const array& b, S s) { return binary_compare<Greater>(a, b, s); }
array greater_equal(const array& a, const array& b, S s) {
  return binary_compare<GreaterEqual>(a, b, s);
}
array less(const array& a, const array& b, S s) { return binary_compare<Less>(a, b, s); }
array less_equal(const array& a, const array& b, S s) { return binary_compare<LessEqual>(a, b, s); }
array logical_and(const array& a, const array& b, S s) {
  return binary<LogicalAnd>(a, b, bool_, bool_, s);
}
array logical_or(const array& a, const array& b, S s) {
  return binary<LogicalOr>(a, b, bool_, bool_, s);
}

namespace {
array bitwise(const array& a, const array& b, S s, const char* name,
              array (*make)(const array&, const array&, Dtype, S)) {
  Dtype d = promote_types(a.dtype(), b.dtype());
  if (is_inexact(d)) {
    throw std::invalid_argument(std::string("[") + name + "] needs integer or bool arrays, got " +
                                dtype_name(a.dtype()) + " and " + dtype_name(b.dtype()));
  }
  return make(a, b, d, s);
}
}  // namespace

array bitwise_and(const array& a, const array& b, S s) {
  return bitwise(a, b, s, "bitwise_and", [](const array& x, const array& y, Dtype d, S st) {
    return binary<BitwiseAnd>(x, y, d, d, st);
  });
}
array bitwise_or(const array& a, const array& b, S s) {
  return bitwise(a, b, s, "bitwise_or", [](const array& x, const array& y, Dtype d, S st) {
    return binary<BitwiseOr>(x, y, d, d, st);
  });
}
array bitwise_xor(const array& a, const array& b, S s) {
  return bitwise(a, b, s, "bitwise_xor", [](const array& x, const array& y, Dtype d, S st) {
    return binary<BitwiseXor>(x, y, d, d, st);
  });
}
array left_shift(const array& a, const array& b, S s) {
  return bitwise(a, b, s, "left_shift", [](const array& x, const array& y, Dtype d, S st) {
    if (d == bool_) d = uint8;
    return binary<LeftShift>(x, y, d, d, st);
  });
}
array right_shift(const array& a, const array& b, S s) {
  return bitwise(a, b, s, "right_shift", [](const array& x, const array& y, Dtype d, S st) {
    if (d == bool_) d = uint8;
    return binary<RightShift>(x, y, d, d, st);
  });
}

array isclose(const array& a, const array& b, double rtol, double atol, bool equal_nan, S s) {
  // |a - b| <= atol + rtol * |b|, with infinities equal only to themselves.
  auto diff = abs(subtract(a, b, s), s);
  auto tol = add(array(atol, float32), multiply(array(rtol, float32), abs(b, s), s), s);
  auto out = less_equal(diff, tol, s);
  auto inf_eq = logical_and(isinf(a, s), equal(a, b, s), s);
  out = logical_or(logical_and(out, logical_not(logical_or(isinf(a, s), isinf(b, s), s), s), s),
                   inf_eq, s);
  if (equal_nan) out = logical_or(out, logical_and(isnan(a, s), isnan(b, s), s), s);
  return out;
}

array allclose(const array& a, const array& b, double rtol, double atol, bool equal_nan, S s) {
  return all(isclose(a, b, rtol, atol, equal_nan, s), s);
}

array array_equal(const array& a, const array& b, bool equal_nan, S s) {
  if (a.shape() != b.shape()) return array(false);
  Dtype d = promote_types(a.dtype(), b.dtype());
  if (equal_nan) return all(binary<NaNEqual>(a, b, d, bool_, s), s);
  return all(equal(a, b, s), s);
}

array where(const array& condition, const array& x, const array& y, S s) {
  Dtype d = promote_types(x.dtype(), y.dtype());
  auto c = condition.dtype() == bool_ ? condition : astype(condition, bool_, s);
  auto xx = x.dtype() == d ? x : astype(x, d, s);
  auto yy = y.dtype() == d ? y : astype(y, d, s);
  auto in = broadcast_arrays({c, xx, yy}, s);
  Shape shape = in[0].shape();
  return array(std::move(shape), d, std::make_shared<Select>(to_stream(s)), std::move(in));
}

array clip(const array& a, const std::optional<array>& a_min, const std::optional<array>& a_max,
           S s) {
  if (!a_min && !a_max) {
    throw std::invalid_argument("[clip] at least one of a_min and a_max must be given");
  }
  array out = a;
  if (a_min) out = maximum(out, *a_min, s);
  if (a_max) out = minimum(out, *a_max, s);
  return out;
}

#define MX_DEFINE_OPERATOR(OP, FN) \
  array operator OP(const array& a, const array& b) { return FN(a, b); }
MX_DEFINE_OPERATOR(+, add)
MX_DEFINE_OPERATOR(-, subtract)
MX_DEFINE_OPERATOR(*, multiply)
MX_DEFINE_OPERATOR(/, divide)
MX_DEFINE_OPERATOR(%, remainder)
MX_DEFINE_OPERATOR(==, equal)
MX_DEFINE_OPERATOR(!=, not_equal)
MX_DEFINE_OPERATOR(<, less)
MX_DEFINE_OPERATOR(<=, less_equal)
MX_DEFINE_OPERATOR(>, greater)
MX_DEFINE_OPERATOR(>=, greater_equal)
MX_DEFINE_OPERATOR(&&, logical_and)
MX_DEFINE_OPERATOR(||, logical_or)
MX_DEFINE_OPERATOR(&, bitwise_and)
MX_DEFINE_OPERATOR(|, bitwise_or)
MX_DEFINE_OPERATOR(^, bitwise_xor)
MX_DEFINE_OPERATOR(<<, left_shift)
MX_DEFINE_OPERATOR(>>, right_shift)
#undef MX_DEFINE_OPERATOR

array astype(array a, Dtype dtype, S s) {
  if (a.dtype() == dtype) return a;
  Shape shape = a.shape();
  return array(std::move(shape), dtype, std::make_shared<AsType>(to_stream(s), dtype),
               {std::move(a)});
}

array copy(array a, S s) {
  Shape shape = a.shape();
  Dtype d = a.dtype();
  return array(std::move(shape), d, std::make_shared<Copy>(to_stream(s)), {std::move(a)});
}

}  // namespace mx
