// A Hugging Face tokenizer read from a model folder: tokenizer.json (normalizer, pre-tokenizer,
// model, post-processor, decoder, added tokens) plus tokenizer_config.json,
// special_tokens_map.json and generation_config.json. encode() and decode() give the ids and
// text HF `tokenizers` gives.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lm {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool normalized = true;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

// What tokenizer_config.json (and its companions) say about the tokenizer.
struct TokenizerConfig {
  std::optional<std::string> bos_token, eos_token, pad_token, unk_token;
  std::optional<bool> add_bos_token, add_eos_token;
  bool clean_up_tokenization_spaces = false;
  std::string tokenizer_class;
  // Named chat templates; a single template is stored under "default".
  std::map<std::string, std::string> chat_templates;
  // End-of-sequence ids from generation_config.json and eos_token, deduplicated.
  std::vector<int32_t> eos_token_ids;
  // tokenizer_config.json as JSON text without its added_tokens_decoder ("{}" when absent),
  // for callers that need other fields (e.g. extra special tokens a chat template refers to).
  std::string raw_json = "{}";
};

class Tokenizer {
 public:
  // Reads tokenizer.json and, when present beside it, the config files.
  static Tokenizer from_dir(const std::filesystem::path& dir);
  // Reads a tokenizer.json file alone (no config: add_bos/eos come from its post-processor).
  static Tokenizer from_file(const std::filesystem::path& tokenizer_json);
  // Parses tokenizer.json text; `source` names it in error messages.
  static Tokenizer from_json(std::string_view json, const std::string& source = "tokenizer.json");

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Encodes a pair the way HF does for sequence-pair inputs; returns ids and type ids.
  std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(
      std::string_view a, std::string_view b, bool add_special_tokens = true) const;
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int32_t id) const;
  // Model vocabulary plus added tokens.
  size_t vocab_size() const;
  bool is_special(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const;
  const TokenizerConfig& config() const;

  // For the streaming detokenizer: decodes ids the way decode() does.
  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

// Reads a whole file; throws naming the path.
std::string read_file(const std::filesystem::path& path);

}  // namespace lm
