// Quantized checkpoints at the model level (formats.md §3).
#include "mlxcpp/lm/quantization.h"

#include <cctype>
#include <stdexcept>
#include <vector>

#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/nn/layers.h"

using nlohmann::json;

namespace lm {

namespace {

int get_int_field(const json& j, const char* key, int def, const std::string& where) {
  if (!j.contains(key) || j.at(key).is_null()) return def;
  const json& v = j.at(key);
  if (!v.is_number_integer()) {
    throw std::invalid_argument(where + "." + key + " must be an integer, got " + v.dump());
  }
  return v.get<int>();
}

// One {"group_size", "bits", "mode"} dict; missing fields come from `base`.
mx::nn::QuantizationSpec parse_spec(const json& j, const mx::nn::QuantizationSpec& base,
                                    const std::string& where) {
  mx::nn::QuantizationSpec s = base;
  s.group_size = get_int_field(j, "group_size", base.group_size, where);
  s.bits = get_int_field(j, "bits", base.bits, where);
  if (j.contains("mode") && !j.at("mode").is_null()) {
    if (!j.at("mode").is_string()) {
      throw std::invalid_argument(where + ".mode must be a string, got " + j.at("mode").dump());
    }
    s.mode = j.at("mode").get<std::string>();
  }
  // Validates the mode (throws naming it).
  mx::nn::quantization_defaults(s.mode);
  if (s.group_size <= 0 || s.bits <= 0 || s.bits > 8) {
    throw std::invalid_argument(where + ": invalid group_size " + std::to_string(s.group_size) +
                                " / bits " + std::to_string(s.bits));
  }
  return s;
}

json spec_json(const mx::nn::QuantizationSpec& s) {
  return json{{"group_size", s.group_size}, {"bits", s.bits}, {"mode", s.mode}};
}

bool is_all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

json QuantizationConfig::to_json() const {
  json out = spec_json(defaults);
  for (const auto& [path, spec] : layers) out[path] = spec ? spec_json(*spec) : json(false);
  return out;
}

QuantizationConfig QuantizationConfig::from_json(const json& q, const std::string& where) {
  if (!q.is_object()) throw std::invalid_argument(where + " must be an object, got " + q.dump());
  if (!q.contains("group_size") || !q.contains("bits")) {
    throw std::invalid_argument(where + " must give group_size and bits");
  }
  QuantizationConfig out;
  out.defaults = parse_spec(q, mx::nn::QuantizationSpec{}, where);
  for (const auto& [key, v] : q.items()) {
    if (key == "group_size" || key == "bits" || key == "mode") continue;
    if (v.is_object()) {
      out.layers[key] = parse_spec(v, out.defaults, where + "." + key);
    } else if (v.is_boolean()) {
      if (v.get<bool>()) {
        out.layers[key] = out.defaults;
      } else {
        out.layers[key] = std::nullopt;
      }
    } else {
      // Tool-specific scalars (e.g. "quant_method") say nothing about MLX layers.
      continue;
    }
  }
  return out;
}

std::optional<QuantizationConfig> QuantizationConfig::from_model_config(const json& config,
                                                                        const std::string& where) {
  const json* q = nullptr;
  std::string name;
  if (config.contains("quantization") && !config.at("quantization").is_null()) {
    q = &config.at("quantization");
    name = "quantization";
  } else if (config.contains("quantization_config") &&
             !config.at("quantization_config").is_null()) {
    q = &config.at("quantization_config");
    name = "quantization_config";
  } else if (config.contains("text_config") && config.at("text_config").is_object() &&
             config.at("text_config").contains("quantization_config")) {
    q = &config.at("text_config").at("quantization_config");
    name = "text_config.quantization_config";
  }
  if (!q) return std::nullopt;
  if (q->is_object() && (!q->contains("group_size") || !q->contains("bits")) &&
      q->contains("quant_method")) {
    throw std::invalid_argument(where + ": " + name + " uses quant_method " +
                                q->at("quant_method").dump() +
                                ", which mlxcpp does not read (MLX quantization only: "
                                "group_size, bits, mode)");
  }
  return from_json(*q, where + ": " + name);
}

int apply_checkpoint_quantization(LanguageModel& model, const QuantizationConfig& q,
                                  const mx::ArrayMap& weights) {
  // Per-layer keys are paths in the checkpoint's tree; map them the way the model maps
  // tensor names (e.g. gemma3's language_model.model.* -> model.*).
  std::map<std::string, std::optional<mx::nn::QuantizationSpec>> layers;
  const std::string suffix = ".scales";
  for (const auto& [key, spec] : q.layers) {
    mx::ArrayMap probe;
    probe.emplace(key + suffix, mx::array(0.0f));
    for (const auto& [name, a] : model.sanitize(std::move(probe))) {
      if (name.size() > suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
        layers[name.substr(0, name.size() - suffix.size())] = spec;
      }
    }
  }
  auto predicate = [&](const std::string& path,
                       const mx::nn::Module&) -> std::optional<mx::nn::QuantizationSpec> {
    if (auto it = layers.find(path); it != layers.end()) return it->second;
    if (weights.count(path + suffix)) return q.defaults;
    return std::nullopt;
  };
  return mx::nn::quantize(model, q.defaults, predicate, /*quantize_weights=*/false);
}

mx::nn::QuantizePredicate mixed_quant_predicate(const std::string& recipe, int num_layers,
                                                int group_size) {
  int low = 0, high = 6;
  if (recipe == "mixed_2_6") {
    low = 2;
  } else if (recipe == "mixed_3_4") {
    low = 3;
    high = 4;
  } else if (recipe == "mixed_3_6") {
    low = 3;
  } else if (recipe == "mixed_4_6") {
    low = 4;
  } else {
    throw std::invalid_argument("unknown quantization recipe '" + recipe +
                                "' (known: mixed_2_6, mixed_3_4, mixed_3_6, mixed_4_6)");
  }
  if (num_layers <= 0) throw std::invalid_argument("mixed quantization: the model has no layers");
  const int L = num_layers;
  return [=](const std::string& path,
             const mx::nn::Module&) -> std::optional<mx::nn::QuantizationSpec> {
    // The layer index is the first numeric component of the path (0 for model-level layers).
    int index = 0;
    size_t start = 0;
    while (start <= path.size()) {
      size_t dot = path.find('.', start);
      std::string part =
          path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (is_all_digits(part)) {
        index = std::stoi(part);
        break;
      }
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    const bool more = index < L / 8 || index >= 7 * L / 8 || (index - L / 8) % 3 == 2;
    auto has = [&](const char* s) { return path.find(s) != std::string::npos; };
    mx::nn::QuantizationSpec s{group_size, low, "affine"};
    if ((has("v_proj") || has("v_a_proj") || has("v_b_proj")) && more) s.bits = high;
    if (has("down_proj") && more) s.bits = high;
    if (has("lm_head")) s.bits = high;
    return s;
  };
}

json quantize_model(LanguageModel& model, const json& config, const mx::nn::QuantizationSpec& spec,
                    const mx::nn::QuantizePredicate& predicate) {
  json out = config;
  const bool fine_grained = config.contains("quantization");
  QuantizationConfig qc;
  if (fine_grained) {
    qc = QuantizationConfig::from_json(config.at("quantization"), "config.json: quantization");
  } else {
    qc.defaults = spec;
  }
  auto wrapped = [&](const std::string& path,
                     const mx::nn::Module& m) -> std::optional<mx::nn::QuantizationSpec> {
    int last = 0;
    if (auto* l = dynamic_cast<const mx::nn::Linear*>(&m)) last = l->input_dims();
    if (auto* e = dynamic_cast<const mx::nn::Embedding*>(&m)) last = e->dims();
    if (last % spec.group_size != 0) return std::nullopt;
    std::optional<mx::nn::QuantizationSpec> s = spec;
    if (predicate) s = predicate(path, m);
    if (!s) return std::nullopt;
    if (predicate || fine_grained) qc.layers[model.checkpoint_name(path)] = *s;
    return s;
  };
  mx::nn::quantize(model, spec, wrapped);
  out["quantization"] = qc.to_json();
  out["quantization_config"] = out["quantization"];
  return out;
}

}  // namespace lm
