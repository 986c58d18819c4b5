// Loss functions (MLX's mlx.nn.losses).
#pragma once

#include <optional>
#include <string>

#include "mlxcpp/mx/array.h"

namespace mx::nn {

// Cross entropy of logits against targets along `axis`:
//  - integer targets are class indices with the logits' shape minus `axis`:
//    loss = logsumexp(logits) - logits[target];
//  - floating targets with the logits' shape are probabilities:
//    loss = -sum(targets * log_softmax(logits)).
// label_smoothing in [0, 1) mixes the one-hot target with the uniform distribution.
// weights (the loss's shape) multiply each loss before the reduction.
// reduction: "none" (one loss per position), "mean" or "sum".
// 16-bit logits are computed in float32 and the loss is float32: a summed
// perplexity over thousands of tokens would lose most digits in bfloat16.
array cross_entropy(const array& logits, const array& targets, int axis = -1,
                    const std::string& reduction = "none",
                    const std::optional<array>& weights = std::nullopt,
                    float label_smoothing = 0.0f);

// Mean squared error (predictions - targets)^2 with the reduction ("mean" by default, as MLX).
array mse_loss(const array& predictions, const array& targets,
               const std::string& reduction = "mean");

// Applies "none", "mean" or "sum" to a loss; throws naming any other reduction.
array reduce_loss(const array& loss, const std::string& reduction);

}  // namespace mx::nn
