// Tokenization models: BPE (with byte fallback, ignore_merges, fuse_unk, subword prefix and
// suffix), Unigram (Viterbi) and WordPiece (greedy longest match), as Hugging Face computes them.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mlxcpp/lm/tokenizer/components.h"
#include "mlxcpp/lm/tokenizer/flat_map.h"

namespace lm {

// Token strings with O(1) lookup both ways; the map's keys view the stored strings.
class Vocab {
 public:
  void reserve(size_t n);
  // Sets token `id`; throws on a duplicate id.
  void set(int32_t id, std::string token);
  // Finishes loading: builds the lookup map (once; later calls do nothing). Gaps in the ids are
  // allowed. The Vocab must not be moved afterwards (the map points at its strings).
  void build();
  bool built() const { return built_; }
  std::optional<int32_t> find(std::string_view token) const {
    int32_t id = map_.get(token);
    if (id < 0) return std::nullopt;
    return id;
  }
  const std::string* token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= tokens_.size() || !present_[id]) return nullptr;
    return &tokens_[id];
  }
  size_t size() const { return map_.size(); }

 private:
  std::vector<std::string> tokens_;
  std::vector<bool> present_;
  FlatStringMap map_;
  bool built_ = false;
};

// One merge rule with its tokens resolved to ids.
struct MergeIds {
  int32_t left, right, merged;
};

struct BpeOptions {
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

class BpeModel : public Model {
 public:
  // `vocab` must already be built (and is moved in). merges: in priority order.
  BpeModel(std::unique_ptr<Vocab> vocab, const std::vector<MergeIds>& merges, BpeOptions options);
  // Resolves a merge rule's strings against a built vocabulary; `where` names it in errors.
  static MergeIds resolve_merge(const Vocab& vocab, std::string_view a, std::string_view b,
                                const std::string& prefix, std::string& scratch,
                                const std::string& where);
  void tokenize(std::string_view piece, std::vector<int32_t>& ids) const override;
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    return vocab_->find(token);
  }
  const std::string* id_to_token(int32_t id) const override { return vocab_->token(id); }
  size_t vocab_size() const override { return vocab_->size(); }

 private:
  void tokenize_uncached(std::string_view piece, std::vector<int32_t>& ids) const;
  void merge_symbols(std::vector<int32_t>& syms) const;

  std::unique_ptr<Vocab> vocab_;
  BpeOptions options_;
  std::optional<int32_t> unk_id_;
  MergeMap merges_;
  std::vector<int32_t> byte_ids_;  // <0xXX> token ids for byte fallback, -1 when missing

  // Pre-token results: most words repeat, so BPE runs once per distinct word.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

class UnigramModel : public Model {
 public:
  UnigramModel(std::vector<std::pair<std::string, double>> pieces, std::optional<int32_t> unk_id,
               bool byte_fallback);
  UnigramModel(const UnigramModel&) = delete;
  void tokenize(std::string_view piece, std::vector<int32_t>& ids) const override;
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    return vocab_.find(token);
  }
  const std::string* id_to_token(int32_t id) const override { return vocab_.token(id); }
  size_t vocab_size() const override { return vocab_.size(); }

 private:
  Vocab vocab_;
  std::vector<double> scores_;
  std::optional<int32_t> unk_id_;
  bool byte_fallback_;
  double min_score_ = 0;
  size_t max_piece_bytes_ = 0;
};

class WordPieceModel : public Model {
 public:
  WordPieceModel(std::unique_ptr<Vocab> vocab, std::string unk_token,
                 std::string continuing_subword_prefix, size_t max_input_chars_per_word);
  void tokenize(std::string_view piece, std::vector<int32_t>& ids) const override;
  std::optional<int32_t> token_to_id(std::string_view token) const override {
    return vocab_->find(token);
  }
  const std::string* id_to_token(int32_t id) const override { return vocab_->token(id); }
  size_t vocab_size() const override { return vocab_->size(); }

 private:
  std::unique_ptr<Vocab> vocab_;
  std::string unk_token_;
  std::string prefix_;
  size_t max_chars_;
};

}  // namespace lm
