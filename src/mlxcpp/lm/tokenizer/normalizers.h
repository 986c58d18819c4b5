// Normalizers: NFC/NFD/NFKC/NFKD, Lowercase, Strip, StripAccents, Replace, Prepend,
// BertNormalizer and Sequence, with Hugging Face tokenizers' semantics.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mlxcpp/lm/tokenizer/components.h"
#include "mlxcpp/lm/tokenizer/regex.h"
#include "mlxcpp/lm/tokenizer/unicode.h"

namespace lm {

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(unicode::Form form) : form_(form) {}
  std::string normalize(std::string s) const override;

 private:
  unicode::Form form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  std::string normalize(std::string s) const override;
};

// Maps every byte to GPT-2's printable code points (the ByteLevel normalizer).
class ByteLevelNormalizer : public Normalizer {
 public:
  std::string normalize(std::string s) const override;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(std::string s) const override;

 private:
  bool left_, right_;
};

class StripAccentsNormalizer : public Normalizer {
 public:
  std::string normalize(std::string s) const override;
};

class ReplaceNormalizer : public Normalizer {
 public:
  // `pattern` is a regex (a literal string pattern is escaped by the caller).
  ReplaceNormalizer(const std::string& pattern, std::string content)
      : regex_(pattern), content_(std::move(content)) {}
  std::string normalize(std::string s) const override;

 private:
  Regex regex_;
  std::string content_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prepend) : prepend_(std::move(prepend)) {}
  std::string normalize(std::string s) const override;

 private:
  std::string prepend_;
};

class BertNormalizer : public Normalizer {
 public:
  BertNormalizer(bool clean_text, bool handle_chinese_chars, bool strip_accents, bool lowercase)
      : clean_text_(clean_text),
        handle_chinese_chars_(handle_chinese_chars),
        strip_accents_(strip_accents),
        lowercase_(lowercase) {}
  std::string normalize(std::string s) const override;

 private:
  bool clean_text_, handle_chinese_chars_, strip_accents_, lowercase_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> items)
      : items_(std::move(items)) {}
  std::string normalize(std::string s) const override;

 private:
  std::vector<std::unique_ptr<Normalizer>> items_;
};

// Shared by BertNormalizer and StripAccents: removes nonspacing marks.
std::string remove_nonspacing_marks(std::string_view s);

}  // namespace lm
