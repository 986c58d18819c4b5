// Quantized checkpoints at the model level (formats.md §3): the `quantization` entry of
// config.json with its per-layer overrides, the loader's choice of layers, mlx-lm's mixed-bit
// recipes and quantize_model as mlx_lm.convert records it.
#pragma once

#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "mlxcpp/mx/io.h"
#include "mlxcpp/nn/quantized.h"

namespace lm {

class LanguageModel;

// config.json "quantization": the defaults plus per-layer entries keyed by module path; an
// entry of nullopt is a `false` (that layer stays in floating point).
struct QuantizationConfig {
  mx::nn::QuantizationSpec defaults;
  std::map<std::string, std::optional<mx::nn::QuantizationSpec>> layers;

  // The dict as mlx-lm writes it (group_size, bits, mode, then one key per layer).
  nlohmann::json to_json() const;
  // Parses a "quantization" dict; `where` names it in errors ("config.json: quantization").
  static QuantizationConfig from_json(const nlohmann::json& q, const std::string& where);
  // The quantization of a config.json: "quantization", else "quantization_config", else
  // text_config.quantization_config; nullopt when none. Foreign quantization_config dicts
  // (quant_method without bits/group_size: AWQ, GPTQ, fp8, ...) are refused naming the method.
  static std::optional<QuantizationConfig> from_model_config(const nlohmann::json& config,
                                                             const std::string& where);
};

// Replaces the Linear/Embedding leaves of a freshly built model by zero-filled quantized layers
// as a checkpoint holds them (mlx-lm's load_model predicate): a layer named in `q.layers` takes
// that entry; otherwise it is quantized, with the defaults, iff `<path>.scales` is among the
// (sanitized) weights. Layer keys are checkpoint paths and go through the model's sanitize.
// Returns the number of quantized layers.
int apply_checkpoint_quantization(LanguageModel& model, const QuantizationConfig& q,
                                  const mx::ArrayMap& weights);

// mlx-lm's --quant-predicate recipes mixed_2_6, mixed_3_4, mixed_3_6, mixed_4_6 (affine, the
// given group size): v_proj / v_a_proj / v_b_proj and down_proj of the first L/8, the last
// L/8 and every third layer in between get the high bits, lm_head always, the rest the low.
mx::nn::QuantizePredicate mixed_quant_predicate(const std::string& recipe, int num_layers,
                                                int group_size);

// Quantizes `model` in place as mlx_lm.convert does and returns the updated config.json:
// only leaves whose last weight dimension is a multiple of spec.group_size are considered;
// a predicate may decline a leaf or give it its own spec (recorded under its path). When the
// config already held a quantization, every newly quantized layer is recorded explicitly.
// "quantization" is mirrored into "quantization_config".
nlohmann::json quantize_model(LanguageModel& model, const nlohmann::json& config,
                              const mx::nn::QuantizationSpec& spec,
                              const mx::nn::QuantizePredicate& predicate = nullptr);

}  // namespace lm
