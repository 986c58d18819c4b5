#include "mlxcpp/nn/losses.h"

#include <stdexcept>

#include "mlxcpp/mx/ops.h"

namespace mx::nn {

namespace {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

array reduce_loss(const array& loss, const std::string& reduction) {
  if (reduction == "none") return loss;
  if (reduction == "mean") return mean(loss);
  if (reduction == "sum") return sum(loss);
  throw std::invalid_argument("loss: unknown reduction '" + reduction +
                              "' (expected none, mean or sum)");
}

array cross_entropy(const array& logits_in, const array& targets, int axis,
                    const std::string& reduction, const std::optional<array>& weights,
                    float label_smoothing) {
  const int nd = static_cast<int>(logits_in.ndim());
  const int ax = axis < 0 ? axis + nd : axis;
  if (ax < 0 || ax >= nd) {
    throw std::invalid_argument("cross_entropy: axis " + std::to_string(axis) +
                                " is out of range for logits of shape " +
                                shape_str(logits_in.shape()));
  }
  if (label_smoothing < 0.0f || label_smoothing >= 1.0f) {
    throw std::invalid_argument("cross_entropy: label_smoothing must be in [0, 1), got " +
                                std::to_string(label_smoothing));
  }
  array logits = (logits_in.dtype() == float16 || logits_in.dtype() == bfloat16)
                     ? astype(logits_in, float32)
                     : logits_in;
  const array lse = logsumexp(logits, ax);
  const bool indices = issubdtype(targets.dtype(), Dtype::Category::integer);
  Shape loss_shape = logits.shape();
  loss_shape.erase(loss_shape.begin() + ax);

  array loss = lse;
  if (indices) {
    if (targets.shape() != loss_shape) {
      throw std::invalid_argument("cross_entropy: class-index targets of shape " +
                                  shape_str(targets.shape()) + " do not match logits of shape " +
                                  shape_str(logits.shape()) + " without axis " +
                                  std::to_string(axis));
    }
    array score = squeeze(take_along_axis(logits, expand_dims(targets, ax), ax), ax);
    // (1 - s) * (lse - score) + s * (lse - mean(logits)): the smoothed target puts
    // s / C on every class and 1 - s more on the labelled one.
    const float s = label_smoothing;
    loss = lse - array(1.0f - s) * score;
    if (s > 0.0f) loss = loss - array(s) * mean(logits, ax);
  } else {
    if (targets.shape() != logits.shape()) {
      throw std::invalid_argument("cross_entropy: probability targets of shape " +
                                  shape_str(targets.shape()) + " do not match logits of shape " +
                                  shape_str(logits.shape()));
    }
    array t = astype(targets, float32);
    if (label_smoothing > 0.0f) {
      const float c = static_cast<float>(logits.shape(ax));
      t = t * array(1.0f - label_smoothing) + array(label_smoothing / c);
    }
    loss = negative(sum(t * (logits - expand_dims(lse, ax)), ax));
  }
  if (weights) {
    if (weights->shape() != loss.shape()) {
      throw std::invalid_argument("cross_entropy: weights of shape " + shape_str(weights->shape()) +
                                  " do not match the loss of shape " + shape_str(loss.shape()));
    }
    loss = loss * *weights;
  }
  return reduce_loss(loss, reduction);
}

array mse_loss(const array& predictions, const array& targets, const std::string& reduction) {
  if (predictions.shape() != targets.shape()) {
    throw std::invalid_argument("mse_loss: predictions of shape " + shape_str(predictions.shape()) +
                                " do not match targets of shape " + shape_str(targets.shape()));
  }
  return reduce_loss(square(predictions - targets), reduction);
}

}  // namespace mx::nn
