// CPU kernels of fast::rms_norm_f32 and fast::gelu_approx_mul: each element is
// read once in its own dtype, computed in float32 and rounded once (the
// activation of gelu_approx_mul is rounded to the input dtype before the
// product, as the unfused graph does).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "mlxcpp/mx/backend/cpu/fast_common.h"
#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/primitives/fast.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx::fast {

namespace {

constexpr size_t kGrainElems = size_t{1} << 14;

// libm's tanhf took 40 us of one core per 2048-wide Gemma 3 270M MLP row,
// ~15 % of a 1B 4-bit decode step's CPU time.
using V8 = cpu_detail::V8;

using U8 = uint32_t __attribute__((vector_size(32)));
using H8 = uint16_t __attribute__((vector_size(16)));

inline V8 load_bf16(const bfloat16_t* p) {
  H8 h;
  std::memcpy(&h, p, sizeof(h));
  const U8 u = __builtin_convertvector(h, U8) << 16;
  V8 f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// bfloat16_t::from_float's rounding (nearest even, NaN kept a quiet NaN),
// as the top 16 bits of each lane.
inline U8 bf16_bits(V8 f) {
  U8 u;
  std::memcpy(&u, &f, sizeof(u));
  const U8 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return f != f ? ((u >> 16) | 0x40u) : rounded;
}

// f rounded to bfloat16, kept as float32.
inline V8 round_bf16(V8 f) {
  const U8 u = bf16_bits(f) << 16;
  V8 r;
  std::memcpy(&r, &u, sizeof(r));
  return r;
}

inline void store_bf16(bfloat16_t* p, V8 f) {
  const H8 h = __builtin_convertvector(bf16_bits(f), H8);
  std::memcpy(static_cast<void*>(p), &h, sizeof(h));
}

// gelu with the tanh approximation, 0.5 x (1 + tanh(u)), written as
// x / (1 + exp(-2u)) (the same function; no cancellation for x << 0).
inline V8 gelu_tanh8(V8 x) {
  using cpu_detail::exp8;
  using cpu_detail::splat;
  const V8 u = splat(0.7978845608f) * (x + splat(0.044715f) * x * x * x);
  return x / (splat(1.0f) + exp8(splat(-2.0f) * u));
}

}  // namespace

void RMSNormF32::eval_cpu(const std::vector<array>& inputs, array& out) {
  array x = cpu::ensure_row_contiguous(inputs[0]);
  array w = cpu::ensure_row_contiguous(inputs[1]);
  cpu::allocate_row_contiguous(out);
  if (out.size() == 0) return;
  const int d = x.shape(-1);
  const size_t rows = x.size() / d;
  const float* wp = w.data<float>();
  dispatch_float(out.dtype(), "rms_norm_f32", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, double>) {
      throw std::invalid_argument("[rms_norm_f32] float64 input takes the composed path");
    } else {
      const T* xp = x.data<T>();
      T* op = out.data<T>();
      const float eps = eps_;
      scheduler::parallel_for(rows, std::max<size_t>(1, kGrainElems / d), [&](size_t b, size_t e) {
        for (size_t r = b; r < e; ++r) {
          const T* xr = xp + r * d;
          T* yr = op + r * d;
          const float ss = cpu_detail::lane_sum<float>(d, [&](int i) {
            float v = static_cast<float>(xr[i]);
            return v * v;
          });
          const float n = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
          for (int i = 0; i < d; ++i) yr[i] = static_cast<T>(static_cast<float>(xr[i]) * n * wp[i]);
        }
      });
    }
  });
}

void GeluApproxMul::eval_cpu(const std::vector<array>& inputs, array& out) {
  array g = cpu::ensure_row_contiguous(inputs[0]);
  array u = cpu::ensure_row_contiguous(inputs[1]);
  cpu::allocate_row_contiguous(out);
  const size_t n = out.size();
  if (n == 0) return;
  dispatch_float(out.dtype(), "gelu_approx_mul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, double>) {
      throw std::invalid_argument("[gelu_approx_mul] float64 input takes the composed path");
    } else {
      const T* gp = g.data<T>();
      const T* up = u.data<T>();
      T* op = out.data<T>();
      scheduler::parallel_for(n, kGrainElems, [&](size_t b, size_t e) {
        size_t i = b;
        if constexpr (std::is_same_v<T, bfloat16_t>) {
          // bfloat16 in and out in vectors too: rounding each element on
          // its own (with its NaN test) cost more than the activation.
          for (; i + 8 <= e; i += 8) {
            const V8 act = round_bf16(gelu_tanh8(load_bf16(gp + i)));
            store_bf16(op + i, act * load_bf16(up + i));
          }
        }
        for (; i + 8 <= e; i += 8) {
          V8 x;
          for (int j = 0; j < 8; ++j) x[j] = static_cast<float>(gp[i + j]);
          const V8 act = gelu_tanh8(x);
          for (int j = 0; j < 8; ++j) {
            const T a = static_cast<T>(act[j]);
            op[i + j] = static_cast<T>(static_cast<float>(a) * static_cast<float>(up[i + j]));
          }
        }
        if (i < e) {
          V8 x{};
          for (size_t j = 0; i + j < e; ++j) x[j] = static_cast<float>(gp[i + j]);
          const V8 act = gelu_tanh8(x);
          for (size_t j = 0; i + j < e; ++j) {
            const T a = static_cast<T>(act[j]);
            op[i + j] = static_cast<T>(static_cast<float>(a) * static_cast<float>(up[i + j]));
          }
        }
      });
    }
  });
}

}  // namespace mx::fast
