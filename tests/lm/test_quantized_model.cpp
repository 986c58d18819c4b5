// Quantized models end to end on the trained echo model (models/gemma3-tiny-echo): quantized
// layers against the same model holding the dequantized weights, convert -> load against
// quantizing in memory, convert's refusals and clean failure, the config of mixed recipes,
// and the NLL of 4- and 8-bit models against bf16 (transformers' greedy continuations).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/check.h"
#include "mlxcpp/lm/convert.h"
#include "mlxcpp/lm/load.h"
#include "mlxcpp/lm/perplexity.h"
#include "mlxcpp/lm/quantization.h"
#include "mlxcpp/mx.h"
#include "mlxcpp/nn/quantized.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kRoot = fs::path(MLXCPP_TEST_DATA).parent_path().parent_path();
const fs::path kModel = kRoot / "models" / "gemma3-tiny-echo";
const fs::path kRef = fs::path(MLXCPP_TEST_DATA) / "gemma3" / "copy_trained" / "reference.json";

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() /
            ("mlxcpp_qmodel_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

json reference() { return lm::read_json_file(kRef); }

mx::array prompt_row(const json& ref, int i) {
  std::vector<int32_t> ids = ref["prompt_tokens"][i].get<std::vector<int32_t>>();
  return mx::array(ids.begin(), {1, static_cast<int>(ids.size())}, mx::int32);
}

std::vector<double> logits_of(lm::LanguageModel& m, const mx::array& tokens) {
  auto y = mx::astype(m(tokens, nullptr), mx::float32);
  mx::eval({y});
  return mxtest::to_vector(y);
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  }
  return m;
}

int count_quantized(const mx::nn::Module& m, int bits = 0) {
  int n = 0;
  for (const auto& [name, c] : m.children()) {
    if (auto* q = dynamic_cast<const mx::nn::QuantizedLinear*>(c.get())) {
      n += bits == 0 || q->spec().bits == bits;
    } else if (auto* e = dynamic_cast<const mx::nn::QuantizedEmbedding*>(c.get())) {
      n += bits == 0 || e->spec().bits == bits;
    } else {
      n += count_quantized(*c, bits);
    }
  }
  return n;
}

}  // namespace

// Every Linear and the embedding (tied head) of the echo model have input dims divisible by
// 64: all 29 layers are quantized, and the logits equal those of the same model holding the
// dequantized weights in float32 (quantized_matmul vs dense matmul: rounding only).
TEST(QuantizedModel, MatchesDequantizedWeights) {
  auto ref = reference();
  for (const mx::nn::QuantizationSpec& spec :
       {mx::nn::QuantizationSpec{64, 4, "affine"}, mx::nn::QuantizationSpec{64, 8, "affine"},
        mx::nn::QuantizationSpec{32, 3, "affine"}, mx::nn::QuantizationSpec{32, 4, "mxfp4"},
        mx::nn::QuantizationSpec{16, 4, "nvfp4"}, mx::nn::QuantizationSpec{32, 8, "mxfp8"}}) {
    const int bits = spec.bits;
    SCOPED_TRACE(spec.mode + " " + std::to_string(spec.group_size) + "/" + std::to_string(bits));
    auto q = lm::load(kModel.string());
    lm::quantize_model(*q.model, q.config, spec);
    EXPECT_EQ(count_quantized(*q.model), 4 * 7 + 1);
    auto d = lm::load(kModel.string());
    lm::quantize_model(*d.model, d.config, spec);
    EXPECT_EQ(mx::nn::dequantize(*d.model), 29);
    EXPECT_EQ(count_quantized(*d.model), 0);
    for (int i = 0; i < 3; ++i) {
      auto tokens = prompt_row(ref, i);
      auto lq = logits_of(*q.model, tokens);
      auto ld = logits_of(*d.model, tokens);
      EXPECT_LT(max_abs_diff(lq, ld), 2e-4) << bits << " bits, prompt " << i;
    }
  }
}

// convert -q writes mlx-lm's layout; loading it gives bit-identical logits to quantizing the
// same model in memory.
TEST(QuantizedModel, ConvertLoadMatchesInMemory) {
  TempDir tmp;
  lm::ConvertOptions o;
  o.hf_path = kModel.string();
  o.mlx_path = tmp.path() / "q4";
  o.quantize = true;
  auto r = lm::convert(o);
  EXPECT_EQ(r.shards, 1);
  for (const char* f :
       {"model.safetensors", "model.safetensors.index.json", "config.json", "tokenizer.json",
        "tokenizer_config.json", "generation_config.json", "README.md"}) {
    EXPECT_TRUE(fs::exists(o.mlx_path / f)) << f;
  }
  auto [arrays, meta] = mx::load_safetensors((o.mlx_path / "model.safetensors").string());
  EXPECT_EQ(meta.at("format"), "mlx");
  EXPECT_EQ(arrays.at("model.layers.0.mlp.down_proj.weight").dtype(), mx::uint32);
  EXPECT_EQ(arrays.at("model.layers.0.mlp.down_proj.weight").shape(), (mx::Shape{128, 64}));
  EXPECT_EQ(arrays.at("model.layers.0.mlp.down_proj.scales").shape(), (mx::Shape{128, 8}));
  EXPECT_EQ(arrays.at("model.embed_tokens.biases").shape(), (mx::Shape{384, 2}));
  json cfg = lm::read_json_file(o.mlx_path / "config.json");
  EXPECT_EQ(cfg["quantization"], (json{{"group_size", 64}, {"bits", 4}, {"mode", "affine"}}));
  EXPECT_EQ(cfg["quantization_config"], cfg["quantization"]);
  json index = lm::read_json_file(o.mlx_path / "model.safetensors.index.json");
  EXPECT_EQ(index["weight_map"].size(), arrays.size());
  size_t bytes = 0;
  for (const auto& [n, a] : arrays) bytes += a.nbytes();
  EXPECT_EQ(index["metadata"]["total_size"].get<size_t>(), bytes);
  // 1,034,624 parameters (training record), packed weights counted unpacked.
  EXPECT_EQ(index["metadata"]["total_parameters"].get<size_t>(), 1034624u);

  auto loaded = lm::load(o.mlx_path.string());
  EXPECT_EQ(count_quantized(*loaded.model), 29);
  auto mem = lm::load(kModel.string());
  lm::quantize_model(*mem.model, mem.config, {64, 4, "affine"});
  auto tokens = prompt_row(reference(), 0);
  EXPECT_EQ(max_abs_diff(logits_of(*loaded.model, tokens), logits_of(*mem.model, tokens)), 0.0);

  // -d writes it back unquantized, without the quantization keys, loading as float.
  lm::ConvertOptions d;
  d.hf_path = o.mlx_path.string();
  d.mlx_path = tmp.path() / "deq";
  d.dequantize = true;
  lm::convert(d);
  json dcfg = lm::read_json_file(d.mlx_path / "config.json");
  EXPECT_FALSE(dcfg.contains("quantization"));
  EXPECT_FALSE(dcfg.contains("quantization_config"));
  auto deq = lm::load(d.mlx_path.string());
  EXPECT_EQ(count_quantized(*deq.model), 0);
  EXPECT_LT(max_abs_diff(logits_of(*deq.model, tokens), logits_of(*mem.model, tokens)), 2e-4);
}

TEST(QuantizedModel, ConvertRefusesExistingPathAndCleansUp) {
  TempDir tmp;
  lm::ConvertOptions o;
  o.hf_path = kModel.string();
  o.mlx_path = tmp.path() / "exists";
  fs::create_directories(o.mlx_path);
  try {
    lm::convert(o);
    FAIL() << "convert wrote into an existing folder";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(o.mlx_path.string()), std::string::npos) << e.what();
  }
  // A failure while writing (here: the progress callback throws) leaves neither the
  // destination nor the temporary folder behind.
  o.mlx_path = tmp.path() / "fails";
  o.quantize = true;
  o.progress = [](size_t done, size_t) {
    if (done > 0) throw std::runtime_error("interrupted");
  };
  EXPECT_THROW(lm::convert(o), std::runtime_error);
  EXPECT_FALSE(fs::exists(o.mlx_path));
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(tmp.path())) left.push_back(e.path().filename());
  EXPECT_EQ(left, std::vector<std::string>{"exists"});
  // Contradicting flags are refused before anything is loaded.
  o.progress = nullptr;
  o.dequantize = true;
  EXPECT_THROW(lm::convert(o), std::invalid_argument);
  o.dequantize = false;
  o.q_mode = "mxfp4";
  o.quant_predicate = "mixed_3_6";
  EXPECT_THROW(lm::convert(o), std::invalid_argument);
}

// mixed_3_6 on 4 layers (hand-worked from mlx-lm's rule): L/8 = 0, 7L/8 = 3, so layers 2
// ((2 - 0) % 3 == 2) and 3 (>= 3) get 6 bits on v_proj and down_proj; everything else 3.
TEST(QuantizedModel, MixedRecipeConfigRoundTrip) {
  TempDir tmp;
  lm::ConvertOptions o;
  o.hf_path = kModel.string();
  o.mlx_path = tmp.path() / "mixed";
  o.quantize = true;
  o.quant_predicate = "mixed_3_6";
  lm::convert(o);
  json cfg = lm::read_json_file(o.mlx_path / "config.json");
  const json& q = cfg["quantization"];
  EXPECT_EQ(q["bits"], 4);
  EXPECT_EQ(q["group_size"], 64);
  int six = 0, three = 0;
  for (const auto& [k, v] : q.items()) {
    if (!v.is_object()) continue;
    EXPECT_EQ(v["group_size"], 64) << k;
    EXPECT_EQ(v["mode"], "affine") << k;
    const bool high =
        (k.find("layers.2.") != std::string::npos || k.find("layers.3.") != std::string::npos) &&
        (k.find("v_proj") != std::string::npos || k.find("down_proj") != std::string::npos);
    EXPECT_EQ(v["bits"], high ? 6 : 3) << k;
    (high ? six : three) += 1;
  }
  EXPECT_EQ(six, 4);
  EXPECT_EQ(three, 25);  // 4 layers x 7 projections + embed_tokens - 4
  EXPECT_EQ(q["model.embed_tokens"]["bits"], 3);
  auto parsed = lm::QuantizationConfig::from_json(q, "test");
  EXPECT_EQ(parsed.to_json(), q);

  auto loaded = lm::load(o.mlx_path.string());
  EXPECT_EQ(count_quantized(*loaded.model, 6), 4);
  EXPECT_EQ(count_quantized(*loaded.model, 3), 25);
  auto mem = lm::load(kModel.string());
  lm::quantize_model(*mem.model, mem.config, {64, 4, "affine"},
                     lm::mixed_quant_predicate("mixed_3_6", 4, 64));
  auto tokens = prompt_row(reference(), 1);
  EXPECT_EQ(max_abs_diff(logits_of(*loaded.model, tokens), logits_of(*mem.model, tokens)), 0.0);
}

// Loader predicate: a `false` entry keeps a layer in floating point even though the checkpoint
// holds quantized layers elsewhere; layers without .scales stay float.
TEST(QuantizedModel, LoaderHonoursFalseEntries) {
  TempDir tmp;
  lm::ConvertOptions o;
  o.hf_path = kModel.string();
  o.mlx_path = tmp.path() / "partial";
  lm::convert(o);  // float copy
  // Quantize only the MLPs of layer 0 by hand, and mark layer 1's q_proj false.
  auto src = lm::load(o.mlx_path.string());
  json cfg = lm::quantize_model(
      *src.model, src.config, {64, 8, "affine"},
      [](const std::string& p, const mx::nn::Module&) -> std::optional<mx::nn::QuantizationSpec> {
        if (p.rfind("model.layers.0.mlp.", 0) == 0) return mx::nn::QuantizationSpec{64, 8};
        return std::nullopt;
      });
  cfg["quantization"]["model.layers.1.self_attn.q_proj"] = false;
  std::vector<std::pair<std::string, mx::array>> w;
  for (const auto& [n, a] : src.model->parameters()) w.emplace_back(n, a);
  fs::path dir = tmp.path() / "handmade";
  fs::create_directories(dir);
  lm::save_model_weights(dir, w, lm::count_parameters(*src.model));
  std::ofstream(dir / "config.json") << cfg.dump(4);
  auto loaded = lm::load(dir.string());
  EXPECT_EQ(count_quantized(*loaded.model), 3);
  auto tokens = prompt_row(reference(), 2);
  EXPECT_EQ(max_abs_diff(logits_of(*loaded.model, tokens), logits_of(*src.model, tokens)), 0.0);
}

// NLL of transformers' greedy continuations (prompt + echo of the float model) under bf16,
// 8-bit and 4-bit weights: quantization may cost a little, never much.
TEST(QuantizedModel, NllAgainstBf16) {
  auto ref = reference();
  std::vector<int32_t> tokens;
  for (size_t i = 0; i < ref["prompt_tokens"].size(); ++i) {
    for (int32_t t : ref["prompt_tokens"][i]) tokens.push_back(t);
    // The echo up to and including the first <end_of_turn> (id 5): what the model predicts.
    for (int32_t t : ref["greedy"][i]) {
      tokens.push_back(t);
      if (t == 5) break;
    }
  }
  auto nll = [&](std::optional<int> bits) {
    lm::LoadOptions lo;
    lo.dtype = mx::bfloat16;
    auto m = lm::load(kModel.string(), lo);
    if (bits) lm::quantize_model(*m.model, m.config, {64, *bits, "affine"});
    return lm::evaluate_perplexity(*m.model, tokens, 512, 512).nll;
  };
  const double base = nll(std::nullopt), q8 = nll(8), q4 = nll(4);
  std::printf("NLL bf16 %.5f, 8-bit %.5f (delta %+.5f), 4-bit %.5f (delta %+.5f)\n", base, q8,
              q8 - base, q4, q4 - base);
  EXPECT_LT(std::fabs(q8 - base), 0.01 * base + 0.01);
  EXPECT_LT(std::fabs(q4 - base), 0.10 * base + 0.05);
}

// model_type gemma3 (the multimodal wrapper mlx-community uploads use): tensors and per-layer
// quantization keys live under language_model.*; convert writes them so and load reads them.
TEST(QuantizedModel, Gemma3WrapperNames) {
  TempDir tmp;
  fs::path src = tmp.path() / "wrapped";
  fs::create_directories(src);
  json text = lm::read_json_file(kModel / "config.json");
  json cfg = {{"model_type", "gemma3"},
              {"text_config", text},
              {"tie_word_embeddings", true},
              {"eos_token_id", text["eos_token_id"]}};
  std::ofstream(src / "config.json") << cfg.dump(2);
  mx::ArrayMap renamed;
  for (auto& [n, a] : mx::load_safetensors((kModel / "model.safetensors").string()).first) {
    renamed.emplace("language_model." + n, a);
  }
  mx::save_safetensors((src / "model.safetensors").string(), renamed);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(kModel / f, src / f);
  }
  lm::ConvertOptions o;
  o.hf_path = src.string();
  o.mlx_path = tmp.path() / "mixed";
  o.quantize = true;
  o.quant_predicate = "mixed_4_6";
  lm::convert(o);
  json out = lm::read_json_file(o.mlx_path / "config.json");
  EXPECT_EQ(out["model_type"], "gemma3");
  EXPECT_EQ(out["quantization"]["language_model.model.layers.2.mlp.down_proj"]["bits"], 6);
  EXPECT_EQ(out["quantization"]["language_model.model.layers.1.mlp.down_proj"]["bits"], 4);
  auto arrays = mx::load_safetensors((o.mlx_path / "model.safetensors").string()).first;
  for (const auto& [n, a] : arrays) EXPECT_EQ(n.rfind("language_model.model.", 0), 0u) << n;

  auto loaded = lm::load(o.mlx_path.string());
  EXPECT_EQ(count_quantized(*loaded.model, 6), 4);
  auto mem = lm::load(kModel.string());
  lm::quantize_model(*mem.model, mem.config, {64, 4, "affine"},
                     lm::mixed_quant_predicate("mixed_4_6", 4, 64));
  auto tokens = prompt_row(reference(), 0);
  EXPECT_EQ(max_abs_diff(logits_of(*loaded.model, tokens), logits_of(*mem.model, tokens)), 0.0);
}

// Where the quantization dict is found, `false` / dict entries, and foreign methods refused.
TEST(QuantizedModel, QuantizationConfigParsing) {
  json base = {{"group_size", 32}, {"bits", 4}};
  auto q = lm::QuantizationConfig::from_model_config({{"quantization", base}}, "c");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->defaults, (mx::nn::QuantizationSpec{32, 4, "affine"}));  // no mode: affine
  auto lifted = lm::QuantizationConfig::from_model_config(
      {{"text_config", {{"quantization_config", base}}}}, "c");
  ASSERT_TRUE(lifted);
  EXPECT_EQ(lifted->defaults.group_size, 32);
  EXPECT_FALSE(lm::QuantizationConfig::from_model_config({{"model_type", "x"}}, "c"));
  json mixed = base;
  mixed["model.layers.0.mlp.down_proj"] = {{"bits", 8}};
  mixed["lm_head"] = false;
  auto m = lm::QuantizationConfig::from_json(mixed, "c");
  EXPECT_EQ(m.layers.at("model.layers.0.mlp.down_proj"),
            (std::optional<mx::nn::QuantizationSpec>({32, 8, "affine"})));
  EXPECT_EQ(m.layers.at("lm_head"), std::nullopt);
  try {
    lm::QuantizationConfig::from_model_config(
        {{"quantization_config", {{"quant_method", "awq"}, {"w_bit", 4}}}}, "cfg.json");
    FAIL() << "AWQ accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("\"awq\""), std::string::npos) << e.what();
  }
  EXPECT_THROW(
      lm::QuantizationConfig::from_json({{"group_size", 64}, {"bits", 4}, {"mode", "int4"}}, "c"),
      std::invalid_argument);
  EXPECT_THROW(lm::QuantizationConfig::from_json({{"bits", 4}}, "c"), std::invalid_argument);
}
