// CPU kernels of fast::rms_norm_f32 and fast::gelu_approx_mul: each element is
// read once in its own dtype, computed in float32 and rounded once (the
// activation of gelu_approx_mul is rounded to the input dtype before the
// product, as the unfused graph does).
#include <algorithm>
#include <cmath>
#include <numbers>

#include "mlxcpp/mx/backend/cpu/fast_common.h"
#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/primitives/fast.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx::fast {

namespace {

constexpr size_t kGrainElems = size_t{1} << 14;

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
      const float k = static_cast<float>(std::sqrt(2.0 / std::numbers::pi));
      scheduler::parallel_for(n, kGrainElems, [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) {
          const float x = static_cast<float>(gp[i]);
          const float inner = k * (x + 0.044715f * x * x * x);
          const T a = static_cast<T>(0.5f * x * (1.0f + std::tanh(inner)));
          op[i] = static_cast<T>(static_cast<float>(a) * static_cast<float>(up[i]));
        }
      });
    }
  });
}

}  // namespace mx::fast
