#include "mlxcpp/lm/tokenizer/pre_tokenizers.h"

#include <algorithm>

#include "mlxcpp/lm/tokenizer/unicode.h"

namespace lm {

void split_one(const Piece& piece, const std::vector<std::pair<size_t, size_t>>& matches,
               SplitBehavior behavior, bool invert, Pieces& out) {
  const std::string& s = piece.text;
  if (s.empty()) return;
  if (matches.empty()) {
    // No delimiter: the piece survives whole unless (inverted) it is all delimiter and removed.
    if (!(invert && behavior == SplitBehavior::Removed)) out.push_back(piece);
    return;
  }
  // The whole piece as alternating (range, is_match) spans.
  struct Span {
    size_t b, e;
    bool match;
  };
  std::vector<Span> spans;
  spans.reserve(matches.size() * 2 + 1);
  size_t prev = 0;
  for (auto [b, e] : matches) {
    if (prev < b) spans.push_back({prev, b, invert});
    spans.push_back({b, e, !invert});
    prev = e;
  }
  if (prev < s.size()) spans.push_back({prev, s.size(), invert});

  std::vector<Span> merged;
  merged.reserve(spans.size());
  switch (behavior) {
    case SplitBehavior::Isolated:
      merged = spans;
      break;
    case SplitBehavior::Removed:
      for (auto& sp : spans) {
        if (!sp.match) merged.push_back(sp);
      }
      break;
    case SplitBehavior::MergedWithPrevious: {
      bool previous_match = false;
      for (auto& sp : spans) {
        if (sp.match && !previous_match && !merged.empty()) {
          merged.back().e = sp.e;
        } else {
          merged.push_back(sp);
        }
        previous_match = sp.match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool previous_match = false;
      for (size_t k = spans.size(); k-- > 0;) {
        auto& sp = spans[k];
        if (sp.match && !previous_match && !merged.empty()) {
          merged.back().b = sp.b;
        } else {
          merged.push_back(sp);
        }
        previous_match = sp.match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    }
    case SplitBehavior::Contiguous: {
      bool previous_match = false;
      for (auto& sp : spans) {
        if (sp.match == previous_match && !merged.empty()) {
          merged.back().e = sp.e;
        } else {
          merged.push_back(sp);
        }
        previous_match = sp.match;
      }
      break;
    }
  }
  for (auto& sp : merged) {
    if (sp.e <= sp.b) continue;
    out.push_back({s.substr(sp.b, sp.e - sp.b), piece.at_start && sp.b == 0});
  }
}

void SplitPreTokenizer::pre_tokenize(Pieces& pieces) const {
  split_pieces(pieces, behavior_, invert_,
               [&](std::string_view s, auto& m) { regex_.find_all(s, m); });
}

const char* ByteLevelPreTokenizer::gpt2_pattern() {
  return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
}

ByteLevelPreTokenizer::ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
    : add_prefix_space_(add_prefix_space) {
  if (use_regex) regex_ = std::make_unique<Regex>(gpt2_pattern());
}

void ByteLevelPreTokenizer::pre_tokenize(Pieces& pieces) const {
  if (add_prefix_space_) {
    for (auto& p : pieces) {
      if (!p.text.empty() && p.text[0] != ' ') p.text.insert(p.text.begin(), ' ');
    }
  }
  if (regex_) {
    split_pieces(pieces, SplitBehavior::Isolated, false,
                 [&](std::string_view s, auto& m) { regex_->find_all(s, m); });
  }
  for (auto& p : pieces) {
    std::string mapped;
    mapped.reserve(p.text.size() * 2);
    for (unsigned char b : p.text) mapped += unicode::byte_to_utf8(b);
    p.text = std::move(mapped);
  }
}

void MetaspacePreTokenizer::pre_tokenize(Pieces& pieces) const {
  for (auto& p : pieces) {
    std::string r;
    r.reserve(p.text.size() + replacement_.size());
    for (char ch : p.text) {
      if (ch == ' ') {
        r += replacement_;
      } else {
        r += ch;
      }
    }
    bool starts = r.compare(0, replacement_.size(), replacement_) == 0;
    if (!starts &&
        (scheme_ == PrependScheme::Always || (scheme_ == PrependScheme::First && p.at_start))) {
      r.insert(0, replacement_);
    }
    p.text = std::move(r);
  }
  if (split_) {
    split_pieces(pieces, SplitBehavior::MergedWithNext, false, [&](std::string_view s, auto& m) {
      for (size_t pos = s.find(replacement_); pos != std::string_view::npos;
           pos = s.find(replacement_, pos + replacement_.size())) {
        m.emplace_back(pos, pos + replacement_.size());
      }
    });
  }
}

WhitespacePreTokenizer::WhitespacePreTokenizer()
    : regex_(R"(\w+|[^\w\s]+)", Regex::Flavor::RustRegex) {}

void WhitespacePreTokenizer::pre_tokenize(Pieces& pieces) const {
  split_pieces(pieces, SplitBehavior::Removed, true,
               [&](std::string_view s, auto& m) { regex_.find_all(s, m); });
}

namespace {
// Appends maximal runs (or single characters) of code points satisfying pred.
template <typename Pred>
void char_class_matches(std::string_view s, bool each, Pred pred,
                        std::vector<std::pair<size_t, size_t>>& m) {
  bool in_run = false;
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    char32_t c = unicode::next_codepoint(s, i);
    if (pred(c)) {
      if (in_run && !each) {
        m.back().second = i;
      } else {
        m.emplace_back(start, i);
      }
      in_run = true;
    } else {
      in_run = false;
    }
  }
}
}  // namespace

void WhitespaceSplitPreTokenizer::pre_tokenize(Pieces& pieces) const {
  split_pieces(pieces, SplitBehavior::Removed, false, [](std::string_view s, auto& m) {
    char_class_matches(s, false, unicode::is_whitespace, m);
  });
}

void DigitsPreTokenizer::pre_tokenize(Pieces& pieces) const {
  split_pieces(pieces, individual_ ? SplitBehavior::Isolated : SplitBehavior::Contiguous, false,
               [&](std::string_view s, auto& m) {
                 char_class_matches(s, individual_, unicode::is_numeric, m);
               });
}

void PunctuationPreTokenizer::pre_tokenize(Pieces& pieces) const {
  split_pieces(pieces, behavior_, false, [](std::string_view s, auto& m) {
    char_class_matches(s, true, unicode::is_punctuation, m);
  });
}

void CharDelimiterSplitPreTokenizer::pre_tokenize(Pieces& pieces) const {
  split_pieces(pieces, SplitBehavior::Removed, false, [&](std::string_view s, auto& m) {
    for (size_t pos = s.find(delimiter_); pos != std::string_view::npos;
         pos = s.find(delimiter_, pos + delimiter_.size())) {
      m.emplace_back(pos, pos + delimiter_.size());
    }
  });
}

void BertPreTokenizer::pre_tokenize(Pieces& pieces) const {
  split_pieces(pieces, SplitBehavior::Removed, false, [](std::string_view s, auto& m) {
    char_class_matches(s, false, unicode::is_whitespace, m);
  });
  split_pieces(pieces, SplitBehavior::Isolated, false, [](std::string_view s, auto& m) {
    char_class_matches(s, true, unicode::is_punctuation, m);
  });
}

void SequencePreTokenizer::pre_tokenize(Pieces& pieces) const {
  for (auto& p : items_) p->pre_tokenize(pieces);
}

}  // namespace lm
