// float16 and bfloat16 storage types. Arithmetic promotes to float, as MLX's CPU
// backend does; conversions round to nearest even and keep NaN a NaN.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace mx {

struct bfloat16_t {
  uint16_t bits = 0;
  constexpr bfloat16_t() = default;
  static constexpr bfloat16_t from_bits(uint16_t b) {
    bfloat16_t v;
    v.bits = b;
    return v;
  }
  bfloat16_t(float f) { bits = from_float(f); }
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  bfloat16_t(T v) : bfloat16_t(static_cast<float>(v)) {}
  operator float() const { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

  static uint16_t from_float(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
      return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
  }
};

struct float16_t {
  uint16_t bits = 0;
  constexpr float16_t() = default;
  static constexpr float16_t from_bits(uint16_t b) {
    float16_t v;
    v.bits = b;
    return v;
  }
  float16_t(float f) { bits = from_float(f); }
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  float16_t(T v) : float16_t(static_cast<float>(v)) {}
  operator float() const { return to_float(bits); }

  static float to_float(uint16_t h) {
    uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t out;
    if (exp == 0) {
      if (mant == 0) {
        out = sign;
      } else {  // subnormal: normalise
        int e = -1;
        do {
          ++e;
          mant <<= 1;
        } while ((mant & 0x400u) == 0);
        out = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
      }
    } else if (exp == 0x1f) {
      out = sign | 0x7f800000u | (mant << 13);
    } else {
      out = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    return std::bit_cast<float>(out);
  }

  static uint16_t from_float(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;   // NaN
    if (a >= 0x477ff000u) return sign | 0x7c00u;  // overflow (incl. rounding up) -> inf
    if (a < 0x38800000u) {                        // result is subnormal or zero
      if (a < 0x33000000u) return sign;           // below half the smallest subnormal
      uint32_t e = a >> 23;
      uint32_t m = (a & 0x7fffffu) | 0x800000u;
      uint32_t shift = 126 - e;  // 113 - e + 13
      uint32_t half = 1u << (shift - 1);
      uint32_t rest = m & ((1u << shift) - 1);
      uint32_t r = m >> shift;
      if (rest > half || (rest == half && (r & 1u))) ++r;
      return sign | static_cast<uint16_t>(r);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u);  // round to nearest even on bit 13
    r -= 0x38000000u;                            // rebias 127 -> 15
    return sign | static_cast<uint16_t>(r >> 13);
  }
};

}  // namespace mx

namespace std {
template <>
class numeric_limits<mx::bfloat16_t> {
 public:
  static constexpr bool is_specialized = true;
  static constexpr bool has_infinity = true;
  static constexpr bool has_quiet_NaN = true;
  static constexpr bool is_integer = false;
  static constexpr bool is_signed = true;
  static mx::bfloat16_t min() { return mx::bfloat16_t::from_bits(0x0080); }
  static mx::bfloat16_t max() { return mx::bfloat16_t::from_bits(0x7f7f); }
  static mx::bfloat16_t lowest() { return mx::bfloat16_t::from_bits(0xff7f); }
  static mx::bfloat16_t epsilon() { return mx::bfloat16_t::from_bits(0x3c00); }
  static mx::bfloat16_t infinity() { return mx::bfloat16_t::from_bits(0x7f80); }
  static mx::bfloat16_t quiet_NaN() { return mx::bfloat16_t::from_bits(0x7fc0); }
};
template <>
class numeric_limits<mx::float16_t> {
 public:
  static constexpr bool is_specialized = true;
  static constexpr bool has_infinity = true;
  static constexpr bool has_quiet_NaN = true;
  static constexpr bool is_integer = false;
  static constexpr bool is_signed = true;
  static mx::float16_t min() { return mx::float16_t::from_bits(0x0400); }
  static mx::float16_t max() { return mx::float16_t::from_bits(0x7bff); }
  static mx::float16_t lowest() { return mx::float16_t::from_bits(0xfbff); }
  static mx::float16_t epsilon() { return mx::float16_t::from_bits(0x1400); }
  static mx::float16_t infinity() { return mx::float16_t::from_bits(0x7c00); }
  static mx::float16_t quiet_NaN() { return mx::float16_t::from_bits(0x7e00); }
};
}  // namespace std
