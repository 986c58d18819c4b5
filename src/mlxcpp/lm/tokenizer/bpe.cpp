#include <algorithm>
#include <cstdio>
#include <queue>
#include <stdexcept>

#include "mlxcpp/lm/tokenizer/models.h"
#include "mlxcpp/lm/tokenizer/unicode.h"

namespace lm {

void Vocab::reserve(size_t n) {
  tokens_.reserve(n);
  present_.reserve(n);
}

void Vocab::set(int32_t id, std::string token) {
  if (id < 0) throw std::runtime_error("negative token id " + std::to_string(id));
  if (static_cast<size_t>(id) >= tokens_.size()) {
    tokens_.resize(id + 1);
    present_.resize(id + 1, false);
  }
  if (present_[id]) {
    throw std::runtime_error("duplicate token id " + std::to_string(id) + " ('" + token +
                             "' and '" + tokens_[id] + "')");
  }
  tokens_[id] = std::move(token);
  present_[id] = true;
}

void Vocab::build() {
  if (built_) return;
  map_.build(tokens_, present_);
  built_ = true;
}

MergeIds BpeModel::resolve_merge(const Vocab& vocab, std::string_view a, std::string_view b,
                                 const std::string& prefix, std::string& scratch,
                                 const std::string& where) {
  auto ia = vocab.find(a);
  auto ib = vocab.find(b);
  if (!ia || !ib) {
    throw std::runtime_error(where + ": token '" + std::string(ia ? b : a) +
                             "' is not in the vocabulary");
  }
  scratch.assign(a);
  if (!prefix.empty() && b.substr(0, prefix.size()) == prefix) {
    scratch.append(b.substr(prefix.size()));
  } else {
    scratch.append(b);
  }
  auto im = vocab.find(scratch);
  if (!im) {
    throw std::runtime_error(where + ": merged token '" + scratch + "' is not in the vocabulary");
  }
  return {*ia, *ib, *im};
}

BpeModel::BpeModel(std::unique_ptr<Vocab> vocab, const std::vector<MergeIds>& merges,
                   BpeOptions options)
    : vocab_(std::move(vocab)), options_(std::move(options)) {
  vocab_->build();
  if (options_.unk_token) unk_id_ = vocab_->find(*options_.unk_token);
  merges_.reserve(merges.size() + 1);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    // As in HF (a map collected in order), a repeated pair keeps its last rank.
    merges_.set(merges[rank].left, merges[rank].right,
                {static_cast<int32_t>(rank), merges[rank].merged});
  }
  if (options_.byte_fallback) {
    byte_ids_.assign(256, -1);
    char name[8];
    for (int b = 0; b < 256; ++b) {
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      if (auto id = vocab_->find(name)) byte_ids_[b] = *id;
    }
  }
}

void BpeModel::merge_symbols(std::vector<int32_t>& syms) const {
  const size_t n = syms.size();
  if (n < 2) return;
  if (n <= 48) {
    // Short words: repeatedly merge the best pair; cheaper than a heap at this size.
    size_t len = n;
    while (len > 1) {
      int32_t best_rank = INT32_MAX, best_id = -1;
      size_t best_pos = 0;
      for (size_t i = 0; i + 1 < len; ++i) {
        auto* m = merges_.get(syms[i], syms[i + 1]);
        if (m && m->rank < best_rank) {
          best_rank = m->rank;
          best_id = m->id;
          best_pos = i;
        }
      }
      if (best_id < 0) break;
      syms[best_pos] = best_id;
      std::copy(syms.begin() + best_pos + 2, syms.begin() + len, syms.begin() + best_pos + 1);
      --len;
    }
    syms.resize(len);
    return;
  }
  // Long words: a heap of candidate merges over a doubly linked list of symbols.
  std::vector<int32_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  struct Cand {
    int32_t rank, pos, id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    if (auto* m = merges_.get(syms[pos], syms[next[pos]])) heap.push({m->rank, pos, m->id});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    if (!alive[c.pos] || next[c.pos] < 0) continue;
    int32_t right = next[c.pos];
    auto* m = merges_.get(syms[c.pos], syms[right]);
    if (!m || m->id != c.id) continue;  // stale
    syms[c.pos] = c.id;
    alive[right] = false;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  size_t out = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) syms[out++] = syms[i];
  syms.resize(out);
}

void BpeModel::tokenize_uncached(std::string_view w, std::vector<int32_t>& ids) const {
  if (options_.ignore_merges) {
    if (auto id = vocab_->find(w)) {
      ids.push_back(*id);
      return;
    }
  }
  std::vector<int32_t> syms;
  syms.reserve(w.size());
  const bool plain =
      options_.continuing_subword_prefix.empty() && options_.end_of_word_suffix.empty();
  // A pending unknown: (id, fused) — consecutive unknowns fuse when fuse_unk is set.
  bool pending_unk = false;
  std::string scratch;
  for (size_t i = 0; i < w.size();) {
    size_t start = i;
    i += unicode::utf8_len(static_cast<unsigned char>(w[i]));
    if (i > w.size()) i = w.size();
    std::string_view ch = w.substr(start, i - start);
    std::optional<int32_t> id;
    if (plain) {
      id = vocab_->find(ch);
    } else {
      scratch.clear();
      if (start > 0) scratch += options_.continuing_subword_prefix;
      scratch += ch;
      if (i == w.size()) scratch += options_.end_of_word_suffix;
      id = vocab_->find(scratch);
    }
    if (id) {
      if (pending_unk) {
        syms.push_back(*unk_id_);
        pending_unk = false;
      }
      syms.push_back(*id);
      continue;
    }
    if (options_.byte_fallback) {
      std::string_view bytes = plain ? ch : std::string_view(scratch);
      bool all = true;
      for (unsigned char b : bytes) all = all && byte_ids_[b] >= 0;
      if (all) {
        if (pending_unk) {
          syms.push_back(*unk_id_);
          pending_unk = false;
        }
        for (unsigned char b : bytes) syms.push_back(byte_ids_[b]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk && !options_.fuse_unk) syms.push_back(*unk_id_);
      pending_unk = true;
    } else if (options_.unk_token) {
      throw std::runtime_error("BPE unk_token '" + *options_.unk_token +
                               "' is not in the vocabulary");
    }
  }
  if (pending_unk) syms.push_back(*unk_id_);
  merge_symbols(syms);
  ids.insert(ids.end(), syms.begin(), syms.end());
}

void BpeModel::tokenize(std::string_view piece, std::vector<int32_t>& ids) const {
  if (piece.empty()) return;
  constexpr size_t kMaxCachedBytes = 256;
  constexpr size_t kMaxCacheEntries = 1 << 17;
  if (piece.size() > kMaxCachedBytes) {
    tokenize_uncached(piece, ids);
    return;
  }
  std::string key(piece);
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t before = ids.size();
  tokenize_uncached(piece, ids);
  std::vector<int32_t> result(ids.begin() + before, ids.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_.emplace(std::move(key), std::move(result));
}

}  // namespace lm
