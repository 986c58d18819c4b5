// CPU kernels of the unary elementwise primitives.
#include <algorithm>
#include <bit>
#include <cmath>
#include <complex>
#include <cstdint>
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

// tanh of eight float32 values in arithmetic alone (no libm call), written
// with vector types so that it compiles to SIMD whatever the compiler makes
// of the branches. With e = exp(-2|x|) and the sign put back:
//   |x| < 1/4:        -m / (m + 2), m = expm1(-2|x|) by its Taylor polynomial
//                     (no cancellation for small |x|);
//   1/4 <= |x| < 0.55: the same with m = e - 1;
//   beyond (tanh > 1/2): 1 - 2e / (1 + e), the small term carrying the error, so
//                     that 1 + tanh(x) (GELU's form) keeps its relative accuracy.
// exp(y) = 2^n exp(r) with r = y - n ln 2 in [-ln2/2, ln2/2]. |x| >= 10 gives
// 1 (float32 tanh is 1 from 9.01 on). Within 3 ulps of the correctly rounded
// value; NaN stays NaN.
using F8 = float __attribute__((vector_size(32)));
using I8 = int32_t __attribute__((vector_size(32)));

F8 tanh8(F8 x) {
  const I8 xb = std::bit_cast<I8>(x);
  const I8 ab = xb & 0x7fffffff;  // |x| as an integer: ordered like the value
  const I8 ten = std::bit_cast<int32_t>(10.0f) + I8{};
  const F8 a = std::bit_cast<F8>(ab < ten ? ab : ten);
  const F8 y = -2.0f * a;
  // Near zero: y + y^2/2! + ... + y^10/10!.
  F8 p = 1.0f / 3628800.0f + y * 0.0f;
  p = p * y + 1.0f / 362880.0f;
  p = p * y + 1.0f / 40320.0f;
  p = p * y + 1.0f / 5040.0f;
  p = p * y + 1.0f / 720.0f;
  p = p * y + 1.0f / 120.0f;
  p = p * y + 1.0f / 24.0f;
  p = p * y + 1.0f / 6.0f;
  p = p * y + 0.5f;
  p = p * y * y + y;
  // Further out: exp(y) = 2^n exp(r), the ln 2 split in two so that r is exact,
  // n = round(y / ln 2) by the 1.5 * 2^23 shifter.
  constexpr float kShift = 12582912.0f;
  const F8 n = (y * 1.44269504088896341f + kShift) - kShift;
  const F8 r = (y - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
  F8 e = 1.0f / 5040.0f + r * 0.0f;
  e = e * r + 1.0f / 720.0f;
  e = e * r + 1.0f / 120.0f;
  e = e * r + 1.0f / 24.0f;
  e = e * r + 1.0f / 6.0f;
  e = e * r + 0.5f;
  e = e * r + 1.0f;
  e = e * r + 1.0f;
  e *= std::bit_cast<F8>((__builtin_convertvector(n, I8) + 127) << 23);
  const F8 m = ab < std::bit_cast<int32_t>(0.25f) ? p : e - 1.0f;
  const F8 mid = -m / (m + 2.0f);
  const F8 far = 1.0f - (e + e) / (1.0f + e);
  const F8 mag = ab < std::bit_cast<int32_t>(0.55f) ? mid : far;
  const I8 t = (std::bit_cast<I8>(mag) & 0x7fffffff) | (xb & ~0x7fffffff);
  return std::bit_cast<F8>(ab > 0x7f800000 ? xb : t);
}

// Eight at a time through float32 (16-bit types round once at the end).
template <typename T>
void tanh_block(const T* x, T* y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    F8 v;
    for (int l = 0; l < 8; ++l) v[l] = static_cast<float>(x[i + l]);
    v = tanh8(v);
    for (int l = 0; l < 8; ++l) y[i + l] = static_cast<T>(v[l]);
  }
  if (i < n) {
    F8 v = {};
    for (size_t l = 0; l < n - i; ++l) v[l] = static_cast<float>(x[i + l]);
    v = tanh8(v);
    for (size_t l = 0; l < n - i; ++l) y[i + l] = static_cast<T>(v[l]);
  }
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
MX_FLOAT_UNARY(ArcSinh, std::asinh(x))
MX_FLOAT_UNARY(ArcCosh, std::acosh(x))
MX_FLOAT_UNARY(ArcTanh, std::atanh(x))
#undef MX_FLOAT_UNARY

void Tanh::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  const Dtype t = in.dtype();
  if (t != float32 && t != bfloat16 && t != float16) {
    run_same_type<cpu::Inexact>("Tanh", in, out, [](auto x) { return std::tanh(x); });
    return;
  }
  array src = in.flags().contiguous ? in : cpu::ensure_row_contiguous(in);
  cpu::allocate_like(src, out);
  cpu::dispatch_supported<cpu::Inexact>(t, "Tanh", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, float> || is_half_v<T>) {
      const T* x = src.data<T>();
      T* y = out.data<T>();
      scheduler::parallel_for(src.data_size(), cpu::kParallelGrain,
                              [&](size_t b, size_t e) { tanh_block(x + b, y + b, e - b); });
    }
  });
}

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
