// lm::load: model folder (or cached repo) -> model, tokenizer, config and eos ids.
#include "mlxcpp/lm/load.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "mlxcpp/lm/hub.h"
#include "mlxcpp/lm/quantization.h"
#include "mlxcpp/mx/transforms.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace lm {

json read_json_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot open the file");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    throw std::runtime_error(file.string() + ": invalid JSON: " + e.what());
  }
}

mx::ArrayMap load_model_weights(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / "model.safetensors.index.json", ec)) {
    return mx::load_sharded_safetensors((dir / "model.safetensors.index.json").string()).first;
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("model", 0) == 0 && name.size() > 12 &&
        name.substr(name.size() - 12) == ".safetensors") {
      files.push_back(entry.path());
    }
  }
  if (files.empty()) {
    throw std::runtime_error(dir.string() +
                             ": no weights (no model.safetensors, model*.safetensors or "
                             "model.safetensors.index.json)");
  }
  std::sort(files.begin(), files.end());
  mx::ArrayMap out;
  std::map<std::string, fs::path> origin;
  for (const auto& file : files) {
    for (auto& [name, a] : mx::load_safetensors(file.string()).first) {
      if (auto it = origin.find(name); it != origin.end()) {
        throw std::runtime_error(dir.string() + ": tensor '" + name + "' is in both " +
                                 it->second.filename().string() + " and " +
                                 file.filename().string());
      }
      origin.emplace(name, file);
      out.emplace(name, a);
    }
  }
  return out;
}

namespace {

void add_ids(const json& e, const std::string& where, std::vector<int32_t>& ids) {
  auto add = [&](const json& v) {
    if (!v.is_number_integer()) {
      throw std::runtime_error(where +
                               ": eos_token_id must be an integer or a list of integers, "
                               "got " +
                               e.dump());
    }
    auto id = v.get<int32_t>();
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  if (e.is_null()) return;
  if (e.is_array()) {
    for (const auto& v : e) add(v);
  } else {
    add(e);
  }
}

// The floating dtype holding most parameter elements (checkpoints are normally uniform).
std::optional<mx::Dtype> checkpoint_dtype(const mx::ArrayMap& weights) {
  std::map<std::string, std::pair<size_t, mx::Dtype>> count;
  for (const auto& [name, a] : weights) {
    if (!mx::is_floating_point(a.dtype())) continue;
    auto [it, fresh] = count.try_emplace(mx::dtype_name(a.dtype()), 0, a.dtype());
    it->second.first += a.size();
  }
  std::optional<mx::Dtype> best;
  size_t most = 0;
  for (const auto& [name, c] : count) {
    if (c.first >= most) {
      most = c.first;
      best = c.second;
    }
  }
  return best;
}

}  // namespace

LoadedModel load(const std::string& path_or_repo, const LoadOptions& options) {
  LoadedModel out;
  out.path = hub::resolve_model_path(path_or_repo);
  const fs::path& dir = out.path;
  std::error_code ec;
  if (!fs::exists(dir / "config.json", ec)) {
    throw std::runtime_error(dir.string() + ": no config.json (not a model folder)");
  }
  out.config = read_json_file(dir / "config.json");
  const json& config = out.config;
  std::string config_file = (dir / "config.json").string();
  if (!config.is_object()) throw std::runtime_error(config_file + ": not a JSON object");
  if (!config.contains("model_type") || !config["model_type"].is_string()) {
    throw std::runtime_error(config_file + ": no model_type string field");
  }
  std::optional<QuantizationConfig> quantization;
  try {
    quantization = QuantizationConfig::from_model_config(config, config_file);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }
  std::string model_type = config["model_type"].get<std::string>();

  std::shared_ptr<LanguageModel> model;
  try {
    // Built in float32 first: the dtype is known only after reading the weights; parameters
    // are lazy and replaced by load_weights, so this allocates nothing.
    model = model_factory(model_type)(config, mx::float32);
  } catch (const std::exception& e) {
    // Config parsers name the field as "config.json: ..."; the full path replaces that.
    std::string what = e.what();
    const std::string own = "config.json: ";
    if (what.rfind(own, 0) == 0) what.erase(0, own.size());
    throw std::runtime_error(config_file + ": " + what);
  }

  mx::ArrayMap weights = load_model_weights(dir);
  out.vision_weights = model->split_vision_weights(weights);
  try {
    weights = model->sanitize(std::move(weights));
  } catch (const std::exception& e) {
    throw std::runtime_error(dir.string() + ": " + e.what());
  }
  if (quantization) {
    try {
      apply_checkpoint_quantization(*model, *quantization, weights);
    } catch (const std::exception& e) {
      throw std::runtime_error(dir.string() + ": " + e.what());
    }
  }
  mx::Dtype dtype = mx::float32;
  if (options.dtype) {
    if (!mx::is_floating_point(*options.dtype)) {
      throw std::invalid_argument("load: dtype " + mx::dtype_name(*options.dtype) +
                                  " is not a floating type");
    }
    dtype = *options.dtype;
  } else if (auto d = checkpoint_dtype(weights)) {
    dtype = *d;
  }
  model->set_dtype(dtype);
  std::map<std::string, mx::array> ordered(weights.begin(), weights.end());
  weights.clear();
  try {
    model->load_weights(ordered, /*strict=*/true, /*cast_floating=*/true);
  } catch (const std::exception& e) {
    throw std::runtime_error(dir.string() + ": " + e.what());
  }
  ordered.clear();
  std::vector<std::string> names;
  std::vector<mx::array> params;
  for (auto& [name, p] : model->parameters()) {
    names.push_back(name);
    params.push_back(p);
  }
  mx::eval(params);
  if (mx::default_device() == mx::Device(mx::Device::gpu)) {
    // The weights are mmap'd checkpoint pages (or casts of them in unified
    // memory): the GPU would read the pages over the bus on every step.
    // Device-resident copies make decode read them from HBM.
    params = mx::to_device_memory(std::move(params));
    std::map<std::string, mx::array> resident;
    for (size_t i = 0; i < names.size(); ++i) resident.emplace(names[i], params[i]);
    params.clear();
    model->load_weights(resident, /*strict=*/true, /*cast_floating=*/false);
  }
  out.model = std::move(model);

  if (fs::exists(dir / "tokenizer.json", ec)) {
    out.tokenizer = std::make_shared<const Tokenizer>(Tokenizer::from_dir(dir));
  }

  // End-of-sequence ids: config.json (top level, then text_config), generation_config.json,
  // then the tokenizer's (gemma3.md §5.5: -it models stop on both 1 and 106).
  if (config.contains("eos_token_id"))
    add_ids(config["eos_token_id"], config_file, out.eos_token_ids);
  if (config.contains("text_config") && config["text_config"].is_object() &&
      config["text_config"].contains("eos_token_id")) {
    add_ids(config["text_config"]["eos_token_id"], config_file, out.eos_token_ids);
  }
  if (fs::exists(dir / "generation_config.json", ec)) {
    json gen = read_json_file(dir / "generation_config.json");
    if (gen.is_object() && gen.contains("eos_token_id")) {
      add_ids(gen["eos_token_id"], (dir / "generation_config.json").string(), out.eos_token_ids);
    }
  }
  if (out.tokenizer) {
    for (int32_t id : out.tokenizer->config().eos_token_ids) {
      if (std::find(out.eos_token_ids.begin(), out.eos_token_ids.end(), id) ==
          out.eos_token_ids.end()) {
        out.eos_token_ids.push_back(id);
      }
    }
  }
  return out;
}

}  // namespace lm
