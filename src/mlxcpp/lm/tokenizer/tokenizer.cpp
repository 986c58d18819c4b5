#include "mlxcpp/lm/tokenizer/tokenizer.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "mlxcpp/lm/tokenizer/processors.h"
#include "mlxcpp/lm/tokenizer/tokenizer_impl.h"
#include "mlxcpp/lm/tokenizer/unicode.h"

namespace lm {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path.string());
  std::string s;
  f.seekg(0, std::ios::end);
  auto size = f.tellg();
  if (size < 0) throw std::runtime_error("cannot read " + path.string());
  s.resize(static_cast<size_t>(size));
  f.seekg(0);
  f.read(s.data(), size);
  if (!f) throw std::runtime_error("cannot read " + path.string());
  return s;
}

// ---- added tokens ----------------------------------------------------------------------------

int32_t AddedTokenMatcher::child(int32_t node, unsigned char b) const {
  auto it = edges_.find((static_cast<uint64_t>(node) << 8) | b);
  return it == edges_.end() ? -1 : it->second;
}

void AddedTokenMatcher::add(const std::string& pattern, const AddedToken* token) {
  if (pattern.empty()) return;
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
  int32_t node = 0;
  for (unsigned char b : pattern) {
    int32_t next = child(node, b);
    if (next < 0) {
      next = static_cast<int32_t>(nodes_.size());
      nodes_.push_back(Node{});
      edges_.emplace((static_cast<uint64_t>(node) << 8) | b, next);
    }
    node = next;
  }
  // The first token given a pattern keeps it (Aho-Corasick reports the lowest pattern index).
  if (nodes_[node].terminal < 0) {
    nodes_[node].terminal = static_cast<int32_t>(tokens_.size());
    tokens_.push_back(token);
  }
}

namespace {
// Regex \w at the end / start of a string, as HF's single_word test.
bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t start = s.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  size_t i = start;
  return unicode::is_word_char(unicode::next_codepoint(s, i));
}
bool starts_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t i = 0;
  return unicode::is_word_char(unicode::next_codepoint(s, i));
}
}  // namespace

void AddedTokenMatcher::find(std::string_view s, std::vector<Match>& out) const {
  if (tokens_.empty()) return;
  size_t last_end = 0;  // end of the previous accepted split (HF's start_offset)
  for (size_t i = 0; i < s.size();) {
    if (!first_byte_[static_cast<unsigned char>(s[i])]) {
      ++i;
      continue;
    }
    // Longest pattern starting at i.
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < s.size(); ++j) {
      node = child(node, static_cast<unsigned char>(s[j]));
      if (node < 0) break;
      if (nodes_[node].terminal >= 0) {
        best = nodes_[node].terminal;
        best_end = j + 1;
      }
    }
    if (best < 0) {
      ++i;
      continue;
    }
    const AddedToken* tok = tokens_[best];
    size_t start = i, stop = best_end;
    i = best_end;  // the search resumes after the match even if it is discarded
    if (tok->single_word) {
      bool start_ok = start == 0 || !ends_with_word(s.substr(0, start));
      bool stop_ok = stop == s.size() || !starts_with_word(s.substr(stop));
      if (!start_ok || !stop_ok) continue;
    }
    if (tok->lstrip) {
      size_t b = start;
      while (b > 0) {
        size_t p = b - 1;
        while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
        size_t k = p;
        if (!unicode::is_whitespace(unicode::next_codepoint(s, k))) break;
        b = p;
      }
      start = std::max(b, last_end);
    }
    if (tok->rstrip) {
      while (stop < s.size()) {
        size_t k = stop;
        if (!unicode::is_whitespace(unicode::next_codepoint(s, k))) break;
        stop = k;
      }
    }
    out.push_back({start, stop, tok->id});
    last_end = stop;
  }
}

void Tokenizer::Impl::build_added_matchers() {
  raw_matcher = AddedTokenMatcher();
  normalized_matcher = AddedTokenMatcher();
  added_by_content.clear();
  added_by_id.clear();
  special_contents.clear();
  added_decode_text.clear();
  for (size_t k = 0; k < added.size(); ++k) {
    added_decode_text.push_back(added[k].normalized && normalizer
                                    ? normalizer->normalize(added[k].content)
                                    : added[k].content);
    added_by_content[added[k].content] = added[k].id;
    added_by_id[added[k].id] = k;
    if (added[k].special) special_contents.insert(added[k].content);
  }
  // HF builds its matchers from the special tokens first, then the others.
  for (int pass = 0; pass < 2; ++pass) {
    for (auto& t : added) {
      if (t.special != (pass == 0)) continue;
      if (!t.normalized) {
        raw_matcher.add(t.content, &t);
      } else {
        normalized_matcher.add(normalizer ? normalizer->normalize(t.content) : t.content, &t);
      }
    }
  }
}

// ---- encoding --------------------------------------------------------------------------------

void Tokenizer::Impl::encode_sequence(std::string_view input, std::vector<int32_t>& ids) const {
  std::string repaired;
  if (!unicode::valid_utf8(input)) {
    repaired = unicode::utf8_lossy(input);
    input = repaired;
  }
  std::vector<AddedTokenMatcher::Match> matches;
  Pieces pieces;
  // Tokenizes one stretch of text that holds no raw added token.
  auto run_normalized = [&](std::string_view text, bool at_start) {
    std::string norm = normalizer ? normalizer->normalize(std::string(text)) : std::string(text);
    matches.clear();
    normalized_matcher.find(norm, matches);
    size_t prev = 0;
    auto model_part = [&](size_t b, size_t e) {
      if (e <= b) return;
      pieces.clear();
      pieces.push_back({norm.substr(b, e - b), at_start && b == 0});
      if (pre_tokenizer) pre_tokenizer->pre_tokenize(pieces);
      for (auto& p : pieces) model->tokenize(p.text, ids);
    };
    std::vector<AddedTokenMatcher::Match> local = matches;
    for (auto& m : local) {
      model_part(prev, m.begin);
      ids.push_back(m.id);
      prev = m.end;
    }
    model_part(prev, norm.size());
  };
  std::vector<AddedTokenMatcher::Match> raw;
  raw_matcher.find(input, raw);
  size_t prev = 0;
  for (auto& m : raw) {
    if (m.begin > prev) run_normalized(input.substr(prev, m.begin - prev), prev == 0);
    ids.push_back(m.id);
    prev = m.end;
  }
  if (prev < input.size()) run_normalized(input.substr(prev), prev == 0);
}

std::string Tokenizer::Impl::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    auto it = added_by_id.find(id);
    if (it != added_by_id.end()) {
      const std::string& text = added_decode_text[it->second];
      if (skip_special_tokens && special_contents.count(text)) continue;
      tokens.push_back(text);
      continue;
    }
    const std::string* s = model->id_to_token(id);
    if (!s) continue;
    if (skip_special_tokens && special_contents.count(*s)) continue;
    tokens.push_back(*s);
  }
  if (decoder) {
    decoder->decode_chain(tokens);
    std::string out;
    for (auto& t : tokens) out += t;
    return out;
  }
  std::string out;
  for (size_t k = 0; k < tokens.size(); ++k) {
    if (k) out += ' ';
    out += tokens[k];
  }
  return out;
}

// ---- public API ------------------------------------------------------------------------------

Tokenizer Tokenizer::from_json(std::string_view json, const std::string& source) {
  auto impl = std::make_shared<Impl>();
  load_tokenizer_json(json, source, *impl);
  impl->build_added_matchers();
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_file(const std::filesystem::path& path) {
  return from_json(read_file(path), path.string());
}

Tokenizer Tokenizer::from_dir(const std::filesystem::path& dir) {
  auto path = dir / "tokenizer.json";
  if (!std::filesystem::exists(path)) {
    throw std::runtime_error("no tokenizer.json in " + dir.string());
  }
  auto impl = std::make_shared<Impl>();
  load_tokenizer_json(read_file(path), path.string(), *impl);
  impl->build_added_matchers();
  load_tokenizer_config(dir, *impl);
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  Encoding a;
  impl_->encode_sequence(text, a.ids);
  if (impl_->post_processor) {
    a.type_ids.assign(a.ids.size(), 0);
    impl_->post_processor->process(a, nullptr, add_special_tokens);
  }
  return std::move(a.ids);
}

std::pair<std::vector<int32_t>, std::vector<int32_t>> Tokenizer::encode_pair(
    std::string_view a_text, std::string_view b_text, bool add_special_tokens) const {
  Encoding a, b;
  impl_->encode_sequence(a_text, a.ids);
  impl_->encode_sequence(b_text, b.ids);
  a.type_ids.assign(a.ids.size(), 0);
  b.type_ids.assign(b.ids.size(), 1);
  if (impl_->post_processor) {
    impl_->post_processor->process(a, &b, add_special_tokens);
  } else {
    PassThroughProcessor().process(a, &b, add_special_tokens);
  }
  return {std::move(a.ids), std::move(a.type_ids)};
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  return impl_->decode(ids, skip_special_tokens);
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->added_by_content.find(std::string(token));
  if (it != impl_->added_by_content.end()) return it->second;
  return impl_->model->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  auto it = impl_->added_by_id.find(id);
  if (it != impl_->added_by_id.end()) return impl_->added[it->second].content;
  if (auto* s = impl_->model->id_to_token(id)) return *s;
  return std::nullopt;
}

size_t Tokenizer::vocab_size() const {
  size_t n = impl_->model->vocab_size();
  for (auto& t : impl_->added) {
    if (!impl_->model->id_to_token(t.id)) ++n;
  }
  return n;
}

bool Tokenizer::is_special(int32_t id) const {
  auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && impl_->added[it->second].special;
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }

const TokenizerConfig& Tokenizer::config() const { return impl_->config; }

}  // namespace lm
