// Gemma 3 text decoder (HF Gemma3ForCausalLM / the language model of
// Gemma3ForConditionalGeneration), following /work/shared/spec/gemma3.md §1–2.
//
// Canonical parameter tree (both model_types): `model.embed_tokens`,
// `model.layers.{i}.{input_layernorm, self_attn.{q,k,v,o}_proj, self_attn.{q,k}_norm,
// post_attention_layernorm, pre_feedforward_layernorm, mlp.{gate,up,down}_proj,
// post_feedforward_layernorm}`, `model.norm`, and `lm_head` only when the embeddings are
// untied. sanitize() maps the checkpoint names onto it:
//   gemma3_text:  model.*                         -> model.*
//   gemma3:       language_model.model.*          -> model.*   (original Google uploads, mlx-lm)
//                 model.language_model.*          -> model.*   (transformers >= 4.52 / 5)
//                 language_model.lm_head.weight   -> lm_head.weight
// Vision tower / projector tensors are not text weights: split_vision_weights() moves them
// out (the loader keeps them for the VLM), and sanitize() drops any that remain.
#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxcpp/lm/models/model.h"

namespace lm::gemma3 {

// RoPE of one layer kind: angle = position * scale * base^(-2i/D) (linear scaling by
// `factor` is scale = 1 / factor).
struct RopeSpec {
  float base = 10000.0f;
  float scale = 1.0f;
};

// Gemma3TextConfig with HF's defaults (gemma3.md §1.1); a sparse text_config takes them
// for every missing key.
struct TextConfig {
  int hidden_size = 2304;
  int intermediate_size = 9216;
  int num_hidden_layers = 26;
  int num_attention_heads = 8;
  int num_key_value_heads = 4;
  int head_dim = 256;
  int vocab_size = 262208;
  int max_position_embeddings = 131072;
  int sliding_window = 4096;
  int sliding_window_pattern = 6;
  float query_pre_attn_scalar = 256.0f;
  float rms_norm_eps = 1e-6f;
  bool tie_word_embeddings = true;
  std::string hidden_activation = "gelu_pytorch_tanh";
  RopeSpec global_rope{1000000.0f, 1.0f};
  RopeSpec local_rope{10000.0f, 1.0f};
  // One entry per layer: true for full (global) attention, false for sliding-window.
  std::vector<bool> is_global;

  // Resolves a config.json object: model_type "gemma3" reads its text_config (and the
  // top-level tie_word_embeddings); "gemma3_text" (or a bare text config) is read as is.
  // Throws naming the field on a wrong type or an unsupported value.
  static TextConfig from_json(const nlohmann::json& config);
  float attention_scale() const;
};

// Gemma RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + w), all in float32, one cast back to the
// input dtype. The stored weight is w (zero-initialised), not 1 + w.
class RMSNorm : public mx::nn::Module {
 public:
  RMSNorm(int dims, float eps, mx::Dtype dtype);
  mx::array operator()(const mx::array& x) const;
  // The float32 (1 + w) the norm multiplies by, and its epsilon (for the fused ops that
  // apply this norm inside a larger kernel).
  mx::array scale() const;
  float eps() const { return eps_; }

 private:
  float eps_;
  // (1 + w) in fp32 for the weight array it was formed from: a decode step would otherwise
  // rebuild and evaluate it for every norm of every layer. Holding the weight keeps its id
  // from being reused while the pair lives.
  mutable std::mutex offset_mu_;
  mutable std::optional<std::pair<mx::array, mx::array>> offset_;
};

// Where a fixed-shape decode step writes in a cache of some capacity, and which of its slots
// attention may see: the same for every layer of that capacity, so made once per step.
struct StaticSlot {
  mx::array slot;     // position % capacity (int32 scalar)
  mx::array visible;  // [1, 1, 1, capacity] bool: slots written so far
  StaticSlot(const mx::array& position, int capacity);
};

// The residual stream at a layer boundary: h itself (before the first layer), or h = residual +
// post(y) not yet formed, so that the next layer forms it, and its input norm, in its q/k/v
// product (nn::residual_norm_linears: for one quantized row, one launch).
struct Junction {
  mx::array residual;
  std::optional<mx::array> y;
  const RMSNorm* post = nullptr;
  // h = residual + post(y), and input_norm(h): fast::residual_rms_norm, or the norm of h.
  std::pair<mx::array, mx::array> form(const RMSNorm& input_norm) const;
};

class Attention : public mx::nn::Module {
 public:
  using Qkv = std::array<mx::array, 3>;
  Attention(const TextConfig& cfg, bool is_global, mx::Dtype dtype);
  // The stream h entering the layer (formed from `in`) and q, k, v of input_norm(h) as
  // [B, heads, T, D], not yet QK-normed or rotated.
  std::pair<mx::array, Qkv> enter(const Junction& in, const RMSNorm& input_norm) const;
  // Attention of enter's q, k, v (from x: [B, T, H]). cache: this layer's cache or null
  // (causal over T, plus the window on local layers).
  mx::array operator()(const Qkv& qkv, KVCacheBase* cache) const;
  // One token ([1, 1, H]) against a fixed-capacity cache written in place at
  // position % capacity (LanguageModel::static_decode).
  mx::array static_step(const Qkv& qkv, const mx::array& position, const StaticSlot& where,
                        std::pair<mx::array, mx::array>& cache) const;

 private:
  // q, k, v of x as [B, heads, T, D], not yet QK-normed or rotated.
  Qkv project(const mx::array& x) const;
  // [B, T, heads * D] products as [B, heads, T, D].
  Qkv heads(const std::vector<mx::array>& qkv) const;
  // q and k QK-normed and rotated to their positions (one kernel for both).
  std::pair<mx::array, mx::array> norm_rope(const mx::array& q, const mx::array& k,
                                            const mx::array& offset) const;
  // norm_rope, and the rotated k and v written into the buffers at slot (the new position of
  // every row), in one kernel: fast::rms_norm_rope_kv_write's {q, k_buffer, v_buffer}.
  std::vector<mx::array> fused_norm_rope_write(const mx::array& q, const mx::array& k,
                                               const mx::array& v, const mx::array& offset,
                                               const mx::array& k_buffer, const mx::array& v_buffer,
                                               const mx::array& slot, bool in_place) const;
  mx::array output(const mx::array& o, int B, int T) const;
  int n_heads_, n_kv_heads_, head_dim_;
  float scale_;
  bool is_global_;
  int window_;
  RopeSpec rope_;
};

class MLP : public mx::nn::Module {
 public:
  MLP(int hidden, int intermediate, bool tanh_gelu, mx::Dtype dtype);
  mx::array operator()(const mx::array& x) const;
  // The residual junction before the MLP and the MLP itself: h = residual + post_norm(y), and
  // the MLP of pre_norm(h). Returns {h, mlp output}; with the tanh GELU and quantized gate/up
  // the norms and both products are one primitive (nn::residual_norm_geglu).
  std::pair<mx::array, mx::array> after_residual(const mx::array& residual, const mx::array& y,
                                                 const RMSNorm& post_norm,
                                                 const RMSNorm& pre_norm) const;

 private:
  bool tanh_gelu_;
};

class DecoderLayer : public mx::nn::Module {
 public:
  DecoderLayer(const TextConfig& cfg, int index, mx::Dtype dtype);
  // The residual stream entering the layer and leaving it. Each residual add is fused with
  // the norms on both sides of it, and where the layers are quantized with the products after
  // them (the stream leaving is formed by the next layer's q/k/v product).
  Junction operator()(const Junction& in, KVCacheBase* cache) const;
  Junction static_step(const Junction& in, const mx::array& position, const StaticSlot& where,
                       std::pair<mx::array, mx::array>& cache) const;
  const RMSNorm& input_layernorm() const;
  bool is_global() const { return is_global_; }

 private:
  // The MLP half of the layer from the stream after attention and its output.
  Junction finish(const mx::array& x, const mx::array& attn_out) const;
  bool is_global_;
};

// The `model.*` subtree: embedding, layers, final norm.
class TextModel : public mx::nn::Module {
 public:
  TextModel(const TextConfig& cfg, mx::Dtype dtype);
  // Hidden states after the final norm, [B, T, H].
  mx::array operator()(const mx::array& tokens, PromptCache* cache) const;
  mx::array static_step(const mx::array& token, const mx::array& position,
                        std::vector<std::pair<mx::array, mx::array>>& cache) const;
  const mx::nn::ModuleList<DecoderLayer>& layers() const { return *layers_; }

 private:
  mx::array embed(const mx::array& tokens) const;
  int hidden_size_;
  std::shared_ptr<mx::nn::ModuleList<DecoderLayer>> layers_;
};

class Gemma3TextLM : public LanguageModel {
 public:
  // model_type: "gemma3_text" or "gemma3" (decides the checkpoint names sanitize accepts).
  Gemma3TextLM(const TextConfig& cfg, mx::Dtype dtype, std::string model_type);

  mx::array operator()(const mx::array& tokens, PromptCache* cache) override;
  mx::array last_logits(const mx::array& tokens, PromptCache* cache) override;
  // Full KVCache on global layers and RotatingKVCache(W) on local ones. With max_kv_size M:
  // global layers get RotatingKVCache(M, keep 4) (attention-sink behaviour of mlx-lm), local
  // layers RotatingKVCache(min(W, M), keep 0); when M < W the local window shrinks to M so
  // that what a query sees does not depend on how the prompt was chunked.
  PromptCache make_cache(std::optional<int> max_kv_size = std::nullopt) const override;
  mx::ArrayMap sanitize(mx::ArrayMap weights) const override;
  mx::ArrayMap split_vision_weights(mx::ArrayMap& weights) const override;
  // mlx-lm's gemma3 (multimodal wrapper) keeps the text model under language_model.*.
  std::string checkpoint_name(const std::string& path) const override;
  int vocab_size() const override { return cfg_.vocab_size; }
  int num_layers() const override { return cfg_.num_hidden_layers; }
  int max_context() const override { return cfg_.max_position_embeddings; }
  const TextConfig& config() const { return cfg_; }
  // Global layers hold every position; sliding-window layers a ring of min(window, capacity).
  bool supports_static_decode() const override { return true; }
  int static_layer_capacity(int layer, int capacity) const override;
  mx::array static_decode(const mx::array& token, const mx::array& position,
                          std::vector<std::pair<mx::array, mx::array>>& cache) override;

 private:
  mx::array head(const mx::array& h) const;

  TextConfig cfg_;
  std::shared_ptr<TextModel> model_;
};

}  // namespace lm::gemma3
