// Gemma 3 text decoder: config resolution (gemma3.md §1), forward pass (§2), cache factory
// and checkpoint-name mapping (§3). Read top to bottom like the spec.
#include "mlxcpp/lm/models/gemma3_text.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/nn/activations.h"
#include "mlxcpp/nn/layers.h"

namespace lm::gemma3 {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// 1. Configuration
// ---------------------------------------------------------------------------------------------

namespace {

// Reads config fields with the path used in error messages ("text_config.hidden_size").
// A JSON null counts as absent, as HF treats it.
class Fields {
 public:
  Fields(const json& j, std::string prefix) : j_(j), prefix_(std::move(prefix)) {}

  bool has(const std::string& key) const {
    return j_.is_object() && j_.contains(key) && !j_.at(key).is_null();
  }
  const json& at(const std::string& key) const { return j_.at(key); }
  std::string path(const std::string& key) const { return prefix_ + key; }

  int get_int(const std::string& key, int def) const {
    if (!has(key)) return def;
    const json& v = j_.at(key);
    if (v.is_number_integer()) return v.get<int>();
    if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()) {
      return static_cast<int>(v.get<double>());
    }
    throw std::invalid_argument("config.json: field '" + path(key) + "' must be an integer, got " +
                                v.dump());
  }
  int get_positive(const std::string& key, int def) const {
    int v = get_int(key, def);
    if (v <= 0) {
      throw std::invalid_argument("config.json: field '" + path(key) + "' must be positive, got " +
                                  std::to_string(v));
    }
    return v;
  }
  double get_number(const std::string& key, double def) const {
    if (!has(key)) return def;
    const json& v = j_.at(key);
    if (!v.is_number()) {
      throw std::invalid_argument("config.json: field '" + path(key) + "' must be a number, got " +
                                  v.dump());
    }
    return v.get<double>();
  }
  bool get_bool(const std::string& key, bool def) const {
    if (!has(key)) return def;
    const json& v = j_.at(key);
    if (!v.is_boolean()) {
      throw std::invalid_argument("config.json: field '" + path(key) +
                                  "' must be true or false, got " + v.dump());
    }
    return v.get<bool>();
  }
  std::string get_string(const std::string& key, const std::string& def) const {
    if (!has(key)) return def;
    const json& v = j_.at(key);
    if (!v.is_string()) {
      throw std::invalid_argument("config.json: field '" + path(key) + "' must be a string, got " +
                                  v.dump());
    }
    return v.get<std::string>();
  }

 private:
  const json& j_;
  std::string prefix_;
};

// One RoPE description ({"rope_type"|"type": "default"|"linear", "factor", "rope_theta"}),
// with `base` the base to use when it names none.
RopeSpec parse_rope(const json& spec, const std::string& where, double base) {
  if (!spec.is_object()) {
    throw std::invalid_argument("config.json: field '" + where + "' must be an object, got " +
                                spec.dump());
  }
  Fields f(spec, where + ".");
  std::string type = f.get_string("rope_type", f.get_string("type", "default"));
  RopeSpec out;
  out.base = static_cast<float>(f.get_number("rope_theta", base));
  if (type == "default") {
    out.scale = 1.0f;
  } else if (type == "linear") {
    if (!f.has("factor")) {
      throw std::invalid_argument("config.json: field '" + where +
                                  ".factor' is required for linear RoPE scaling");
    }
    double factor = f.get_number("factor", 1.0);
    if (!(factor > 0)) {
      throw std::invalid_argument("config.json: field '" + where + ".factor' must be positive");
    }
    // HF divides inv_freq by the factor: the same as positions / factor.
    out.scale = static_cast<float>(1.0 / factor);
  } else {
    throw std::invalid_argument("config.json: field '" + where + "' has rope_type '" + type +
                                "', which Gemma 3 does not use (supported: default, linear)");
  }
  return out;
}

}  // namespace

TextConfig TextConfig::from_json(const json& config) {
  if (!config.is_object()) throw std::invalid_argument("config.json: not a JSON object");
  Fields top(config, "");
  const json* text = &config;
  std::string prefix;
  static const json kEmpty = json::object();
  if (top.get_string("model_type", "") == "gemma3" || top.has("text_config")) {
    // HF Gemma3Config: a missing text_config is the default Gemma3TextConfig.
    text = top.has("text_config") ? &config.at("text_config") : &kEmpty;
    if (!text->is_object()) {
      throw std::invalid_argument("config.json: field 'text_config' must be an object");
    }
    prefix = "text_config.";
  }
  Fields f(*text, prefix);
  TextConfig c;
  c.hidden_size = f.get_positive("hidden_size", c.hidden_size);
  c.intermediate_size = f.get_positive("intermediate_size", c.intermediate_size);
  c.num_hidden_layers = f.get_positive("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = f.get_positive("num_attention_heads", c.num_attention_heads);
  c.num_key_value_heads = f.get_positive("num_key_value_heads", c.num_key_value_heads);
  c.head_dim = f.get_positive("head_dim", c.head_dim);
  c.vocab_size = f.get_positive("vocab_size", c.vocab_size);
  c.max_position_embeddings = f.get_positive("max_position_embeddings", c.max_position_embeddings);
  c.sliding_window = f.get_positive("sliding_window", c.sliding_window);
  c.query_pre_attn_scalar =
      static_cast<float>(f.get_number("query_pre_attn_scalar", c.query_pre_attn_scalar));
  c.rms_norm_eps = static_cast<float>(f.get_number("rms_norm_eps", c.rms_norm_eps));
  c.hidden_activation = f.get_string("hidden_activation", c.hidden_activation);
  // Gemma3Config keeps tie_word_embeddings at the top level; a text config may carry its own.
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", c.tie_word_embeddings);
  if (text != &config)
    c.tie_word_embeddings = top.get_bool("tie_word_embeddings", c.tie_word_embeddings);

  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    throw std::invalid_argument("config.json: " + f.path("num_attention_heads") + " (" +
                                std::to_string(c.num_attention_heads) + ") is not a multiple of " +
                                f.path("num_key_value_heads") + " (" +
                                std::to_string(c.num_key_value_heads) + ")");
  }
  if (c.head_dim % 2 != 0) {
    throw std::invalid_argument("config.json: " + f.path("head_dim") + " must be even for RoPE");
  }
  if (!(c.query_pre_attn_scalar > 0)) {
    throw std::invalid_argument("config.json: " + f.path("query_pre_attn_scalar") +
                                " must be positive");
  }
  if (const std::string& a = c.hidden_activation;
      a != "gelu_pytorch_tanh" && a != "gelu_tanh" && a != "gelu_new" && a != "gelu") {
    throw std::invalid_argument("config.json: field '" + f.path("hidden_activation") + "' is '" +
                                a + "' (supported: gelu_pytorch_tanh, gelu_tanh, gelu_new, gelu)");
  }
  // Features of other Gemma generations that this decoder does not implement: refuse them
  // rather than compute something else.
  for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping"}) {
    if (f.has(key)) {
      throw std::invalid_argument("config.json: field '" + f.path(key) +
                                  "' is set; Gemma 3 uses no softcapping and mlxcpp does not "
                                  "implement it");
    }
  }
  if (f.get_bool("use_bidirectional_attention", false)) {
    throw std::invalid_argument("config.json: field '" + f.path("use_bidirectional_attention") +
                                "' is true (EmbeddingGemma), which mlxcpp does not support");
  }

  // Layer kinds: an explicit layer_types list wins over the period P (either spelling).
  if (f.has("layer_types")) {
    const json& types = f.at("layer_types");
    if (!types.is_array() || static_cast<int>(types.size()) != c.num_hidden_layers) {
      throw std::invalid_argument("config.json: field '" + f.path("layer_types") +
                                  "' must be a list of " + std::to_string(c.num_hidden_layers) +
                                  " layer types (num_hidden_layers)");
    }
    for (size_t i = 0; i < types.size(); ++i) {
      const json& t = types[i];
      if (t == "full_attention") {
        c.is_global.push_back(true);
      } else if (t == "sliding_attention") {
        c.is_global.push_back(false);
      } else {
        throw std::invalid_argument("config.json: field '" + f.path("layer_types") + "[" +
                                    std::to_string(i) + "]' is " + t.dump() +
                                    " (expected \"full_attention\" or \"sliding_attention\")");
      }
    }
    c.sliding_window_pattern =
        f.get_positive("sliding_window_pattern",
                       f.get_positive("_sliding_window_pattern", c.sliding_window_pattern));
  } else {
    const char* key =
        f.has("sliding_window_pattern") ? "sliding_window_pattern" : "_sliding_window_pattern";
    c.sliding_window_pattern = f.get_positive(key, c.sliding_window_pattern);
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      c.is_global.push_back((i + 1) % c.sliding_window_pattern == 0);
    }
  }

  // RoPE: scaling applies to global layers only; local layers use rope_local_base_freq unscaled.
  double theta = f.get_number("rope_theta", 1000000.0);
  double local_theta = f.get_number("rope_local_base_freq", 10000.0);
  c.global_rope = {static_cast<float>(theta), 1.0f};
  c.local_rope = {static_cast<float>(local_theta), 1.0f};
  if (f.has("rope_parameters")) {
    const json& rp = f.at("rope_parameters");
    std::string where = f.path("rope_parameters");
    if (rp.is_object() && (rp.contains("full_attention") || rp.contains("sliding_attention"))) {
      if (rp.contains("full_attention")) {
        c.global_rope = parse_rope(rp.at("full_attention"), where + ".full_attention", theta);
      }
      if (rp.contains("sliding_attention")) {
        c.local_rope =
            parse_rope(rp.at("sliding_attention"), where + ".sliding_attention", local_theta);
      }
    } else {
      // A flat rope_parameters describes the global (full-attention) RoPE.
      c.global_rope = parse_rope(rp, where, theta);
    }
  } else if (f.has("rope_scaling")) {
    c.global_rope = parse_rope(f.at("rope_scaling"), f.path("rope_scaling"), theta);
  }
  return c;
}

float TextConfig::attention_scale() const { return 1.0f / std::sqrt(query_pre_attn_scalar); }

// ---------------------------------------------------------------------------------------------
// 2. Forward pass
// ---------------------------------------------------------------------------------------------

RMSNorm::RMSNorm(int dims, float eps, mx::Dtype dtype) : eps_(eps) {
  register_parameter("weight", mx::zeros({dims}, dtype));
}

mx::array RMSNorm::scale() const {
  // fp32 throughout, (1 + w) formed in fp32, one cast at the end (HF; gemma3.md §2.2).
  const mx::array& weight = param("weight");
  std::lock_guard<std::mutex> lk(offset_mu_);
  if (!offset_ || offset_->first.id() != weight.id()) {
    offset_.emplace(weight, mx::add(mx::astype(weight, mx::float32), mx::array(1.0f)));
  }
  return offset_->second;
}

mx::array RMSNorm::operator()(const mx::array& x) const {
  // One kernel reads x in its own dtype and rounds once: no cast nodes around the norm.
  return mx::fast::rms_norm_f32(x, scale(), eps_);
}

Attention::Attention(const TextConfig& cfg, bool is_global, mx::Dtype dtype)
    : n_heads_(cfg.num_attention_heads),
      n_kv_heads_(cfg.num_key_value_heads),
      head_dim_(cfg.head_dim),
      scale_(cfg.attention_scale()),
      is_global_(is_global),
      window_(cfg.sliding_window),
      rope_(is_global ? cfg.global_rope : cfg.local_rope) {
  int H = cfg.hidden_size;
  register_module("q_proj",
                  std::make_shared<mx::nn::Linear>(H, n_heads_ * head_dim_, false, dtype));
  register_module("k_proj",
                  std::make_shared<mx::nn::Linear>(H, n_kv_heads_ * head_dim_, false, dtype));
  register_module("v_proj",
                  std::make_shared<mx::nn::Linear>(H, n_kv_heads_ * head_dim_, false, dtype));
  register_module("o_proj",
                  std::make_shared<mx::nn::Linear>(n_heads_ * head_dim_, H, false, dtype));
  register_module("q_norm", std::make_shared<RMSNorm>(head_dim_, cfg.rms_norm_eps, dtype));
  register_module("k_norm", std::make_shared<RMSNorm>(head_dim_, cfg.rms_norm_eps, dtype));
}

Attention::Qkv Attention::heads(const std::vector<mx::array>& qkv) const {
  int B = qkv[0].shape(0), T = qkv[0].shape(1);
  auto split = [&](const mx::array& a, int n) {
    return mx::transpose(mx::reshape(a, {B, T, n, head_dim_}), {0, 2, 1, 3});
  };
  return {split(qkv[0], n_heads_), split(qkv[1], n_kv_heads_), split(qkv[2], n_kv_heads_)};
}

Attention::Qkv Attention::project(const mx::array& x) const {
  auto& q_proj = static_cast<const mx::nn::LinearLayer&>(child("q_proj"));
  auto& k_proj = static_cast<const mx::nn::LinearLayer&>(child("k_proj"));
  auto& v_proj = static_cast<const mx::nn::LinearLayer&>(child("v_proj"));
  return heads(mx::nn::apply_linears({&q_proj, &k_proj, &v_proj}, x));
}

std::pair<mx::array, Attention::Qkv> Attention::enter(const Junction& in,
                                                      const RMSNorm& input_norm) const {
  if (!in.y) return {in.residual, project(input_norm(in.residual))};
  auto& q_proj = static_cast<const mx::nn::LinearLayer&>(child("q_proj"));
  auto& k_proj = static_cast<const mx::nn::LinearLayer&>(child("k_proj"));
  auto& v_proj = static_cast<const mx::nn::LinearLayer&>(child("v_proj"));
  auto out = mx::nn::residual_norm_linears(in.residual, *in.y, in.post->scale(), input_norm.scale(),
                                           in.post->eps(), {&q_proj, &k_proj, &v_proj});
  return {out[0], heads({out[1], out[2], out[3]})};
}

std::pair<mx::array, mx::array> Attention::norm_rope(const mx::array& q, const mx::array& k,
                                                     const mx::array& offset) const {
  // QK-norm over D (weight shared by all heads) before RoPE; v is not normalised. One kernel
  // for both: the same values as rope(q_norm(q)) and rope(k_norm(k)).
  auto& q_norm = static_cast<const RMSNorm&>(child("q_norm"));
  auto& k_norm = static_cast<const RMSNorm&>(child("k_norm"));
  auto qk = mx::fast::rms_norm_rope({q, k}, {q_norm.scale(), k_norm.scale()}, q_norm.eps(),
                                    head_dim_, false, rope_.base, rope_.scale, offset);
  return {qk[0], qk[1]};
}

mx::array Attention::output(const mx::array& o, int B, int T) const {
  auto& o_proj = static_cast<const mx::nn::LinearLayer&>(child("o_proj"));
  auto flat = mx::reshape(mx::transpose(o, {0, 2, 1, 3}), {B, T, n_heads_ * head_dim_});
  // Through grouped_linear: a decode step's single row is one GEMV launch.
  return mx::nn::apply_linears({&o_proj}, flat)[0];
}

namespace {

// Whether a fixed-shape step writes the caches from the norm-rope kernel
// (fast::rms_norm_rope_kv_write) or with two slice updates: MLXCPP_FUSED_KV_WRITE=0.
bool fused_kv_write() {
  static const bool on = [] {
    const char* v = std::getenv("MLXCPP_FUSED_KV_WRITE");
    return !(v && std::string(v) == "0");
  }();
  return on;
}

}  // namespace

std::vector<mx::array> Attention::fused_norm_rope_write(const mx::array& q, const mx::array& k,
                                                        const mx::array& v, const mx::array& offset,
                                                        const mx::array& k_buffer,
                                                        const mx::array& v_buffer,
                                                        const mx::array& slot,
                                                        bool in_place) const {
  auto& q_norm = static_cast<const RMSNorm&>(child("q_norm"));
  auto& k_norm = static_cast<const RMSNorm&>(child("k_norm"));
  return mx::fast::rms_norm_rope_kv_write(q, k, v, q_norm.scale(), k_norm.scale(), q_norm.eps(),
                                          head_dim_, false, rope_.base, rope_.scale, offset,
                                          k_buffer, v_buffer, slot, in_place);
}

mx::array Attention::operator()(const Qkv& qkv, KVCacheBase* cache) const {
  auto [q, k, v] = qkv;
  const int B = q.shape(0), T = q.shape(2);
  const auto rows = cache ? cache->row_offsets() : std::nullopt;
  const mx::array offset = rows ? *rows : mx::array(cache ? cache->offset() : 0, mx::int32);

  std::optional<int> window;
  if (!is_global_) window = window_;
  AttentionMask mask{"causal", window};
  std::optional<std::pair<mx::array, mx::array>> kv;
  if (cache) {
    // A local layer whose ring buffer is smaller than W (make_cache with max_kv_size < W)
    // attends to what the buffer holds: its window is the buffer size.
    if (!is_global_) {
      if (auto* ring = dynamic_cast<RotatingKVCache*>(cache); ring && ring->keep() == 0) {
        window = std::min(window_, ring->max_size());
      }
    }
    mask = cache->make_mask(T, window);
    if (T == 1 && fused_kv_write()) {
      // A decode step: QK-norm, RoPE and the cache write in one kernel where the cache's storage
      // allows it (a server batch's buffer).
      kv = cache->update_one_with(
          [&](const mx::array& kb, const mx::array& vb, const mx::array& slot) {
            auto out = fused_norm_rope_write(q, k, v, offset, kb, vb, slot, false);
            q = out[0];
            return std::pair{out[1], out[2]};
          },
          q.dtype());
    }
  }
  if (!kv) {
    std::tie(q, k) = norm_rope(q, k, offset);
    kv = cache ? cache->update_and_fetch(k, v) : std::pair{k, v};
  }
  return output(scaled_dot_product_attention(q, kv->first, kv->second, scale_, mask), B, T);
}

// The slot of this position: a global layer's capacity exceeds every position it is used for;
// a sliding-window layer whose capacity is its window writes a ring, which then holds exactly
// the window (attention does not depend on the order of the keys). Slots not yet written (those
// past the position) are hidden; once a ring is full, all are in the window.
StaticSlot::StaticSlot(const mx::array& position, int capacity)
    : slot(mx::remainder(position, mx::array(capacity, mx::int32))),
      visible(mx::reshape(mx::less_equal(mx::arange(0, capacity, mx::int32), position),
                          {1, 1, 1, capacity})) {}

mx::array Attention::static_step(const Qkv& qkv, const mx::array& position, const StaticSlot& where,
                                 std::pair<mx::array, mx::array>& cache) const {
  const int capacity = cache.first.shape(2);
  if (where.visible.shape(-1) != capacity) {
    throw std::invalid_argument("gemma3: a fixed-shape step's slot is for a capacity of " +
                                std::to_string(where.visible.shape(-1)) + ", the cache has " +
                                std::to_string(capacity));
  }
  auto [q, k, v] = qkv;
  if (fused_kv_write()) {
    // QK-norm, RoPE and both cache writes in one kernel: the same values as the three below.
    auto out =
        fused_norm_rope_write(q, k, v, position, cache.first, cache.second, where.slot, true);
    q = out[0];
    cache.first = out[1];
    cache.second = out[2];
  } else {
    std::tie(q, k) = norm_rope(q, k, position);
    cache.first = mx::slice_update_in_place(cache.first, k, where.slot, {2});
    cache.second = mx::slice_update_in_place(cache.second, v, where.slot, {2});
  }
  auto o = mx::fast::scaled_dot_product_attention(q, cache.first, cache.second, scale_, "",
                                                  where.visible);
  return output(o, q.shape(0), q.shape(2));
}

MLP::MLP(int hidden, int intermediate, bool tanh_gelu, mx::Dtype dtype) : tanh_gelu_(tanh_gelu) {
  register_module("gate_proj",
                  std::make_shared<mx::nn::Linear>(hidden, intermediate, false, dtype));
  register_module("up_proj", std::make_shared<mx::nn::Linear>(hidden, intermediate, false, dtype));
  register_module("down_proj",
                  std::make_shared<mx::nn::Linear>(intermediate, hidden, false, dtype));
}

mx::array MLP::operator()(const mx::array& x) const {
  auto& gate_proj = static_cast<const mx::nn::LinearLayer&>(child("gate_proj"));
  auto& up_proj = static_cast<const mx::nn::LinearLayer&>(child("up_proj"));
  auto& down_proj = static_cast<const mx::nn::LinearLayer&>(child("down_proj"));
  // The activation is evaluated in fp32 and rounded once, as PyTorch does for 16-bit inputs;
  // the tanh form (every released Gemma 3) is one fused kernel (with the products themselves
  // where they are quantized).
  if (tanh_gelu_) {
    return mx::nn::apply_linears({&down_proj}, mx::nn::apply_geglu(gate_proj, up_proj, x))[0];
  }
  auto gate_up = mx::nn::apply_linears({&gate_proj, &up_proj}, x);
  const auto& gate = gate_up[0];
  auto g32 = mx::astype(gate, mx::float32);
  auto act = mx::astype(mx::nn::gelu(g32), gate.dtype());
  return mx::nn::apply_linears({&down_proj}, mx::multiply(act, gate_up[1]))[0];
}

std::pair<mx::array, mx::array> MLP::after_residual(const mx::array& residual, const mx::array& y,
                                                    const RMSNorm& post_norm,
                                                    const RMSNorm& pre_norm) const {
  if (!tanh_gelu_) {
    auto [h, x] = mx::fast::residual_rms_norm(residual, y, post_norm.scale(), pre_norm.scale(),
                                              post_norm.eps());
    return {h, (*this)(x)};
  }
  auto& gate_proj = static_cast<const mx::nn::LinearLayer&>(child("gate_proj"));
  auto& up_proj = static_cast<const mx::nn::LinearLayer&>(child("up_proj"));
  auto& down_proj = static_cast<const mx::nn::LinearLayer&>(child("down_proj"));
  auto [h, act] = mx::nn::residual_norm_geglu(residual, y, post_norm.scale(), pre_norm.scale(),
                                              post_norm.eps(), gate_proj, up_proj);
  return {h, mx::nn::apply_linears({&down_proj}, act)[0]};
}

DecoderLayer::DecoderLayer(const TextConfig& cfg, int index, mx::Dtype dtype)
    : is_global_(cfg.is_global.at(index)) {
  int H = cfg.hidden_size;
  float eps = cfg.rms_norm_eps;
  register_module("self_attn", std::make_shared<Attention>(cfg, is_global_, dtype));
  register_module("mlp", std::make_shared<MLP>(H, cfg.intermediate_size,
                                               cfg.hidden_activation != "gelu", dtype));
  register_module("input_layernorm", std::make_shared<RMSNorm>(H, eps, dtype));
  register_module("post_attention_layernorm", std::make_shared<RMSNorm>(H, eps, dtype));
  register_module("pre_feedforward_layernorm", std::make_shared<RMSNorm>(H, eps, dtype));
  register_module("post_feedforward_layernorm", std::make_shared<RMSNorm>(H, eps, dtype));
}

namespace {

// residual + post_norm(y) and next_norm of that sum, in one kernel. The residual stream stays
// in the activation dtype (HF); float16 overflows on Gemma 3 (gemma3.md §6.1), so there the
// sum saturates at the f16 range, as mlx-lm's clip does.
std::pair<mx::array, mx::array> residual_add_norm(const mx::array& residual, const mx::array& y,
                                                  const RMSNorm& post_norm,
                                                  const RMSNorm& next_norm) {
  return mx::fast::residual_rms_norm(residual, y, post_norm.scale(), next_norm.scale(),
                                     post_norm.eps());
}

}  // namespace

const RMSNorm& DecoderLayer::input_layernorm() const {
  return static_cast<const RMSNorm&>(child("input_layernorm"));
}

Junction DecoderLayer::finish(const mx::array& x, const mx::array& attn_out) const {
  auto norm = [&](const char* name) -> const RMSNorm& {
    return static_cast<const RMSNorm&>(child(name));
  };
  auto& mlp = static_cast<const MLP&>(child("mlp"));
  auto [r, mlp_out] = mlp.after_residual(x, attn_out, norm("post_attention_layernorm"),
                                         norm("pre_feedforward_layernorm"));
  return {r, mlp_out, &norm("post_feedforward_layernorm")};
}

Junction DecoderLayer::operator()(const Junction& in, KVCacheBase* cache) const {
  auto& attn = static_cast<const Attention&>(child("self_attn"));
  auto [h, qkv] = attn.enter(in, input_layernorm());
  return finish(h, attn(qkv, cache));
}

Junction DecoderLayer::static_step(const Junction& in, const mx::array& position,
                                   const StaticSlot& where,
                                   std::pair<mx::array, mx::array>& cache) const {
  auto& attn = static_cast<const Attention&>(child("self_attn"));
  auto [h, qkv] = attn.enter(in, input_layernorm());
  return finish(h, attn.static_step(qkv, position, where, cache));
}

std::pair<mx::array, mx::array> Junction::form(const RMSNorm& input_norm) const {
  if (!y) return {residual, input_norm(residual)};
  return residual_add_norm(residual, *y, *post, input_norm);
}

TextModel::TextModel(const TextConfig& cfg, mx::Dtype dtype) : hidden_size_(cfg.hidden_size) {
  register_module("embed_tokens",
                  std::make_shared<mx::nn::Embedding>(cfg.vocab_size, cfg.hidden_size, dtype));
  layers_ = register_module("layers", std::make_shared<mx::nn::ModuleList<DecoderLayer>>());
  for (int i = 0; i < cfg.num_hidden_layers; ++i) {
    layers_->push_back(std::make_shared<DecoderLayer>(cfg, i, dtype));
  }
  register_module("norm", std::make_shared<RMSNorm>(cfg.hidden_size, cfg.rms_norm_eps, dtype));
}

mx::array TextModel::embed(const mx::array& tokens) const {
  auto& embed = static_cast<const mx::nn::EmbeddingLayer&>(child("embed_tokens"));
  auto h = embed(tokens);
  // sqrt(H) is rounded to the weight dtype before the product (HF; gemma3.md §2.1).
  auto scale = mx::astype(mx::array(std::sqrt(static_cast<float>(hidden_size_))), h.dtype());
  return mx::multiply(h, scale);
}

mx::array TextModel::static_step(const mx::array& token, const mx::array& position,
                                 std::vector<std::pair<mx::array, mx::array>>& cache) const {
  if (token.ndim() != 2 || token.shape(0) != 1 || token.shape(1) != 1) {
    throw std::invalid_argument("gemma3: a fixed-shape decode step takes one token [1, 1]");
  }
  if (cache.size() != layers_->size()) {
    throw std::invalid_argument("gemma3: the fixed-shape cache has " +
                                std::to_string(cache.size()) + " layers, the model " +
                                std::to_string(layers_->size()));
  }
  Junction j{embed(token)};
  // One slot and visibility per capacity (the global layers', the sliding-window layers').
  std::map<int, StaticSlot> slots;
  for (size_t i = 0; i < layers_->size(); ++i) {
    const int capacity = cache[i].first.shape(2);
    auto it = slots.find(capacity);
    if (it == slots.end()) it = slots.emplace(capacity, StaticSlot(position, capacity)).first;
    j = (*layers_)[i].static_step(j, position, it->second, cache[i]);
  }
  return j.form(static_cast<const RMSNorm&>(child("norm"))).second;
}

mx::array TextModel::operator()(const mx::array& tokens, PromptCache* cache) const {
  if (tokens.ndim() != 2) {
    throw std::invalid_argument("gemma3: tokens must be [B, T], got " +
                                std::to_string(tokens.ndim()) + " dimensions");
  }
  if (cache && cache->size() != layers_->size()) {
    throw std::invalid_argument("gemma3: the prompt cache has " + std::to_string(cache->size()) +
                                " layers, the model " + std::to_string(layers_->size()));
  }
  Junction j{embed(tokens)};
  for (size_t i = 0; i < layers_->size(); ++i) {
    j = (*layers_)[i](j, cache ? (*cache)[i].get() : nullptr);
  }
  return j.form(static_cast<const RMSNorm&>(child("norm"))).second;
}

Gemma3TextLM::Gemma3TextLM(const TextConfig& cfg, mx::Dtype dtype, std::string model_type)
    : cfg_(cfg) {
  model_type_ = std::move(model_type);
  if (static_cast<int>(cfg_.is_global.size()) != cfg_.num_hidden_layers) {
    throw std::invalid_argument("gemma3: the config names " +
                                std::to_string(cfg_.is_global.size()) + " layer kinds for " +
                                std::to_string(cfg_.num_hidden_layers) + " layers");
  }
  model_ = register_module("model", std::make_shared<TextModel>(cfg_, dtype));
  if (!cfg_.tie_word_embeddings) {
    register_module("lm_head", std::make_shared<mx::nn::Linear>(cfg_.hidden_size, cfg_.vocab_size,
                                                                false, dtype));
  }
}

mx::array Gemma3TextLM::operator()(const mx::array& tokens, PromptCache* cache) {
  return head((*model_)(tokens, cache));
}

mx::array Gemma3TextLM::last_logits(const mx::array& tokens, PromptCache* cache) {
  // The final norm and the head are per row: the last row's logits are those of the full pass.
  auto h = (*model_)(tokens, cache);
  const int T = h.shape(1);
  return head(mx::slice(h, {0, T - 1, 0}, {h.shape(0), T, h.shape(2)}));
}

mx::array Gemma3TextLM::static_decode(const mx::array& token, const mx::array& position,
                                      std::vector<std::pair<mx::array, mx::array>>& cache) {
  return head(model_->static_step(token, position, cache));
}

int Gemma3TextLM::static_layer_capacity(int layer, int capacity) const {
  if (layer < 0 || layer >= cfg_.num_hidden_layers) {
    throw std::invalid_argument("gemma3: layer " + std::to_string(layer) + " does not exist (" +
                                std::to_string(cfg_.num_hidden_layers) + " layers)");
  }
  return cfg_.is_global[layer] ? capacity : std::min(capacity, cfg_.sliding_window);
}

mx::array Gemma3TextLM::head(const mx::array& h) const {
  if (cfg_.tie_word_embeddings) {
    return static_cast<const mx::nn::EmbeddingLayer&>(model_->child("embed_tokens")).as_linear(h);
  }
  return static_cast<const mx::nn::LinearLayer&>(child("lm_head"))(h);
}

PromptCache Gemma3TextLM::make_cache(std::optional<int> max_kv_size) const {
  if (max_kv_size && *max_kv_size <= 0) {
    throw std::invalid_argument("gemma3: max_kv_size must be positive, got " +
                                std::to_string(*max_kv_size));
  }
  PromptCache out;
  for (bool global : cfg_.is_global) {
    if (global) {
      if (max_kv_size) {
        out.push_back(std::make_shared<RotatingKVCache>(*max_kv_size, 4));
      } else {
        out.push_back(std::make_shared<KVCache>());
      }
    } else {
      int size = max_kv_size ? std::min(cfg_.sliding_window, *max_kv_size) : cfg_.sliding_window;
      out.push_back(std::make_shared<RotatingKVCache>(size, 0));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// 3. Checkpoint names
// ---------------------------------------------------------------------------------------------

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

bool is_vision_tensor(const std::string& name) {
  for (const char* p : {"vision_tower.", "multi_modal_projector.", "model.vision_tower.",
                        "model.multi_modal_projector."}) {
    if (starts_with(name, p)) return true;
  }
  return false;
}

}  // namespace

mx::ArrayMap Gemma3TextLM::split_vision_weights(mx::ArrayMap& weights) const {
  mx::ArrayMap vision;
  for (auto it = weights.begin(); it != weights.end();) {
    if (is_vision_tensor(it->first)) {
      vision.emplace(it->first, it->second);
      it = weights.erase(it);
    } else {
      ++it;
    }
  }
  return vision;
}

std::string Gemma3TextLM::checkpoint_name(const std::string& path) const {
  return model_type_ == "gemma3" ? "language_model." + path : path;
}

mx::ArrayMap Gemma3TextLM::sanitize(mx::ArrayMap weights) const {
  mx::ArrayMap out;
  std::map<std::string, std::string> source;  // canonical name -> checkpoint name
  for (auto& [name, w] : weights) {
    if (is_vision_tensor(name) || name.find("rotary_emb.inv_freq") != std::string::npos) continue;
    std::string canon = name;
    if (starts_with(name, "language_model.model.")) {
      canon = "model." + name.substr(std::string("language_model.model.").size());
    } else if (starts_with(name, "model.language_model.")) {
      canon = "model." + name.substr(std::string("model.language_model.").size());
    } else if (starts_with(name, "language_model.lm_head.")) {
      canon = name.substr(std::string("language_model.").size());
    }
    // A tied head is the embedding: a saved copy of it (float or quantized) is redundant.
    if (starts_with(canon, "lm_head.") && cfg_.tie_word_embeddings) continue;
    auto [it, inserted] = source.emplace(canon, name);
    if (!inserted) {
      throw std::invalid_argument("checkpoint holds both '" + it->second + "' and '" + name +
                                  "', which are the same parameter '" + canon + "'");
    }
    out.emplace(canon, w);
  }
  return out;
}

namespace {

std::shared_ptr<LanguageModel> build(const json& config, mx::Dtype dtype, const char* type) {
  return std::make_shared<Gemma3TextLM>(TextConfig::from_json(config), dtype, type);
}

ModelRegistration register_text("gemma3_text", [](const json& config, mx::Dtype dtype) {
  return build(config, dtype, "gemma3_text");
});
ModelRegistration register_vlm("gemma3", [](const json& config, mx::Dtype dtype) {
  return build(config, dtype, "gemma3");
});

}  // namespace

}  // namespace lm::gemma3
