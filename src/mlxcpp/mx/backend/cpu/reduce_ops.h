// Accumulation rules shared by the reduction and scan kernels: what type each
// reduction accumulates in, its identity, and how it folds in one element.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "mlxcpp/mx/dtype_dispatch.h"

namespace mx::cpu {

template <typename T>
inline constexpr bool is_real_float_v = std::is_floating_point_v<T> || is_half_v<T>;

// Integer arithmetic that wraps like the hardware (as NumPy and MLX do)
// instead of overflowing signed types, which is undefined behaviour in C++.
template <typename T>
inline T wrap_add(T a, T b) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    using W = std::conditional_t<sizeof(T) <= 4, uint32_t, uint64_t>;
    return static_cast<T>(static_cast<W>(a) + static_cast<W>(b));
  } else {
    return a + b;
  }
}
template <typename T>
inline T wrap_sub(T a, T b) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    using W = std::conditional_t<sizeof(T) <= 4, uint32_t, uint64_t>;
    return static_cast<T>(static_cast<W>(a) - static_cast<W>(b));
  } else {
    return a - b;
  }
}
template <typename T>
inline T wrap_mul(T a, T b) {
  if constexpr (std::is_same_v<T, bool>) {
    return a && b;
  } else if constexpr (std::is_integral_v<T>) {
    using W = std::conditional_t<sizeof(T) <= 4, uint32_t, uint64_t>;
    return static_cast<T>(static_cast<W>(a) * static_cast<W>(b));
  } else {
    return a * b;
  }
}

template <typename T>
inline bool is_nan_value(T x) {
  if constexpr (is_real_float_v<T>) {
    return std::isnan(static_cast<acc_t<T>>(x));
  } else {
    return false;
  }
}

// Sum: floats accumulate in double (an accurate float32 sum without pairwise
// bookkeeping), integers in the (widened) output type with wrap-around.
template <typename In, typename Out>
struct SumOp {
  using Acc = std::conditional_t<is_real_float_v<In>, double, Out>;
  Acc init() const { return Acc(0); }
  Acc operator()(Acc a, In x) const { return wrap_add(a, cast_value<Acc>(x)); }
  Acc combine(Acc a, Acc b) const { return wrap_add(a, b); }
  Out finalize(Acc a) const { return cast_value<Out>(a); }
};

template <typename In, typename Out>
struct ProdOp {
  using Acc = acc_t<Out>;
  Acc init() const { return Acc(1); }
  Acc operator()(Acc a, In x) const { return wrap_mul(a, cast_value<Acc>(x)); }
  Acc combine(Acc a, Acc b) const { return wrap_mul(a, b); }
  Out finalize(Acc a) const { return cast_value<Out>(a); }
};

// Max and min propagate NaN: once one is seen it stays.
template <typename In, typename Out>
struct MaxOp {
  using Acc = acc_t<In>;
  Acc init() const {
    if constexpr (std::is_same_v<Acc, bool>) {
      return false;
    } else if constexpr (std::is_floating_point_v<Acc>) {
      return -std::numeric_limits<Acc>::infinity();
    } else {
      return std::numeric_limits<Acc>::lowest();
    }
  }
  Acc operator()(Acc a, In x) const { return combine(a, static_cast<Acc>(x)); }
  Acc combine(Acc a, Acc b) const { return (b > a || is_nan_value(b)) ? b : a; }
  Out finalize(Acc a) const { return cast_value<Out>(a); }
};

template <typename In, typename Out>
struct MinOp {
  using Acc = acc_t<In>;
  Acc init() const {
    if constexpr (std::is_same_v<Acc, bool>) {
      return true;
    } else if constexpr (std::is_floating_point_v<Acc>) {
      return std::numeric_limits<Acc>::infinity();
    } else {
      return std::numeric_limits<Acc>::max();
    }
  }
  Acc operator()(Acc a, In x) const { return combine(a, static_cast<Acc>(x)); }
  Acc combine(Acc a, Acc b) const { return (b < a || is_nan_value(b)) ? b : a; }
  Out finalize(Acc a) const { return cast_value<Out>(a); }
};

template <typename In, typename Out>
struct AndOp {
  using Acc = bool;
  Acc init() const { return true; }
  Acc operator()(Acc a, In x) const { return a && cast_value<bool>(x); }
  Acc combine(Acc a, Acc b) const { return a && b; }
  Out finalize(Acc a) const { return a; }
};

template <typename In, typename Out>
struct OrOp {
  using Acc = bool;
  Acc init() const { return false; }
  Acc operator()(Acc a, In x) const { return a || cast_value<bool>(x); }
  Acc combine(Acc a, Acc b) const { return a || b; }
  Out finalize(Acc a) const { return a; }
};

// The dtype MLX gives sums and products of T (see ops/reduce.cpp).
template <typename T>
struct WidenedInt {
  using type = T;
};
template <>
struct WidenedInt<bool> {
  using type = int32_t;
};
template <>
struct WidenedInt<int8_t> {
  using type = int32_t;
};
template <>
struct WidenedInt<int16_t> {
  using type = int32_t;
};
template <>
struct WidenedInt<uint8_t> {
  using type = uint32_t;
};
template <>
struct WidenedInt<uint16_t> {
  using type = uint32_t;
};

}  // namespace mx::cpu
