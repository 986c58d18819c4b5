// Post-processors (TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence)
// and decoders (ByteLevel, Metaspace, WordPiece, BPEDecoder, ByteFallback, Fuse, Replace, Strip,
// Sequence), with Hugging Face tokenizers' semantics.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mlxcpp/lm/tokenizer/components.h"
#include "mlxcpp/lm/tokenizer/pre_tokenizers.h"
#include "mlxcpp/lm/tokenizer/regex.h"

namespace lm {

class TemplateProcessor : public PostProcessor {
 public:
  struct Item {
    bool is_sequence;     // $A / $B, or a special token
    int sequence;         // 0 for A, 1 for B
    std::string special;  // special token name
    int32_t type_id;
  };
  TemplateProcessor(std::vector<Item> single, std::vector<Item> pair,
                    std::map<std::string, std::vector<int32_t>> special_tokens);
  void process(Encoding& a, Encoding* b, bool add_special_tokens) const override;

 private:
  std::vector<Item> single_, pair_;
  std::map<std::string, std::vector<int32_t>> special_tokens_;
};

// BertProcessing: [CLS] A [SEP] (B [SEP]); RobertaProcessing: <s> A </s> (</s> B </s>).
class BertProcessor : public PostProcessor {
 public:
  BertProcessor(int32_t cls, int32_t sep, bool roberta) : cls_(cls), sep_(sep), roberta_(roberta) {}
  void process(Encoding& a, Encoding* b, bool add_special_tokens) const override;

 private:
  int32_t cls_, sep_;
  bool roberta_;
};

// ByteLevel's post-processing only adjusts offsets, which we do not track.
class PassThroughProcessor : public PostProcessor {
 public:
  void process(Encoding& a, Encoding* b, bool add_special_tokens) const override;
};

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> items)
      : items_(std::move(items)) {}
  void process(Encoding& a, Encoding* b, bool add_special_tokens) const override;

 private:
  std::vector<std::unique_ptr<PostProcessor>> items_;
};

class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, PrependScheme scheme)
      : replacement_(std::move(replacement)), scheme_(scheme) {}
  void decode_chain(std::vector<std::string>& tokens) const override;

 private:
  std::string replacement_;
  PrependScheme scheme_;
};

class WordPieceDecoder : public Decoder {
 public:
  WordPieceDecoder(std::string prefix, bool cleanup)
      : prefix_(std::move(prefix)), cleanup_(cleanup) {}
  void decode_chain(std::vector<std::string>& tokens) const override;

 private:
  std::string prefix_;
  bool cleanup_;
};

class BpeDecoder : public Decoder {
 public:
  explicit BpeDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void decode_chain(std::vector<std::string>& tokens) const override;

 private:
  std::string suffix_;
};

class ByteFallbackDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override;
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(const std::string& pattern, std::string content)
      : regex_(pattern), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override;

 private:
  Regex regex_;
  std::string content_;
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override;

 private:
  std::string content_;
  size_t start_, stop_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> items)
      : items_(std::move(items)) {}
  void decode_chain(std::vector<std::string>& tokens) const override;

 private:
  std::vector<std::unique_ptr<Decoder>> items_;
};

// HF's WordPiece cleanup of tokenization spaces (" ." -> ".", " n't" -> "n't", ...).
std::string cleanup_tokenization_spaces(std::string s);

}  // namespace lm
