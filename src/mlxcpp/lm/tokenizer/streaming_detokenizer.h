// Turns generated token ids into text as soon as the text is final: it never splits a UTF-8
// character (byte-level and byte-fallback pieces wait for the rest of their bytes) and the
// concatenation of everything it yields equals Tokenizer::decode of all the ids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mlxcpp/lm/tokenizer/tokenizer.h"

namespace lm {

class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens = false)
      : tokenizer_(&tokenizer), skip_special_(skip_special_tokens) {}

  // Adds one id; returns the text that became final (often empty while bytes are pending).
  std::string add(int32_t id);
  // Returns whatever is left (an incomplete character decodes as U+FFFD, as decode() does).
  std::string finish();
  void reset();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  // The ids decoded together: context ids (the last yielded id, or the whole run of byte
  // pieces it ends, so that decoders see the same neighbourhood as a full decode) plus the
  // pending ids.
  std::vector<int32_t> window_;
  size_t context_len_ = 0;   // leading ids of window_ whose text was already yielded
  std::string prefix_text_;  // decode of those context ids
};

}  // namespace lm
