// Quantized layers (MLX's nn.QuantizedLinear, nn.QuantizedEmbedding) and nn.quantize, which
// swaps the Linear and Embedding leaves of a module tree for them. Parameter names are MLX's
// ("weight" packed uint32, "scales", "biases" for affine, the float Linear "bias"), so
// mlx-community checkpoints load by name (formats.md §3.1).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/nn/layers.h"
#include "mlxcpp/nn/module.h"

namespace mx::nn {

// How one layer is quantized (an entry of config.json "quantization").
struct QuantizationSpec {
  int group_size = 64;
  int bits = 4;
  std::string mode = "affine";
  bool operator==(const QuantizationSpec&) const = default;
};

// MLX's defaults per mode: affine g64/4 bits, mxfp4 g32/4, nvfp4 g16/4, mxfp8 g32/8. Unset
// fields take the mode's default; throws naming the mode when it is unknown.
QuantizationSpec quantization_defaults(const std::string& mode,
                                       std::optional<int> group_size = std::nullopt,
                                       std::optional<int> bits = std::nullopt);

// y = x @ dequantize(weight).T + bias, computed by quantized_matmul.
class QuantizedLinear : public LinearLayer {
 public:
  // Zero-filled parameters of the quantized shapes (to be loaded).
  QuantizedLinear(int input_dims, int output_dims, bool bias, const QuantizationSpec& spec,
                  Dtype dtype = float32);
  // Quantizes a float Linear (its bias is kept as is).
  static std::shared_ptr<QuantizedLinear> from_linear(const Linear& linear,
                                                      const QuantizationSpec& spec);
  array operator()(const array& x) const override;
  // A float Linear holding the dequantized weight (in the scales' dtype for affine).
  std::shared_ptr<Linear> to_linear() const;

  const QuantizationSpec& spec() const { return spec_; }
  int input_dims() const { return input_dims_; }
  int output_dims() const { return param("weight").shape(0); }
  bool has_bias() const { return has_param("bias"); }

 private:
  QuantizedLinear(const QuantizationSpec& spec, int input_dims);
  std::optional<array> biases() const;
  QuantizationSpec spec_;
  int input_dims_;
};

// A quantized lookup table: rows of weight/scales/biases are gathered, then dequantized;
// as_linear serves a tied output projection through quantized_matmul.
class QuantizedEmbedding : public EmbeddingLayer {
 public:
  QuantizedEmbedding(int num_embeddings, int dims, const QuantizationSpec& spec,
                     Dtype dtype = float32);
  static std::shared_ptr<QuantizedEmbedding> from_embedding(const Embedding& embedding,
                                                            const QuantizationSpec& spec);
  array operator()(const array& indices) const override;
  array as_linear(const array& x) const override;
  std::shared_ptr<Embedding> to_embedding() const;

  const QuantizationSpec& spec() const { return spec_; }
  int num_embeddings() const { return param("weight").shape(0); }
  int dims() const { return dims_; }

 private:
  QuantizedEmbedding(const QuantizationSpec& spec, int dims);
  std::optional<array> biases() const;
  QuantizationSpec spec_;
  int dims_;
};

// Decides, for a quantizable leaf (Linear or Embedding) at a dotted path, how to quantize it:
// nullopt leaves it in floating point.
using QuantizePredicate =
    std::function<std::optional<QuantizationSpec>(const std::string& path, const Module& module)>;

// Replaces the Linear / Embedding leaves of `model` by quantized ones, in place. Without a
// predicate every leaf whose input dimension (last weight axis) is a multiple of the group size
// is quantized with `spec`; with one, the predicate decides each leaf and its spec. Already
// quantized leaves are left alone. Returns the number of layers quantized.
// With quantize_weights false the new layers hold zero-filled parameters of the quantized
// shapes instead (a loader that fills them from a checkpoint right after).
int quantize(Module& model, const QuantizationSpec& spec = {},
             const QuantizePredicate& predicate = nullptr, bool quantize_weights = true);

// Replaces every QuantizedLinear / QuantizedEmbedding by its float equivalent (dequantized
// weights). Returns the number of layers replaced.
int dequantize(Module& model);

// Bits per parameter of the whole tree as mlx-lm reports it: packed weights count as
// weight.size * 32 / bits parameters (uint8 fp scales included in the bytes).
double bits_per_weight(const Module& model);

}  // namespace mx::nn
