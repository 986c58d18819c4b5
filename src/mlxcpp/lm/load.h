// Loading a language model from a folder (or a repo id in the Hugging Face cache): config.json,
// safetensors weights (single file or sharded), tokenizer and end-of-sequence ids.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"
#include "mlxcpp/mx/dtype.h"
#include "mlxcpp/mx/io.h"

namespace lm {

struct LoadOptions {
  // Parameter dtype; default: the checkpoint's floating dtype.
  std::optional<mx::Dtype> dtype;
};

struct LoadedModel {
  std::shared_ptr<LanguageModel> model;
  // Null when the folder has no tokenizer.json.
  std::shared_ptr<const Tokenizer> tokenizer;
  nlohmann::json config;
  // config.json eos_token_id, then generation_config.json's, then the tokenizer's; no duplicates.
  std::vector<int32_t> eos_token_ids;
  std::filesystem::path path;
  // Vision tower / projector tensors of a multimodal checkpoint, under their checkpoint names.
  mx::ArrayMap vision_weights;
};

// path_or_repo: a model folder, or "org/name" in the Hugging Face cache (hub.h). Every error
// is one line naming the cause (folder, file, field or tensor).
LoadedModel load(const std::string& path_or_repo, const LoadOptions& options = {});

// Reads and parses a JSON file; throws "<file>: invalid JSON: <what>" or naming a missing file.
nlohmann::json read_json_file(const std::filesystem::path& file);

// The safetensors weights of a model folder: model.safetensors.index.json with its shards, else
// every model*.safetensors file. Throws naming the folder when it has none.
mx::ArrayMap load_model_weights(const std::filesystem::path& dir);

}  // namespace lm
