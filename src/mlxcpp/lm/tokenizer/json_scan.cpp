#include "mlxcpp/lm/tokenizer/json_scan.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "mlxcpp/lm/tokenizer/unicode.h"

namespace lm::json_scan {

void Scanner::fail(const std::string& what) const {
  throw std::runtime_error(source_ + ": invalid JSON at byte " + std::to_string(pos_) + ": " +
                           what);
}

void Scanner::expect(char c) {
  if (peek() != c) fail(std::string("expected '") + c + "'");
  ++pos_;
}

namespace {
int hex4(std::string_view s, size_t at) {
  if (at + 4 > s.size()) return -1;
  int v = 0;
  for (size_t k = 0; k < 4; ++k) {
    char c = s[at + k];
    v <<= 4;
    if (c >= '0' && c <= '9') {
      v |= c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v |= c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v |= c - 'A' + 10;
    } else {
      return -1;
    }
  }
  return v;
}
}  // namespace

void Scanner::read_string(std::string& out) {
  expect('"');
  out.clear();
  while (true) {
    // Copy the run up to the next quote or backslash in one go.
    size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != '"' && s_[pos_] != '\\') ++pos_;
    out.append(s_.data() + start, pos_ - start);
    if (pos_ >= s_.size()) fail("unterminated string");
    if (s_[pos_] == '"') {
      ++pos_;
      return;
    }
    ++pos_;  // backslash
    if (pos_ >= s_.size()) fail("unterminated escape");
    char e = s_[pos_++];
    switch (e) {
      case '"':
        out += '"';
        break;
      case '\\':
        out += '\\';
        break;
      case '/':
        out += '/';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        int v = hex4(s_, pos_);
        if (v < 0) fail("bad \\u escape");
        pos_ += 4;
        char32_t cp = static_cast<char32_t>(v);
        if (v >= 0xD800 && v <= 0xDBFF && pos_ + 6 <= s_.size() && s_[pos_] == '\\' &&
            s_[pos_ + 1] == 'u') {
          int lo = hex4(s_, pos_ + 2);
          if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
            pos_ += 6;
          }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // lone surrogate
        unicode::append_utf8(out, cp);
        break;
      }
      default:
        fail(std::string("bad escape \\") + e);
    }
  }
}

long long Scanner::read_integer() {
  skip_ws();
  const char* b = s_.data() + pos_;
  char* e = nullptr;
  long long v = std::strtoll(b, &e, 10);
  if (e == b) fail("expected an integer");
  if (*e == '.' || *e == 'e' || *e == 'E') {
    double d = std::strtod(b, &e);
    v = static_cast<long long>(d);
  }
  pos_ += static_cast<size_t>(e - b);
  return v;
}

double Scanner::read_number() {
  skip_ws();
  const char* b = s_.data() + pos_;
  char* e = nullptr;
  double v = std::strtod(b, &e);
  if (e == b) fail("expected a number");
  pos_ += static_cast<size_t>(e - b);
  return v;
}

std::string_view Scanner::skip_value() {
  skip_ws();
  if (pos_ >= s_.size()) fail("unexpected end of input");
  size_t start = pos_;
  auto skip_string = [&]() {
    ++pos_;
    while (pos_ < s_.size() && s_[pos_] != '"') pos_ += s_[pos_] == '\\' ? 2 : 1;
    if (pos_ >= s_.size()) fail("unterminated string");
    ++pos_;
  };
  char c = s_[pos_];
  if (c == '"') {
    skip_string();
  } else if (c == '{' || c == '[') {
    int depth = 0;
    do {
      if (pos_ >= s_.size()) fail("unexpected end of input");
      char d = s_[pos_];
      if (d == '"') {
        skip_string();
        continue;
      }
      if (d == '{' || d == '[') ++depth;
      if (d == '}' || d == ']') --depth;
      ++pos_;
    } while (depth > 0);
  } else {
    while (pos_ < s_.size() && !std::strchr(",}] \n\r\t", s_[pos_])) ++pos_;
    if (pos_ == start) fail("expected a value");
  }
  return s_.substr(start, pos_ - start);
}

}  // namespace lm::json_scan
