#include "mlxcpp/lm/chat_session.h"

#include <algorithm>

#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/lm/prompt.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"

namespace lm {

ChatSession::ChatSession(LanguageModel& model, const Tokenizer& tokenizer, GenerateOptions options,
                         std::optional<std::string> system_prompt, std::string template_config)
    : model_(model),
      tokenizer_(tokenizer),
      options_(std::move(options)),
      system_prompt_(std::move(system_prompt)),
      template_config_(std::move(template_config)) {
  reset();
}

void ChatSession::reset() {
  messages_ = nlohmann::json::array();
  if (system_prompt_) messages_.push_back({{"role", "system"}, {"content", *system_prompt_}});
  cache_ = model_.make_cache(options_.max_kv_size);
  cached_.clear();
  reused_ = 0;
}

GenerationResponse ChatSession::reply(const std::string& user_text,
                                      const std::function<void(const std::string&)>& on_text) {
  auto messages = messages_;
  messages.push_back({{"role", "user"}, {"content", user_text}});
  std::vector<int32_t> ids;
  if (has_chat_template(tokenizer_)) {
    ids = tokenizer_.encode(render_chat(tokenizer_, messages.dump(), true, false, template_config_),
                            false);
  } else {
    // No template: the conversation is the plain concatenation of the turns.
    std::string text;
    for (const auto& m : messages) text += m["content"].get<std::string>() + "\n";
    ids = tokenizer_.encode(text, true);
  }
  // The longest prefix the cache already holds; at least one token must run.
  size_t p =
      std::mismatch(ids.begin(), ids.end(), cached_.begin(), cached_.end()).first - ids.begin();
  p = std::min(p, ids.size() - 1);
  if (cached_.size() > p) {
    int drop = static_cast<int>(cached_.size() - p);
    if (can_trim_prompt_cache(cache_) && trim_prompt_cache(cache_, drop) == drop) {
      cached_.resize(p);
    } else {
      cache_ = model_.make_cache(options_.max_kv_size);
      cached_.clear();
      p = 0;
    }
  }
  reused_ = static_cast<int>(p);
  std::vector<int32_t> suffix(ids.begin() + static_cast<std::ptrdiff_t>(p), ids.end());
  GenerateOptions opts = options_;
  opts.prompt_cache = &cache_;
  std::string reply_text;
  std::vector<int32_t> generated;
  GenerationResponse last;
  stream_generate(model_, tokenizer_, suffix, opts, [&](const GenerationResponse& r) {
    if (r.generation_tokens > static_cast<int>(generated.size())) generated.push_back(r.token);
    reply_text += r.text;
    if (on_text && !r.text.empty()) on_text(r.text);
    last = r;
    return true;
  });
  // The cache consumed the prompt and every generated token fed back into the model.
  cached_ = ids;
  int offset = cache_.empty() ? 0 : cache_.front()->offset();
  for (size_t k = 0; k < generated.size() && static_cast<int>(cached_.size()) < offset; ++k) {
    cached_.push_back(generated[k]);
  }
  messages.push_back({{"role", "assistant"}, {"content", reply_text}});
  messages_ = std::move(messages);
  return last;
}

}  // namespace lm
