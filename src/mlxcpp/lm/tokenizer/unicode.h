// Unicode helpers for the tokenizer: UTF-8 decoding and encoding, the character classes Hugging
// Face tokenizers test (Rust's char methods), normalization forms, and the GPT-2 byte-to-char map.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace lm::unicode {

// Decodes the code point at s[i] and advances i. Invalid bytes decode as U+FFFD, one byte each.
char32_t next_codepoint(std::string_view s, size_t& i);
// Byte length of the UTF-8 sequence starting with this lead byte (1 for invalid lead bytes).
inline size_t utf8_len(unsigned char lead) {
  return lead < 0x80           ? 1
         : (lead >> 5) == 0x6  ? 2
         : (lead >> 4) == 0xE  ? 3
         : (lead >> 3) == 0x1E ? 4
                               : 1;
}
void append_utf8(std::string& out, char32_t cp);
std::string to_utf8(char32_t cp);

// Rust char::is_whitespace (Unicode White_Space).
bool is_whitespace(char32_t c);
// Rust char::is_alphanumeric (Alphabetic or Numeric).
bool is_alphanumeric(char32_t c);
// Rust char::is_numeric (categories Nd, Nl, No).
bool is_numeric(char32_t c);
// Regex \w in Rust's regex crate (Alphabetic, M, Nd, Pc, Join_Control).
bool is_word_char(char32_t c);
// Unicode punctuation (categories P*) or ASCII punctuation, as tokenizers' is_punc.
bool is_punctuation(char32_t c);
// Categories Cc, Cf, Cn, Co, Cs.
bool is_other(char32_t c);
// Category Mn.
bool is_nonspacing_mark(char32_t c);
// The CJK ideograph ranges BERT pads with spaces.
bool is_chinese_char(char32_t c);

// Rust char::to_lowercase, appended as UTF-8 (U+0130 lowercases to two code points).
void append_lowercase(std::string& out, char32_t c);
std::string lowercase(std::string_view s);
// Simple (one-to-one) uppercase mapping, code point by code point.
std::string uppercase(std::string_view s);

enum class Form { NFC, NFD, NFKC, NFKD };
std::string normalize(std::string_view s, Form form);

// GPT-2's reversible map between bytes and printable code points.
const std::string& byte_to_utf8(unsigned char b);
// Returns -1 for code points outside the map.
int codepoint_to_byte(char32_t c);

// Rust String::from_utf8_lossy: each maximal invalid subsequence becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);
// Whether bytes are valid UTF-8.
bool valid_utf8(std::string_view bytes);

}  // namespace lm::unicode
