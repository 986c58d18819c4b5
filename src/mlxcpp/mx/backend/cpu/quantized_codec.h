// Scalar encoding and decoding of MLX's quantized formats (formats.md section
// 2): the LSB-first bitstream of codes, the E2M1 (fp4) and E4M3 (fp8) element
// codes and the E8M0 / E4M3 group scales. Shared by the portable kernels
// (quantized.cpp) and the tails of the SIMD ones.
#pragma once

#include <cmath>
#include <cstdint>

namespace mx::cpu::quant {

// Reads consecutive `bits`-bit codes from an LSB-first stream of uint32
// words: code k occupies stream bits [k * bits, (k + 1) * bits), stream bit j
// being bit j % 32 of word j / 32. Works for every width from 1 to 8.
class BitReader {
 public:
  BitReader(const uint32_t* words, int bits) : p_(words), bits_(bits), mask_((1u << bits) - 1) {}
  uint32_t next() {
    if (have_ < bits_) {
      buf_ |= static_cast<uint64_t>(*p_++) << have_;
      have_ += 32;
    }
    auto v = static_cast<uint32_t>(buf_) & mask_;
    buf_ >>= bits_;
    have_ -= bits_;
    return v;
  }

 private:
  const uint32_t* p_;
  int bits_;
  uint32_t mask_;
  uint64_t buf_ = 0;
  int have_ = 0;
};

// Writes codes in the same layout; flush() stores a partial last word.
class BitWriter {
 public:
  BitWriter(uint32_t* words, int bits) : p_(words), bits_(bits) {}
  void put(uint32_t v) {
    buf_ |= static_cast<uint64_t>(v) << have_;
    have_ += bits_;
    if (have_ >= 32) {
      *p_++ = static_cast<uint32_t>(buf_);
      buf_ >>= 32;
      have_ -= 32;
    }
  }
  void flush() {
    if (have_ > 0) *p_++ = static_cast<uint32_t>(buf_);
    have_ = 0;
    buf_ = 0;
  }

 private:
  uint32_t* p_;
  int bits_;
  uint64_t buf_ = 0;
  int have_ = 0;
};

// E2M1 values by code: the sign is bit 3.
inline constexpr float kFp4Values[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                         -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

// The code of the nearest E2M1 value; the first code wins a tie.
inline uint8_t fp4_encode(float v) {
  uint8_t best = 0;
  float dist = std::fabs(v - kFp4Values[0]);
  for (uint8_t i = 1; i < 16; ++i) {
    float d = std::fabs(v - kFp4Values[i]);
    if (d < dist) {
      dist = d;
      best = i;
    }
  }
  return best;
}

// E4M3 (the "fn" variant: bias 7, no infinities, 0x7f / 0xff are NaN).
inline float e4m3_decode(uint8_t b) {
  int e = (b >> 3) & 15, m = b & 7;
  float v;
  if (e == 0) {
    v = std::ldexp(static_cast<float>(m), -9);
  } else if (e == 15 && m == 7) {
    v = NAN;
  } else {
    v = std::ldexp(1.0f + static_cast<float>(m) / 8.0f, e - 7);
  }
  return (b & 0x80) ? -v : v;
}

// Rounds to the nearest E4M3 value (ties to an even mantissa), saturating at
// +-448; NaN gives 0x7f.
inline uint8_t e4m3_encode(float v) {
  if (std::isnan(v)) return 0x7f;
  uint8_t sign = std::signbit(v) ? 0x80 : 0;
  float a = std::fabs(v);
  if (a >= 448.0f) return sign | 0x7e;
  int code;
  if (a < 0.015625f) {  // below 2^-6: subnormal steps of 2^-9 (8 rounds up to the first normal)
    code = static_cast<int>(std::nearbyint(std::ldexp(a, 9)));
  } else {
    int e;
    std::frexp(a, &e);  // a = f * 2^e with f in [0.5, 1)
    e -= 1;             // a = 1.x * 2^e
    int m = static_cast<int>(std::nearbyint((std::ldexp(a, -e) - 1.0f) * 8.0f));
    if (m == 8) {
      m = 0;
      ++e;
    }
    code = ((e + 7) << 3) | m;
    if (code > 0x7e) code = 0x7e;
  }
  return static_cast<uint8_t>(sign | code);
}

// E8M0 group scale of the mx formats: 2^(byte - 127).
inline float e8m0_decode(uint8_t b) { return std::ldexp(1.0f, static_cast<int>(b) - 127); }

}  // namespace mx::cpu::quant
