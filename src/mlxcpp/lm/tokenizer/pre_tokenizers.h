// Pre-tokenizers: Split (string or regex, every behaviour, invert), ByteLevel, Metaspace,
// Whitespace, WhitespaceSplit, Digits, Punctuation, BertPreTokenizer and Sequence, with Hugging
// Face tokenizers' semantics.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mlxcpp/lm/tokenizer/components.h"
#include "mlxcpp/lm/tokenizer/regex.h"

namespace lm {

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(const std::string& regex, SplitBehavior behavior, bool invert)
      : regex_(regex), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(Pieces& pieces) const override;

 private:
  Regex regex_;
  SplitBehavior behavior_;
  bool invert_;
};

// Maps every byte to GPT-2's printable code points, after optionally adding a leading space and
// splitting with the GPT-2 regex.
class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex);
  void pre_tokenize(Pieces& pieces) const override;
  static const char* gpt2_pattern();

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

enum class PrependScheme { Always, First, Never };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void pre_tokenize(Pieces& pieces) const override;

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

// \w+|[^\w\s]+
class WhitespacePreTokenizer : public PreTokenizer {
 public:
  WhitespacePreTokenizer();
  void pre_tokenize(Pieces& pieces) const override;

 private:
  Regex regex_;
};

class WhitespaceSplitPreTokenizer : public PreTokenizer {
 public:
  void pre_tokenize(Pieces& pieces) const override;
};

class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}
  void pre_tokenize(Pieces& pieces) const override;

 private:
  bool individual_;
};

class PunctuationPreTokenizer : public PreTokenizer {
 public:
  explicit PunctuationPreTokenizer(SplitBehavior behavior) : behavior_(behavior) {}
  void pre_tokenize(Pieces& pieces) const override;

 private:
  SplitBehavior behavior_;
};

// Splits on one delimiter character, removing it.
class CharDelimiterSplitPreTokenizer : public PreTokenizer {
 public:
  explicit CharDelimiterSplitPreTokenizer(std::string delimiter)
      : delimiter_(std::move(delimiter)) {}
  void pre_tokenize(Pieces& pieces) const override;

 private:
  std::string delimiter_;
};

class BertPreTokenizer : public PreTokenizer {
 public:
  void pre_tokenize(Pieces& pieces) const override;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> items)
      : items_(std::move(items)) {}
  void pre_tokenize(Pieces& pieces) const override;

 private:
  std::vector<std::unique_ptr<PreTokenizer>> items_;
};

}  // namespace lm
