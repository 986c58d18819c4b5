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

// The parameters of quantized layers without a bias that share one affine spec and input size
// (`dims`, the input's last axis): what grouped_quantized_matmul takes. nullopt otherwise.
struct Grouped {
  std::vector<array> w, scales, biases;
  int group_size = 0, bits = 0;
};
std::optional<Grouped> grouped_params(const std::vector<const LinearLayer*>& layers, int dims) {
  Grouped g;
  const QuantizedLinear* first = nullptr;
  for (const LinearLayer* layer : layers) {
    const auto* q = dynamic_cast<const QuantizedLinear*>(layer);
    if (!q || q->has_bias() || q->spec().mode != "affine") return std::nullopt;
    if (first && (q->spec() != first->spec() || q->input_dims() != first->input_dims())) {
      return std::nullopt;
    }
    if (!first) first = q;
    g.w.push_back(q->param("weight"));
    g.scales.push_back(q->param("scales"));
    g.biases.push_back(q->param("biases"));
  }
  if (!first || dims != first->input_dims()) return std::nullopt;
  g.group_size = first->spec().group_size;
  g.bits = first->spec().bits;
  return g;
}

int last_dim(const array& x) { return x.ndim() == 0 ? -1 : x.shape(-1); }

}  // namespace

std::vector<array> apply_linears(const std::vector<const LinearLayer*>& layers, const array& x) {
  // Quantized alike: one grouped_quantized_matmul (one launch a decode step on the GPU).
  if (auto g = grouped_params(layers, last_dim(x))) {
    return grouped_quantized_matmul(x, g->w, g->scales, g->biases, g->group_size, g->bits);
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

array apply_geglu(const LinearLayer& gate, const LinearLayer& up, const array& x) {
  if (auto g = grouped_params({&gate, &up}, last_dim(x))) {
    return quantized_geglu(x, g->w, g->scales, g->biases, g->group_size, g->bits);
  }
  auto gu = apply_linears({&gate, &up}, x);
  return fast::gelu_approx_mul(gu[0], gu[1]);
}

std::vector<array> residual_norm_linears(const array& residual, const array& y,
                                         const array& y_weight, const array& x_weight, float eps,
                                         const std::vector<const LinearLayer*>& layers) {
  if (auto g = grouped_params(layers, last_dim(residual))) {
    return residual_norm_quantized_matmul(residual, y, y_weight, x_weight, eps, g->w, g->scales,
                                          g->biases, g->group_size, g->bits, false);
  }
  auto [h, x] = fast::residual_rms_norm(residual, y, y_weight, x_weight, eps);
  std::vector<array> out{h};
  for (array& p : apply_linears(layers, x)) out.push_back(std::move(p));
  return out;
}

std::pair<array, array> residual_norm_geglu(const array& residual, const array& y,
                                            const array& y_weight, const array& x_weight, float eps,
                                            const LinearLayer& gate, const LinearLayer& up) {
  if (auto g = grouped_params({&gate, &up}, last_dim(residual))) {
    auto out = residual_norm_quantized_matmul(residual, y, y_weight, x_weight, eps, g->w, g->scales,
                                              g->biases, g->group_size, g->bits, true);
    return {out[0], out[1]};
  }
  auto [h, x] = fast::residual_rms_norm(residual, y, y_weight, x_weight, eps);
  return {h, apply_geglu(gate, up, x)};
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
