#include "mlxcpp/nn/layers.h"

#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>

#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/quantized.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/nn/quantized.h"

namespace mx::nn {

namespace {

void check_dims(const char* layer, const char* what, int v) {
  if (v <= 0) {
    throw std::invalid_argument(std::string(layer) + ": " + what + " must be positive, got " +
                                std::to_string(v));
  }
}

void check_last_axis(const char* layer, const array& x, int dims) {
  if (x.ndim() == 0 || x.shape(-1) != dims) {
    std::string s = "[";
    for (size_t i = 0; i < x.ndim(); ++i) s += (i ? ", " : "") + std::to_string(x.shape()[i]);
    throw std::invalid_argument(std::string(layer) + ": input of shape " + s +
                                "] must end in the layer's dimension " + std::to_string(dims));
  }
}

}  // namespace

Linear::Linear(int input_dims, int output_dims, bool bias, Dtype dtype,
               const std::optional<array>& key) {
  check_dims("Linear", "input_dims", input_dims);
  check_dims("Linear", "output_dims", output_dims);
  const float scale = static_cast<float>(std::sqrt(1.0 / input_dims));
  std::optional<array> kw = key, kb;
  if (key) std::tie(kw, kb) = random::split(*key);
  register_parameter("weight",
                     random::uniform(-scale, scale, {output_dims, input_dims}, dtype, kw));
  if (bias) register_parameter("bias", random::uniform(-scale, scale, {output_dims}, dtype, kb));
}

array Linear::operator()(const array& x) const {
  check_last_axis("Linear", x, input_dims());
  if (has_bias()) return addmm(param("bias"), x, transpose(weight()));
  return matmul(x, transpose(weight()));
}

namespace {

// Quantized layers without a bias that share one affine spec and input size go through one
// grouped_quantized_matmul (one launch per decode step on the GPU); nullopt otherwise.
std::optional<std::vector<array>> apply_quantized(const std::vector<const LinearLayer*>& layers,
                                                  const array& x) {
  std::vector<array> w, scales, biases;
  const QuantizedLinear* first = nullptr;
  for (const LinearLayer* layer : layers) {
    const auto* q = dynamic_cast<const QuantizedLinear*>(layer);
    if (!q || q->has_bias() || q->spec().mode != "affine") return std::nullopt;
    if (first && (q->spec() != first->spec() || q->input_dims() != first->input_dims())) {
      return std::nullopt;
    }
    if (!first) first = q;
    w.push_back(q->param("weight"));
    scales.push_back(q->param("scales"));
    biases.push_back(q->param("biases"));
  }
  if (x.ndim() == 0 || x.shape(-1) != first->input_dims()) return std::nullopt;
  return grouped_quantized_matmul(x, w, scales, biases, first->spec().group_size,
                                  first->spec().bits);
}

}  // namespace

std::vector<array> apply_linears(const std::vector<const LinearLayer*>& layers, const array& x) {
  if (!layers.empty()) {
    if (auto out = apply_quantized(layers, x)) return std::move(*out);
  }
  std::vector<array> weights;
  for (const LinearLayer* layer : layers) {
    const auto* l = dynamic_cast<const Linear*>(layer);
    if (!l || l->has_bias()) {
      std::vector<array> out;
      for (const LinearLayer* m : layers) out.push_back((*m)(x));
      return out;
    }
    check_last_axis("Linear", x, l->input_dims());
    weights.push_back(l->weight());
  }
  return fast::grouped_linear(x, weights);
}

Embedding::Embedding(int num_embeddings, int dims, Dtype dtype, const std::optional<array>& key) {
  check_dims("Embedding", "num_embeddings", num_embeddings);
  check_dims("Embedding", "dims", dims);
  const float scale = static_cast<float>(std::sqrt(1.0 / dims));
  register_parameter("weight", random::normal({num_embeddings, dims}, dtype, 0.0f, scale, key));
}

array Embedding::operator()(const array& indices) const {
  if (!issubdtype(indices.dtype(), Dtype::Category::integer)) {
    throw std::invalid_argument("Embedding: indices must be integers, got " +
                                dtype_name(indices.dtype()));
  }
  return take(weight(), indices, 0);
}

array Embedding::as_linear(const array& x) const {
  check_last_axis("Embedding.as_linear", x, dims());
  return matmul(x, transpose(weight()));
}

RMSNorm::RMSNorm(int dims, float eps, Dtype dtype) : eps_(eps) {
  check_dims("RMSNorm", "dims", dims);
  register_parameter("weight", ones({dims}, dtype));
}

array RMSNorm::operator()(const array& x) const { return fast::rms_norm(x, param("weight"), eps_); }

LayerNorm::LayerNorm(int dims, float eps, bool affine, bool bias, Dtype dtype) : eps_(eps) {
  check_dims("LayerNorm", "dims", dims);
  if (affine) {
    register_parameter("weight", ones({dims}, dtype));
    if (bias) register_parameter("bias", zeros({dims}, dtype));
  }
}

array LayerNorm::operator()(const array& x) const {
  std::optional<array> w, b;
  if (has_param("weight")) w = param("weight");
  if (has_param("bias")) b = param("bias");
  return fast::layer_norm(x, w, b, eps_);
}

}  // namespace mx::nn
