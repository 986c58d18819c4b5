#include <cstdio>
#include <limits>
#include <stdexcept>

#include "mlxcpp/lm/tokenizer/models.h"
#include "mlxcpp/lm/tokenizer/unicode.h"

namespace lm {

UnigramModel::UnigramModel(std::vector<std::pair<std::string, double>> pieces,
                           std::optional<int32_t> unk_id, bool byte_fallback)
    : unk_id_(unk_id), byte_fallback_(byte_fallback) {
  vocab_.reserve(pieces.size());
  scores_.reserve(pieces.size());
  min_score_ = std::numeric_limits<double>::infinity();
  for (size_t id = 0; id < pieces.size(); ++id) {
    max_piece_bytes_ = std::max(max_piece_bytes_, pieces[id].first.size());
    min_score_ = std::min(min_score_, pieces[id].second);
    scores_.push_back(pieces[id].second);
    vocab_.set(static_cast<int32_t>(id), std::move(pieces[id].first));
  }
  vocab_.build();
  if (unk_id_ && (*unk_id_ < 0 || static_cast<size_t>(*unk_id_) >= scores_.size())) {
    throw std::runtime_error("model.unk_id " + std::to_string(*unk_id_) +
                             " is outside the vocabulary");
  }
}

void UnigramModel::tokenize(std::string_view s, std::vector<int32_t>& ids) const {
  if (s.empty()) return;
  // Viterbi over byte positions: best[k] is the best segmentation of s[0, k).
  constexpr double kUnkPenalty = 10.0;
  const double unk_score = min_score_ - kUnkPenalty;
  struct Node {
    int32_t id = -1;
    double score = 0;
    int64_t start = -1;
  };
  const size_t n = s.size();
  std::vector<Node> best(n + 1);
  best[0].start = 0;
  for (size_t pos = 0; pos < n;) {
    size_t ch_len = std::min(unicode::utf8_len(static_cast<unsigned char>(s[pos])), n - pos);
    double base = best[pos].score;
    bool has_single = false;
    size_t limit = std::min(max_piece_bytes_, n - pos);
    for (size_t len = 1; len <= limit; ++len) {
      auto id = vocab_.find(s.substr(pos, len));
      if (!id) continue;
      Node& target = best[pos + len];
      double cand = scores_[*id] + base;
      if (target.start < 0 || cand > target.score) {
        target.score = cand;
        target.start = static_cast<int64_t>(pos);
        target.id = *id;
      }
      if (len == ch_len) has_single = true;
    }
    if (!has_single) {
      Node& target = best[pos + ch_len];
      double cand = unk_score + base;
      if (target.start < 0 || cand > target.score) {
        target.score = cand;
        target.start = static_cast<int64_t>(pos);
        target.id = unk_id_ ? *unk_id_ : -1;
      }
    }
    pos += ch_len;
  }
  // Walk back; runs of unknowns fuse into one piece (HF's fuse_unk is on for Unigram).
  struct Seg {
    size_t b, e;
    int32_t id;
  };
  std::vector<Seg> segs;
  for (size_t end = n; end > 0;) {
    const Node& node = best[end];
    size_t start = static_cast<size_t>(node.start);
    bool unk = node.id == -1 || (unk_id_ && node.id == *unk_id_);
    if (unk && !segs.empty() && segs.back().id == -2) {
      segs.back().b = start;
    } else {
      segs.push_back({start, end, unk ? -2 : node.id});
    }
    end = start;
  }
  for (size_t k = segs.size(); k-- > 0;) {
    const Seg& seg = segs[k];
    if (seg.id != -2) {
      ids.push_back(seg.id);
      continue;
    }
    // An unknown run; it may still be a vocabulary piece (a fused run of known-by-itself text
    // cannot be, but the unk piece's own text can).
    std::string_view text = s.substr(seg.b, seg.e - seg.b);
    if (auto id = vocab_.find(text)) {
      ids.push_back(*id);
    } else if (byte_fallback_) {
      char name[8];
      for (unsigned char b : text) {
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        auto bid = vocab_.find(name);
        if (!bid) {
          if (!unk_id_)
            throw std::runtime_error("Unigram byte fallback: missing " + std::string(name));
          ids.push_back(*unk_id_);
        } else {
          ids.push_back(*bid);
        }
      }
    } else if (unk_id_) {
      ids.push_back(*unk_id_);
    } else {
      throw std::runtime_error("Unigram model has no unk_id for unknown text '" +
                               std::string(text) + "'");
    }
  }
}

WordPieceModel::WordPieceModel(std::unique_ptr<Vocab> vocab, std::string unk_token,
                               std::string continuing_subword_prefix,
                               size_t max_input_chars_per_word)
    : vocab_(std::move(vocab)),
      unk_token_(std::move(unk_token)),
      prefix_(std::move(continuing_subword_prefix)),
      max_chars_(max_input_chars_per_word) {
  vocab_->build();
}

void WordPieceModel::tokenize(std::string_view w, std::vector<int32_t>& ids) const {
  auto unk = [&]() {
    auto id = vocab_->find(unk_token_);
    if (!id)
      throw std::runtime_error("WordPiece unk_token '" + unk_token_ + "' is not in the vocabulary");
    ids.push_back(*id);
  };
  size_t chars = 0;
  for (size_t i = 0; i < w.size(); i += unicode::utf8_len(static_cast<unsigned char>(w[i])))
    ++chars;
  if (chars > max_chars_) return unk();
  std::vector<int32_t> sub;
  std::string scratch;
  for (size_t start = 0; start < w.size();) {
    size_t end = w.size();
    std::optional<int32_t> found;
    while (start < end) {
      scratch.clear();
      if (start > 0) scratch += prefix_;
      scratch.append(w.substr(start, end - start));
      if ((found = vocab_->find(scratch))) break;
      // Step back one whole character.
      --end;
      while (end > start && (static_cast<unsigned char>(w[end]) & 0xC0) == 0x80) --end;
    }
    if (!found) return unk();
    sub.push_back(*found);
    start = end;
  }
  ids.insert(ids.end(), sub.begin(), sub.end());
}

}  // namespace lm
