#include "mlxcpp/lm/tokenizer/streaming_detokenizer.h"

namespace lm {

namespace {
bool ends_incomplete(const std::string& s) {
  return s.size() >= 3 && s.compare(s.size() - 3, 3, "\xEF\xBF\xBD") == 0;
}

// Byte-fallback pieces ("<0xE2>") are decoded together as one run of bytes, so a run must stay
// whole in the decoding window.
bool is_byte_piece(const Tokenizer& tok, int32_t id) {
  auto t = tok.id_to_token(id);
  return t && t->size() == 6 && t->compare(0, 3, "<0x") == 0 && (*t)[5] == '>';
}
}  // namespace

std::string StreamingDetokenizer::add(int32_t id) {
  // Skipped special tokens never reach the decoder, so they must not become context either.
  if (skip_special_ && tokenizer_->is_special(id)) return "";
  window_.push_back(id);
  std::string full = tokenizer_->decode(window_, skip_special_);
  // A trailing U+FFFD usually means the character's remaining bytes are in later tokens; wait
  // (bounded, in case the model really produced a replacement character).
  constexpr size_t kMaxPending = 8;
  const size_t pending = window_.size() - context_len_;
  if (ends_incomplete(full) && pending < kMaxPending) return "";
  if (full.compare(0, prefix_text_.size(), prefix_text_) != 0) {
    // The decoder rewrote text already yielded (rare: cleanup rules); wait for finish().
    if (pending < kMaxPending) return "";
    prefix_text_.clear();
  }
  std::string out = full.substr(std::min(prefix_text_.size(), full.size()));
  // Keep the last id as context, extended back over a run of byte pieces.
  size_t keep_from = window_.size() - 1;
  while (keep_from > 0 && is_byte_piece(*tokenizer_, window_[keep_from]) &&
         is_byte_piece(*tokenizer_, window_[keep_from - 1])) {
    --keep_from;
  }
  window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(keep_from));
  context_len_ = window_.size();
  prefix_text_ = tokenizer_->decode(window_, skip_special_);
  return out;
}

std::string StreamingDetokenizer::finish() {
  std::string out;
  if (!window_.empty()) {
    std::string full = tokenizer_->decode(window_, skip_special_);
    if (full.compare(0, prefix_text_.size(), prefix_text_) == 0) {
      out = full.substr(prefix_text_.size());
    } else {
      out = full;
    }
  }
  reset();
  return out;
}

void StreamingDetokenizer::reset() {
  window_.clear();
  context_len_ = 0;
  prefix_text_.clear();
}

}  // namespace lm
