// Runtime ISA detection through cpuid and xgetbv (compiler-independent, unlike
// __builtin_cpu_supports, whose feature names vary between GCC and Clang).
#include "mlxcpp/mx/backend/cpu/isa.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace mx::cpu {
namespace {

#if defined(__x86_64__) || defined(__i386__)
uint64_t xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t{hi} << 32) | lo;
}

Isa detect() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Isa::none;
  bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
  if (!osxsave || !avx) return Isa::none;
  uint64_t xcr = xcr0();
  if ((xcr & 0x6) != 0x6) return Isa::none;  // the OS saves XMM and YMM state
  if (__get_cpuid_max(0, nullptr) < 7) return Isa::none;
  __cpuid_count(7, 0, a, b, c, d);
  bool avx2 = b & (1u << 5);
  if (!(avx2 && fma && f16c)) return Isa::none;
  bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
  unsigned a1, b1, c1, d1;
  __cpuid_count(7, 1, a1, b1, c1, d1);
  bool bf16 = a1 & (1u << 5);
  bool zmm_state = (xcr & 0xe6) == 0xe6;  // opmask, ZMM0-15 upper halves, ZMM16-31
  if (f && dq && bw && vl && bf16 && zmm_state) return Isa::avx512;
  return Isa::avx2;
}
#else
Isa detect() { return Isa::none; }
#endif

Isa detected() {
  static const Isa d = detect();
  return d;
}

Isa from_env() {
  Isa best = detected();
  const char* s = std::getenv("MLXCPP_CPU_ISA");
  if (s == nullptr || *s == '\0') return best;
  std::string v(s);
  Isa want;
  if (v == "avx2") {
    want = Isa::avx2;
  } else if (v == "avx512") {
    want = Isa::avx512;
  } else {
    throw std::invalid_argument("MLXCPP_CPU_ISA='" + v + "': expected avx2 or avx512");
  }
  return want < best ? want : best;
}

std::atomic<int>& active() {
  static std::atomic<int> a{static_cast<int>(from_env())};
  return a;
}

}  // namespace

Isa isa() { return static_cast<Isa>(active().load(std::memory_order_relaxed)); }

bool isa_supported(Isa want) { return want <= detected(); }

Isa set_isa(Isa want) {
  Isa got = want < detected() ? want : detected();
  active().store(static_cast<int>(got));
  return got;
}

const char* isa_name(Isa i) {
  switch (i) {
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    default:
      return "none";
  }
}

}  // namespace mx::cpu
