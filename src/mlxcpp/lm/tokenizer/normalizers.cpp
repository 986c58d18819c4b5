#include "mlxcpp/lm/tokenizer/normalizers.h"

namespace lm {

std::string UnicodeNormalizer::normalize(std::string s) const {
  return unicode::normalize(s, form_);
}

std::string LowercaseNormalizer::normalize(std::string s) const { return unicode::lowercase(s); }

std::string ByteLevelNormalizer::normalize(std::string s) const {
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char b : s) out += unicode::byte_to_utf8(b);
  return out;
}

std::string StripNormalizer::normalize(std::string s) const {
  size_t begin = 0, end = s.size();
  if (left_) {
    while (begin < end) {
      size_t i = begin;
      if (!unicode::is_whitespace(unicode::next_codepoint(s, i))) break;
      begin = i;
    }
  }
  if (right_) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
      size_t i = start;
      if (!unicode::is_whitespace(unicode::next_codepoint(s, i))) break;
      end = start;
    }
  }
  return s.substr(begin, end - begin);
}

std::string remove_nonspacing_marks(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    char32_t c = unicode::next_codepoint(s, i);
    if (!unicode::is_nonspacing_mark(c)) out.append(s.substr(start, i - start));
  }
  return out;
}

std::string StripAccentsNormalizer::normalize(std::string s) const {
  return remove_nonspacing_marks(s);
}

std::string ReplaceNormalizer::normalize(std::string s) const {
  std::vector<std::pair<size_t, size_t>> matches;
  regex_.find_all(s, matches);
  if (matches.empty()) return s;
  std::string out;
  out.reserve(s.size());
  size_t prev = 0;
  for (auto [b, e] : matches) {
    out.append(s, prev, b - prev);
    out += content_;
    prev = e;
  }
  out.append(s, prev, std::string::npos);
  return out;
}

std::string PrependNormalizer::normalize(std::string s) const {
  if (s.empty()) return s;
  return prepend_ + s;
}

std::string BertNormalizer::normalize(std::string s) const {
  if (clean_text_) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
      size_t start = i;
      char32_t c = unicode::next_codepoint(s, i);
      if (c == 0 || c == 0xFFFD) continue;
      bool control = c != '\t' && c != '\n' && c != '\r' && unicode::is_other(c);
      if (control) continue;
      if (unicode::is_whitespace(c)) {
        out += ' ';
      } else {
        out.append(s, start, i - start);
      }
    }
    s = std::move(out);
  }
  if (handle_chinese_chars_) {
    std::string out;
    out.reserve(s.size() + 16);
    for (size_t i = 0; i < s.size();) {
      size_t start = i;
      char32_t c = unicode::next_codepoint(s, i);
      if (unicode::is_chinese_char(c)) {
        out += ' ';
        out.append(s, start, i - start);
        out += ' ';
      } else {
        out.append(s, start, i - start);
      }
    }
    s = std::move(out);
  }
  if (strip_accents_) s = remove_nonspacing_marks(unicode::normalize(s, unicode::Form::NFD));
  if (lowercase_) s = unicode::lowercase(s);
  return s;
}

std::string SequenceNormalizer::normalize(std::string s) const {
  for (auto& n : items_) s = n->normalize(std::move(s));
  return s;
}

}  // namespace lm
