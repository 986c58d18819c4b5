// CPU kernels of the binary and ternary elementwise primitives.
#include <cmath>
#include <complex>

#include "mlxcpp/mx/backend/cpu/elementwise.h"
#include "mlxcpp/mx/backend/cpu/reduce_ops.h"
#include "mlxcpp/mx/primitives/elementwise.h"

namespace mx {
namespace {

using cpu::binary_loop;

template <typename T>
struct NumberType : std::bool_constant<!std::is_same_v<T, bool>> {};
template <typename T>
struct RealNumber : std::bool_constant<!is_complex_v<T> && !std::is_same_v<T, bool>> {};
template <typename T>
struct Ordered : std::bool_constant<!is_complex_v<T>> {};

template <template <typename> class Supports, typename Op>
void same_type(const char* name, const std::vector<array>& in, array& out, Op op) {
  cpu::dispatch_supported<Supports>(in[0].dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    binary_loop<T, T>(in[0], in[1], out, [&](auto x, auto y) { return op(x, y); });
  });
}

template <template <typename> class Supports, typename Op>
void to_bool(const char* name, const std::vector<array>& in, array& out, Op op) {
  cpu::dispatch_supported<Supports>(in[0].dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    binary_loop<T, bool>(in[0], in[1], out, [&](auto x, auto y) { return op(x, y); });
  });
}

// Python's floor division and modulo (the result takes the divisor's sign).
template <typename T>
T floor_div(T x, T y) {
  if constexpr (std::is_floating_point_v<T>) {
    return std::floor(x / y);
  } else if constexpr (std::is_signed_v<T>) {
    if (y == 0) return 0;
    if (y == -1) return static_cast<T>(T(0) - x);  // avoids INT_MIN / -1 trap
    T q = x / y;
    if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
    return q;
  } else {
    return y == 0 ? T(0) : static_cast<T>(x / y);
  }
}

template <typename T>
T py_mod(T x, T y) {
  if constexpr (std::is_floating_point_v<T>) {
    T r = std::fmod(x, y);
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return r;
  } else if constexpr (std::is_signed_v<T>) {
    if (y == 0 || y == -1) return 0;
    T r = x % y;
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return r;
  } else {
    return y == 0 ? T(0) : static_cast<T>(x % y);
  }
}

template <typename T>
T int_pow(T base, T exp) {
  if constexpr (std::is_signed_v<T>) {
    if (exp < 0) return base == 1 ? 1 : (base == -1 ? ((exp & 1) ? -1 : 1) : 0);
  }
  // Wrapping multiplication in the unsigned type avoids signed overflow UB.
  using U = std::make_unsigned_t<T>;
  U result = 1, b = static_cast<U>(base);
  auto e = exp;
  while (e) {
    if (e & 1) result = static_cast<U>(result * b);
    b = static_cast<U>(b * b);
    e >>= 1;
  }
  return static_cast<T>(result);
}

}  // namespace

void Add::eval_cpu(const std::vector<array>& in, array& out) {
  if (in[0].dtype() == bool_) {
    binary_loop<bool, bool>(in[0], in[1], out, [](bool x, bool y) { return x || y; });
    return;
  }
  same_type<NumberType>("add", in, out, [](auto x, auto y) { return cpu::wrap_add(x, y); });
}

void Subtract::eval_cpu(const std::vector<array>& in, array& out) {
  same_type<NumberType>("subtract", in, out, [](auto x, auto y) { return cpu::wrap_sub(x, y); });
}

void Multiply::eval_cpu(const std::vector<array>& in, array& out) {
  if (in[0].dtype() == bool_) {
    binary_loop<bool, bool>(in[0], in[1], out, [](bool x, bool y) { return x && y; });
    return;
  }
  same_type<NumberType>("multiply", in, out, [](auto x, auto y) { return cpu::wrap_mul(x, y); });
}

void Divide::eval_cpu(const std::vector<array>& in, array& out) {
  same_type<cpu::Inexact>("divide", in, out, [](auto x, auto y) { return x / y; });
}

void FloorDivide::eval_cpu(const std::vector<array>& in, array& out) {
  same_type<RealNumber>("floor_divide", in, out, [](auto x, auto y) { return floor_div(x, y); });
}

void Remainder::eval_cpu(const std::vector<array>& in, array& out) {
  same_type<RealNumber>("remainder", in, out, [](auto x, auto y) { return py_mod(x, y); });
}

void Power::eval_cpu(const std::vector<array>& in, array& out) {
  same_type<NumberType>("power", in, out, [](auto x, auto y) {
    using T = decltype(x);
    if constexpr (std::is_integral_v<T>)
      return int_pow(x, y);
    else
      return static_cast<T>(std::pow(x, y));
  });
}

void Maximum::eval_cpu(const std::vector<array>& in, array& out) {
  same_type<Ordered>("maximum", in, out, [](auto x, auto y) {
    using T = decltype(x);
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<T>::quiet_NaN();
    }
    return x > y ? x : y;
  });
}

void Minimum::eval_cpu(const std::vector<array>& in, array& out) {
  same_type<Ordered>("minimum", in, out, [](auto x, auto y) {
    using T = decltype(x);
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<T>::quiet_NaN();
    }
    return x < y ? x : y;
  });
}

void ArcTan2::eval_cpu(const std::vector<array>& in, array& out) {
  same_type<cpu::FloatingOnly>("arctan2", in, out, [](auto x, auto y) { return std::atan2(x, y); });
}

void LogAddExp::eval_cpu(const std::vector<array>& in, array& out) {
  same_type<cpu::FloatingOnly>("logaddexp", in, out, [](auto x, auto y) {
    using T = decltype(x);
    if (std::isinf(x) && x == y) return x;  // -inf + -inf, inf + inf
    T m = std::max(x, y);
    if (std::isnan(m)) return m;
    return m + std::log1p(std::exp(-std::abs(x - y)));
  });
}

void Equal::eval_cpu(const std::vector<array>& in, array& out) {
  to_bool<cpu::AnyType>("equal", in, out, [](auto x, auto y) { return x == y; });
}
void NaNEqual::eval_cpu(const std::vector<array>& in, array& out) {
  to_bool<cpu::AnyType>("equal", in, out, [](auto x, auto y) {
    using T = decltype(x);
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(x) && std::isnan(y)) return true;
    } else if constexpr (is_complex_v<T>) {
      auto nan = [](T v) { return std::isnan(v.real()) || std::isnan(v.imag()); };
      if (nan(x) && nan(y)) return true;
    }
    return x == y;
  });
}
void NotEqual::eval_cpu(const std::vector<array>& in, array& out) {
  to_bool<cpu::AnyType>("not_equal", in, out, [](auto x, auto y) { return x != y; });
}
void Greater::eval_cpu(const std::vector<array>& in, array& out) {
  to_bool<Ordered>("greater", in, out, [](auto x, auto y) { return x > y; });
}
void GreaterEqual::eval_cpu(const std::vector<array>& in, array& out) {
  to_bool<Ordered>("greater_equal", in, out, [](auto x, auto y) { return x >= y; });
}
void Less::eval_cpu(const std::vector<array>& in, array& out) {
  to_bool<Ordered>("less", in, out, [](auto x, auto y) { return x < y; });
}
void LessEqual::eval_cpu(const std::vector<array>& in, array& out) {
  to_bool<Ordered>("less_equal", in, out, [](auto x, auto y) { return x <= y; });
}
void LogicalAnd::eval_cpu(const std::vector<array>& in, array& out) {
  binary_loop<bool, bool>(in[0], in[1], out, [](bool x, bool y) { return x && y; });
}
void LogicalOr::eval_cpu(const std::vector<array>& in, array& out) {
  binary_loop<bool, bool>(in[0], in[1], out, [](bool x, bool y) { return x || y; });
}
void BitwiseAnd::eval_cpu(const std::vector<array>& in, array& out) {
  same_type<cpu::IntegerOrBool>("bitwise_and", in, out,
                                [](auto x, auto y) { return static_cast<decltype(x)>(x & y); });
}
void BitwiseOr::eval_cpu(const std::vector<array>& in, array& out) {
  same_type<cpu::IntegerOrBool>("bitwise_or", in, out,
                                [](auto x, auto y) { return static_cast<decltype(x)>(x | y); });
}
void BitwiseXor::eval_cpu(const std::vector<array>& in, array& out) {
  same_type<cpu::IntegerOrBool>("bitwise_xor", in, out,
                                [](auto x, auto y) { return static_cast<decltype(x)>(x ^ y); });
}
void LeftShift::eval_cpu(const std::vector<array>& in, array& out) {
  same_type<cpu::Integer>("left_shift", in, out, [](auto x, auto y) {
    using T = decltype(x);
    using U = std::make_unsigned_t<T>;
    if (y < 0 || static_cast<uint64_t>(y) >= sizeof(T) * 8) return T(0);
    return static_cast<T>(static_cast<U>(x) << y);
  });
}
void RightShift::eval_cpu(const std::vector<array>& in, array& out) {
  same_type<cpu::Integer>("right_shift", in, out, [](auto x, auto y) {
    using T = decltype(x);
    if (y < 0 || static_cast<uint64_t>(y) >= sizeof(T) * 8) return static_cast<T>(x < 0 ? -1 : 0);
    return static_cast<T>(x >> y);
  });
}

void Select::eval_cpu(const std::vector<array>& in, array& out) {
  const array& c = in[0];
  const array& x = in[1];
  const array& y = in[2];
  cpu::allocate_row_contiguous(out);
  if (out.size() == 0) return;
  auto [shape, strides] =
      cpu::collapse_contiguous_dims(out.shape(), {c.strides(), x.strides(), y.strides()});
  int64_t inner = shape.back();
  Shape outer(shape.begin(), shape.end() - 1);
  std::vector<Strides> os(3);
  for (int k = 0; k < 3; ++k) os[k].assign(strides[k].begin(), strides[k].end() - 1);
  int64_t sc = strides[0].back(), sx = strides[1].back(), sy = strides[2].back();
  int64_t rows = static_cast<int64_t>(out.size()) / inner;
  const bool* pc = c.data<bool>();
  dispatch_all(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    const T* py = y.data<T>();
    T* po = out.data<T>();
    scheduler::parallel_for(
        rows, std::max<int64_t>(1, cpu::kParallelGrain / inner), [&](size_t b, size_t e) {
          cpu::StridedCursor cur(outer, {&os[0], &os[1], &os[2]}, static_cast<int64_t>(b));
          for (size_t r = b; r < e; ++r) {
            const bool* cc = pc + cur.offset(0);
            const T* xx = px + cur.offset(1);
            const T* yy = py + cur.offset(2);
            T* oo = po + r * inner;
            for (int64_t i = 0; i < inner; ++i) oo[i] = cc[i * sc] ? xx[i * sx] : yy[i * sy];
            cur.step();
          }
        });
  });
}

}  // namespace mx
