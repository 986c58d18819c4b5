// mlx_lm.convert (formats.md §1.3, §3, §4). The output is built in a hidden folder beside
// --mlx-path and renamed into place at the end, so a failed or interrupted convert leaves
// either nothing or a complete model.
#include "mlxcpp/lm/convert.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <stdexcept>
#include <system_error>

#include "mlxcpp/lm/hub.h"
#include "mlxcpp/lm/load.h"
#include "mlxcpp/lm/quantization.h"
#include "mlxcpp/mx/io.h"
#include "mlxcpp/mx/transforms.h"
#include "mlxcpp/nn/quantized.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace lm {

namespace {

std::string shard_name(int i, int n) {
  if (n == 1) return "model.safetensors";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "model-%05d-of-%05d.safetensors", i, n);
  return buf;
}

void write_text(const fs::path& file, const std::string& text) {
  mx::io::write_file_atomic(file.string(), text);
}

std::optional<mx::Dtype> parse_dtype(const std::string& s) {
  if (s == "bfloat16") return mx::bfloat16;
  if (s == "float16") return mx::float16;
  if (s == "float32") return mx::float32;
  return std::nullopt;
}

// The files mlx-lm carries over besides weights and config: the tokenizer (as
// save_pretrained writes it), generation defaults, chat templates and custom code.
bool is_companion_file(const std::string& name) {
  static const std::set<std::string> names = {
      "tokenizer.json",     "tokenizer_config.json",  "special_tokens_map.json",
      "tokenizer.model",    "added_tokens.json",      "vocab.json",
      "merges.txt",         "generation_config.json", "chat_template.jinja",
      "chat_template.json", "tiktoken.model"};
  if (names.count(name)) return true;
  auto ends = [&](const std::string& suf) {
    return name.size() > suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
  };
  return ends(".py") || ends(".jinja") || ends(".tiktoken");
}

std::string model_card(const std::string& base) {
  return "---\nlibrary_name: mlx\nbase_model: " + base + "\ntags:\n- mlx\n---\n\n# " + base +
         "\n\nConverted to MLX format with `mlxcpp convert`.\n";
}

// Removes a folder tree on scope exit unless released.
class TempDir {
 public:
  explicit TempDir(fs::path p) : path_(std::move(p)) {}
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  fs::path path_;
};

void check_absent(const fs::path& p) {
  std::error_code ec;
  if (fs::exists(fs::symlink_status(p, ec))) {
    throw std::invalid_argument("cannot save to the path " + p.string() +
                                " as it already exists; delete it or choose another --mlx-path");
  }
}

}  // namespace

size_t count_parameters(const LanguageModel& model) {
  size_t n = 0;
  std::vector<const mx::nn::Module*> stack{&model};
  while (!stack.empty()) {
    const mx::nn::Module* m = stack.back();
    stack.pop_back();
    for (const auto& [name, child] : m->children()) stack.push_back(child.get());
    int bits = 0;
    if (auto* q = dynamic_cast<const mx::nn::QuantizedLinear*>(m)) bits = q->spec().bits;
    if (auto* e = dynamic_cast<const mx::nn::QuantizedEmbedding*>(m)) bits = e->spec().bits;
    for (const auto& [name, p] : m->parameters()) {
      if (name.find('.') != std::string::npos) continue;  // a child's
      if (bits == 0 || name == "bias") {
        n += p.size();
      } else if (name == "weight") {
        n += p.size() * 32 / static_cast<size_t>(bits);
      }
    }
  }
  return n;
}

int save_model_weights(const fs::path& dir,
                       const std::vector<std::pair<std::string, mx::array>>& weights,
                       size_t total_parameters, size_t max_shard_bytes,
                       const std::function<void(size_t, size_t)>& progress) {
  // Greedy shards in the given order, as mlx-lm's make_shards.
  std::vector<std::vector<size_t>> shards(1);
  size_t shard_bytes = 0, total = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    size_t b = weights[i].second.nbytes();
    if (!shards.back().empty() && shard_bytes + b > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += b;
    total += b;
  }
  const int n = static_cast<int>(shards.size());
  std::map<std::string, std::string> weight_map;
  size_t done = 0;
  if (progress) progress(0, total);
  for (int s = 0; s < n; ++s) {
    const std::string file = shard_name(s + 1, n);
    mx::ArrayMap shard;
    for (size_t i : shards[s]) {
      const auto& [name, a] = weights[i];
      // One tensor at a time: quantization is lazy, so this is where the work happens and
      // the progress bar moves with it.
      mx::eval({a});
      done += a.nbytes();
      if (progress) progress(done, total);
      if (!shard.emplace(name, a).second) {
        throw std::invalid_argument("save_model_weights: tensor '" + name + "' appears twice");
      }
      weight_map[name] = file;
    }
    mx::save_safetensors((dir / file).string(), shard, {{"format", "mlx"}});
  }
  nlohmann::ordered_json index;
  index["metadata"]["total_size"] = total;
  index["metadata"]["total_parameters"] = total_parameters;
  index["weight_map"] = nlohmann::ordered_json::object();
  for (const auto& [name, file] : weight_map) index["weight_map"][name] = file;
  write_text(dir / "model.safetensors.index.json", index.dump(4) + "\n");
  return n;
}

ConvertResult convert(const ConvertOptions& o) {
  auto log = [&](const std::string& s) {
    if (o.log) o.log(s);
  };
  if (o.mlx_path.empty()) throw std::invalid_argument("convert: --mlx-path is empty");
  check_absent(o.mlx_path);
  if (o.quantize && o.dequantize) {
    throw std::invalid_argument("choose either --quantize or --dequantize, not both");
  }
  if (o.quant_predicate && !o.quantize) {
    throw std::invalid_argument("--quant-predicate " + *o.quant_predicate + " needs -q/--quantize");
  }
  if (o.quant_predicate && o.q_mode != "affine") {
    throw std::invalid_argument("--quant-predicate supports only --q-mode affine, not " + o.q_mode);
  }
  mx::nn::QuantizationSpec spec = mx::nn::quantization_defaults(o.q_mode, o.q_group_size, o.q_bits);
  // Refuse what MLX's quantize would refuse, before the model is loaded.
  if (o.quantize) {
    const bool affine = spec.mode == "affine";
    const std::set<int> groups =
        affine ? std::set<int>{32, 64, 128} : std::set<int>{spec.mode == "nvfp4" ? 16 : 32};
    const std::set<int> widths =
        affine ? std::set<int>{2, 3, 4, 5, 6, 8} : std::set<int>{spec.mode == "mxfp8" ? 8 : 4};
    auto list = [](const std::set<int>& s) {
      std::string r;
      for (int v : s) r += (r.empty() ? "" : ", ") + std::to_string(v);
      return r;
    };
    if (!groups.count(spec.group_size)) {
      throw std::invalid_argument("--q-group-size " + std::to_string(spec.group_size) +
                                  " is not supported by --q-mode " + spec.mode + " (" +
                                  list(groups) + ")");
    }
    if (!widths.count(spec.bits)) {
      throw std::invalid_argument("--q-bits " + std::to_string(spec.bits) +
                                  " is not supported by --q-mode " + spec.mode + " (" +
                                  list(widths) + ")");
    }
  }
  if (o.dtype && !parse_dtype(*o.dtype)) {
    throw std::invalid_argument("--dtype " + *o.dtype +
                                " is not one of float16, bfloat16, float32");
  }

  // The dtype: the flag, else what the config says the model was trained in.
  LoadOptions load_options;
  fs::path source = hub::resolve_model_path(o.hf_path);
  {
    json cfg = read_json_file(source / "config.json");
    std::optional<std::string> name = o.dtype;
    if (!name && cfg.is_object()) {
      if (cfg.contains("torch_dtype") && cfg["torch_dtype"].is_string()) {
        name = cfg["torch_dtype"].get<std::string>();
      } else if (cfg.contains("text_config") && cfg["text_config"].is_object() &&
                 cfg["text_config"].contains("dtype") && cfg["text_config"]["dtype"].is_string()) {
        name = cfg["text_config"]["dtype"].get<std::string>();
      }
    }
    if (name) load_options.dtype = parse_dtype(*name);
    if (load_options.dtype) log("Using dtype: " + *name);
  }
  log("Loading " + source.string());
  LoadedModel loaded = load(source.string(), load_options);
  LanguageModel& model = *loaded.model;
  json config = loaded.config;

  ConvertResult result;
  if (o.quantize) {
    mx::nn::QuantizePredicate predicate;
    if (o.quant_predicate) {
      predicate = mixed_quant_predicate(*o.quant_predicate, model.num_layers(), spec.group_size);
    }
    log("Quantizing");
    config = quantize_model(model, config, spec, predicate);
  }
  if (o.dequantize) {
    log("Dequantizing");
    mx::nn::dequantize(model);
    config.erase("quantization");
    config.erase("quantization_config");
  }
  config.erase("_name_or_path");
  config.erase("vision_config");
  result.bits_per_weight = mx::nn::bits_per_weight(model);
  if (o.quantize) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "Quantized model with %.3f bits per weight.",
                  result.bits_per_weight);
    log(buf);
  }

  std::vector<std::pair<std::string, mx::array>> weights;
  for (const auto& [name, p] : model.parameters()) {
    weights.emplace_back(model.checkpoint_name(name), p);
    result.total_size += p.nbytes();
  }
  std::sort(weights.begin(), weights.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  result.total_parameters = count_parameters(model);

  // Build beside the destination (same filesystem, so the final rename is atomic).
  fs::path dest = fs::absolute(o.mlx_path).lexically_normal();
  if (dest.filename().empty()) dest = dest.parent_path();  // "out/" names "out"
  std::error_code ec;
  fs::create_directories(dest.parent_path(), ec);
  if (ec) {
    throw std::runtime_error("cannot create the folder " + dest.parent_path().string() + ": " +
                             ec.message());
  }
  std::string tmp_name = ".";
  tmp_name.append(dest.filename().string()).append(".convert-");
  tmp_name.append(std::to_string(::getpid()));
  TempDir tmp(dest.parent_path() / tmp_name);
  fs::remove_all(tmp.path(), ec);
  if (!fs::create_directory(tmp.path(), ec)) {
    throw std::runtime_error("cannot create the temporary folder " + tmp.path().string() + ": " +
                             ec.message());
  }
  result.shards = save_model_weights(tmp.path(), weights, result.total_parameters,
                                     o.max_shard_bytes, o.progress);
  weights.clear();
  write_text(tmp.path() / "config.json", config.dump(4) + "\n");
  for (const auto& entry : fs::directory_iterator(source)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || !is_companion_file(name)) continue;
    fs::copy_file(entry.path(), tmp.path() / name, fs::copy_options::overwrite_existing);
  }
  write_text(tmp.path() / "README.md", model_card(o.hf_path));

  check_absent(o.mlx_path);
  fs::rename(tmp.path(), dest, ec);
  if (ec) {
    throw std::runtime_error("cannot move the converted model into " + dest.string() + ": " +
                             ec.message());
  }
  tmp.release();
  result.path = dest;
  result.config = std::move(config);
  return result;
}

}  // namespace lm
