// Turning a user's text into prompt token ids the way mlx_lm.generate does:
// through the tokenizer's chat template when it has one, else with BOS.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lm {

class Tokenizer;

struct PromptOptions {
  std::optional<std::string> system_prompt;
  // Text the assistant's reply starts with (rendered with continue_final_message).
  std::optional<std::string> prefill_response;
  bool ignore_chat_template = false;
  std::string chat_template_config = "{}";  // JSON object of extra template variables
};

bool has_chat_template(const Tokenizer& tokenizer);

// Renders messages_json (a JSON list of {"role", "content"}) with the chat
// template. continue_final_message ends the text right after the last
// message's content (no end-of-turn), as transformers does.
std::string render_chat(const Tokenizer& tokenizer, const std::string& messages_json,
                        bool add_generation_prompt, bool continue_final_message,
                        const std::string& template_config = "{}");

// The templated text is encoded without special tokens (the template emits
// BOS); without a template (or with ignore_chat_template) the text is encoded
// with the tokenizer's special tokens (BOS).
std::vector<int32_t> build_prompt(const Tokenizer& tokenizer, const std::string& text,
                                  const PromptOptions& options);

// The prompt ids that continue a prompt cache made by cache-prompt (which
// holds a templated user message cut right after its content): the template is
// rendered with the placeholder "<query>" as the user content and everything
// from the placeholder on, with the placeholder replaced by text, is encoded
// without special tokens (mlx-lm's rule).
std::vector<int32_t> continue_cached_prompt(const Tokenizer& tokenizer, const std::string& text,
                                            const PromptOptions& options);

// "1,2,3" -> ids; errors name the bad item.
std::vector<int32_t> parse_token_list(const std::string& text, const std::string& what);

}  // namespace lm
