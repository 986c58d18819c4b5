// The interface every language-model architecture implements (one file per
// architecture under lm/models/), and the registry by config model_type.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxcpp/lm/cache.h"
#include "mlxcpp/mx/io.h"
#include "mlxcpp/nn/module.h"

namespace lm {

class LanguageModel : public mx::nn::Module {
 public:
  // tokens: [B, T] int32. cache: one entry per layer (from make_cache), updated
  // in place; null runs without a cache (full causal attention over T).
  // Returns logits [B, T, V] in the model's activation dtype.
  virtual mx::array operator()(const mx::array& tokens, PromptCache* cache) = 0;
  // The same forward (the cache takes all T positions) but logits [B, 1, V] of the last
  // position only: what a prompt's final chunk samples from. An architecture should apply its
  // LM head to that one row (at V x H per row the head is the largest GEMM of a prefill;
  // gemma3.md §2.7); the default slices the full logits.
  virtual mx::array last_logits(const mx::array& tokens, PromptCache* cache);
  // The cache for each layer. max_kv_size bounds every layer (a rotating cache
  // of that size, keeping the first 4 positions, on layers that would grow
  // without bound); sliding-window layers keep their window when it is smaller.
  virtual PromptCache make_cache(std::optional<int> max_kv_size = std::nullopt) const = 0;
  // Maps checkpoint tensors to this tree's names (drops rotary tables, vision
  // towers of multimodal checkpoints, renames prefixes). Called before load_weights.
  virtual mx::ArrayMap sanitize(mx::ArrayMap weights) const { return weights; }
  // Moves the tensors of other towers (vision encoder, multimodal projector) out of a
  // checkpoint's weights and returns them under their checkpoint names, so a loader can keep
  // them for a vision-language model. Called before sanitize; default: none.
  virtual mx::ArrayMap split_vision_weights(mx::ArrayMap& /*weights*/) const { return {}; }
  // The name a parameter (or module path) of this tree takes in a checkpoint written for
  // mlx-lm (convert), the inverse of sanitize's renaming; default: the same name.
  virtual std::string checkpoint_name(const std::string& path) const { return path; }
  virtual int vocab_size() const = 0;
  virtual int num_layers() const = 0;
  // Largest context the model supports (max_position_embeddings).
  virtual int max_context() const = 0;
  // Bytes of weights a decode step reads (for the bandwidth floor).
  virtual size_t decode_weight_bytes() const;

  // Fixed-shape decoding, one token of one sequence, for a step recorded once and replayed
  // (lm/decode_graph.h). Each layer's cache is a pair of buffers (keys, values)
  // [1, Nkv, capacity, D] written in place (mx::slice_update_in_place) at slot
  // position % capacity; `position` is an int32 array of shape [1] read on the device, so the
  // same graph serves every position below the capacity. A layer attends to the slots
  // 0..position (all of them once a sliding-window layer's ring of `window` slots is full).
  // Models without such a step return false from supports_static_decode().
  virtual bool supports_static_decode() const { return false; }
  // Slots layer `layer` needs when the cache holds `capacity` positions (a sliding-window layer
  // needs at most its window, as a ring).
  virtual int static_layer_capacity(int layer, int capacity) const;
  // token: [1, 1] int32. Returns logits [1, 1, V]; `cache` entries are replaced by the
  // in-place results (sharing the buffers they were given).
  virtual mx::array static_decode(const mx::array& token, const mx::array& position,
                                  std::vector<std::pair<mx::array, mx::array>>& cache);
  const std::string& model_type() const { return model_type_; }

 protected:
  std::string model_type_;
};

// Builds an (uninitialised-weight) model from its config.json; `dtype` is the
// parameter dtype.
using ModelFactory =
    std::function<std::shared_ptr<LanguageModel>(const nlohmann::json& config, mx::Dtype dtype)>;

// Registers a model_type (static registration from each architecture file).
struct ModelRegistration {
  ModelRegistration(const std::string& model_type, ModelFactory factory);
};
// Throws naming the model_type and listing the known ones when absent.
const ModelFactory& model_factory(const std::string& model_type);
std::vector<std::string> registered_model_types();

}  // namespace lm
