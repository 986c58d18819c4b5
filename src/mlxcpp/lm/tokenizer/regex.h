// A compiled Unicode regular expression (PCRE2 with UTF and UCP, JIT when available), used for
// Split pre-tokenizers, Replace normalizers and decoders.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lm {

class Regex {
 public:
  // Which engine's \\w the pattern means: HF compiles Split/Replace patterns with Oniguruma
  // (\\w = Alphabetic, marks, Nd, Pc) and a few built-in ones with Rust's regex crate (which also
  // counts the joiners U+200C/U+200D).
  enum class Flavor { Oniguruma, RustRegex };
  // Throws std::runtime_error naming the pattern and the error position.
  explicit Regex(const std::string& pattern, Flavor flavor = Flavor::Oniguruma);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All non-overlapping matches in s as [begin, end) byte ranges, left to right. Empty matches
  // are skipped, as the regex crates HF uses never split on them.
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;

  const std::string& pattern() const { return pattern_; }

  // A pattern that matches `literal` exactly.
  static std::string escape(std::string_view literal);

 private:
  struct Impl;
  std::string pattern_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lm
