// The tanh form of GELU times a second operand, one element, rounded where the
// unfused graph rounds: a = T(gelu(float(g))), then T(float(a) * float(u)).
// Shared by fast::gelu_approx_mul's kernel and the gate/up product's epilogue
// (quantized geglu), which must give the same values.
#pragma once

#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"

namespace mx::cuda {

template <typename T>
__device__ __forceinline__ T gelu_approx_mul_one(T g, T u) {
  const float k = 0.7978845608028654f;  // sqrt(2 / pi)
  const float x = cast_to<float>(g);
  const float inner = k * (x + 0.044715f * x * x * x);
  // tanh through double rounds correctly (tanhf is off by up to 2 ulps), as the Tanh kernel
  // does.
  const float t = static_cast<float>(tanh(static_cast<double>(inner)));
  const T a = cast_to<T>(0.5f * x * (1.0f + t));
  return cast_to<T>(cast_to<float>(a) * cast_to<float>(u));
}

}  // namespace mx::cuda
