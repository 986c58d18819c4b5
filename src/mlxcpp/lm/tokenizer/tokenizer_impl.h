// Internal: the parts of a Tokenizer and the added-token matcher. Not an installed API.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "mlxcpp/lm/tokenizer/components.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"

namespace lm {

// Finds added tokens in text: leftmost-longest matches over a byte trie, then HF's
// single_word / lstrip / rstrip rules.
class AddedTokenMatcher {
 public:
  struct Match {
    size_t begin, end;
    int32_t id;
  };
  void add(const std::string& pattern, const AddedToken* token);
  bool empty() const { return tokens_.empty(); }
  // Non-overlapping matches in s, left to right, with strip extents applied.
  void find(std::string_view s, std::vector<Match>& out) const;

 private:
  struct Node {
    int32_t terminal = -1;  // index into tokens_
  };
  std::vector<Node> nodes_{Node{}};
  bool first_byte_[256] = {};  // bytes that start some pattern: a cheap skip for the rest
  std::unordered_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> child
  std::vector<const AddedToken*> tokens_;
  int32_t child(int32_t node, unsigned char b) const;
};

struct Tokenizer::Impl {
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<Model> model;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;

  std::vector<AddedToken> added;  // in file order
  std::unordered_map<std::string, int32_t> added_by_content;
  std::unordered_map<int32_t, size_t> added_by_id;  // -> index in `added`
  // What decode() shows for each added token: the content, normalized when the token is
  // (HF decodes normalized added tokens in their normalized form).
  std::vector<std::string> added_decode_text;
  std::unordered_set<std::string> special_contents;
  AddedTokenMatcher raw_matcher, normalized_matcher;

  TokenizerConfig config;

  // Builds the two matchers once `added` and `normalizer` are set.
  void build_added_matchers();
  void encode_sequence(std::string_view text, std::vector<int32_t>& ids) const;
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const;
};

// Parses tokenizer.json into impl (components and added tokens). Defined in factory.cpp.
void load_tokenizer_json(std::string_view json, const std::string& source, Tokenizer::Impl& impl);
// Reads the config files of a model folder into impl.config and applies add_bos/add_eos the way
// transformers does. Defined in tokenizer_config.cpp.
void load_tokenizer_config(const std::filesystem::path& dir, Tokenizer::Impl& impl);

}  // namespace lm
