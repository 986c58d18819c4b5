// Builds a Tokenizer::Impl from tokenizer.json. The model's vocabulary and merges are read with
// the streaming scanner (they are most of the file); every other section goes through
// nlohmann::json. Errors name the file and the JSON field.
#include <nlohmann/json.hpp>

#include <stdexcept>

#include "mlxcpp/lm/tokenizer/json_scan.h"
#include "mlxcpp/lm/tokenizer/models.h"
#include "mlxcpp/lm/tokenizer/normalizers.h"
#include "mlxcpp/lm/tokenizer/pre_tokenizers.h"
#include "mlxcpp/lm/tokenizer/processors.h"
#include "mlxcpp/lm/tokenizer/tokenizer_impl.h"

namespace lm {

using json = nlohmann::json;

namespace {

struct Ctx {
  std::string source;
  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw std::runtime_error(source + ": " + field + ": " + what);
  }
};

std::string type_of(const Ctx& ctx, const json& j, const std::string& field) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    ctx.fail(field, "expected an object with a string \"type\"");
  }
  return j["type"].get<std::string>();
}

template <typename T>
T get_or(const json& j, const char* key, T fallback) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return fallback;
  return j[key].get<T>();
}

// {"String": "x"} or {"Regex": "x"} -> a regex pattern.
std::string pattern_of(const Ctx& ctx, const json& j, const std::string& field) {
  if (j.is_object() && j.contains("String")) return Regex::escape(j["String"].get<std::string>());
  if (j.is_object() && j.contains("Regex")) return j["Regex"].get<std::string>();
  if (j.is_string()) return Regex::escape(j.get<std::string>());
  ctx.fail(field, "expected {\"String\": ...} or {\"Regex\": ...}");
}

SplitBehavior behavior_of(const Ctx& ctx, const json& j, const std::string& field) {
  std::string b = j.is_string() ? j.get<std::string>() : "";
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  ctx.fail(field, "unknown split behavior '" + b + "'");
}

PrependScheme scheme_of(const Ctx& ctx, const json& j, const std::string& field) {
  if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
    std::string s = j["prepend_scheme"].get<std::string>();
    if (s == "always") return PrependScheme::Always;
    if (s == "first") return PrependScheme::First;
    if (s == "never") return PrependScheme::Never;
    ctx.fail(field + ".prepend_scheme", "unknown value '" + s + "'");
  }
  // Older files: add_prefix_space.
  return get_or<bool>(j, "add_prefix_space", true) ? PrependScheme::Always : PrependScheme::Never;
}

std::string metaspace_replacement(const json& j) {
  if (j.contains("replacement")) return j["replacement"].get<std::string>();
  return "\xE2\x96\x81";
}

std::unique_ptr<Normalizer> make_normalizer(const Ctx& ctx, const json& j,
                                            const std::string& field) {
  if (j.is_null()) return nullptr;
  std::string t = type_of(ctx, j, field);
  if (t == "NFC") return std::make_unique<UnicodeNormalizer>(unicode::Form::NFC);
  if (t == "NFD") return std::make_unique<UnicodeNormalizer>(unicode::Form::NFD);
  if (t == "NFKC") return std::make_unique<UnicodeNormalizer>(unicode::Form::NFKC);
  if (t == "NFKD") return std::make_unique<UnicodeNormalizer>(unicode::Form::NFKD);
  if (t == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (t == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
  if (t == "Strip") {
    return std::make_unique<StripNormalizer>(get_or<bool>(j, "strip_left", true),
                                             get_or<bool>(j, "strip_right", true));
  }
  if (t == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (t == "Replace") {
    return std::make_unique<ReplaceNormalizer>(pattern_of(ctx, j["pattern"], field + ".pattern"),
                                               j["content"].get<std::string>());
  }
  if (t == "Prepend") return std::make_unique<PrependNormalizer>(j["prepend"].get<std::string>());
  if (t == "BertNormalizer") {
    bool lowercase = get_or<bool>(j, "lowercase", true);
    bool strip = j.contains("strip_accents") && !j["strip_accents"].is_null()
                     ? j["strip_accents"].get<bool>()
                     : lowercase;
    return std::make_unique<BertNormalizer>(get_or<bool>(j, "clean_text", true),
                                            get_or<bool>(j, "handle_chinese_chars", true), strip,
                                            lowercase);
  }
  if (t == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> items;
    const json& list = j["normalizers"];
    for (size_t k = 0; k < list.size(); ++k) {
      if (auto n =
              make_normalizer(ctx, list[k], field + ".normalizers[" + std::to_string(k) + "]")) {
        items.push_back(std::move(n));
      }
    }
    return std::make_unique<SequenceNormalizer>(std::move(items));
  }
  ctx.fail(field, "unsupported normalizer type '" + t + "'");
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const Ctx& ctx, const json& j,
                                                 const std::string& field) {
  if (j.is_null()) return nullptr;
  std::string t = type_of(ctx, j, field);
  if (t == "Split") {
    return std::make_unique<SplitPreTokenizer>(pattern_of(ctx, j["pattern"], field + ".pattern"),
                                               behavior_of(ctx, j["behavior"], field + ".behavior"),
                                               get_or<bool>(j, "invert", false));
  }
  if (t == "ByteLevel") {
    return std::make_unique<ByteLevelPreTokenizer>(get_or<bool>(j, "add_prefix_space", true),
                                                   get_or<bool>(j, "use_regex", true));
  }
  if (t == "Metaspace") {
    return std::make_unique<MetaspacePreTokenizer>(
        metaspace_replacement(j), scheme_of(ctx, j, field), get_or<bool>(j, "split", true));
  }
  if (t == "Whitespace") return std::make_unique<WhitespacePreTokenizer>();
  if (t == "WhitespaceSplit") return std::make_unique<WhitespaceSplitPreTokenizer>();
  if (t == "Digits") {
    return std::make_unique<DigitsPreTokenizer>(get_or<bool>(j, "individual_digits", false));
  }
  if (t == "Punctuation") {
    SplitBehavior b = j.contains("behavior") ? behavior_of(ctx, j["behavior"], field + ".behavior")
                                             : SplitBehavior::Isolated;
    return std::make_unique<PunctuationPreTokenizer>(b);
  }
  if (t == "BertPreTokenizer") return std::make_unique<BertPreTokenizer>();
  if (t == "CharDelimiterSplit") {
    std::string d = j.at("delimiter").get<std::string>();
    if (d.empty()) ctx.fail(field + ".delimiter", "must be one character");
    return std::make_unique<CharDelimiterSplitPreTokenizer>(d);
  }
  if (t == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> items;
    const json& list = j["pretokenizers"];
    for (size_t k = 0; k < list.size(); ++k) {
      if (auto p = make_pre_tokenizer(ctx, list[k],
                                      field + ".pretokenizers[" + std::to_string(k) + "]")) {
        items.push_back(std::move(p));
      }
    }
    return std::make_unique<SequencePreTokenizer>(std::move(items));
  }
  ctx.fail(field, "unsupported pre-tokenizer type '" + t + "'");
}

std::unique_ptr<PostProcessor> make_post_processor(const Ctx& ctx, const json& j,
                                                   const std::string& field) {
  if (j.is_null()) return nullptr;
  std::string t = type_of(ctx, j, field);
  if (t == "ByteLevel") return std::make_unique<PassThroughProcessor>();
  if (t == "TemplateProcessing") {
    auto items = [&](const json& list, const std::string& f) {
      std::vector<TemplateProcessor::Item> out;
      for (auto& it : list) {
        if (it.contains("Sequence")) {
          std::string id = it["Sequence"]["id"].get<std::string>();
          if (id != "A" && id != "B") ctx.fail(f, "sequence id must be A or B, got '" + id + "'");
          out.push_back({true, id == "A" ? 0 : 1, "", it["Sequence"]["type_id"].get<int32_t>()});
        } else if (it.contains("SpecialToken")) {
          out.push_back({false, 0, it["SpecialToken"]["id"].get<std::string>(),
                         it["SpecialToken"]["type_id"].get<int32_t>()});
        } else {
          ctx.fail(f, "expected Sequence or SpecialToken items");
        }
      }
      return out;
    };
    std::map<std::string, std::vector<int32_t>> specials;
    if (j.contains("special_tokens")) {
      for (auto& [name, v] : j["special_tokens"].items()) {
        specials[name] = v["ids"].get<std::vector<int32_t>>();
      }
    }
    return std::make_unique<TemplateProcessor>(items(j["single"], field + ".single"),
                                               items(j["pair"], field + ".pair"),
                                               std::move(specials));
  }
  if (t == "BertProcessing" || t == "RobertaProcessing") {
    // Serialized as "sep": ["[SEP]", 102], "cls": ["[CLS]", 101].
    return std::make_unique<BertProcessor>(j["cls"][1].get<int32_t>(), j["sep"][1].get<int32_t>(),
                                           t == "RobertaProcessing");
  }
  if (t == "Sequence") {
    std::vector<std::unique_ptr<PostProcessor>> items;
    const json& list = j["processors"];
    for (size_t k = 0; k < list.size(); ++k) {
      if (auto p =
              make_post_processor(ctx, list[k], field + ".processors[" + std::to_string(k) + "]")) {
        items.push_back(std::move(p));
      }
    }
    return std::make_unique<SequenceProcessor>(std::move(items));
  }
  ctx.fail(field, "unsupported post-processor type '" + t + "'");
}

std::unique_ptr<Decoder> make_decoder(const Ctx& ctx, const json& j, const std::string& field) {
  if (j.is_null()) return nullptr;
  std::string t = type_of(ctx, j, field);
  if (t == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (t == "Metaspace") {
    return std::make_unique<MetaspaceDecoder>(metaspace_replacement(j), scheme_of(ctx, j, field));
  }
  if (t == "WordPiece") {
    return std::make_unique<WordPieceDecoder>(get_or<std::string>(j, "prefix", "##"),
                                              get_or<bool>(j, "cleanup", true));
  }
  if (t == "BPEDecoder") {
    return std::make_unique<BpeDecoder>(get_or<std::string>(j, "suffix", "</w>"));
  }
  if (t == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (t == "Fuse") return std::make_unique<FuseDecoder>();
  if (t == "Replace") {
    return std::make_unique<ReplaceDecoder>(pattern_of(ctx, j["pattern"], field + ".pattern"),
                                            j["content"].get<std::string>());
  }
  if (t == "Strip") {
    return std::make_unique<StripDecoder>(j["content"].get<std::string>(),
                                          get_or<size_t>(j, "start", 0),
                                          get_or<size_t>(j, "stop", 0));
  }
  if (t == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> items;
    const json& list = j["decoders"];
    for (size_t k = 0; k < list.size(); ++k) {
      if (auto d = make_decoder(ctx, list[k], field + ".decoders[" + std::to_string(k) + "]")) {
        items.push_back(std::move(d));
      }
    }
    return std::make_unique<SequenceDecoder>(std::move(items));
  }
  ctx.fail(field, "unsupported decoder type '" + t + "'");
}

// The "model" section, read with the scanner.
std::unique_ptr<Model> read_model(json_scan::Scanner& sc, const Ctx& ctx) {
  json options = json::object();
  auto vocab = std::make_unique<Vocab>();
  std::vector<std::pair<std::string, double>> unigram_pieces;
  bool vocab_is_list = false, have_vocab = false;
  // Merges resolve to ids as they are read when the vocabulary came first (it does in files HF
  // writes); otherwise their strings wait until the end.
  std::vector<MergeIds> merge_ids;
  std::vector<std::pair<std::string, std::string>> pending_merges;
  std::string continuing_prefix;  // needed to resolve merges; read before them in HF files
  bool saw_merges = false;
  sc.for_each_member([&](const std::string& key) {
    if (key == "vocab") {
      have_vocab = true;
      if (sc.peek() == '{') {
        vocab->reserve(1 << 16);
        sc.for_each_member([&](const std::string& tok) {
          long long id = sc.read_integer();
          if (id < 0 || id > INT32_MAX) ctx.fail("model.vocab", "bad id for '" + tok + "'");
          vocab->set(static_cast<int32_t>(id), tok);
        });
      } else {
        vocab_is_list = true;
        std::string piece;
        sc.for_each_element([&](size_t) {
          sc.expect('[');
          sc.read_string(piece);
          sc.expect(',');
          double score = sc.read_number();
          sc.expect(']');
          unigram_pieces.emplace_back(piece, score);
        });
      }
    } else if (key == "merges") {
      saw_merges = true;
      bool resolve_now = have_vocab && !vocab_is_list;
      if (resolve_now) vocab->build();
      std::string a, b, scratch;
      sc.for_each_element([&](size_t k) {
        std::string_view left, right;
        if (sc.peek() == '"') {
          sc.read_string(a);
          size_t space = a.find(' ');
          if (space == std::string::npos) {
            ctx.fail("model.merges[" + std::to_string(k) + "]", "expected \"left right\"");
          }
          left = std::string_view(a).substr(0, space);
          right = std::string_view(a).substr(space + 1);
        } else {
          sc.expect('[');
          sc.read_string(a);
          sc.expect(',');
          sc.read_string(b);
          sc.expect(']');
          left = a;
          right = b;
        }
        if (resolve_now) {
          merge_ids.push_back(BpeModel::resolve_merge(*vocab, left, right, continuing_prefix,
                                                      scratch,
                                                      "model.merges[" + std::to_string(k) + "]"));
        } else {
          pending_merges.emplace_back(std::string(left), std::string(right));
        }
      });
    } else {
      std::string_view raw = sc.skip_value();
      try {
        options[key] = json::parse(raw);
      } catch (const json::exception& e) {
        ctx.fail("model." + key, e.what());
      }
      if (key == "continuing_subword_prefix" && options[key].is_string()) {
        continuing_prefix = options[key].get<std::string>();
      }
    }
  });
  std::string type = options.contains("type") && options["type"].is_string()
                         ? options["type"].get<std::string>()
                         : (vocab_is_list ? "Unigram" : (saw_merges ? "BPE" : "WordPiece"));
  if (!have_vocab) ctx.fail("model", "missing \"vocab\"");
  if (type == "BPE") {
    if (vocab_is_list) ctx.fail("model.vocab", "BPE expects an object of token -> id");
    BpeOptions o;
    if (options.contains("unk_token") && options["unk_token"].is_string()) {
      o.unk_token = options["unk_token"].get<std::string>();
    }
    o.continuing_subword_prefix = get_or<std::string>(options, "continuing_subword_prefix", "");
    o.end_of_word_suffix = get_or<std::string>(options, "end_of_word_suffix", "");
    o.fuse_unk = get_or<bool>(options, "fuse_unk", false);
    o.byte_fallback = get_or<bool>(options, "byte_fallback", false);
    o.ignore_merges = get_or<bool>(options, "ignore_merges", false);
    if (options.contains("dropout") && !options["dropout"].is_null() &&
        options["dropout"].get<double>() > 0) {
      ctx.fail("model.dropout", "BPE dropout is not supported for inference");
    }
    vocab->build();
    if (!pending_merges.empty()) {
      std::string scratch;
      for (size_t k = 0; k < pending_merges.size(); ++k) {
        merge_ids.push_back(BpeModel::resolve_merge(
            *vocab, pending_merges[k].first, pending_merges[k].second, o.continuing_subword_prefix,
            scratch, "model.merges[" + std::to_string(k) + "]"));
      }
    }
    return std::make_unique<BpeModel>(std::move(vocab), merge_ids, std::move(o));
  }
  if (type == "Unigram") {
    if (!vocab_is_list) ctx.fail("model.vocab", "Unigram expects a list of [piece, score]");
    std::optional<int32_t> unk;
    if (options.contains("unk_id") && !options["unk_id"].is_null()) {
      unk = options["unk_id"].get<int32_t>();
    }
    return std::make_unique<UnigramModel>(std::move(unigram_pieces), unk,
                                          get_or<bool>(options, "byte_fallback", false));
  }
  if (type == "WordPiece") {
    if (vocab_is_list) ctx.fail("model.vocab", "WordPiece expects an object of token -> id");
    return std::make_unique<WordPieceModel>(
        std::move(vocab), get_or<std::string>(options, "unk_token", "[UNK]"),
        get_or<std::string>(options, "continuing_subword_prefix", "##"),
        get_or<size_t>(options, "max_input_chars_per_word", 100));
  }
  ctx.fail("model.type", "unsupported model type '" + type + "'");
}

void load_sections(std::string_view text, const std::string& source, Tokenizer::Impl& impl);

}  // namespace

void load_tokenizer_json(std::string_view text, const std::string& source, Tokenizer::Impl& impl) {
  try {
    load_sections(text, source, impl);
  } catch (const std::runtime_error& e) {
    std::string msg = e.what();
    if (msg.rfind(source, 0) == 0) throw;
    throw std::runtime_error(source + ": " + msg);
  }
}

namespace {
void load_sections(std::string_view text, const std::string& source, Tokenizer::Impl& impl) {
  Ctx ctx{source};
  json_scan::Scanner sc(text, source);
  json sections = json::object();
  bool have_model = false;
  if (sc.peek() != '{') sc.fail("expected a JSON object");
  sc.for_each_member([&](const std::string& key) {
    if (key == "model") {
      impl.model = read_model(sc, ctx);
      have_model = true;
      return;
    }
    std::string_view raw = sc.skip_value();
    try {
      sections[key] = json::parse(raw);
    } catch (const json::exception& e) {
      ctx.fail(key, e.what());
    }
  });
  if (!have_model) ctx.fail("model", "missing");
  try {
    auto section = [&](const char* k) -> const json& {
      static const json null_json;
      return sections.contains(k) ? sections[k] : null_json;
    };
    impl.normalizer = make_normalizer(ctx, section("normalizer"), "normalizer");
    impl.pre_tokenizer = make_pre_tokenizer(ctx, section("pre_tokenizer"), "pre_tokenizer");
    impl.post_processor = make_post_processor(ctx, section("post_processor"), "post_processor");
    impl.decoder = make_decoder(ctx, section("decoder"), "decoder");
    const json& added = section("added_tokens");
    for (size_t k = 0; k < added.size(); ++k) {
      const json& a = added[k];
      AddedToken t;
      t.id = a.at("id").get<int32_t>();
      t.content = a.at("content").get<std::string>();
      t.special = get_or<bool>(a, "special", false);
      t.normalized = get_or<bool>(a, "normalized", !t.special);
      t.lstrip = get_or<bool>(a, "lstrip", false);
      t.rstrip = get_or<bool>(a, "rstrip", false);
      t.single_word = get_or<bool>(a, "single_word", false);
      impl.added.push_back(std::move(t));
    }
    const json& trunc = section("truncation");
    const json& pad = section("padding");
    (void)trunc;
    (void)pad;
  } catch (const json::exception& e) {
    throw std::runtime_error(source + ": " + e.what());
  }
}
}  // namespace

}  // namespace lm
