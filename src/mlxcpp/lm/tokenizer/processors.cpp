#include "mlxcpp/lm/tokenizer/processors.h"

#include <stdexcept>

#include "mlxcpp/lm/tokenizer/unicode.h"

namespace lm {

TemplateProcessor::TemplateProcessor(std::vector<Item> single, std::vector<Item> pair,
                                     std::map<std::string, std::vector<int32_t>> special_tokens)
    : single_(std::move(single)),
      pair_(std::move(pair)),
      special_tokens_(std::move(special_tokens)) {
  for (auto* list : {&single_, &pair_}) {
    for (auto& item : *list) {
      if (!item.is_sequence && !special_tokens_.count(item.special)) {
        throw std::runtime_error("post_processor: template uses special token '" + item.special +
                                 "' missing from special_tokens");
      }
    }
  }
}

void TemplateProcessor::process(Encoding& a, Encoding* b, bool add_special_tokens) const {
  const auto& items = b ? pair_ : single_;
  Encoding out;
  for (auto& item : items) {
    if (item.is_sequence) {
      Encoding* src = item.sequence == 0 ? &a : b;
      if (!src) continue;
      out.ids.insert(out.ids.end(), src->ids.begin(), src->ids.end());
      out.type_ids.insert(out.type_ids.end(), src->ids.size(), item.type_id);
    } else if (add_special_tokens) {
      const auto& ids = special_tokens_.at(item.special);
      out.ids.insert(out.ids.end(), ids.begin(), ids.end());
      out.type_ids.insert(out.type_ids.end(), ids.size(), item.type_id);
    }
  }
  a = std::move(out);
}

void BertProcessor::process(Encoding& a, Encoding* b, bool add_special_tokens) const {
  if (!add_special_tokens) {
    PassThroughProcessor().process(a, b, false);
    return;
  }
  Encoding out;
  auto add = [&](int32_t id, int32_t type) {
    out.ids.push_back(id);
    out.type_ids.push_back(type);
  };
  add(cls_, 0);
  for (auto id : a.ids) add(id, 0);
  add(sep_, 0);
  if (b) {
    int32_t type = roberta_ ? 0 : 1;
    if (roberta_) add(sep_, type);
    for (auto id : b->ids) add(id, type);
    add(sep_, type);
  }
  a = std::move(out);
}

void PassThroughProcessor::process(Encoding& a, Encoding* b, bool) const {
  if (!b) return;
  a.ids.insert(a.ids.end(), b->ids.begin(), b->ids.end());
  a.type_ids.insert(a.type_ids.end(), b->type_ids.begin(), b->type_ids.end());
}

void SequenceProcessor::process(Encoding& a, Encoding* b, bool add_special_tokens) const {
  // HF's Sequence hands every processor the list of encodings; only the first processor that
  // merges pairs matters for ids, and ByteLevel never merges. Apply the non-trivial ones in order
  // on the running result.
  bool merged = false;
  for (auto& p : items_) {
    if (dynamic_cast<PassThroughProcessor*>(p.get())) continue;
    p->process(a, merged ? nullptr : b, add_special_tokens);
    merged = true;
  }
  if (!merged) PassThroughProcessor().process(a, b, add_special_tokens);
}

void ByteLevelDecoder::decode_chain(std::vector<std::string>& tokens) const {
  std::string bytes;
  for (auto& t : tokens) {
    size_t mark = bytes.size();
    bool ok = true;
    for (size_t i = 0; i < t.size();) {
      int b = unicode::codepoint_to_byte(unicode::next_codepoint(t, i));
      if (b < 0) {
        ok = false;
        break;
      }
      bytes += static_cast<char>(b);
    }
    if (!ok) {
      bytes.resize(mark);
      bytes += t;
    }
  }
  tokens.assign(1, unicode::utf8_lossy(bytes));
}

void MetaspaceDecoder::decode_chain(std::vector<std::string>& tokens) const {
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string out;
    const std::string& t = tokens[i];
    for (size_t pos = 0; pos < t.size();) {
      if (t.compare(pos, replacement_.size(), replacement_) == 0) {
        if (!(i == 0 && pos == 0 && scheme_ != PrependScheme::Never)) out += ' ';
        pos += replacement_.size();
      } else {
        out += t[pos++];
      }
    }
    tokens[i] = std::move(out);
  }
}

namespace {
void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
}
}  // namespace

std::string cleanup_tokenization_spaces(std::string s) {
  replace_all(s, " .", ".");
  replace_all(s, " ?", "?");
  replace_all(s, " !", "!");
  replace_all(s, " ,", ",");
  replace_all(s, " ' ", "'");
  replace_all(s, " n't", "n't");
  replace_all(s, " 'm", "'m");
  replace_all(s, " do not", " don't");
  replace_all(s, " 's", "'s");
  replace_all(s, " 've", "'ve");
  replace_all(s, " 're", "'re");
  return s;
}

void WordPieceDecoder::decode_chain(std::vector<std::string>& tokens) const {
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string& t = tokens[i];
    if (i != 0) {
      if (t.compare(0, prefix_.size(), prefix_) == 0) {
        t.erase(0, prefix_.size());
      } else {
        t = " " + t;
      }
    }
    if (cleanup_) t = cleanup_tokenization_spaces(std::move(t));
  }
}

void BpeDecoder::decode_chain(std::vector<std::string>& tokens) const {
  for (size_t i = 0; i < tokens.size(); ++i) {
    replace_all(tokens[i], suffix_, i + 1 == tokens.size() ? "" : " ");
  }
}

void ByteFallbackDecoder::decode_chain(std::vector<std::string>& tokens) const {
  std::vector<std::string> out;
  std::string bytes;
  size_t byte_tokens = 0;
  auto flush = [&]() {
    if (!byte_tokens) return;
    if (unicode::valid_utf8(bytes)) {
      out.push_back(bytes);
    } else {
      for (size_t k = 0; k < byte_tokens; ++k) out.push_back("\xEF\xBF\xBD");
    }
    bytes.clear();
    byte_tokens = 0;
  };
  for (auto& t : tokens) {
    bool is_byte = t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>';
    if (is_byte) {
      // The digits must outlive the parse: strtol's end pointer points into them.
      const std::string digits = t.substr(3, 2);
      char* end = nullptr;
      long v = std::strtol(digits.c_str(), &end, 16);
      is_byte = end && *end == '\0';
      if (is_byte) {
        bytes += static_cast<char>(v);
        ++byte_tokens;
        continue;
      }
    }
    flush();
    out.push_back(t);
  }
  flush();
  tokens = std::move(out);
}

void FuseDecoder::decode_chain(std::vector<std::string>& tokens) const {
  std::string all;
  for (auto& t : tokens) all += t;
  tokens.assign(1, std::move(all));
}

void ReplaceDecoder::decode_chain(std::vector<std::string>& tokens) const {
  std::vector<std::pair<size_t, size_t>> m;
  for (auto& t : tokens) {
    m.clear();
    regex_.find_all(t, m);
    if (m.empty()) continue;
    std::string out;
    size_t prev = 0;
    for (auto [b, e] : m) {
      out.append(t, prev, b - prev);
      out += content_;
      prev = e;
    }
    out.append(t, prev, std::string::npos);
    t = std::move(out);
  }
}

void StripDecoder::decode_chain(std::vector<std::string>& tokens) const {
  for (auto& t : tokens) {
    size_t begin = 0, end = t.size();
    for (size_t k = 0; k < start_ && t.compare(begin, content_.size(), content_) == 0 &&
                       begin + content_.size() <= end;
         ++k) {
      begin += content_.size();
    }
    for (size_t k = 0; k < stop_ && end >= begin + content_.size() &&
                       t.compare(end - content_.size(), content_.size(), content_) == 0;
         ++k) {
      end -= content_.size();
    }
    t = t.substr(begin, end - begin);
  }
}

void SequenceDecoder::decode_chain(std::vector<std::string>& tokens) const {
  for (auto& d : items_) d->decode_chain(tokens);
}

}  // namespace lm
