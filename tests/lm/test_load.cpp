// lm::load: checkpoints written by the tests (single, sharded, both Gemma 3 name layouts),
// dtype handling, eos merging, every load error, the numpy-reference logits of a tiny model,
// and a random-model 270M folder read back with its exact parameter count.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "common/check.h"
#include "common/temp_dir.h"
#include "mlxcpp/lm/load.h"
#include "mlxcpp/lm/random_model.h"
#include "mlxcpp/mx.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using mxtest::TempDir;

void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

json tiny_text_config() {
  return {{"model_type", "gemma3_text"},
          {"hidden_size", 8},
          {"intermediate_size", 12},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 2},
          {"num_key_value_heads", 1},
          {"head_dim", 4},
          {"vocab_size", 10},
          {"sliding_window", 2},
          {"sliding_window_pattern", 2},
          {"eos_token_id", 1}};
}

// The checkpoint's own tensors for `config`, random, named as `prefix` + canonical name.
mx::ArrayMap make_weights(const json& config, mx::Dtype dtype, uint64_t seed = 1) {
  mx::ArrayMap out;
  int k = 0;
  for (const auto& [name, shape] : lm::checkpoint_tensors(config)) {
    out.emplace(name, mx::astype(mx::random::normal(shape, mx::float32, 0.0f, 0.1f,
                                                    mx::random::key(seed * 1000 + k++)),
                                 dtype));
  }
  return out;
}

fs::path write_model(const fs::path& dir, const json& config, const mx::ArrayMap& weights) {
  fs::create_directories(dir);
  write(dir / "config.json", config.dump());
  mx::save_safetensors((dir / "model.safetensors").string(), weights);
  return dir;
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

#define EXPECT_HAS(text, part) \
  EXPECT_NE((text).find(part), std::string::npos) << "'" << (text) << "' lacks '" << (part) << "'"

}  // namespace

TEST(Load, SingleFileTextModelKeepsCheckpointDtype) {
  TempDir tmp;
  auto w = make_weights(tiny_text_config(), mx::bfloat16);
  auto dir = write_model(tmp.path() / "m", tiny_text_config(), w);
  auto loaded = lm::load(dir.string());
  ASSERT_TRUE(loaded.model);
  EXPECT_EQ(loaded.model->model_type(), "gemma3_text");
  EXPECT_EQ(loaded.model->num_layers(), 2);
  EXPECT_EQ(loaded.model->vocab_size(), 10);
  EXPECT_EQ(loaded.tokenizer, nullptr);
  EXPECT_EQ(loaded.eos_token_ids, (std::vector<int32_t>{1}));
  EXPECT_TRUE(loaded.vision_weights.empty());
  auto params = loaded.model->parameters();
  EXPECT_EQ(params.size(), w.size());
  for (const auto& [name, p] : params) {
    EXPECT_EQ(p.dtype(), mx::bfloat16) << name;
    EXPECT_TRUE(mx::array_equal(p, w.at(name)).item<bool>()) << name;
  }
  auto logits = (*loaded.model)(mx::array({1, 2, 3}, {1, 3}, mx::int32), nullptr);
  EXPECT_EQ(logits.shape(), (mx::Shape{1, 3, 10}));
  EXPECT_EQ(logits.dtype(), mx::bfloat16);
}

TEST(Load, DtypeOverrideAndEosMerge) {
  TempDir tmp;
  auto dir = write_model(tmp.path() / "m", tiny_text_config(),
                         make_weights(tiny_text_config(), mx::float16));
  write(dir / "generation_config.json", R"({"eos_token_id": [1, 106]})");
  auto loaded = lm::load(dir.string(), {mx::float32});
  for (const auto& [name, p] : loaded.model->parameters()) EXPECT_EQ(p.dtype(), mx::float32);
  EXPECT_EQ(loaded.eos_token_ids, (std::vector<int32_t>{1, 106}));
  EXPECT_EQ(lm::load(dir.string()).model->parameters().at("model.norm.weight").dtype(),
            mx::float16);
}

TEST(Load, ShardedCheckpoint) {
  TempDir tmp;
  auto dir = tmp.path() / "sharded";
  fs::create_directories(dir);
  write(dir / "config.json", tiny_text_config().dump());
  auto w = make_weights(tiny_text_config(), mx::float32);
  mx::ArrayMap a, b;
  json map = json::object();
  for (auto& [name, t] : w) {
    bool first = name.find("layers.1.") == std::string::npos;
    (first ? a : b).emplace(name, t);
    map[name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  mx::save_safetensors((dir / "model-00001-of-00002.safetensors").string(), a);
  mx::save_safetensors((dir / "model-00002-of-00002.safetensors").string(), b);
  write(dir / "model.safetensors.index.json", json{{"weight_map", map}}.dump());
  auto loaded = lm::load(dir.string());
  EXPECT_EQ(loaded.model->parameters().size(), w.size());
  EXPECT_TRUE(mx::array_equal(loaded.model->parameters().at("model.layers.1.mlp.up_proj.weight"),
                              w.at("model.layers.1.mlp.up_proj.weight"))
                  .item<bool>());
}

TEST(Load, MultimodalNamesBothLayoutsKeepVisionWeights) {
  TempDir tmp;
  json cfg = {{"model_type", "gemma3"}, {"text_config", tiny_text_config()}};
  cfg["text_config"]["model_type"] = "gemma3_text";
  auto original = make_weights(cfg, mx::bfloat16);  // language_model.model.* names
  original.emplace("vision_tower.vision_model.post_layernorm.weight", mx::ones({4}));
  original.emplace("multi_modal_projector.mm_soft_emb_norm.weight", mx::ones({4}));
  auto loaded = lm::load(write_model(tmp.path() / "a", cfg, original).string());
  EXPECT_EQ(loaded.model->model_type(), "gemma3");
  EXPECT_EQ(loaded.vision_weights.size(), 2u);
  EXPECT_TRUE(loaded.vision_weights.count("multi_modal_projector.mm_soft_emb_norm.weight"));
  EXPECT_TRUE(mx::array_equal(loaded.model->parameters().at("model.norm.weight"),
                              original.at("language_model.model.norm.weight"))
                  .item<bool>());

  // transformers >= 4.52 names: model.language_model.*, model.vision_tower.*
  mx::ArrayMap v5;
  for (auto& [name, t] : original) {
    std::string n = name;
    if (n.rfind("language_model.model.", 0) == 0)
      n = "model.language_model." + n.substr(21);
    else
      n = "model." + n;
    v5.emplace(n, t);
  }
  auto l5 = lm::load(write_model(tmp.path() / "b", cfg, v5).string());
  EXPECT_EQ(l5.vision_weights.size(), 2u);
  EXPECT_TRUE(l5.vision_weights.count("model.vision_tower.vision_model.post_layernorm.weight"));
  EXPECT_EQ(l5.model->parameters().size(), loaded.model->parameters().size());
}

TEST(Load, ErrorsNameTheCause) {
  TempDir tmp;
  const auto& root = tmp.path();
  EXPECT_HAS(error_of([&] { lm::load((root / "nope").string()); }), "does not exist");

  fs::create_directories(root / "empty");
  auto e = error_of([&] { lm::load((root / "empty").string()); });
  EXPECT_HAS(e, "config.json");

  fs::create_directories(root / "corrupt");
  write(root / "corrupt" / "config.json", "{\"model_type\": \"gemma3_text\",");
  e = error_of([&] { lm::load((root / "corrupt").string()); });
  EXPECT_HAS(e, (root / "corrupt" / "config.json").string());
  EXPECT_HAS(e, "invalid JSON");

  json unknown = tiny_text_config();
  unknown["model_type"] = "mamba7";
  fs::create_directories(root / "unknown");
  write(root / "unknown" / "config.json", unknown.dump());
  e = error_of([&] { lm::load((root / "unknown").string()); });
  EXPECT_HAS(e, "mamba7");
  EXPECT_HAS(e, "gemma3_text");

  fs::create_directories(root / "noweights");
  write(root / "noweights" / "config.json", tiny_text_config().dump());
  e = error_of([&] { lm::load((root / "noweights").string()); });
  EXPECT_HAS(e, "no weights");

  auto w = make_weights(tiny_text_config(), mx::float32);
  auto bad_shape = w;
  bad_shape.erase("model.layers.0.self_attn.k_proj.weight");
  bad_shape.emplace("model.layers.0.self_attn.k_proj.weight", mx::zeros({5, 8}));
  e = error_of(
      [&] { lm::load(write_model(root / "shape", tiny_text_config(), bad_shape).string()); });
  EXPECT_HAS(e, "model.layers.0.self_attn.k_proj.weight");
  EXPECT_HAS(e, "5, 8");
  EXPECT_HAS(e, "4, 8");

  auto missing = w;
  missing.erase("model.layers.1.post_feedforward_layernorm.weight");
  e = error_of(
      [&] { lm::load(write_model(root / "missing", tiny_text_config(), missing).string()); });
  EXPECT_HAS(e, "model.layers.1.post_feedforward_layernorm.weight");
  EXPECT_HAS(e, "missing");

  auto bad_dtype = w;
  bad_dtype.erase("model.norm.weight");
  bad_dtype.emplace("model.norm.weight", mx::zeros({8}, mx::int32));
  e = error_of(
      [&] { lm::load(write_model(root / "dtype", tiny_text_config(), bad_dtype).string()); });
  EXPECT_HAS(e, "model.norm.weight");
  EXPECT_HAS(e, "int32");

  auto extra = w;
  extra.emplace("model.layers.0.mystery.weight", mx::zeros({2}));
  e = error_of([&] { lm::load(write_model(root / "extra", tiny_text_config(), extra).string()); });
  EXPECT_HAS(e, "model.layers.0.mystery.weight");

  json bad_eos = tiny_text_config();
  bad_eos["eos_token_id"] = "one";
  e = error_of([&] { lm::load(write_model(root / "eos", bad_eos, w).string()); });
  EXPECT_HAS(e, "eos_token_id");
}

// Logits of the tiny Gemma 3 checkpoint written by tools/reference/gemma3_tiny_refs.py
// (float64 NumPy from gemma3.md §2): float32 within 1e-4 relative.
TEST(Load, TinyCheckpointMatchesNumpyReference) {
  fs::path dir = fs::path(MLXCPP_TEST_DATA) / "lm" / "gemma3_tiny";
  auto loaded = lm::load(dir.string());
  EXPECT_EQ(loaded.model->model_type(), "gemma3");
  EXPECT_EQ(loaded.vision_weights.size(), 1u);
  EXPECT_EQ(loaded.eos_token_ids, (std::vector<int32_t>{1, 106, 107}));
  auto ref = lm::read_json_file(dir / "logits.json");
  auto ids = ref["tokens"].get<std::vector<int32_t>>();
  auto tokens = mx::array(ids.begin(), {1, static_cast<int>(ids.size())}, mx::int32);
  auto logits = (*loaded.model)(tokens, nullptr);
  auto expected = ref["logits"].get<std::vector<double>>();
  mxtest::expect_close(logits, expected, ref["shape"].get<mx::Shape>(), 1e-4, 1e-4);
  // And through the caches, token by token.
  auto cache = loaded.model->make_cache();
  std::vector<mx::array> steps;
  for (int t = 0; t < static_cast<int>(ids.size()); ++t) {
    steps.push_back((*loaded.model)(mx::slice(tokens, {0, t}, {1, t + 1}), &cache));
  }
  mxtest::expect_close(mx::concatenate(steps, 1), expected, ref["shape"].get<mx::Shape>(), 1e-4,
                       1e-4);
}

// gemma3.md §7: the 270M has exactly 268,098,176 parameters.
TEST(Load, RandomModel270mReadsBack) {
  TempDir tmp;
  lm::RandomModelOptions options;
  options.dtype = mx::bfloat16;
  options.seed = 7;
  options.tokenizer_dir = fs::path(MLXCPP_TEST_DATA) / "tokenizers" / "gemma3";
  auto out = tmp.path() / "gemma3-270m";
  size_t n = lm::write_random_model(lm::published_config("gemma3-270m"), out, options);
  EXPECT_EQ(n, 268098176u);
  auto loaded = lm::load(out.string());
  EXPECT_EQ(loaded.model->num_parameters(), 268098176u);
  ASSERT_TRUE(loaded.tokenizer);
  EXPECT_EQ(loaded.tokenizer->encode("Who are", false), (std::vector<int32_t>{15938, 659}));
  EXPECT_EQ(loaded.eos_token_ids, (std::vector<int32_t>{1, 106}));
  EXPECT_EQ(loaded.config["layer_types"].size(), 18u);
  EXPECT_EQ(loaded.model->parameters().at("model.embed_tokens.weight").dtype(), mx::bfloat16);
  // Refuses to overwrite.
  auto e =
      error_of([&] { lm::write_random_model(lm::published_config("gemma3-270m"), out, options); });
  EXPECT_HAS(e, "not empty");
}

TEST(Load, RandomModelShardsWithIndex) {
  TempDir tmp;
  lm::RandomModelOptions options;
  options.dtype = mx::float32;
  options.tokenizer_dir = fs::path(MLXCPP_TEST_DATA) / "tokenizers" / "gemma3";
  options.max_shard_bytes = 4000;  // forces several shards for the tiny config
  json cfg = tiny_text_config();
  auto out = tmp.path() / "tiny";
  lm::write_random_model(cfg, out, options);
  EXPECT_TRUE(fs::exists(out / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(out / "model-00001-of-00002.safetensors") ||
              fs::exists(out / "model-00001-of-00003.safetensors"));
  auto loaded = lm::load(out.string());
  EXPECT_EQ(loaded.model->parameters().at("model.norm.weight").dtype(), mx::float32);
  // Same seed, same weights.
  auto out2 = tmp.path() / "tiny2";
  lm::write_random_model(cfg, out2, options);
  EXPECT_TRUE(mx::array_equal(lm::load(out2.string()).model->parameters().at("model.norm.weight"),
                              loaded.model->parameters().at("model.norm.weight"))
                  .item<bool>());
}
