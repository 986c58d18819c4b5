// Gemma 3 config resolution, cache layout, checkpoint-name mapping and parameter counts,
// against hand-worked values from gemma3.md §1.2 and §7; and the cache self-consistency of
// the forward pass.
#include <gtest/gtest.h>

#include <cmath>

#include "common/check.h"
#include "mlxcpp/lm/models/gemma3_text.h"
#include "mlxcpp/lm/random_model.h"
#include "mlxcpp/mx.h"

using lm::gemma3::TextConfig;
using nlohmann::json;

namespace {

std::vector<int> global_layers(const TextConfig& c) {
  std::vector<int> out;
  for (size_t i = 0; i < c.is_global.size(); ++i)
    if (c.is_global[i]) out.push_back(static_cast<int>(i));
  return out;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

size_t count(const json& config) {
  size_t total = 0;
  for (const auto& [name, shape] : lm::checkpoint_tensors(config)) {
    size_t n = 1;
    for (int d : shape) n *= static_cast<size_t>(d);
    total += n;
  }
  return total;
}

}  // namespace

TEST(Gemma3Config, OneB) {
  auto c = TextConfig::from_json(lm::published_config("gemma3-1b"));
  EXPECT_EQ(c.hidden_size, 1152);
  EXPECT_EQ(c.num_hidden_layers, 26);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 1);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.vocab_size, 262144);
  EXPECT_EQ(c.sliding_window, 512);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_EQ(global_layers(c), (std::vector<int>{5, 11, 17, 23}));
  EXPECT_FLOAT_EQ(c.global_rope.base, 1e6f);
  EXPECT_FLOAT_EQ(c.global_rope.scale, 1.0f);
  EXPECT_FLOAT_EQ(c.local_rope.base, 1e4f);
  EXPECT_FLOAT_EQ(c.local_rope.scale, 1.0f);
  EXPECT_FLOAT_EQ(c.attention_scale(), 0.0625f);
  EXPECT_TRUE(c.tie_word_embeddings);
}

TEST(Gemma3Config, TwoSeventyMWithLayerTypes) {
  auto c = TextConfig::from_json(lm::published_config("gemma3-270m"));
  EXPECT_EQ(c.hidden_size, 640);
  EXPECT_EQ(c.num_hidden_layers, 18);
  EXPECT_EQ(global_layers(c), (std::vector<int>{5, 11, 17}));
  // layer_types wins over the period: a list with other kinds is taken as given.
  json j = lm::published_config("gemma3-270m");
  j["layer_types"][0] = "full_attention";
  j["layer_types"][5] = "sliding_attention";
  EXPECT_EQ(global_layers(TextConfig::from_json(j)), (std::vector<int>{0, 11, 17}));
}

TEST(Gemma3Config, FourBSparseTextConfigTakesHfDefaults) {
  auto c = TextConfig::from_json(lm::published_config("gemma3-4b"));
  EXPECT_EQ(c.hidden_size, 2560);
  EXPECT_EQ(c.intermediate_size, 10240);
  EXPECT_EQ(c.num_hidden_layers, 34);
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.vocab_size, 262208);
  EXPECT_EQ(c.sliding_window, 1024);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(global_layers(c), (std::vector<int>{5, 11, 17, 23, 29}));
  // Linear x8 on global layers only; local layers 1e4 unscaled.
  EXPECT_FLOAT_EQ(c.global_rope.base, 1e6f);
  EXPECT_FLOAT_EQ(c.global_rope.scale, 0.125f);
  EXPECT_FLOAT_EQ(c.local_rope.base, 1e4f);
  EXPECT_FLOAT_EQ(c.local_rope.scale, 1.0f);
  EXPECT_FLOAT_EQ(c.attention_scale(), 0.0625f);
}

TEST(Gemma3Config, TwelveBAndTwentySevenB) {
  auto c12 = TextConfig::from_json(lm::published_config("gemma3-12b"));
  EXPECT_EQ(c12.num_attention_heads, 16);
  EXPECT_EQ(c12.num_key_value_heads, 8);
  EXPECT_EQ(global_layers(c12).size(), 8u);
  EXPECT_EQ(global_layers(c12).back(), 47);
  auto c27 = TextConfig::from_json(lm::published_config("gemma3-27b"));
  EXPECT_EQ(c27.head_dim, 128);
  EXPECT_EQ(c27.num_attention_heads, 32);
  EXPECT_EQ(c27.num_key_value_heads, 16);
  EXPECT_EQ(global_layers(c27).size(), 10u);
  EXPECT_EQ(global_layers(c27).back(), 59);
  // 168^-0.5 = 0.07715167498..., not head_dim^-0.5 = 0.0884.
  EXPECT_NEAR(c27.attention_scale(), 0.0771516750, 1e-7);
}

TEST(Gemma3Config, PatternSpellings) {
  json j = {
      {"model_type", "gemma3_text"}, {"num_hidden_layers", 8}, {"_sliding_window_pattern", 4}};
  EXPECT_EQ(global_layers(TextConfig::from_json(j)), (std::vector<int>{3, 7}));
  j["sliding_window_pattern"] = 2;  // the public spelling wins when both are present
  EXPECT_EQ(global_layers(TextConfig::from_json(j)), (std::vector<int>{1, 3, 5, 7}));
  json d = {{"model_type", "gemma3_text"}, {"num_hidden_layers", 12}};  // HF default P = 6
  EXPECT_EQ(global_layers(TextConfig::from_json(d)), (std::vector<int>{5, 11}));
}

TEST(Gemma3Config, RopeParametersNewerStyle) {
  // transformers 5: keyed by layer type; bases fall back to rope_theta / rope_local_base_freq.
  json j = {{"model_type", "gemma3"},
            {"text_config",
             {{"num_hidden_layers", 6},
              {"rope_theta", 1000000.0},
              {"rope_local_base_freq", 10000.0},
              {"rope_parameters",
               {{"full_attention", {{"rope_type", "linear"}, {"factor", 8.0}}},
                {"sliding_attention", {{"rope_type", "default"}}}}}}}};
  auto c = TextConfig::from_json(j);
  EXPECT_FLOAT_EQ(c.global_rope.base, 1e6f);
  EXPECT_FLOAT_EQ(c.global_rope.scale, 0.125f);
  EXPECT_FLOAT_EQ(c.local_rope.base, 1e4f);
  EXPECT_FLOAT_EQ(c.local_rope.scale, 1.0f);
  // Explicit per-kind rope_theta values win.
  j["text_config"]["rope_parameters"]["full_attention"]["rope_theta"] = 5e5;
  j["text_config"]["rope_parameters"]["sliding_attention"]["rope_theta"] = 2e4;
  c = TextConfig::from_json(j);
  EXPECT_FLOAT_EQ(c.global_rope.base, 5e5f);
  EXPECT_FLOAT_EQ(c.local_rope.base, 2e4f);
  // The older key "type" is read like "rope_type".
  json old = {{"model_type", "gemma3_text"}, {"rope_scaling", {{"type", "linear"}, {"factor", 4}}}};
  EXPECT_FLOAT_EQ(TextConfig::from_json(old).global_rope.scale, 0.25f);
  EXPECT_FLOAT_EQ(TextConfig::from_json(old).local_rope.scale, 1.0f);
}

TEST(Gemma3Config, TieWordEmbeddings) {
  json j = lm::published_config("gemma3-1b");
  j["tie_word_embeddings"] = false;
  EXPECT_FALSE(TextConfig::from_json(j).tie_word_embeddings);
  json v = lm::published_config("gemma3-4b");
  v["tie_word_embeddings"] = false;  // Gemma3Config keeps it at the top level
  EXPECT_FALSE(TextConfig::from_json(v).tie_word_embeddings);
}

TEST(Gemma3Config, BadValuesNameTheField) {
  json j = lm::published_config("gemma3-1b");
  j["layer_types"] = json::array({"full_attention"});
  EXPECT_NE(error_of([&] { TextConfig::from_json(j); }).find("layer_types"), std::string::npos);
  j = lm::published_config("gemma3-270m");
  j["layer_types"][3] = "chunked_attention";
  auto e = error_of([&] { TextConfig::from_json(j); });
  EXPECT_NE(e.find("layer_types[3]"), std::string::npos) << e;
  j = lm::published_config("gemma3-4b");
  j["text_config"]["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 8}};
  e = error_of([&] { TextConfig::from_json(j); });
  EXPECT_NE(e.find("text_config.rope_scaling"), std::string::npos) << e;
  EXPECT_NE(e.find("yarn"), std::string::npos) << e;
  j = lm::published_config("gemma3-1b");
  j["hidden_size"] = "big";
  e = error_of([&] { TextConfig::from_json(j); });
  EXPECT_NE(e.find("'hidden_size'"), std::string::npos) << e;
  j = lm::published_config("gemma3-1b");
  j["final_logit_softcapping"] = 30.0;
  e = error_of([&] { TextConfig::from_json(j); });
  EXPECT_NE(e.find("final_logit_softcapping"), std::string::npos) << e;
  j = lm::published_config("gemma3-1b");
  j["num_key_value_heads"] = 3;
  e = error_of([&] { TextConfig::from_json(j); });
  EXPECT_NE(e.find("num_key_value_heads"), std::string::npos) << e;
  e = error_of([&] { lm::model_factory("llama9"); });
  EXPECT_NE(e.find("llama9"), std::string::npos) << e;
  EXPECT_NE(e.find("gemma3_text"), std::string::npos) << e;
  e = error_of([&] { lm::published_config("gemma3-2b"); });
  EXPECT_NE(e.find("gemma3-270m"), std::string::npos) << e;
}

// gemma3.md §7: exact parameter counts (text, and text + vision tower + projector).
TEST(Gemma3Config, PublishedParameterCounts) {
  EXPECT_EQ(count(lm::published_config("gemma3-270m")), 268098176u);
  EXPECT_EQ(count(lm::published_config("gemma3-1b")), 999885952u);
  EXPECT_EQ(count(lm::published_config("gemma3-4b")), 4300079472u);
  EXPECT_EQ(count(lm::published_config("gemma3-12b")), 12187325040u);
  EXPECT_EQ(count(lm::published_config("gemma3-27b")), 27432406640u);
  auto model = lm::model_factory("gemma3")(lm::published_config("gemma3-4b"), mx::bfloat16);
  EXPECT_EQ(model->num_parameters(), 3880263168u);  // text only
  // 4B names: the original Google layout (gemma3.md §3.2).
  auto tensors = lm::checkpoint_tensors(lm::published_config("gemma3-4b"));
  std::map<std::string, mx::Shape> by_name(tensors.begin(), tensors.end());
  EXPECT_EQ(by_name.at("language_model.model.layers.0.self_attn.q_proj.weight"),
            (mx::Shape{2048, 2560}));
  EXPECT_EQ(by_name.at("language_model.model.embed_tokens.weight"), (mx::Shape{262208, 2560}));
  EXPECT_EQ(by_name.at("multi_modal_projector.mm_input_projection_weight"),
            (mx::Shape{1152, 2560}));
  EXPECT_EQ(by_name.at("vision_tower.vision_model.embeddings.patch_embedding.weight"),
            (mx::Shape{1152, 3, 14, 14}));
}

TEST(Gemma3Config, CacheLayout) {
  auto model = lm::model_factory("gemma3_text")(lm::published_config("gemma3-1b"), mx::bfloat16);
  auto cache = model->make_cache();
  ASSERT_EQ(cache.size(), 26u);
  for (int i = 0; i < 26; ++i) {
    bool global = (i + 1) % 6 == 0;
    if (global) {
      EXPECT_EQ(cache[i]->class_name(), "KVCache") << i;
    } else {
      auto* r = dynamic_cast<lm::RotatingKVCache*>(cache[i].get());
      ASSERT_NE(r, nullptr) << i;
      EXPECT_EQ(r->max_size(), 512);
      EXPECT_EQ(r->keep(), 0);
    }
  }
  auto bounded = model->make_cache(100);
  auto* g = dynamic_cast<lm::RotatingKVCache*>(bounded[5].get());
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->max_size(), 100);
  EXPECT_EQ(g->keep(), 4);
  auto* l = dynamic_cast<lm::RotatingKVCache*>(bounded[0].get());
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->max_size(), 100);
  EXPECT_EQ(l->keep(), 0);
  auto wide = model->make_cache(8192);
  EXPECT_EQ(dynamic_cast<lm::RotatingKVCache*>(wide[0].get())->max_size(), 512);
  EXPECT_EQ(dynamic_cast<lm::RotatingKVCache*>(wide[5].get())->max_size(), 8192);
}

TEST(Gemma3Config, SanitizeBothPrefixesAndVision) {
  auto model = lm::model_factory("gemma3")(lm::published_config("gemma3-4b"), mx::bfloat16);
  auto t = mx::zeros({2});
  mx::ArrayMap original = {{"language_model.model.norm.weight", t},
                           {"language_model.model.layers.0.self_attn.rotary_emb.inv_freq", t},
                           {"vision_tower.vision_model.post_layernorm.bias", t},
                           {"multi_modal_projector.mm_soft_emb_norm.weight", t}};
  auto vision = model->split_vision_weights(original);
  EXPECT_EQ(vision.size(), 2u);
  EXPECT_TRUE(vision.count("vision_tower.vision_model.post_layernorm.bias"));
  auto s = model->sanitize(original);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_TRUE(s.count("model.norm.weight"));

  mx::ArrayMap v5 = {{"model.language_model.norm.weight", t},
                     {"model.language_model.embed_tokens.weight", t},
                     {"model.vision_tower.vision_model.post_layernorm.bias", t},
                     {"model.multi_modal_projector.mm_input_projection_weight", t},
                     {"lm_head.weight", t}};
  vision = model->split_vision_weights(v5);
  EXPECT_EQ(vision.size(), 2u);
  s = model->sanitize(v5);
  EXPECT_EQ(s.size(), 2u);  // tied: lm_head dropped
  EXPECT_TRUE(s.count("model.norm.weight"));
  EXPECT_TRUE(s.count("model.embed_tokens.weight"));

  mx::ArrayMap both = {{"model.language_model.norm.weight", t},
                       {"language_model.model.norm.weight", t}};
  auto e = error_of([&] { model->sanitize(both); });
  EXPECT_NE(e.find("model.norm.weight"), std::string::npos) << e;

  json untied = lm::published_config("gemma3-4b");
  untied["tie_word_embeddings"] = false;
  auto m2 = lm::model_factory("gemma3")(untied, mx::bfloat16);
  s = m2->sanitize({{"language_model.lm_head.weight", t}});
  EXPECT_TRUE(s.count("lm_head.weight"));
}

// A tiny f32 model with a sliding window (3) shorter than the sequence (10): logits computed
// token by token through the caches, or in uneven chunks, equal the logits of one pass
// without a cache.
TEST(Gemma3Forward, CachedDecodeEqualsFullPass) {
  json cfg = {{"model_type", "gemma3_text"},
              {"hidden_size", 16},
              {"intermediate_size", 24},
              {"num_hidden_layers", 4},
              {"num_attention_heads", 4},
              {"num_key_value_heads", 2},
              {"head_dim", 8},
              {"vocab_size", 40},
              {"sliding_window", 3},
              {"sliding_window_pattern", 2},
              {"query_pre_attn_scalar", 12},
              {"rope_theta", 1000.0},
              {"rope_local_base_freq", 100.0},
              {"rope_scaling", {{"rope_type", "linear"}, {"factor", 2.0}}}};
  auto model = lm::model_factory("gemma3_text")(cfg, mx::float32);
  // Random weights with norms away from zero so every path matters.
  auto params = model->parameters();
  std::map<std::string, mx::array> w;
  int k = 0;
  for (auto& [name, p] : params) {
    float sd = p.ndim() >= 2 ? 0.3f : 0.5f;
    w.emplace(name,
              mx::random::normal(p.shape(), mx::float32, 0.0f, sd, mx::random::key(100 + k++)));
  }
  model->load_weights(w);
  std::vector<int32_t> ids = {2, 7, 39, 11, 5, 5, 23, 1, 30, 17};
  int T = static_cast<int>(ids.size());
  auto tokens = mx::array(ids.data(), {1, T}, mx::int32);
  auto full = (*model)(tokens, nullptr);
  ASSERT_EQ(full.shape(), (mx::Shape{1, T, 40}));
  auto expected = mxtest::to_vector(full);

  auto cache = model->make_cache();
  std::vector<mx::array> steps;
  for (int t = 0; t < T; ++t) {
    steps.push_back((*model)(mx::slice(tokens, {0, t}, {1, t + 1}), &cache));
  }
  mxtest::expect_close(mx::concatenate(steps, 1), expected, {1, T, 40}, 1e-5, 1e-4);

  auto chunked = model->make_cache();
  std::vector<mx::array> parts;
  int bounds[] = {0, 4, 5, 10};
  for (int c = 0; c < 3; ++c) {
    parts.push_back((*model)(mx::slice(tokens, {0, bounds[c]}, {1, bounds[c + 1]}), &chunked));
  }
  mxtest::expect_close(mx::concatenate(parts, 1), expected, {1, T, 40}, 1e-5, 1e-4);

  // The window matters: with a window longer than the sequence the logits differ.
  json wide = cfg;
  wide["sliding_window"] = 100;
  auto g = lm::model_factory("gemma3_text")(wide, mx::float32);
  g->load_weights(w);
  auto diff = mx::max(mx::abs(mx::subtract((*g)(tokens, nullptr), full))).item<float>();
  EXPECT_GT(diff, 1e-3f);
}
