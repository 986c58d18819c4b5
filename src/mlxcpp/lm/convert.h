// mlx_lm.convert: a model folder (or cached repo) -> an MLX model folder (formats.md §4),
// optionally quantized (uniform or a mixed-bit recipe), cast, or dequantized.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxcpp/mx/array.h"

namespace lm {

class LanguageModel;

struct ConvertOptions {
  std::string hf_path;                           // model folder or repo id in the HF cache
  std::filesystem::path mlx_path = "mlx_model";  // must not exist
  bool quantize = false;
  std::optional<int> q_group_size;  // default: the mode's (affine 64)
  std::optional<int> q_bits;        // default: the mode's (affine 4)
  std::string q_mode = "affine";    // affine, mxfp4, nvfp4, mxfp8
  // bfloat16, float16 or float32; default: config torch_dtype, else text_config.dtype, else
  // the checkpoint's.
  std::optional<std::string> dtype;
  std::optional<std::string> quant_predicate;  // mixed_2_6 | mixed_3_4 | mixed_3_6 | mixed_4_6
  bool dequantize = false;
  size_t max_shard_bytes = size_t{5} << 30;
  // Called as tensors are written: (bytes written so far, total bytes).
  std::function<void(size_t done, size_t total)> progress;
  // Informational lines ("Quantized model with 4.501 bits per weight").
  std::function<void(const std::string&)> log;
};

struct ConvertResult {
  std::filesystem::path path;
  nlohmann::json config;  // as written
  double bits_per_weight = 0;
  size_t total_size = 0;        // bytes of all tensors
  size_t total_parameters = 0;  // packed weights counted unpacked
  int shards = 0;
};

ConvertResult convert(const ConvertOptions& options);

// mlx-lm's save_model into an existing folder `dir`: greedy shards in the given order (a new
// shard when the next tensor would pass max_shard_bytes), model.safetensors or
// model-0000i-of-0000n.safetensors with metadata format=mlx, and model.safetensors.index.json
// (total_size, total_parameters, weight_map sorted by name). Returns the number of shards.
int save_model_weights(const std::filesystem::path& dir,
                       const std::vector<std::pair<std::string, mx::array>>& weights,
                       size_t total_parameters, size_t max_shard_bytes = size_t{5} << 30,
                       const std::function<void(size_t, size_t)>& progress = nullptr);

// Parameters as mlx-lm counts them (a quantized layer's weight as weight.size * 32 / bits;
// its scales and biases not at all).
size_t count_parameters(const LanguageModel& model);

}  // namespace lm
