// Device-side helpers of the CUDA kernels: the element types behind each
// Dtype, conversions, and strided indexing over collapsed dims.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/backend/cuda/device.h"
#include "mlxcpp/mx/dtype.h"

namespace mx::cuda {

template <typename T>
struct Tag {
  using type = T;
};

// complex64 on the device: two floats laid out as std::complex<float>. Plain
// (trivially constructible) so that it can live in shared memory. It and its
// functions (complex.cuh) live in their own namespace, found by argument-
// dependent lookup, so that they never hide ::sqrt and kin for real types.
namespace cplx {
struct alignas(8) cfloat {
  float re, im;
  cfloat() = default;
  __host__ __device__ constexpr explicit cfloat(float r, float i = 0.0f) : re(r), im(i) {}
};
__device__ __forceinline__ cfloat operator+(cfloat a, cfloat b) {
  return cfloat(a.re + b.re, a.im + b.im);
}
__device__ __forceinline__ cfloat operator-(cfloat a, cfloat b) {
  return cfloat(a.re - b.re, a.im - b.im);
}
__device__ __forceinline__ cfloat operator-(cfloat a) { return cfloat(-a.re, -a.im); }
__device__ __forceinline__ cfloat operator*(cfloat a, cfloat b) {
  return cfloat(a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re);
}
__device__ __forceinline__ bool operator==(cfloat a, cfloat b) {
  return a.re == b.re && a.im == b.im;
}
__device__ __forceinline__ bool operator!=(cfloat a, cfloat b) { return !(a == b); }
}  // namespace cplx
using cplx::cfloat;

template <typename T>
inline constexpr bool is_complex_v = std::is_same_v<T, cfloat>;

template <typename T>
inline constexpr bool is_half_v = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;
template <typename T>
inline constexpr bool is_float_v = is_half_v<T> || std::is_floating_point_v<T>;

// 16-bit floats compute in float; everything else in its own type.
template <typename T>
using compute_t = std::conditional_t<is_half_v<T>, float, T>;

template <typename To, typename From>
__device__ __forceinline__ To cast_to(From x) {
  if constexpr (std::is_same_v<To, From>) {
    return x;
  } else if constexpr (is_complex_v<From>) {
    // complex to real keeps the real part (astype's rule); to bool tests both.
    if constexpr (std::is_same_v<To, bool>) {
      return x.re != 0.0f || x.im != 0.0f;
    } else {
      return cast_to<To>(x.re);
    }
  } else if constexpr (is_complex_v<To>) {
    return cfloat(cast_to<float>(x), 0.0f);
  } else if constexpr (is_half_v<From>) {
    return cast_to<To>(static_cast<float>(x));
  } else if constexpr (std::is_same_v<To, bool>) {
    return x != From(0);
  } else if constexpr (is_half_v<To>) {
    return To(static_cast<float>(x));
  } else if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>) {
    // Out-of-range floats wrap through int64 as on x86 CPUs (and NumPy there),
    // where the GPU's own conversion would saturate.
    if constexpr (sizeof(To) < 8) {
      return static_cast<To>(static_cast<int64_t>(x));
    } else if constexpr (std::is_unsigned_v<To>) {
      return x < From(0) ? static_cast<To>(static_cast<int64_t>(x)) : static_cast<To>(x);
    } else {
      return static_cast<To>(x);
    }
  } else {
    return static_cast<To>(x);
  }
}

// x < 0 without a (warned) pointless comparison for unsigned types.
template <typename T>
__device__ __forceinline__ bool is_negative(T x) {
  if constexpr (std::is_unsigned_v<T> || std::is_same_v<T, bool>) {
    return false;
  } else {
    return x < T(0);
  }
}

// Calls f(Tag<T>{}) with T the device element type of `d`, for every real
// dtype; complex64 throws naming the op (dispatch_any covers it too).
template <typename F>
void dispatch(Dtype d, const char* op, F&& f) {
  switch (d.val) {
    case Dtype::Val::bool_:
      return f(Tag<bool>{});
    case Dtype::Val::uint8:
      return f(Tag<uint8_t>{});
    case Dtype::Val::uint16:
      return f(Tag<uint16_t>{});
    case Dtype::Val::int16:
      return f(Tag<int16_t>{});
    case Dtype::Val::uint32:
      return f(Tag<uint32_t>{});
    case Dtype::Val::uint64:
      return f(Tag<uint64_t>{});
    case Dtype::Val::int8:
      return f(Tag<int8_t>{});
    case Dtype::Val::int32:
      return f(Tag<int32_t>{});
    case Dtype::Val::int64:
      return f(Tag<int64_t>{});
    case Dtype::Val::float16:
      return f(Tag<__half>{});
    case Dtype::Val::bfloat16:
      return f(Tag<__nv_bfloat16>{});
    case Dtype::Val::float32:
      return f(Tag<float>{});
    case Dtype::Val::float64:
      return f(Tag<double>{});
    default:
      throw std::invalid_argument(unsupported_dtype(op, d));
  }
}

// Every dtype, complex64 as cfloat. For kernels that either move elements
// without looking at them or guard their arithmetic per type.
template <typename F>
void dispatch_any(Dtype d, const char* op, F&& f) {
  if (d == complex64) return f(Tag<cfloat>{});
  dispatch(d, op, std::forward<F>(f));
}

// Floating types only.
template <typename F>
void dispatch_float(Dtype d, const char* op, F&& f) {
  switch (d.val) {
    case Dtype::Val::float16:
      return f(Tag<__half>{});
    case Dtype::Val::bfloat16:
      return f(Tag<__nv_bfloat16>{});
    case Dtype::Val::float32:
      return f(Tag<float>{});
    case Dtype::Val::float64:
      return f(Tag<double>{});
    default:
      throw std::invalid_argument(unsupported_dtype(op, d));
  }
}

template <typename T>
__device__ __forceinline__ T shfl_down(T v, int offset) {
  if constexpr (is_complex_v<T>) {
    return cfloat(__shfl_down_sync(0xffffffffu, v.re, offset),
                  __shfl_down_sync(0xffffffffu, v.im, offset));
  } else if constexpr (std::is_integral_v<T> && sizeof(T) < 4) {
    return static_cast<T>(__shfl_down_sync(0xffffffffu, static_cast<int>(v), offset));
  } else {
    return __shfl_down_sync(0xffffffffu, v, offset);
  }
}

// Combines one value per thread of the block; every thread gets the result.
template <typename T, typename F>
__device__ T block_reduce(T v, T identity, F f) {
  __shared__ T smem[32];
  for (int o = 16; o > 0; o >>= 1) v = f(v, shfl_down(v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // smem may still be read from a previous call
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int nwarps = (blockDim.x + 31) >> 5;
    v = lane < nwarps ? smem[lane] : identity;
    for (int o = 16; o > 0; o >>= 1) v = f(v, shfl_down(v, o));
    if (lane == 0) smem[0] = v;
  }
  __syncthreads();
  return smem[0];
}

// Programmatic dependent launch (sm_90): lets a kernel launched after this one
// as a programmatic dependent (the few-row products, gemv.h) start now, so it
// can issue its weight prefetches while this one still runs. The dependent
// waits for this kernel's completion before it reads anything this one writes
// (griddepcontrol.wait), so calling this first thing is always safe; without
// such a dependent it does nothing.
__device__ __forceinline__ void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The other half of a programmatic dependent launch: in a kernel started by launch_dependent,
// waits until the kernels before it on the stream have completed and their writes are visible.
// Called before the kernel reads or writes anything they may touch; a no-op otherwise.
__device__ __forceinline__ void wait_for_prerequisites() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Asks L2 for `bytes` (a multiple of 16) from the 16-byte aligned p on (sm_90: the bulk copy
// engine; a hint, nothing on older devices). Before wait_for_prerequisites() this is safe on
// memory the previous kernel may still write: L2 is where the device's writes meet, so a
// prefetched line is never stale, unlike a register load issued that early.
__device__ __forceinline__ void l2_prefetch(const void* p, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#endif
}

// Asks L2 for the line that holds p (any alignment; same safety as l2_prefetch).
__device__ __forceinline__ void l2_prefetch_line(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

// Whether the current device is of compute capability 9.0 or later (Hopper: programmatic
// dependent launches, thread-block clusters); asked once.
inline bool is_sm90_or_later() {
  static const bool yes = [] {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return major >= 9;
  }();
  return yes;
}

// Whether `var` is set to "0" in the environment (a feature switched off for comparison).
inline bool switched_off(const char* var) {
  const char* e = std::getenv(var);
  return e && std::string(e) == "0";
}

// Whether kernels may be launched as programmatic dependents: compute capability 9.0 on, and
// not switched off with MLXCPP_PDL=0 (every launch then waits for the previous kernel's end).
inline bool dependent_launch_enabled() {
  static const bool on = !switched_off("MLXCPP_PDL") && is_sm90_or_later();
  return on;
}

// Launches `kernel` on `s` as a programmatic dependent of the kernel before it: it is scheduled
// while that one finishes (once all its blocks have started, or asked for it with
// allow_dependent_launch), so its launch and prologue overlap the other's tail instead of
// following it. The kernel must call wait_for_prerequisites() before it touches memory the
// earlier work uses. A decode step is a few hundred small kernels: this is their gap.
// `smem`: bytes of dynamic shared memory.
template <typename... P, typename... A>
void launch_dependent(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                      const char* what, A&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = dependent_launch_enabled() ? 1 : 0;
  check(cudaLaunchKernelEx(&cfg, kernel, static_cast<P>(std::forward<A>(args))...), what);
}

template <typename... P, typename... A>
void launch_dependent(void (*kernel)(P...), dim3 grid, dim3 block, cudaStream_t s, const char* what,
                      A&&... args) {
  launch_dependent(kernel, grid, block, size_t{0}, s, what, std::forward<A>(args)...);
}

// cos and sin of a double-precision angle in float: the angle is reduced by 2 pi
// in double (exact for any angle RoPE meets: 2 pi carried in two parts), then
// sincosf of the remainder in [-pi, pi], which takes sincosf's fast path. As
// accurate as rounding a double sincos to float within a couple of ulps, at a
// fraction of its cost.
__device__ __forceinline__ void sincos_reduced(double theta, float* s, float* c) {
  constexpr double kInv2Pi = 0.15915494309189535;
  constexpr double k2PiHi = 6.283185307179586;
  constexpr double k2PiLo = 2.4492935982947064e-16;
  const double n = rint(theta * kInv2Pi);
  const double r = fma(-n, k2PiLo, fma(-n, k2PiHi, theta));
  sincosf(static_cast<float>(r), s, c);
}

// The Dtype of a device element type.
template <typename T>
constexpr Dtype dtype_of() {
  if constexpr (std::is_same_v<T, bool>)
    return bool_;
  else if constexpr (std::is_same_v<T, uint8_t>)
    return uint8;
  else if constexpr (std::is_same_v<T, uint16_t>)
    return uint16;
  else if constexpr (std::is_same_v<T, int16_t>)
    return int16;
  else if constexpr (std::is_same_v<T, uint32_t>)
    return uint32;
  else if constexpr (std::is_same_v<T, uint64_t>)
    return uint64;
  else if constexpr (std::is_same_v<T, int8_t>)
    return int8;
  else if constexpr (std::is_same_v<T, int32_t>)
    return int32;
  else if constexpr (std::is_same_v<T, int64_t>)
    return int64;
  else if constexpr (std::is_same_v<T, __half>)
    return float16;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return bfloat16;
  else if constexpr (std::is_same_v<T, float>)
    return float32;
  else if constexpr (std::is_same_v<T, double>)
    return float64;
  else if constexpr (is_complex_v<T>)
    return complex64;
  else
    static_assert(sizeof(T) == 0, "no Dtype for this type");
}

// Shape and per-operand strides after collapsing, passed to kernels by value.
template <int N>
struct Layout {
  int ndim = 0;
  int32_t shape[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};
  bool contiguous = false;  // every operand row-contiguous: flat index == offset

  // Element offsets of operand k for flat row-major index i.
  __device__ __forceinline__ int64_t offset(int k, int64_t i) const {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      int64_t q = i / shape[d];
      off += (i - q * shape[d]) * strides[k][d];
      i = q;
    }
    return off;
  }
};

// Collapses `shape` under the operands' strides; throws (naming `op`) when
// more than kMaxDims dims remain.
template <int N>
Layout<N> make_layout(const Shape& shape, const std::vector<Strides>& strides, const char* op) {
  auto [cs, cst] = cpu::collapse_contiguous_dims(shape, strides);
  Layout<N> l;
  if (cs.size() > static_cast<size_t>(kMaxDims)) {
    throw std::invalid_argument(std::string("[") + op + "] the GPU kernel handles at most " +
                                std::to_string(kMaxDims) + " non-mergeable dims, got " +
                                std::to_string(cs.size()));
  }
  l.ndim = static_cast<int>(cs.size());
  bool contig = true;
  for (int d = 0; d < l.ndim; ++d) l.shape[d] = cs[d];
  for (int k = 0; k < N; ++k) {
    int64_t expect = 1;
    for (int d = l.ndim - 1; d >= 0; --d) {
      l.strides[k][d] = cst[k][d];
      if (cs[d] != 1 && cst[k][d] != expect) contig = false;
      expect *= cs[d];
    }
  }
  l.contiguous = contig;
  return l;
}

}  // namespace mx::cuda
