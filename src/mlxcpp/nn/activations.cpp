#include "mlxcpp/nn/activations.h"

#include <cmath>
#include <numbers>
#include <stdexcept>

#include "mlxcpp/mx/ops.h"

namespace mx::nn {

namespace {

// A scalar in x's dtype: MLX's Python scalars are "weak" and never promote the
// array, while a C++ float would turn a bfloat16 computation into float32.
array sc(double v, const array& x) { return array(static_cast<float>(v), x.dtype()); }

bool is_half(Dtype d) { return d == float16 || d == bfloat16; }

}  // namespace

array gelu(const array& x) {
  return x * (sc(1.0, x) + mx::erf(x * sc(1.0 / std::numbers::sqrt2, x))) * sc(0.5, x);
}

array gelu_approx(const array& x) {
  // The cubic and the tanh argument lose several bits in bfloat16 (x^3 alone has
  // 8 significant bits), and Gemma's MLP multiplies this result by another
  // projection, so 16-bit inputs are computed in float32 and rounded once at the end.
  const array xf = is_half(x.dtype()) ? astype(x, float32) : x;
  const double k = std::sqrt(2.0 / std::numbers::pi);
  array inner = sc(k, xf) * (xf + sc(0.044715, xf) * xf * xf * xf);
  array y = sc(0.5, xf) * xf * (sc(1.0, xf) + mx::tanh(inner));
  return y.dtype() == x.dtype() ? y : astype(y, x.dtype());
}

array gelu_tanh(const array& x) { return gelu_approx(x); }

array gelu_fast_approx(const array& x) { return x * mx::sigmoid(sc(1.702, x) * x); }

array silu(const array& x) { return x * mx::sigmoid(x); }

array relu(const array& x) { return maximum(x, sc(0.0, x)); }

array relu6(const array& x) { return minimum(maximum(x, sc(0.0, x)), sc(6.0, x)); }

array relu_squared(const array& x) { return square(relu(x)); }

array leaky_relu(const array& x, float negative_slope) {
  return maximum(sc(negative_slope, x) * x, x);
}

array elu(const array& x, float alpha) {
  return where(greater(x, sc(0.0, x)), x, sc(alpha, x) * expm1(x));
}

array celu(const array& x, float alpha) {
  return maximum(x, sc(0.0, x)) + sc(alpha, x) * expm1(minimum(x, sc(0.0, x)) / sc(alpha, x));
}

array selu(const array& x) {
  // The constants of Klambauer et al. 2017 (self-normalising networks).
  return elu(x, 1.67326324f) * sc(1.05070098, x);
}

array softplus(const array& x) { return logaddexp(x, sc(0.0, x)); }

array softsign(const array& x) { return x / (sc(1.0, x) + abs(x)); }

array mish(const array& x) { return x * mx::tanh(softplus(x)); }

array sigmoid(const array& x) { return mx::sigmoid(x); }

array tanh(const array& x) { return mx::tanh(x); }

array log_sigmoid(const array& x) { return negative(softplus(negative(x))); }

array hardswish(const array& x) {
  return x * minimum(maximum(x + sc(3.0, x), sc(0.0, x)), sc(6.0, x)) / sc(6.0, x);
}

array hard_tanh(const array& x, float min_val, float max_val) {
  return minimum(maximum(x, sc(min_val, x)), sc(max_val, x));
}

array glu(const array& x, int axis) {
  const int ax = axis < 0 ? axis + static_cast<int>(x.ndim()) : axis;
  if (ax < 0 || ax >= static_cast<int>(x.ndim()) || x.shape(ax) % 2 != 0) {
    throw std::invalid_argument("glu: axis " + std::to_string(axis) +
                                " must exist and have an even size");
  }
  auto halves = split(x, 2, ax);
  return halves[0] * mx::sigmoid(halves[1]);
}

array softmax(const array& x, int axis) { return mx::softmax(x, axis); }

array log_softmax(const array& x, int axis) { return x - logsumexp(x, axis, true); }

std::function<array(const array&)> activation_by_name(const std::string& name) {
  // "gelu_new" and "gelu_fast" in transformers are the tanh form too;
  // "quick_gelu" is x * sigmoid(1.702 x).
  if (name == "gelu") return [](const array& x) { return gelu(x); };
  if (name == "gelu_pytorch_tanh" || name == "gelu_new" || name == "gelu_fast" ||
      name == "gelu_approx" || name == "gelu_tanh")
    return [](const array& x) { return gelu_approx(x); };
  if (name == "quick_gelu" || name == "gelu_fast_approx")
    return [](const array& x) { return gelu_fast_approx(x); };
  if (name == "silu" || name == "swish") return [](const array& x) { return silu(x); };
  if (name == "relu") return [](const array& x) { return relu(x); };
  if (name == "relu6") return [](const array& x) { return relu6(x); };
  if (name == "relu2" || name == "relu_squared")
    return [](const array& x) { return relu_squared(x); };
  if (name == "leaky_relu") return [](const array& x) { return leaky_relu(x); };
  if (name == "elu") return [](const array& x) { return elu(x); };
  if (name == "celu") return [](const array& x) { return celu(x); };
  if (name == "selu") return [](const array& x) { return selu(x); };
  if (name == "softplus") return [](const array& x) { return softplus(x); };
  if (name == "softsign") return [](const array& x) { return softsign(x); };
  if (name == "mish") return [](const array& x) { return mish(x); };
  if (name == "sigmoid") return [](const array& x) { return nn::sigmoid(x); };
  if (name == "tanh") return [](const array& x) { return nn::tanh(x); };
  if (name == "hardswish" || name == "hard_swish")
    return [](const array& x) { return hardswish(x); };
  throw std::invalid_argument("unknown activation '" + name + "'");
}

}  // namespace mx::nn
