// Which SIMD kernels the CPU backend runs. The library is compiled for a
// baseline (x86-64-v3: AVX2/FMA/F16C); wider kernels live in their own
// translation units and are only ever called after cpuid says the CPU (and the
// OS, through XCR0) supports them.
#pragma once

namespace mx::cpu {

enum class Isa {
  none,    // no SIMD kernels for this CPU/architecture: portable code paths only
  avx2,    // AVX2 + FMA + F16C
  avx512,  // AVX-512 F/BW/VL/DQ + BF16 (vdpbf16ps)
};

// The best ISA of this CPU, lowered (never raised) by the environment variable
// MLXCPP_CPU_ISA=avx2|avx512 read on first use. An unknown value throws
// std::invalid_argument naming the variable.
Isa isa();
// Whether this CPU and OS can run kernels of `want`.
bool isa_supported(Isa want);
// Test hook: makes the kernels of `want` the active ones when supported
// (otherwise the best supported one below it) and returns the ISA now active.
Isa set_isa(Isa want);
const char* isa_name(Isa i);

}  // namespace mx::cpu
