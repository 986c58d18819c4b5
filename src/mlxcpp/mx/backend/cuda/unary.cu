// Unary elementwise kernels: one grid-stride loop per (op, dtype), reading a
// strided input (flat when contiguous) and writing a row-contiguous output.
// 16-bit floats compute in float; complex64 computes in cfloat (complex.cuh).
#include <cmath>

#include "mlxcpp/mx/backend/cuda/complex.cuh"
#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/elementwise.h"

namespace mx::cuda {
namespace {

template <typename T>
inline constexpr bool kFloat = is_float_v<T>;
template <typename T>
inline constexpr bool kInexact = is_float_v<T> || is_complex_v<T>;
template <typename T>
inline constexpr bool kNumber = !std::is_same_v<T, bool>;
template <typename T>
inline constexpr bool kRealNumber = !std::is_same_v<T, bool> && !is_complex_v<T>;
template <typename T>
inline constexpr bool kIntOrBool = std::is_integral_v<T>;
template <typename T>
inline constexpr bool kAny = true;
template <typename T>
inline constexpr bool kNotComplex = !is_complex_v<T>;
template <typename T>
inline constexpr bool kComplex = is_complex_v<T>;

// Op(x) on the compute type. The element type written is bool (to_bool), or
// float for a complex input of an op with complex_to_real, else the input's.
#define MX_CUDA_FLOAT_OP(NAME, EXPR)               \
  struct NAME##Op {                                \
    template <typename T>                          \
    static constexpr bool supports() {             \
      return kFloat<T>;                            \
    }                                              \
    static constexpr bool to_bool = false;         \
    static constexpr bool complex_to_real = false; \
    template <typename C>                          \
    __device__ C operator()(C x) const {           \
      return EXPR;                                 \
    }                                              \
  };

// Defined for complex64 too: CEXPR is the complex form.
#define MX_CUDA_INEXACT_OP(NAME, EXPR, CEXPR)      \
  struct NAME##Op {                                \
    template <typename T>                          \
    static constexpr bool supports() {             \
      return kInexact<T>;                          \
    }                                              \
    static constexpr bool to_bool = false;         \
    static constexpr bool complex_to_real = false; \
    template <typename C>                          \
    __device__ C operator()(C x) const {           \
      if constexpr (is_complex_v<C>) {             \
        return CEXPR;                              \
      } else {                                     \
        return EXPR;                               \
      }                                            \
    }                                              \
  };

MX_CUDA_INEXACT_OP(Sqrt, sqrt(x), sqrt(x))
MX_CUDA_INEXACT_OP(Rsqrt, rsqrt(x), C(1) / sqrt(x))
MX_CUDA_INEXACT_OP(Exp, exp(x), exp(x))
MX_CUDA_FLOAT_OP(Expm1, expm1(x))
MX_CUDA_INEXACT_OP(Log, log(x), log(x))
MX_CUDA_INEXACT_OP(Log2, log2(x), log(x) / log(C(2)))
MX_CUDA_INEXACT_OP(Log10, log10(x), log10(x))
MX_CUDA_FLOAT_OP(Log1p, log1p(x))
MX_CUDA_INEXACT_OP(Sin, sin(x), sin(x))
MX_CUDA_INEXACT_OP(Cos, cos(x), cos(x))
MX_CUDA_INEXACT_OP(Tan, tan(x), tan(x))
MX_CUDA_INEXACT_OP(ArcSin, asin(x), asin(x))
MX_CUDA_INEXACT_OP(ArcCos, acos(x), acos(x))
MX_CUDA_INEXACT_OP(ArcTan, atan(x), atan(x))
MX_CUDA_INEXACT_OP(Sinh, sinh(x), sinh(x))
MX_CUDA_INEXACT_OP(Cosh, cosh(x), cosh(x))
// float tanhf is off by up to 2 ulps; through double it rounds correctly
// (GELU's 1 + tanh(x) needs the half-ulp accuracy the CPU kernel has).
MX_CUDA_INEXACT_OP(
    Tanh,
    [&] {
      if constexpr (std::is_same_v<C, float>) {
        return static_cast<float>(tanh(static_cast<double>(x)));
      } else {
        return tanh(x);
      }
    }(),
    tanh(x))
MX_CUDA_INEXACT_OP(ArcSinh, asinh(x), asinh(x))
MX_CUDA_INEXACT_OP(ArcCosh, acosh(x), acosh(x))
MX_CUDA_INEXACT_OP(ArcTanh, atanh(x), atanh(x))
MX_CUDA_FLOAT_OP(Erf, erf(x))
MX_CUDA_FLOAT_OP(ErfInv, erfinv(x))
MX_CUDA_FLOAT_OP(Sigmoid, C(1) / (C(1) + exp(-x)))
#undef MX_CUDA_FLOAT_OP
#undef MX_CUDA_INEXACT_OP

// Ops over numbers where integers pass through or have their own rule.
#define MX_CUDA_NUMBER_OP(NAME, SUPPORTS, TO_REAL, EXPR) \
  struct NAME##Op {                                      \
    template <typename T>                                \
    static constexpr bool supports() {                   \
      return SUPPORTS<T>;                                \
    }                                                    \
    static constexpr bool to_bool = false;               \
    static constexpr bool complex_to_real = TO_REAL;     \
    template <typename C>                                \
    __device__ auto operator()(C x) const {              \
      constexpr bool fp = std::is_floating_point_v<C>;   \
      (void)fp;                                          \
      return EXPR;                                       \
    }                                                    \
  };

MX_CUDA_NUMBER_OP(Abs, kNumber, true, [&] {
  if constexpr (is_complex_v<C>) {
    return cabs(x);
  } else if constexpr (std::is_unsigned_v<C>) {
    return x;
  } else {
    return x < C(0) ? C(-x) : x;
  }
}())
MX_CUDA_NUMBER_OP(Negative, kNumber, false, static_cast<C>(C(0) - x))
MX_CUDA_NUMBER_OP(Square, kNumber, false, static_cast<C>(x* x))
MX_CUDA_NUMBER_OP(Conjugate, kAny, false, [&] {
  if constexpr (is_complex_v<C>) {
    return conj(x);
  } else {
    return x;
  }
}())
MX_CUDA_NUMBER_OP(Real, kComplex, true, x.re)
MX_CUDA_NUMBER_OP(Imag, kComplex, true, x.im)
MX_CUDA_NUMBER_OP(Floor, kRealNumber, false, [&] {
  if constexpr (fp) {
    return floor(x);
  } else {
    return x;
  }
}())
MX_CUDA_NUMBER_OP(Ceil, kRealNumber, false, [&] {
  if constexpr (fp) {
    return ceil(x);
  } else {
    return x;
  }
}())
// Half to even, as NumPy does.
MX_CUDA_NUMBER_OP(Round, kNumber, false, [&] {
  if constexpr (fp) {
    return rint(x);
  } else if constexpr (is_complex_v<C>) {
    return C(rintf(x.re), rintf(x.im));
  } else {
    return x;
  }
}())
MX_CUDA_NUMBER_OP(Sign, kAny, false, [&] {
  if constexpr (std::is_same_v<C, bool>) {
    return x;
  } else if constexpr (is_complex_v<C>) {
    const float m = cabs(x);
    return m == 0.0f ? C(0.0f) : C(x.re / m, x.im / m);
  } else {
    if constexpr (fp) {
      if (isnan(x)) return x;
    }
    return static_cast<C>((C(0) < x) - is_negative(x));
  }
}())
MX_CUDA_NUMBER_OP(BitwiseInvert, kIntOrBool, false, [&] {
  if constexpr (std::is_same_v<C, bool>) {
    return !x;
  } else {
    return static_cast<C>(~x);
  }
}())
#undef MX_CUDA_NUMBER_OP

#define MX_CUDA_BOOL_OP(NAME, SUPPORTS, EXPR)          \
  struct NAME##Op {                                    \
    template <typename T>                              \
    static constexpr bool supports() {                 \
      return SUPPORTS<T>;                              \
    }                                                  \
    static constexpr bool to_bool = true;              \
    static constexpr bool complex_to_real = false;     \
    template <typename C>                              \
    __device__ bool operator()(C x) const {            \
      constexpr bool fp = std::is_floating_point_v<C>; \
      (void)fp;                                        \
      return EXPR;                                     \
    }                                                  \
  };

MX_CUDA_BOOL_OP(LogicalNot, kAny, x == C(0))
MX_CUDA_BOOL_OP(IsNaN, kAny, [&] {
  if constexpr (fp || is_complex_v<C>) {
    return static_cast<bool>(isnan(x));
  } else {
    return false;
  }
}())
MX_CUDA_BOOL_OP(IsInf, kAny, [&] {
  if constexpr (fp || is_complex_v<C>) {
    return static_cast<bool>(isinf(x));
  } else {
    return false;
  }
}())
MX_CUDA_BOOL_OP(IsPosInf, kNotComplex, [&] {
  if constexpr (fp) {
    return isinf(x) && x > C(0);
  } else {
    return false;
  }
}())
MX_CUDA_BOOL_OP(IsNegInf, kNotComplex, [&] {
  if constexpr (fp) {
    return isinf(x) && x < C(0);
  } else {
    return false;
  }
}())
#undef MX_CUDA_BOOL_OP

template <typename Op, typename In, typename Out>
__global__ void unary_kernel(const In* x, Out* y, int64_t n, Layout<1> l) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  Op op;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) {
    const In v = l.contiguous ? x[i] : x[l.offset(0, i)];
    y[i] = cast_to<Out>(op(cast_to<compute_t<In>>(v)));
  }
}

template <typename Op>
void unary_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  const array& x = inputs[0];
  array& y = outputs[0];
  if (x.itemsize() == y.itemsize() && x.is_donatable() && x.flags().row_contiguous) {
    y.copy_shared_buffer(x);
  } else {
    allocate_row_contiguous(y);
  }
  const int64_t n = static_cast<int64_t>(y.size());
  if (n == 0) return;
  auto l = make_layout<1>(y.shape(), {x.strides()}, p.name());
  cudaStream_t s = stream_of(p);
  dispatch_any(x.dtype(), p.name(), [&](auto tag) {
    using In = typename decltype(tag)::type;
    if constexpr (Op::template supports<In>()) {
      using Out = std::conditional_t<
          Op::to_bool, bool,
          std::conditional_t<Op::complex_to_real && is_complex_v<In>, float, In>>;
      unary_kernel<Op, In, Out><<<grid_for(n), 256, 0, s>>>(x.data<In>(), y.data<Out>(), n, l);
    } else {
      throw std::invalid_argument(unsupported_dtype(p.name(), x.dtype()));
    }
  });
  check_launch(p.name());
}

#define MX_REGISTER_UNARY(NAME) const Register<NAME> r_##NAME(&unary_gpu<NAME##Op>);
MX_REGISTER_UNARY(Sqrt)
MX_REGISTER_UNARY(Rsqrt)
MX_REGISTER_UNARY(Exp)
MX_REGISTER_UNARY(Expm1)
MX_REGISTER_UNARY(Log)
MX_REGISTER_UNARY(Log2)
MX_REGISTER_UNARY(Log10)
MX_REGISTER_UNARY(Log1p)
MX_REGISTER_UNARY(Sin)
MX_REGISTER_UNARY(Cos)
MX_REGISTER_UNARY(Tan)
MX_REGISTER_UNARY(ArcSin)
MX_REGISTER_UNARY(ArcCos)
MX_REGISTER_UNARY(ArcTan)
MX_REGISTER_UNARY(Sinh)
MX_REGISTER_UNARY(Cosh)
MX_REGISTER_UNARY(Tanh)
MX_REGISTER_UNARY(ArcSinh)
MX_REGISTER_UNARY(ArcCosh)
MX_REGISTER_UNARY(ArcTanh)
MX_REGISTER_UNARY(Erf)
MX_REGISTER_UNARY(ErfInv)
MX_REGISTER_UNARY(Sigmoid)
MX_REGISTER_UNARY(Abs)
MX_REGISTER_UNARY(Negative)
MX_REGISTER_UNARY(Square)
MX_REGISTER_UNARY(Floor)
MX_REGISTER_UNARY(Ceil)
MX_REGISTER_UNARY(Round)
MX_REGISTER_UNARY(Sign)
MX_REGISTER_UNARY(BitwiseInvert)
MX_REGISTER_UNARY(Conjugate)
MX_REGISTER_UNARY(Real)
MX_REGISTER_UNARY(Imag)
MX_REGISTER_UNARY(LogicalNot)
MX_REGISTER_UNARY(IsNaN)
MX_REGISTER_UNARY(IsInf)
MX_REGISTER_UNARY(IsPosInf)
MX_REGISTER_UNARY(IsNegInf)
#undef MX_REGISTER_UNARY

}  // namespace
}  // namespace mx::cuda
