// Basic layers (MLX's nn.Linear, nn.Embedding, nn.RMSNorm, nn.LayerNorm), with
// MLX's parameter names and initialisation, so checkpoints load by name.
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/nn/module.h"

namespace mx::nn {

// What a model calls on its projections, so that a float Linear and a QuantizedLinear (or an
// adapter wrapping either) are interchangeable in the module tree.
class LinearLayer : public Module {
 public:
  virtual array operator()(const array& x) const = 0;
};

// Token lookup plus the tied output projection; Embedding and QuantizedEmbedding implement it.
class EmbeddingLayer : public Module {
 public:
  // Rows for integer indices of any shape: result shape indices.shape + [dims].
  virtual array operator()(const array& indices) const = 0;
  // x @ table.T: the embedding used as an output projection (tied input/output weights).
  virtual array as_linear(const array& x) const = 0;
};

// y = x @ weight.T + bias; "weight" [output_dims, input_dims], "bias" [output_dims].
// Initialised uniform in [-1/sqrt(input_dims), 1/sqrt(input_dims)] (weight and bias).
class Linear : public LinearLayer {
 public:
  Linear(int input_dims, int output_dims, bool bias = true, Dtype dtype = float32,
         const std::optional<array>& key = std::nullopt);
  array operator()(const array& x) const override;

  const array& weight() const { return param("weight"); }
  bool has_bias() const { return has_param("bias"); }
  int input_dims() const { return weight().shape(1); }
  int output_dims() const { return weight().shape(0); }
};

// Several linear layers applied to one input (a layer's q/k/v projections, an
// MLP's gate and up), results in order. When all are float Linear layers without
// biases they go through fast::grouped_linear (one pass over all their weights
// when decoding); quantized ones without biases that share one affine spec
// through grouped_quantized_matmul (likewise); otherwise each is called in turn.
std::vector<array> apply_linears(const std::vector<const LinearLayer*>& layers, const array& x);

// fast::gelu_approx_mul(gate(x), up(x)) (a gated MLP's tanh GELU): quantized layers that
// apply_linears would group go through quantized_geglu (on the GPU one launch for a decode
// step, the activation applied as the products are stored).
array apply_geglu(const LinearLayer& gate, const LinearLayer& up, const array& x);

// fast::residual_rms_norm(residual, y, y_weight, x_weight, eps) and apply_linears(layers) of its
// normed output: {h, the layers' outputs...}. Quantized layers that apply_linears would group
// go through one residual_norm_quantized_matmul (on the GPU, for one row, one launch).
std::vector<array> residual_norm_linears(const array& residual, const array& y,
                                         const array& y_weight, const array& x_weight, float eps,
                                         const std::vector<const LinearLayer*>& layers);

// fast::residual_rms_norm(residual, y, y_weight, x_weight, eps) and apply_geglu(gate, up) of its
// normed output: {h, gelu(gate(x)) * up(x)}. Quantized layers go through one
// residual_norm_quantized_matmul (on the GPU, for one row, one launch for the norms and both
// products).
std::pair<array, array> residual_norm_geglu(const array& residual, const array& y,
                                            const array& y_weight, const array& x_weight, float eps,
                                            const LinearLayer& gate, const LinearLayer& up);

// A lookup table: "weight" [num_embeddings, dims], initialised normal(0, 1/sqrt(dims)).
class Embedding : public EmbeddingLayer {
 public:
  Embedding(int num_embeddings, int dims, Dtype dtype = float32,
            const std::optional<array>& key = std::nullopt);
  // Rows of weight for integer indices of any shape: result shape indices.shape + [dims].
  array operator()(const array& indices) const override;
  // x @ weight.T: the embedding used as an output projection (tied input/output weights).
  array as_linear(const array& x) const override;

  const array& weight() const { return param("weight"); }
  int num_embeddings() const { return weight().shape(0); }
  int dims() const { return weight().shape(1); }
};

// x / sqrt(mean(x^2) + eps) * weight over the last axis; "weight" [dims], ones.
class RMSNorm : public Module {
 public:
  explicit RMSNorm(int dims, float eps = 1e-5f, Dtype dtype = float32);
  array operator()(const array& x) const;
  float eps() const { return eps_; }

 private:
  float eps_;
};

// (x - mean) / sqrt(var + eps) * weight + bias over the last axis. With affine,
// "weight" [dims] (ones) and, with bias, "bias" [dims] (zeros).
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int dims, float eps = 1e-5f, bool affine = true, bool bias = true,
                     Dtype dtype = float32);
  array operator()(const array& x) const;
  float eps() const { return eps_; }

 private:
  float eps_;
};

}  // namespace mx::nn
