// Activation functions (MLX's mlx.nn functional activations). Each computes in
// the input's dtype, as MLX does (scalars take the input's dtype, so bfloat16
// stays bfloat16), except where a comment says otherwise.
// sigmoid, tanh and softmax share their names with mx:: ops, so inside namespace
// mx::nn an unqualified call is ambiguous (argument-dependent lookup finds both):
// write nn::sigmoid or mx::sigmoid.
#pragma once

#include <functional>
#include <string>

#include "mlxcpp/mx/array.h"

namespace mx::nn {

// x * Phi(x) = x * (1 + erf(x / sqrt(2))) / 2.
array gelu(const array& x);
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). 16-bit inputs are computed
// in float32 and cast back (see activations.cpp).
array gelu_approx(const array& x);
// The same function under the name Hugging Face configs use ("gelu_pytorch_tanh").
array gelu_tanh(const array& x);
// x * sigmoid(1.702 x).
array gelu_fast_approx(const array& x);
array silu(const array& x);  // x * sigmoid(x)
array relu(const array& x);
array relu6(const array& x);
array relu_squared(const array& x);
array leaky_relu(const array& x, float negative_slope = 0.01f);
array elu(const array& x, float alpha = 1.0f);
array celu(const array& x, float alpha = 1.0f);
array selu(const array& x);
array softplus(const array& x);  // log(1 + exp(x))
array softsign(const array& x);  // x / (1 + |x|)
array mish(const array& x);      // x * tanh(softplus(x))
array sigmoid(const array& x);
array tanh(const array& x);
array log_sigmoid(const array& x);  // -softplus(-x)
array hardswish(const array& x);    // x * min(max(x + 3, 0), 6) / 6
array hard_tanh(const array& x, float min_val = -1.0f, float max_val = 1.0f);
// Splits x in two halves a, b along axis and returns a * sigmoid(b).
array glu(const array& x, int axis = -1);
array softmax(const array& x, int axis = -1);
array log_softmax(const array& x, int axis = -1);

// The activation a Hugging Face config names in "hidden_act" / "hidden_activation"
// ("gelu", "gelu_pytorch_tanh", "gelu_new", "silu", "swish", "relu", ...); throws naming
// an unknown one.
std::function<array(const array&)> activation_by_name(const std::string& name);

}  // namespace mx::nn
