// Chat templates: a Jinja interpreter that renders a model's chat template the way
// transformers' apply_chat_template does (Python jinja2, trim_blocks and lstrip_blocks on,
// tojson without key sorting or ASCII escaping, raise_exception and strftime_now globals).
#pragma once

#include <memory>
#include <string>

namespace lm {

class Tokenizer;

namespace jinja {
struct Template;
}

class ChatTemplate {
 public:
  // Parses the template; throws lm::jinja::TemplateError naming the line and column.
  explicit ChatTemplate(const std::string& source);
  // Renders with `context_json`, a JSON object whose members become template variables.
  // Template errors name the line and column; raise_exception() errors carry the template's
  // message.
  std::string render(const std::string& context_json) const;

 private:
  std::shared_ptr<jinja::Template> tpl_;
};

struct ChatOptions {
  std::string messages_json = "[]";  // list of {"role", "content", ...}
  std::string tools_json;            // JSON list, or empty for none
  std::string documents_json;        // JSON list, or empty for none
  bool add_generation_prompt = true;
  std::string extra_json = "{}";  // extra variables (enable_thinking, ...)
  std::string template_name;      // a named template; empty picks "default" (or tool_use
                                  // when tools are given and the model has one)
};

// Renders the tokenizer's chat template with the variables transformers passes: messages,
// tools, documents, add_generation_prompt, the special tokens (bos_token, eos_token, ...) and
// the extra variables.
std::string apply_chat_template(const Tokenizer& tokenizer, const ChatOptions& options);

}  // namespace lm
