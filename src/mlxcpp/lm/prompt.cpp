#include "mlxcpp/lm/prompt.h"

#include <nlohmann/json.hpp>

#include <sstream>
#include <stdexcept>

#include "mlxcpp/lm/chat_template/chat_template.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"

namespace lm {

bool has_chat_template(const Tokenizer& tokenizer) {
  return !tokenizer.config().chat_templates.empty();
}

std::string render_chat(const Tokenizer& tokenizer, const std::string& messages_json,
                        bool add_generation_prompt, bool continue_final_message,
                        const std::string& template_config) {
  if (add_generation_prompt && continue_final_message) {
    throw std::invalid_argument(
        "add_generation_prompt and continue_final_message cannot both be set");
  }
  ChatOptions opts;
  opts.messages_json = messages_json;
  opts.add_generation_prompt = add_generation_prompt;
  opts.extra_json = template_config;
  std::string text = apply_chat_template(tokenizer, opts);
  if (!continue_final_message) return text;
  auto messages = nlohmann::json::parse(messages_json);
  if (!messages.is_array() || messages.empty()) {
    throw std::invalid_argument("continue_final_message needs at least one message");
  }
  const auto& content = messages.back()["content"];
  std::string last = content.is_string() ? content.get<std::string>() : std::string();
  // Templates may trim the content; cut after its last occurrence in the text.
  auto b = last.find_first_not_of(" \t\r\n");
  auto e = last.find_last_not_of(" \t\r\n");
  std::string trimmed = b == std::string::npos ? std::string() : last.substr(b, e - b + 1);
  auto pos = text.rfind(trimmed);
  if (trimmed.empty() || pos == std::string::npos) {
    throw std::runtime_error(
        "continue_final_message: the final message's content does not appear in the rendered "
        "chat template");
  }
  return text.substr(0, pos + trimmed.size());
}

std::vector<int32_t> build_prompt(const Tokenizer& tokenizer, const std::string& text,
                                  const PromptOptions& options) {
  if (options.ignore_chat_template || !has_chat_template(tokenizer)) {
    return tokenizer.encode(text, true);
  }
  nlohmann::json messages = nlohmann::json::array();
  if (options.system_prompt) {
    messages.push_back({{"role", "system"}, {"content", *options.system_prompt}});
  }
  messages.push_back({{"role", "user"}, {"content", text}});
  bool cont = options.prefill_response.has_value();
  if (cont) messages.push_back({{"role", "assistant"}, {"content", *options.prefill_response}});
  std::string rendered =
      render_chat(tokenizer, messages.dump(), !cont, cont, options.chat_template_config);
  return tokenizer.encode(rendered, false);
}

std::vector<int32_t> continue_cached_prompt(const Tokenizer& tokenizer, const std::string& text,
                                            const PromptOptions& options) {
  static const std::string kPlaceholder = "<query>";
  nlohmann::json messages = nlohmann::json::array();
  if (options.system_prompt) {
    messages.push_back({{"role", "system"}, {"content", *options.system_prompt}});
  }
  messages.push_back({{"role", "user"}, {"content", kPlaceholder}});
  std::string rendered =
      render_chat(tokenizer, messages.dump(), true, false, options.chat_template_config);
  auto pos = rendered.find(kPlaceholder);
  if (pos == std::string::npos) {
    throw std::runtime_error("the chat template does not render the user message's content");
  }
  std::string suffix = text + rendered.substr(pos + kPlaceholder.size());
  return tokenizer.encode(suffix, false);
}

std::vector<int32_t> parse_token_list(const std::string& text, const std::string& what) {
  std::vector<int32_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto b = item.find_first_not_of(" \t");
    auto e = item.find_last_not_of(" \t");
    if (b == std::string::npos) continue;
    item = item.substr(b, e - b + 1);
    try {
      size_t used = 0;
      long long v = std::stoll(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(item);
      out.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      throw std::invalid_argument(what + ": '" + item + "' is not a token id");
    }
  }
  if (out.empty()) throw std::invalid_argument(what + ": no token ids given");
  return out;
}

}  // namespace lm
