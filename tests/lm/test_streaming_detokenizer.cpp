// The streaming detokenizer never yields a broken UTF-8 character and its pieces concatenate
// to the full decode, for every reference id sequence of every tokenizer family.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "mlxcpp/lm/tokenizer/streaming_detokenizer.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"
#include "mlxcpp/lm/tokenizer/unicode.h"
#include "tokenizer_test_util.h"

namespace {

void check_family(const std::string& rel) {
  auto dir = lm::testing::model_dir(rel);
  auto tok = lm::Tokenizer::from_file(dir / "tokenizer.json");
  auto ref = nlohmann::json::parse(lm::testing::slurp(dir / "reference.json"));
  for (auto& c : ref["cases"]) {
    auto ids = c["ids"].get<std::vector<int32_t>>();
    for (bool skip : {false, true}) {
      lm::StreamingDetokenizer stream(tok, skip);
      std::string all, trace;
      for (int32_t id : ids) {
        std::string piece = stream.add(id);
        EXPECT_TRUE(lm::unicode::valid_utf8(piece));
        all += piece;
        trace += std::to_string(id) + ":" + nlohmann::json(piece).dump() + " ";
      }
      all += stream.finish();
      EXPECT_EQ(all, tok.decode(ids, skip)) << rel << " text " << c["text"].dump() << "\n" << trace;
    }
  }
}

TEST(StreamingDetokenizer, Gemma3) { check_family("tokenizers/gemma3"); }
TEST(StreamingDetokenizer, Llama3) { check_family("tokenizers/llama3"); }
TEST(StreamingDetokenizer, Qwen3) { check_family("tokenizers/qwen3"); }
TEST(StreamingDetokenizer, Unigram) { check_family("tokenizers/synthetic/unigram"); }
TEST(StreamingDetokenizer, WordPiece) { check_family("tokenizers/synthetic/wordpiece"); }

TEST(StreamingDetokenizer, WaitsForWholeCharacters) {
  auto tok =
      lm::Tokenizer::from_file(lm::testing::model_dir("tokenizers/gemma3") / "tokenizer.json");
  // A rare character that Gemma encodes as byte-fallback pieces; streamed one id at a time.
  auto ids = tok.encode("\xF0\x9F\xAB\xA0", false);  // U+1FAE0
  lm::StreamingDetokenizer stream(tok);
  std::string all;
  for (size_t k = 0; k < ids.size(); ++k) {
    std::string piece = stream.add(ids[k]);
    EXPECT_TRUE(lm::unicode::valid_utf8(piece));
    all += piece;
  }
  all += stream.finish();
  EXPECT_EQ(all, "\xF0\x9F\xAB\xA0");
}

}  // namespace
