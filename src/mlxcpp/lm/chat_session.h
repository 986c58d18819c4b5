// A multi-turn conversation over one prompt cache: each turn renders the whole
// conversation with the chat template and runs only the tokens the cache has
// not seen (trimming the cache back to the common prefix, or starting over
// when it cannot trim, e.g. a rotating cache past its window).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxcpp/lm/cache.h"
#include "mlxcpp/lm/generate.h"

namespace lm {

class LanguageModel;
class Tokenizer;

class ChatSession {
 public:
  ChatSession(LanguageModel& model, const Tokenizer& tokenizer, GenerateOptions options,
              std::optional<std::string> system_prompt = std::nullopt,
              std::string template_config = "{}");

  // Adds the user's message, generates the reply (streamed through on_text)
  // and adds it to the history. Returns the final response.
  GenerationResponse reply(const std::string& user_text,
                           const std::function<void(const std::string&)>& on_text);
  // Forgets the conversation and empties the cache.
  void reset();

  const nlohmann::json& messages() const { return messages_; }
  // Prompt tokens of the last turn that the cache already held.
  int reused_tokens() const { return reused_; }
  int cached_tokens() const { return static_cast<int>(cached_.size()); }

 private:
  LanguageModel& model_;
  const Tokenizer& tokenizer_;
  GenerateOptions options_;
  std::optional<std::string> system_prompt_;
  std::string template_config_;
  nlohmann::json messages_ = nlohmann::json::array();
  PromptCache cache_;
  std::vector<int32_t> cached_;  // the tokens the cache holds, in order
  int reused_ = 0;
};

}  // namespace lm
