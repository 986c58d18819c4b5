// Random-weight checkpoints with the exact published shapes (mlxcpp random-model): for tests
// and benchmarks that need a model of a real size without downloading one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/dtype.h"

namespace lm {

// The config.json Google published for a Gemma 3 size (gemma3.md §1.2): "gemma3-270m",
// "gemma3-1b" (Gemma3ForCausalLM), "gemma3-4b", "gemma3-12b", "gemma3-27b" (the sparse
// Gemma3ForConditionalGeneration style with text_config and vision_config). Throws listing
// the known names.
nlohmann::json published_config(const std::string& name);
std::vector<std::string> published_config_names();

// The tensors a checkpoint of this config holds, by checkpoint name, in writing order: the
// text decoder (names of the config's HF class) and, for a multimodal config with a
// vision_config, the vision tower and projector.
std::vector<std::pair<std::string, mx::Shape>> checkpoint_tensors(const nlohmann::json& config);

struct RandomModelOptions {
  mx::Dtype dtype = mx::bfloat16;
  uint64_t seed = 0;
  // Folder with tokenizer.json (and companions), or their .xz-compressed forms.
  std::filesystem::path tokenizer_dir;
  // Shards hold at most this many bytes (a single larger tensor gets a shard of its own).
  size_t max_shard_bytes = 2000000000;
};

// Writes config.json, generation_config.json (eos [1, 106]), the tokenizer files and random
// weights (normal, std 0.02 for matrices, 0.1 for vectors) into `out`, which must not exist
// or be empty. Tensors are generated and written one at a time, so memory stays near the
// largest tensor. The folder appears complete or not at all (built beside `out`, then renamed).
// Returns the number of parameters written.
size_t write_random_model(const nlohmann::json& config, const std::filesystem::path& out,
                          const RandomModelOptions& options);

// Decompresses an .xz file into memory; throws naming the file.
std::string read_xz_file(const std::filesystem::path& file);

}  // namespace lm
