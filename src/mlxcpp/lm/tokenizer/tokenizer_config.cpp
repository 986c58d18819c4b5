// tokenizer_config.json, special_tokens_map.json, generation_config.json and chat template
// files of a model folder.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "mlxcpp/lm/tokenizer/processors.h"
#include "mlxcpp/lm/tokenizer/tokenizer_impl.h"

namespace lm {

using json = nlohmann::json;

namespace {

json read_json(const std::filesystem::path& path) {
  try {
    return json::parse(read_file(path));
  } catch (const json::exception& e) {
    throw std::runtime_error(path.string() + ": " + e.what());
  }
}

// A special token is a string or a serialized AddedToken {"content": ...}.
std::optional<std::string> token_text(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) {
    return j["content"].get<std::string>();
  }
  return std::nullopt;
}

}  // namespace

void load_tokenizer_config(const std::filesystem::path& dir, Tokenizer::Impl& impl) {
  TokenizerConfig& cfg = impl.config;
  json tc = json::object();
  auto tc_path = dir / "tokenizer_config.json";
  if (std::filesystem::exists(tc_path)) {
    tc = read_json(tc_path);
    if (!tc.is_object()) throw std::runtime_error(tc_path.string() + ": expected a JSON object");
    // Keep the small fields; added_tokens_decoder (megabytes for Gemma) is tokenizer.json's.
    json small = tc;
    small.erase("added_tokens_decoder");
    cfg.raw_json = small.dump();
  }
  auto stm_path = dir / "special_tokens_map.json";
  json stm = std::filesystem::exists(stm_path) ? read_json(stm_path) : json::object();
  auto special = [&](const char* key) -> std::optional<std::string> {
    if (tc.contains(key)) return token_text(tc[key]);
    if (stm.is_object() && stm.contains(key)) return token_text(stm[key]);
    return std::nullopt;
  };
  cfg.bos_token = special("bos_token");
  cfg.eos_token = special("eos_token");
  cfg.pad_token = special("pad_token");
  cfg.unk_token = special("unk_token");
  if (tc.contains("add_bos_token") && tc["add_bos_token"].is_boolean()) {
    cfg.add_bos_token = tc["add_bos_token"].get<bool>();
  }
  if (tc.contains("add_eos_token") && tc["add_eos_token"].is_boolean()) {
    cfg.add_eos_token = tc["add_eos_token"].get<bool>();
  }
  if (tc.contains("clean_up_tokenization_spaces") &&
      tc["clean_up_tokenization_spaces"].is_boolean()) {
    cfg.clean_up_tokenization_spaces = tc["clean_up_tokenization_spaces"].get<bool>();
  }
  if (tc.contains("tokenizer_class") && tc["tokenizer_class"].is_string()) {
    cfg.tokenizer_class = tc["tokenizer_class"].get<std::string>();
  }

  // Chat templates: tokenizer_config's chat_template (a string or a list of {name, template}),
  // else chat_template.jinja, else chat_template.json.
  auto take_templates = [&](const json& ct, const std::string& where) {
    if (ct.is_string()) {
      cfg.chat_templates["default"] = ct.get<std::string>();
    } else if (ct.is_array()) {
      for (auto& item : ct) {
        if (!item.is_object() || !item.contains("name") || !item.contains("template")) {
          throw std::runtime_error(where + ": chat_template list items need name and template");
        }
        cfg.chat_templates[item["name"].get<std::string>()] = item["template"].get<std::string>();
      }
    } else if (!ct.is_null()) {
      throw std::runtime_error(where + ": chat_template must be a string or a list");
    }
  };
  if (tc.contains("chat_template")) take_templates(tc["chat_template"], tc_path.string());
  if (cfg.chat_templates.empty() && std::filesystem::exists(dir / "chat_template.jinja")) {
    cfg.chat_templates["default"] = read_file(dir / "chat_template.jinja");
  }
  if (cfg.chat_templates.empty() && std::filesystem::exists(dir / "chat_template.json")) {
    json ct = read_json(dir / "chat_template.json");
    if (ct.is_object() && ct.contains("chat_template")) {
      take_templates(ct["chat_template"], (dir / "chat_template.json").string());
    }
  }

  // End-of-sequence ids: generation_config.json's eos_token_id (int or list), then eos_token.
  auto add_eos = [&](int32_t id) {
    if (std::find(cfg.eos_token_ids.begin(), cfg.eos_token_ids.end(), id) ==
        cfg.eos_token_ids.end()) {
      cfg.eos_token_ids.push_back(id);
    }
  };
  auto gc_path = dir / "generation_config.json";
  if (std::filesystem::exists(gc_path)) {
    json gc = read_json(gc_path);
    if (gc.contains("eos_token_id")) {
      const json& e = gc["eos_token_id"];
      if (e.is_number_integer()) add_eos(e.get<int32_t>());
      if (e.is_array()) {
        for (auto& v : e) add_eos(v.get<int32_t>());
      }
    }
  }
  auto lookup = [&](const std::string& token) -> std::optional<int32_t> {
    auto it = impl.added_by_content.find(token);
    if (it != impl.added_by_content.end()) return it->second;
    return impl.model->token_to_id(token);
  };
  if (cfg.eos_token) {
    if (auto id = lookup(*cfg.eos_token)) add_eos(*id);
  }

  // transformers rebuilds the post-processor of Llama and Gemma tokenizers from add_bos_token
  // and add_eos_token; other classes keep tokenizer.json's.
  static const char* kRebuilding[] = {"LlamaTokenizer",     "LlamaTokenizerFast",
                                      "GemmaTokenizer",     "GemmaTokenizerFast",
                                      "CodeLlamaTokenizer", "CodeLlamaTokenizerFast"};
  bool rebuilds = std::any_of(std::begin(kRebuilding), std::end(kRebuilding),
                              [&](const char* c) { return cfg.tokenizer_class == c; });
  if (rebuilds && (cfg.add_bos_token || cfg.add_eos_token)) {
    bool add_bos = cfg.add_bos_token.value_or(true);
    bool add_eos = cfg.add_eos_token.value_or(false);
    std::map<std::string, std::vector<int32_t>> specials;
    std::vector<TemplateProcessor::Item> single, pair;
    auto special_item = [&](const std::optional<std::string>& tok, const char* what, int type) {
      if (!tok)
        throw std::runtime_error(tc_path.string() + ": add_" + what + "_token is set but " + what +
                                 "_token is missing");
      auto id = lookup(*tok);
      if (!id)
        throw std::runtime_error(tc_path.string() + ": " + what + "_token '" + *tok +
                                 "' is not in the vocabulary");
      specials[*tok] = {*id};
      return TemplateProcessor::Item{false, 0, *tok, type};
    };
    for (int seq = 0; seq < 2; ++seq) {
      auto& list = seq == 0 ? single : pair;
      for (int part = 0; part <= seq; ++part) {
        if (add_bos) list.push_back(special_item(cfg.bos_token, "bos", part));
        list.push_back({true, part, "", part});
        if (add_eos) list.push_back(special_item(cfg.eos_token, "eos", part));
      }
    }
    impl.post_processor = std::make_unique<TemplateProcessor>(std::move(single), std::move(pair),
                                                              std::move(specials));
  }
}

}  // namespace lm
