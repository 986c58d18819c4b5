// Data types, their promotion rules and categories (MLX's names and semantics).
#pragma once

#include <complex>
#include <cstdint>
#include <ostream>
#include <string>

#include "mlxcpp/mx/half_types.h"

namespace mx {

using complex64_t = std::complex<float>;

struct Dtype {
  enum class Val : uint8_t {
    bool_,
    uint8,
    uint16,
    uint32,
    uint64,
    int8,
    int16,
    int32,
    int64,
    float16,
    float32,
    float64,
    bfloat16,
    complex64,
  };
  static constexpr int num_types = 14;

  enum class Kind { b, u, i, f, V, c };  // V: bfloat16, as in MLX

  enum class Category {
    complexfloating,
    floating,
    inexact,
    signedinteger,
    unsignedinteger,
    integer,
    number,
    generic,
  };

  Val val;
  uint8_t size;
  constexpr Dtype(Val v, uint8_t s) : val(v), size(s) {}
  constexpr operator Val() const { return val; }
};

inline constexpr Dtype bool_{Dtype::Val::bool_, 1};
inline constexpr Dtype uint8{Dtype::Val::uint8, 1};
inline constexpr Dtype uint16{Dtype::Val::uint16, 2};
inline constexpr Dtype uint32{Dtype::Val::uint32, 4};
inline constexpr Dtype uint64{Dtype::Val::uint64, 8};
inline constexpr Dtype int8{Dtype::Val::int8, 1};
inline constexpr Dtype int16{Dtype::Val::int16, 2};
inline constexpr Dtype int32{Dtype::Val::int32, 4};
inline constexpr Dtype int64{Dtype::Val::int64, 8};
inline constexpr Dtype float16{Dtype::Val::float16, 2};
inline constexpr Dtype float32{Dtype::Val::float32, 4};
inline constexpr Dtype float64{Dtype::Val::float64, 8};
inline constexpr Dtype bfloat16{Dtype::Val::bfloat16, 2};
inline constexpr Dtype complex64{Dtype::Val::complex64, 8};

inline constexpr Dtype::Category complexfloating = Dtype::Category::complexfloating;
inline constexpr Dtype::Category floating = Dtype::Category::floating;
inline constexpr Dtype::Category inexact = Dtype::Category::inexact;
inline constexpr Dtype::Category signedinteger = Dtype::Category::signedinteger;
inline constexpr Dtype::Category unsignedinteger = Dtype::Category::unsignedinteger;
inline constexpr Dtype::Category integer = Dtype::Category::integer;
inline constexpr Dtype::Category number = Dtype::Category::number;
inline constexpr Dtype::Category generic = Dtype::Category::generic;

inline constexpr bool operator==(Dtype a, Dtype b) { return a.val == b.val; }
inline constexpr bool operator!=(Dtype a, Dtype b) { return a.val != b.val; }

Dtype dtype_from_val(Dtype::Val v);
Dtype promote_types(Dtype a, Dtype b);
Dtype::Kind kind(Dtype d);
bool issubdtype(Dtype a, Dtype b);
bool issubdtype(Dtype a, Dtype::Category c);
bool issubdtype(Dtype::Category a, Dtype::Category b);
// "float32", "bfloat16", ...
std::string dtype_name(Dtype d);
// Parses the names dtype_name() prints; throws naming the string otherwise.
Dtype dtype_from_name(const std::string& name);
std::ostream& operator<<(std::ostream& os, Dtype d);
std::ostream& operator<<(std::ostream& os, Dtype::Category c);

inline bool is_floating_point(Dtype d) {
  return d == float16 || d == float32 || d == float64 || d == bfloat16;
}
inline bool is_complex(Dtype d) { return d == complex64; }
inline bool is_inexact(Dtype d) { return is_floating_point(d) || is_complex(d); }
inline bool is_integral(Dtype d) { return !is_inexact(d) && d != bool_; }
inline bool is_unsigned(Dtype d) {
  return d == uint8 || d == uint16 || d == uint32 || d == uint64 || d == bool_;
}
inline size_t size_of(Dtype d) { return d.size; }

template <typename T>
struct TypeToDtype;
template <>
struct TypeToDtype<bool> {
  static constexpr Dtype value = bool_;
};
template <>
struct TypeToDtype<uint8_t> {
  static constexpr Dtype value = uint8;
};
template <>
struct TypeToDtype<uint16_t> {
  static constexpr Dtype value = uint16;
};
template <>
struct TypeToDtype<uint32_t> {
  static constexpr Dtype value = uint32;
};
template <>
struct TypeToDtype<uint64_t> {
  static constexpr Dtype value = uint64;
};
template <>
struct TypeToDtype<unsigned long long> {
  static constexpr Dtype value = uint64;
};
template <>
struct TypeToDtype<int8_t> {
  static constexpr Dtype value = int8;
};
template <>
struct TypeToDtype<int16_t> {
  static constexpr Dtype value = int16;
};
template <>
struct TypeToDtype<int32_t> {
  static constexpr Dtype value = int32;
};
template <>
struct TypeToDtype<int64_t> {
  static constexpr Dtype value = int64;
};
template <>
struct TypeToDtype<long long> {
  static constexpr Dtype value = int64;
};
template <>
struct TypeToDtype<float16_t> {
  static constexpr Dtype value = float16;
};
template <>
struct TypeToDtype<float> {
  static constexpr Dtype value = float32;
};
template <>
struct TypeToDtype<double> {
  static constexpr Dtype value = float64;
};
template <>
struct TypeToDtype<bfloat16_t> {
  static constexpr Dtype value = bfloat16;
};
template <>
struct TypeToDtype<complex64_t> {
  static constexpr Dtype value = complex64;
};

template <typename T>
inline constexpr Dtype dtype_of = TypeToDtype<T>::value;

}  // namespace mx
