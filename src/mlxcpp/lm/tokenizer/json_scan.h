// A fast scanner for large JSON documents (tokenizer.json holds 10+ MB of vocabulary and
// merges). It walks objects and arrays without building a tree, so the loader can read the
// vocabulary straight into its tables and hand small sections to nlohmann::json.
// Internal to the tokenizer loader; errors name the file and the byte offset.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace lm::json_scan {

class Scanner {
 public:
  Scanner(std::string_view text, std::string source) : s_(text), source_(std::move(source)) {}

  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) {
      ++pos_;
    }
  }
  char peek() {
    skip_ws();
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }
  void expect(char c);
  // Consumes c if it is next.
  bool accept(char c) {
    if (peek() == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  // Reads a JSON string (unescaping) into out.
  void read_string(std::string& out);
  long long read_integer();
  double read_number();
  bool read_null() {
    if (peek() == 'n' && s_.compare(pos_, 4, "null") == 0) {
      pos_ += 4;
      return true;
    }
    return false;
  }
  // Skips one value and returns its raw text.
  std::string_view skip_value();

  // Iterates an object: calls f(key) for each member, with the scanner at the member's value;
  // f must consume the value.
  template <typename F>
  void for_each_member(F&& f) {
    expect('{');
    if (accept('}')) return;
    std::string key;
    do {
      read_string(key);
      expect(':');
      f(key);
    } while (accept(','));
    expect('}');
  }
  // Iterates an array: calls f(index) with the scanner at each element; f must consume it.
  template <typename F>
  void for_each_element(F&& f) {
    expect('[');
    if (accept(']')) return;
    size_t i = 0;
    do {
      f(i++);
    } while (accept(','));
    expect(']');
  }

  [[noreturn]] void fail(const std::string& what) const;
  size_t pos() const { return pos_; }

 private:
  std::string_view s_;
  std::string source_;
  size_t pos_ = 0;
};

}  // namespace lm::json_scan
