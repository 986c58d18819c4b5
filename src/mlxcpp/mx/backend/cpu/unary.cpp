// CPU kernels of the unary elementwise primitives.
#include <cmath>
#include <complex>
#include <limits>

#include "mlxcpp/mx/backend/cpu/elementwise.h"
#include "mlxcpp/mx/backend/cpu/reduce_ops.h"
#include "mlxcpp/mx/primitives/elementwise.h"

namespace mx {
namespace {

using cpu::unary_loop;

template <typename T>
struct RealOrInt : std::bool_constant<!is_complex_v<T> && !std::is_same_v<T, bool>> {};
template <typename T>
struct NumberType : std::bool_constant<!std::is_same_v<T, bool>> {};

// Inverse error function: a rational initial guess refined by two Newton
// steps on erf in double precision.
template <typename T>
T erfinv_impl(T y) {
  double x = static_cast<double>(y);
  if (x <= -1)
    return x == -1 ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::quiet_NaN();
  if (x >= 1)
    return x == 1 ? std::numeric_limits<T>::infinity() : std::numeric_limits<T>::quiet_NaN();
  double w = -std::log((1.0 - x) * (1.0 + x)), r;
  if (w < 5.0) {
    w -= 2.5;
    r = 2.81022636e-08;
    r = 3.43273939e-07 + r * w;
    r = -3.5233877e-06 + r * w;
    r = -4.39150654e-06 + r * w;
    r = 0.00021858087 + r * w;
    r = -0.00125372503 + r * w;
    r = -0.00417768164 + r * w;
    r = 0.246640727 + r * w;
    r = 1.50140941 + r * w;
  } else {
    w = std::sqrt(w) - 3.0;
    r = -0.000200214257;
    r = 0.000100950558 + r * w;
    r = 0.00134934322 + r * w;
    r = -0.00367342844 + r * w;
    r = 0.00573950773 + r * w;
    r = -0.0076224613 + r * w;
    r = 0.00943887047 + r * w;
    r = 1.00167406 + r * w;
    r = 2.83297682 + r * w;
  }
  r *= x;
  const double k = 2.0 / std::sqrt(M_PI);
  for (int i = 0; i < 2; ++i) r -= (std::erf(r) - x) / (k * std::exp(-r * r));
  return static_cast<T>(r);
}

template <template <typename> class Supports, typename Op>
void run_same_type(const char* name, const array& in, array& out, Op op) {
  cpu::dispatch_supported<Supports>(in.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_loop<T, T>(in, out, [&](auto x) { return op(x); });
  });
}

template <template <typename> class Supports, typename Op>
void run_to_bool(const char* name, const array& in, array& out, Op op) {
  cpu::dispatch_supported<Supports>(in.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_loop<T, bool>(in, out, [&](auto x) { return op(x); });
  });
}

}  // namespace

#define MX_FLOAT_UNARY(NAME, EXPR)                                                   \
  void NAME::eval_cpu(const std::vector<array>& inputs, array& out) {                \
    run_same_type<cpu::Inexact>(#NAME, inputs[0], out, [](auto x) { return EXPR; }); \
  }

MX_FLOAT_UNARY(Sqrt, std::sqrt(x))
MX_FLOAT_UNARY(Rsqrt, decltype(x)(1) / std::sqrt(x))
MX_FLOAT_UNARY(Exp, std::exp(x))
MX_FLOAT_UNARY(Log, std::log(x))
MX_FLOAT_UNARY(Log2, std::log(x) / std::log(decltype(x)(2)))
MX_FLOAT_UNARY(Log10, std::log10(x))
MX_FLOAT_UNARY(Sin, std::sin(x))
MX_FLOAT_UNARY(Cos, std::cos(x))
MX_FLOAT_UNARY(Tan, std::tan(x))
MX_FLOAT_UNARY(ArcSin, std::asin(x))
MX_FLOAT_UNARY(ArcCos, std::acos(x))
MX_FLOAT_UNARY(ArcTan, std::atan(x))
MX_FLOAT_UNARY(Sinh, std::sinh(x))
MX_FLOAT_UNARY(Cosh, std::cosh(x))
MX_FLOAT_UNARY(Tanh, std::tanh(x))
MX_FLOAT_UNARY(ArcSinh, std::asinh(x))
MX_FLOAT_UNARY(ArcCosh, std::acosh(x))
MX_FLOAT_UNARY(ArcTanh, std::atanh(x))
#undef MX_FLOAT_UNARY

#define MX_REAL_FLOAT_UNARY(NAME, EXPR)                                                   \
  void NAME::eval_cpu(const std::vector<array>& inputs, array& out) {                     \
    run_same_type<cpu::FloatingOnly>(#NAME, inputs[0], out, [](auto x) { return EXPR; }); \
  }
MX_REAL_FLOAT_UNARY(Expm1, std::expm1(x))
MX_REAL_FLOAT_UNARY(Log1p, std::log1p(x))
MX_REAL_FLOAT_UNARY(Erf, std::erf(x))
MX_REAL_FLOAT_UNARY(ErfInv, erfinv_impl(x))
MX_REAL_FLOAT_UNARY(Sigmoid, decltype(x)(1) / (decltype(x)(1) + std::exp(-x)))
#undef MX_REAL_FLOAT_UNARY

void Abs::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  if (in.dtype() == complex64) {
    unary_loop<complex64_t, float>(in, out, [](complex64_t x) { return std::abs(x); });
    return;
  }
  if (is_unsigned(in.dtype())) {
    cpu::dispatch_supported<cpu::AnyType>(in.dtype(), "abs", [&](auto tag) {
      using T = typename decltype(tag)::type;
      unary_loop<T, T>(in, out, [](auto x) { return x; });
    });
    return;
  }
  run_same_type<RealOrInt>("abs", in, out, [](auto x) { return x < 0 ? -x : x; });
}

void Negative::eval_cpu(const std::vector<array>& inputs, array& out) {
  if (inputs[0].dtype() == bool_) {
    throw std::invalid_argument("[negative] not supported for bool, use logical_not instead");
  }
  run_same_type<NumberType>("negative", inputs[0], out, [](auto x) {
    using T = decltype(x);
    if constexpr (std::is_integral_v<T>) {
      return cpu::wrap_sub(T(0), x);  // wraps, as NumPy does (-INT_MIN is INT_MIN)
    } else {
      return -x;
    }
  });
}

void Sign::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  if (in.dtype() == complex64) {
    unary_loop<complex64_t, complex64_t>(in, out, [](complex64_t x) {
      float m = std::abs(x);
      return m == 0 ? complex64_t(0, 0) : x / m;
    });
    return;
  }
  if (in.dtype() == bool_) {
    unary_loop<bool, bool>(in, out, [](bool x) { return x; });
    return;
  }
  run_same_type<RealOrInt>("sign", in, out, [](auto x) {
    using T = decltype(x);
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(x)) return x;
    }
    return static_cast<T>((T(0) < x) - (x < T(0)));
  });
}

void LogicalNot::eval_cpu(const std::vector<array>& inputs, array& out) {
  run_to_bool<cpu::AnyType>("logical_not", inputs[0], out,
                            [](auto x) { return !cast_value<bool>(x); });
}

void BitwiseInvert::eval_cpu(const std::vector<array>& inputs, array& out) {
  run_same_type<cpu::IntegerOrBool>("bitwise_invert", inputs[0], out, [](auto x) {
    using T = decltype(x);
    if constexpr (std::is_same_v<T, bool>) {
      return !x;
    } else {
      return static_cast<T>(~x);
    }
  });
}

void Square::eval_cpu(const std::vector<array>& inputs, array& out) {
  run_same_type<NumberType>("square", inputs[0], out, [](auto x) { return x * x; });
}

void Floor::eval_cpu(const std::vector<array>& inputs, array& out) {
  if (is_complex(inputs[0].dtype()))
    throw std::invalid_argument("[floor] not supported for complex64");
  run_same_type<NumberType>("floor", inputs[0], out, [](auto x) {
    if constexpr (std::is_floating_point_v<decltype(x)>)
      return std::floor(x);
    else
      return x;
  });
}

void Ceil::eval_cpu(const std::vector<array>& inputs, array& out) {
  if (is_complex(inputs[0].dtype()))
    throw std::invalid_argument("[ceil] not supported for complex64");
  run_same_type<NumberType>("ceil", inputs[0], out, [](auto x) {
    if constexpr (std::is_floating_point_v<decltype(x)>)
      return std::ceil(x);
    else
      return x;
  });
}

void Round::eval_cpu(const std::vector<array>& inputs, array& out) {
  // Half to even, as NumPy and MLX do.
  run_same_type<NumberType>("round", inputs[0], out, [](auto x) {
    using T = decltype(x);
    if constexpr (std::is_floating_point_v<T>) {
      return std::nearbyint(x);
    } else if constexpr (is_complex_v<T>) {
      return T(std::nearbyint(x.real()), std::nearbyint(x.imag()));
    } else {
      return x;
    }
  });
}

namespace {
template <typename T>
bool isnan_value(T x) {
  if constexpr (std::is_floating_point_v<T>)
    return std::isnan(x);
  else if constexpr (is_complex_v<T>)
    return std::isnan(x.real()) || std::isnan(x.imag());
  else
    return false;
}
template <typename T>
bool isinf_value(T x) {
  if constexpr (std::is_floating_point_v<T>)
    return std::isinf(x);
  else if constexpr (is_complex_v<T>)
    return std::isinf(x.real()) || std::isinf(x.imag());
  else
    return false;
}
}  // namespace

void IsNaN::eval_cpu(const std::vector<array>& inputs, array& out) {
  run_to_bool<cpu::AnyType>("isnan", inputs[0], out, [](auto x) { return isnan_value(x); });
}
void IsInf::eval_cpu(const std::vector<array>& inputs, array& out) {
  run_to_bool<cpu::AnyType>("isinf", inputs[0], out, [](auto x) { return isinf_value(x); });
}
void IsPosInf::eval_cpu(const std::vector<array>& inputs, array& out) {
  run_to_bool<cpu::NotComplex>("isposinf", inputs[0], out, [](auto x) {
    if constexpr (std::is_floating_point_v<decltype(x)>)
      return std::isinf(x) && x > 0;
    else
      return false;
  });
}
void IsNegInf::eval_cpu(const std::vector<array>& inputs, array& out) {
  run_to_bool<cpu::NotComplex>("isneginf", inputs[0], out, [](auto x) {
    if constexpr (std::is_floating_point_v<decltype(x)>)
      return std::isinf(x) && x < 0;
    else
      return false;
  });
}

void Conjugate::eval_cpu(const std::vector<array>& inputs, array& out) {
  if (inputs[0].dtype() == complex64) {
    unary_loop<complex64_t, complex64_t>(inputs[0], out,
                                         [](complex64_t x) { return std::conj(x); });
  } else {
    run_same_type<cpu::AnyType>("conjugate", inputs[0], out, [](auto x) { return x; });
  }
}

void Real::eval_cpu(const std::vector<array>& inputs, array& out) {
  unary_loop<complex64_t, float>(inputs[0], out, [](complex64_t x) { return x.real(); });
}
void Imag::eval_cpu(const std::vector<array>& inputs, array& out) {
  unary_loop<complex64_t, float>(inputs[0], out, [](complex64_t x) { return x.imag(); });
}

void StopGradient::eval_cpu(const std::vector<array>& inputs, array& out) {
  out.copy_shared_buffer(inputs[0]);
}

void Copy::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  if (in.is_donatable() && in.flags().row_contiguous) {
    out.copy_shared_buffer(in);
    return;
  }
  cpu::allocate_row_contiguous(out);
  cpu::copy_into(in, out);
}

void AsType::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  if (in.flags().contiguous) {
    cpu::allocate_like(in, out);
  } else {
    cpu::allocate_row_contiguous(out);
  }
  cpu::copy_into(in, out);
}

}  // namespace mx
