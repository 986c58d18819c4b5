// Binary elementwise kernels and select. The ops broadcast their inputs with
// stride-0 views, so one strided walk covers broadcasting, transposes and
// slices; fully contiguous operands take the flat path. 16-bit floats compute
// in float; complex64 in cfloat (complex.cuh).
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
inline constexpr bool kAny = true;
template <typename T>
inline constexpr bool kOrdered = !is_complex_v<T>;
template <typename T>
inline constexpr bool kBool = std::is_same_v<T, bool>;
template <typename T>
inline constexpr bool kIntOrBool = std::is_integral_v<T>;
template <typename T>
inline constexpr bool kInt = std::is_integral_v<T> && !std::is_same_v<T, bool>;

#define MX_CUDA_BINARY_OP(NAME, SUPPORTS, TO_BOOL, EXPR) \
  struct NAME##Op {                                      \
    template <typename T>                                \
    static constexpr bool supports() {                   \
      return SUPPORTS<T>;                                \
    }                                                    \
    static constexpr bool to_bool = TO_BOOL;             \
    template <typename C>                                \
    __device__ auto operator()(C x, C y) const {         \
      constexpr bool fp = std::is_floating_point_v<C>;   \
      (void)fp;                                          \
      return EXPR;                                       \
    }                                                    \
  };

// bool add / multiply are or / and, as in MLX.
MX_CUDA_BINARY_OP(Add, kAny, false, [&] {
  if constexpr (std::is_same_v<C, bool>) {
    return static_cast<C>(x || y);
  } else {
    return static_cast<C>(x + y);
  }
}())
MX_CUDA_BINARY_OP(Subtract, kNumber, false, static_cast<C>(x - y))
MX_CUDA_BINARY_OP(Multiply, kAny, false, [&] {
  if constexpr (std::is_same_v<C, bool>) {
    return static_cast<C>(x && y);
  } else {
    return static_cast<C>(x * y);
  }
}())
MX_CUDA_BINARY_OP(Divide, kInexact, false, x / y)
// Python's floor division and modulo: the result takes the divisor's sign;
// integer division by 0 gives 0.
MX_CUDA_BINARY_OP(FloorDivide, kRealNumber, false, [&] {
  if constexpr (fp) {
    return floor(x / y);
  } else if constexpr (std::is_signed_v<C>) {
    if (y == 0) return C(0);
    if (y == -1) return static_cast<C>(C(0) - x);
    C q = static_cast<C>(x / y);
    if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
    return q;
  } else {
    return y == 0 ? C(0) : static_cast<C>(x / y);
  }
}())
MX_CUDA_BINARY_OP(Remainder, kRealNumber, false, [&] {
  if constexpr (fp) {
    C r = fmod(x, y);
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return r;
  } else if constexpr (std::is_signed_v<C>) {
    if (y == 0 || y == -1) return C(0);
    C r = static_cast<C>(x % y);
    if (r != 0 && ((r < 0) != (y < 0))) r = static_cast<C>(r + y);
    return r;
  } else {
    return y == 0 ? C(0) : static_cast<C>(x % y);
  }
}())
MX_CUDA_BINARY_OP(Power, kNumber, false, [&] {
  if constexpr (fp || is_complex_v<C>) {
    return pow(x, y);
  } else {
    if constexpr (std::is_signed_v<C>) {
      if (y < 0) return C(x == 1 ? 1 : (x == -1 ? ((y & 1) ? -1 : 1) : 0));
    }
    // Wrapping multiplication in the unsigned type, as on the CPU.
    using U = std::make_unsigned_t<C>;
    U r = 1;
    U b = static_cast<U>(x);
    C e = y;
    while (e) {
      if (e & 1) r = static_cast<U>(r * b);
      b = static_cast<U>(b * b);
      e >>= 1;
    }
    return static_cast<C>(r);
  }
}())
// NaN propagates through maximum and minimum.
MX_CUDA_BINARY_OP(Maximum, kOrdered, false, [&] {
  if constexpr (fp) {
    if (isnan(x) || isnan(y)) return C(NAN);
  }
  return x > y ? x : y;
}())
MX_CUDA_BINARY_OP(Minimum, kOrdered, false, [&] {
  if constexpr (fp) {
    if (isnan(x) || isnan(y)) return C(NAN);
  }
  return x < y ? x : y;
}())
MX_CUDA_BINARY_OP(ArcTan2, kFloat, false, atan2(x, y))
MX_CUDA_BINARY_OP(LogAddExp, kFloat, false, [&] {
  if (isinf(x) && x == y) return x;
  C m = x > y ? x : y;
  if (isnan(x) || isnan(y)) return C(NAN);
  return m + log1p(exp(-fabs(x - y)));
}())
MX_CUDA_BINARY_OP(Equal, kAny, true, x == y)
MX_CUDA_BINARY_OP(NaNEqual, kAny, true, [&] {
  if constexpr (fp || is_complex_v<C>) {
    if (isnan(x) && isnan(y)) return true;
  }
  return x == y;
}())
MX_CUDA_BINARY_OP(NotEqual, kAny, true, x != y)
MX_CUDA_BINARY_OP(Greater, kOrdered, true, x > y)
MX_CUDA_BINARY_OP(GreaterEqual, kOrdered, true, x >= y)
MX_CUDA_BINARY_OP(Less, kOrdered, true, x < y)
MX_CUDA_BINARY_OP(LessEqual, kOrdered, true, x <= y)
MX_CUDA_BINARY_OP(LogicalAnd, kBool, true, x&& y)
MX_CUDA_BINARY_OP(LogicalOr, kBool, true, x || y)
MX_CUDA_BINARY_OP(BitwiseAnd, kIntOrBool, false, static_cast<C>(x& y))
MX_CUDA_BINARY_OP(BitwiseOr, kIntOrBool, false, static_cast<C>(x | y))
MX_CUDA_BINARY_OP(BitwiseXor, kIntOrBool, false, static_cast<C>(x ^ y))
MX_CUDA_BINARY_OP(LeftShift, kInt, false, [&] {
  if (is_negative(y) || static_cast<uint64_t>(y) >= sizeof(C) * 8) return C(0);
  return static_cast<C>(static_cast<std::make_unsigned_t<C>>(x) << y);
}())
MX_CUDA_BINARY_OP(RightShift, kInt, false, [&] {
  if (is_negative(y) || static_cast<uint64_t>(y) >= sizeof(C) * 8) {
    return static_cast<C>(is_negative(x) ? -1 : 0);
  }
  return static_cast<C>(x >> y);
}())
#undef MX_CUDA_BINARY_OP

template <typename Op, typename In, typename Out>
__global__ void binary_kernel(const In* a, const In* b, Out* o, int64_t n, Layout<2> l) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  Op op;
  using C = compute_t<In>;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) {
    const In x = l.contiguous ? a[i] : a[l.offset(0, i)];
    const In y = l.contiguous ? b[i] : b[l.offset(1, i)];
    o[i] = cast_to<Out>(op(cast_to<C>(x), cast_to<C>(y)));
  }
}

// Reuses an input's buffer when it is dead after this op.
void allocate_output(const std::vector<array>& inputs, array& out) {
  for (const auto& in : inputs) {
    if (in.itemsize() == out.itemsize() && in.size() == out.size() && in.is_donatable() &&
        in.flags().row_contiguous) {
      out.copy_shared_buffer(in);
      return;
    }
  }
  allocate_row_contiguous(out);
}

template <typename Op>
void binary_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  const array& a = inputs[0];
  const array& b = inputs[1];
  array& out = outputs[0];
  allocate_output(inputs, out);
  const int64_t n = static_cast<int64_t>(out.size());
  if (n == 0) return;
  auto l = make_layout<2>(out.shape(), {a.strides(), b.strides()}, p.name());
  cudaStream_t s = stream_of(p);
  dispatch_any(a.dtype(), p.name(), [&](auto tag) {
    using In = typename decltype(tag)::type;
    if constexpr (Op::template supports<In>()) {
      using Out = std::conditional_t<Op::to_bool, bool, In>;
      binary_kernel<Op, In, Out>
          <<<grid_for(n), 256, 0, s>>>(a.data<In>(), b.data<In>(), out.data<Out>(), n, l);
    } else {
      throw std::invalid_argument(unsupported_dtype(p.name(), a.dtype()));
    }
  });
  check_launch(p.name());
}

template <typename T>
__global__ void select_kernel(const bool* c, const T* x, const T* y, T* o, int64_t n, Layout<3> l) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step) {
    if (l.contiguous) {
      o[i] = c[i] ? x[i] : y[i];
    } else {
      o[i] = c[l.offset(0, i)] ? x[l.offset(1, i)] : y[l.offset(2, i)];
    }
  }
}

void select_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  const array& c = inputs[0];
  const array& x = inputs[1];
  const array& y = inputs[2];
  array& out = outputs[0];
  if (c.dtype() != bool_) throw std::invalid_argument("[Select] the condition must be bool");
  allocate_output({x, y}, out);
  const int64_t n = static_cast<int64_t>(out.size());
  if (n == 0) return;
  auto l = make_layout<3>(out.shape(), {c.strides(), x.strides(), y.strides()}, "Select");
  dispatch_any(out.dtype(), "Select", [&](auto tag) {
    using T = typename decltype(tag)::type;
    select_kernel<T><<<grid_for(n), 256, 0, stream_of(p)>>>(c.data<bool>(), x.data<T>(),
                                                            y.data<T>(), out.data<T>(), n, l);
  });
  check_launch("Select");
}

#define MX_REGISTER_BINARY(NAME) const Register<NAME> r_##NAME(&binary_gpu<NAME##Op>);
MX_REGISTER_BINARY(Add)
MX_REGISTER_BINARY(Subtract)
MX_REGISTER_BINARY(Multiply)
MX_REGISTER_BINARY(Divide)
MX_REGISTER_BINARY(FloorDivide)
MX_REGISTER_BINARY(Remainder)
MX_REGISTER_BINARY(Power)
MX_REGISTER_BINARY(Maximum)
MX_REGISTER_BINARY(Minimum)
MX_REGISTER_BINARY(ArcTan2)
MX_REGISTER_BINARY(LogAddExp)
MX_REGISTER_BINARY(Equal)
MX_REGISTER_BINARY(NaNEqual)
MX_REGISTER_BINARY(NotEqual)
MX_REGISTER_BINARY(Greater)
MX_REGISTER_BINARY(GreaterEqual)
MX_REGISTER_BINARY(Less)
MX_REGISTER_BINARY(LessEqual)
MX_REGISTER_BINARY(LogicalAnd)
MX_REGISTER_BINARY(LogicalOr)
MX_REGISTER_BINARY(BitwiseAnd)
MX_REGISTER_BINARY(BitwiseOr)
MX_REGISTER_BINARY(BitwiseXor)
MX_REGISTER_BINARY(LeftShift)
MX_REGISTER_BINARY(RightShift)
#undef MX_REGISTER_BINARY

const Register<Select> r_select(&select_gpu);

}  // namespace
}  // namespace mx::cuda
