// The fixed-shape decode step (LanguageModel::static_decode through lm::DecodeGraph without a
// recording): fixed-capacity caches written in place at position % capacity, grown bucket by
// bucket, sliding-window layers as rings. Checked on the Gemma 3 reference models against the
// Hugging Face transformers greedy continuations (tests/data/gemma3/*/reference.json) and
// against the ordinary decode path (growing and rotating caches) token by token, over sequences
// longer than the sliding windows (5 and 6) and across many bucket boundaries.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "lm/decode_test_util.h"
#include "lm/tokenizer_test_util.h"
#include "mlxcpp/lm/decode_graph.h"
#include "mlxcpp/lm/generate.h"
#include "mlxcpp/lm/load.h"
#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/transforms.h"

namespace {

using lm::testing::Decoded;
using lm::testing::floats;

Decoded eager(lm::LanguageModel& model, const std::vector<int32_t>& prompt, int n) {
  lm::GenerateOptions opts;
  opts.max_tokens = n;
  opts.decode_graph = false;
  Decoded d;
  lm::generate_step(model, prompt, opts, [&](int32_t t, const mx::array& lp) {
    d.tokens.push_back(t);
    d.logprobs.push_back(floats(lp));
    return true;
  });
  return d;
}

Decoded fixed_shape(lm::LanguageModel& model, const std::vector<int32_t>& prompt, int n,
                    int bucket) {
  auto cache = model.make_cache();
  auto logits = lm::prefill(model, prompt, cache, 2048);
  auto lp0 = mx::subtract(mx::astype(logits, mx::float32),
                          mx::logsumexp(mx::astype(logits, mx::float32), -1, true));
  auto y = mx::argmax(lp0, -1);
  Decoded d;
  d.tokens.push_back(y.item<int32_t>());
  d.logprobs.push_back(floats(mx::squeeze(lp0, 0)));
  lm::DecodeGraph g(model, cache, y, nullptr, std::nullopt, bucket, /*capture=*/false);
  EXPECT_EQ(g.position(), static_cast<int>(prompt.size()));
  for (int i = 1; i < n; ++i) {
    auto [t, lp] = g.step(true);
    d.tokens.push_back(t.item<int32_t>());
    d.logprobs.push_back(floats(*lp));
  }
  EXPECT_GE(g.capacity(), g.position());
  EXPECT_EQ(g.capacity() % bucket, 0);
  return d;
}

class StaticDecode : public ::testing::TestWithParam<std::string> {};

TEST_P(StaticDecode, MatchesTransformersAndTheOrdinaryPath) {
  const std::string name = GetParam();
  auto ref = lm::testing::decode_reference(name);
  auto bundle = lm::load(lm::testing::model_dir("gemma3/" + name).string());
  auto& model = *bundle.model;
  ASSERT_TRUE(model.supports_static_decode());
  const bool bf16 = name.find("bf16") != std::string::npos;
  const int n = 40;
  auto a = eager(model, ref.prompt, n);
  auto b = fixed_shape(model, ref.prompt, n, /*bucket=*/8);
  ASSERT_EQ(a.tokens.size(), b.tokens.size());
  // Transformers' greedy continuation (an independent implementation).
  for (size_t i = 0; i < ref.greedy.size(); ++i) {
    EXPECT_EQ(b.tokens[i], ref.greedy[i]) << name << " token " << i;
  }
  const double tol = bf16 ? 3e-2 : 2e-4;
  for (size_t i = 0; i < a.tokens.size(); ++i) {
    EXPECT_EQ(a.tokens[i], b.tokens[i]) << name << " token " << i;
    ASSERT_EQ(a.logprobs[i].size(), b.logprobs[i].size());
    double worst = 0;
    for (size_t v = 0; v < a.logprobs[i].size(); ++v) {
      worst = std::max(worst, std::abs(double(a.logprobs[i][v]) - b.logprobs[i][v]) /
                                  (1 + std::abs(double(a.logprobs[i][v]))));
    }
    EXPECT_LT(worst, tol) << name << " logprobs of token " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Gemma3, StaticDecode,
                         ::testing::Values("layer_types_long_f32", "mha_bf16"));

TEST(StaticDecodeCache, RefusesCachesItCannotTakeOver) {
  auto bundle = lm::load(lm::testing::model_dir("gemma3/mha_bf16").string());
  auto& model = *bundle.model;
  std::vector<int32_t> prompt{2, 10, 11, 12};
  auto bounded = model.make_cache(8);  // pinned positions on global layers
  lm::prefill(model, prompt, bounded, 2048);
  EXPECT_FALSE(lm::DecodeGraph::supports(model, bounded));
  EXPECT_THROW(lm::DecodeGraph(model, bounded, mx::array(std::vector<int32_t>{1}, {1}, mx::int32),
                               nullptr, std::nullopt, 8, false),
               std::invalid_argument);
  auto fresh = model.make_cache();
  EXPECT_FALSE(lm::DecodeGraph::supports(model, fresh));  // nothing prefilled
  lm::prefill(model, prompt, fresh, 2048);
  EXPECT_TRUE(lm::DecodeGraph::supports(model, fresh));
}

}  // namespace
