#include "mlxcpp/lm/chat_template/chat_template.h"

#include <nlohmann/json.hpp>

#include <stdexcept>

#include "mlxcpp/lm/chat_template/ast.h"
#include "mlxcpp/lm/chat_template/interpreter.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"

namespace lm {

ChatTemplate::ChatTemplate(const std::string& source) : tpl_(jinja::parse_template(source)) {}

std::string ChatTemplate::render(const std::string& context_json) const {
  jinja::Value ctx = jinja::from_json(context_json, "chat template context");
  if (!ctx.is_object()) throw std::runtime_error("chat template context must be a JSON object");
  return jinja::render(*tpl_, ctx.object());
}

std::string apply_chat_template(const Tokenizer& tokenizer, const ChatOptions& options) {
  const TokenizerConfig& cfg = tokenizer.config();
  const bool has_tools = !options.tools_json.empty();
  std::string name = options.template_name;
  if (name.empty()) {
    name = has_tools && cfg.chat_templates.count("tool_use") ? "tool_use" : "default";
  }
  auto it = cfg.chat_templates.find(name);
  if (it == cfg.chat_templates.end()) {
    throw std::runtime_error(cfg.chat_templates.empty()
                                 ? "the tokenizer has no chat template"
                                 : "the tokenizer has no chat template named '" + name + "'");
  }
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  auto parse = [](const std::string& text, const char* what) {
    try {
      return nlohmann::ordered_json::parse(text);
    } catch (const nlohmann::ordered_json::exception& e) {
      throw std::runtime_error(std::string(what) + ": " + e.what());
    }
  };
  // transformers passes the special tokens map (bos_token, eos_token, unk_token, pad_token and
  // additional_special_tokens) as strings.
  nlohmann::ordered_json raw = parse(cfg.raw_json, "tokenizer_config.json");
  auto token_string = [](const nlohmann::ordered_json& j) -> std::optional<std::string> {
    if (j.is_string()) return j.get<std::string>();
    if (j.is_object() && j.contains("content")) return j["content"].get<std::string>();
    return std::nullopt;
  };
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    if (raw.contains(key)) {
      if (auto s = token_string(raw[key])) ctx[key] = *s;
    }
  }
  if (!ctx.contains("bos_token") && cfg.bos_token) ctx["bos_token"] = *cfg.bos_token;
  if (!ctx.contains("eos_token") && cfg.eos_token) ctx["eos_token"] = *cfg.eos_token;
  if (raw.contains("additional_special_tokens") && raw["additional_special_tokens"].is_array()) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (auto& t : raw["additional_special_tokens"]) {
      if (auto s = token_string(t)) list.push_back(*s);
    }
    ctx["additional_special_tokens"] = list;
  }
  ctx["messages"] = parse(options.messages_json, "messages");
  if (has_tools) ctx["tools"] = parse(options.tools_json, "tools");
  if (!options.documents_json.empty())
    ctx["documents"] = parse(options.documents_json, "documents");
  ctx["add_generation_prompt"] = options.add_generation_prompt;
  nlohmann::ordered_json extra =
      parse(options.extra_json.empty() ? "{}" : options.extra_json, "template kwargs");
  if (!extra.is_object()) throw std::runtime_error("template kwargs must be a JSON object");
  for (auto& [k, v] : extra.items()) ctx[k] = v;
  ChatTemplate tpl(it->second);
  return tpl.render(ctx.dump());
}

}  // namespace lm
