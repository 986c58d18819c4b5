#include "mlxcpp/mx/dtype.h"

#include <array>
#include <stdexcept>

namespace mx {

namespace {

using V = Dtype::Val;
constexpr V b1 = V::bool_, u8 = V::uint8, u16 = V::uint16, u32 = V::uint32, u64 = V::uint64,
            i8 = V::int8, i16 = V::int16, i32 = V::int32, i64 = V::int64, f16 = V::float16,
            f32 = V::float32, f64 = V::float64, bf16 = V::bfloat16, c64 = V::complex64;

// MLX's promotion table: like NumPy, except that mixing 64-bit unsigned and
// signed integers gives float32, and float16 with bfloat16 gives float32.
// clang-format off
constexpr V kPromote[Dtype::num_types][Dtype::num_types] = {
  //         b1   u8   u16  u32  u64  i8   i16  i32  i64  f16  f32  f64  bf16 c64
  /* b1  */ {b1,  u8,  u16, u32, u64, i8,  i16, i32, i64, f16, f32, f64, bf16, c64},
  /* u8  */ {u8,  u8,  u16, u32, u64, i16, i16, i32, i64, f16, f32, f64, bf16, c64},
  /* u16 */ {u16, u16, u16, u32, u64, i32, i32, i32, i64, f16, f32, f64, bf16, c64},
  /* u32 */ {u32, u32, u32, u32, u64, i64, i64, i64, i64, f16, f32, f64, bf16, c64},
  /* u64 */ {u64, u64, u64, u64, u64, f32, f32, f32, f32, f16, f32, f64, bf16, c64},
  /* i8  */ {i8,  i16, i32, i64, f32, i8,  i16, i32, i64, f16, f32, f64, bf16, c64},
  /* i16 */ {i16, i16, i32, i64, f32, i16, i16, i32, i64, f16, f32, f64, bf16, c64},
  /* i32 */ {i32, i32, i32, i64, f32, i32, i32, i32, i64, f16, f32, f64, bf16, c64},
  /* i64 */ {i64, i64, i64, i64, f32, i64, i64, i64, i64, f16, f32, f64, bf16, c64},
  /* f16 */ {f16, f16, f16, f16, f16, f16, f16, f16, f16, f16, f32, f64, f32,  c64},
  /* f32 */ {f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f64, f32,  c64},
  /* f64 */ {f64, f64, f64, f64, f64, f64, f64, f64, f64, f64, f64, f64, f64,  c64},
  /* bf16*/ {bf16,bf16,bf16,bf16,bf16,bf16,bf16,bf16,bf16,f32, f32, f64, bf16, c64},
  /* c64 */ {c64, c64, c64, c64, c64, c64, c64, c64, c64, c64, c64, c64, c64,  c64},
};
// clang-format on

constexpr std::array<const char*, Dtype::num_types> kNames = {
    "bool",  "uint8", "uint16",  "uint32",  "uint64",  "int8",     "int16",
    "int32", "int64", "float16", "float32", "float64", "bfloat16", "complex64"};

}  // namespace

Dtype dtype_from_val(Dtype::Val v) {
  switch (v) {
    case V::bool_:
      return bool_;
    case V::uint8:
      return uint8;
    case V::uint16:
      return uint16;
    case V::uint32:
      return uint32;
    case V::uint64:
      return uint64;
    case V::int8:
      return int8;
    case V::int16:
      return int16;
    case V::int32:
      return int32;
    case V::int64:
      return int64;
    case V::float16:
      return float16;
    case V::float32:
      return float32;
    case V::float64:
      return float64;
    case V::bfloat16:
      return bfloat16;
    case V::complex64:
      return complex64;
  }
  throw std::invalid_argument("[dtype] unknown dtype value");
}

Dtype promote_types(Dtype a, Dtype b) {
  return dtype_from_val(kPromote[static_cast<int>(a.val)][static_cast<int>(b.val)]);
}

Dtype::Kind kind(Dtype d) {
  switch (d.val) {
    case V::bool_:
      return Dtype::Kind::b;
    case V::uint8:
    case V::uint16:
    case V::uint32:
    case V::uint64:
      return Dtype::Kind::u;
    case V::int8:
    case V::int16:
    case V::int32:
    case V::int64:
      return Dtype::Kind::i;
    case V::float16:
    case V::float32:
    case V::float64:
      return Dtype::Kind::f;
    case V::bfloat16:
      return Dtype::Kind::V;
    case V::complex64:
      return Dtype::Kind::c;
  }
  return Dtype::Kind::b;
}

bool issubdtype(Dtype a, Dtype b) { return a == b; }

bool issubdtype(Dtype::Category a, Dtype::Category b) {
  using C = Dtype::Category;
  if (a == b || b == C::generic) return true;
  switch (b) {
    case C::number:
      return a != C::generic;
    case C::inexact:
      return a == C::floating || a == C::complexfloating;
    case C::integer:
      return a == C::signedinteger || a == C::unsignedinteger;
    default:
      return false;
  }
}

bool issubdtype(Dtype a, Dtype::Category c) {
  using C = Dtype::Category;
  switch (kind(a)) {
    case Dtype::Kind::b:
      return c == C::generic;
    case Dtype::Kind::u:
      return issubdtype(C::unsignedinteger, c);
    case Dtype::Kind::i:
      return issubdtype(C::signedinteger, c);
    case Dtype::Kind::f:
    case Dtype::Kind::V:
      return issubdtype(C::floating, c);
    case Dtype::Kind::c:
      return issubdtype(C::complexfloating, c);
  }
  return false;
}

std::string dtype_name(Dtype d) { return kNames[static_cast<int>(d.val)]; }

Dtype dtype_from_name(const std::string& name) {
  for (int i = 0; i < Dtype::num_types; ++i) {
    if (name == kNames[i]) return dtype_from_val(static_cast<V>(i));
  }
  throw std::invalid_argument("[dtype] unknown dtype name '" + name + "'");
}

std::ostream& operator<<(std::ostream& os, Dtype d) { return os << "mlx.core." << dtype_name(d); }

std::ostream& operator<<(std::ostream& os, Dtype::Category c) {
  static const char* names[] = {"complexfloating", "floating", "inexact", "signedinteger",
                                "unsignedinteger", "integer",  "number",  "generic"};
  return os << names[static_cast<int>(c)];
}

}  // namespace mx
