// The stages of Hugging Face's tokenization pipeline, as interfaces: normalizer, pre-tokenizer,
// model, post-processor, decoder. Each concrete type mirrors the HF component of the same name;
// they are built from tokenizer.json by the factories in factory.h.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lm {

// A piece of text being tokenized. `at_start` is true when it begins at offset 0 of the input,
// which Metaspace's prepend_scheme "first" tests.
struct Piece {
  std::string text;
  bool at_start = false;
};
using Pieces = std::vector<Piece>;

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string s) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (and may rewrite) every piece; empty pieces are dropped.
  virtual void pre_tokenize(Pieces& pieces) const = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  // Appends the ids of one pre-tokenized piece.
  virtual void tokenize(std::string_view piece, std::vector<int32_t>& ids) const = 0;
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  // nullptr when the id is not in the model's vocabulary.
  virtual const std::string* id_to_token(int32_t id) const = 0;
  virtual size_t vocab_size() const = 0;
};

// ids and type ids of one sequence, as the post-processor sees them.
struct Encoding {
  std::vector<int32_t> ids;
  std::vector<int32_t> type_ids;
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Merges `a` and the optional `b` into `a`, adding special tokens when asked.
  virtual void process(Encoding& a, Encoding* b, bool add_special_tokens) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites the token strings; the decoded text is their concatenation.
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// How a Split-like pre-tokenizer treats the delimiters it finds (HF SplitDelimiterBehavior).
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// Splits every piece at the ranges `find` reports as matches, per `behavior`. `find` appends
// [begin, end) byte ranges of the matches in the piece, in order.
template <typename Find>
void split_pieces(Pieces& pieces, SplitBehavior behavior, bool invert, Find&& find);

// Implementation detail of split_pieces: splits one piece given its matches.
void split_one(const Piece& piece, const std::vector<std::pair<size_t, size_t>>& matches,
               SplitBehavior behavior, bool invert, Pieces& out);

template <typename Find>
void split_pieces(Pieces& pieces, SplitBehavior behavior, bool invert, Find&& find) {
  Pieces out;
  out.reserve(pieces.size() * 2);
  std::vector<std::pair<size_t, size_t>> matches;
  for (auto& p : pieces) {
    matches.clear();
    find(std::string_view(p.text), matches);
    split_one(p, matches, behavior, invert, out);
  }
  pieces = std::move(out);
}

}  // namespace lm
