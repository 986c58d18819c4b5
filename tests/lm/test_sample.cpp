// Sampling filters, samplers and logits processors against the NumPy
// reference of tools/reference/sample_refs.py (tests/data/lm/sample_refs.json).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/check.h"
#include "mlxcpp/lm/sample.h"
#include "mlxcpp/mx.h"

using nlohmann::json;

namespace {

const json& refs() {
  static json j = [] {
    std::ifstream f(std::string(MLXCPP_TEST_DATA) + "/lm/sample_refs.json");
    return json::parse(f);
  }();
  return j;
}

constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<double> decode(const json& values) {
  std::vector<double> v;
  for (const auto& x : values) v.push_back(x.is_null() ? -kInf : x.get<double>());
  return v;
}

mx::array to_array(const json& values, const mx::Shape& shape) {
  std::vector<float> v;
  for (double d : decode(values)) v.push_back(static_cast<float>(d));
  return mx::array(v, shape);
}

mx::array logprobs() { return to_array(refs()["logprobs"], refs()["shape"].get<mx::Shape>()); }

TEST(Sample, FiltersMatchReference) {
  const mx::Shape shape = refs()["shape"].get<mx::Shape>();
  mx::array lp = logprobs();
  for (const auto& f : refs()["filters"]) {
    SCOPED_TRACE(f.dump().substr(0, 80));
    const std::string op = f["op"];
    mx::array out = lp;
    if (op == "top_p") {
      out = lm::apply_top_p(lp, f["p"].get<float>());
    } else if (op == "min_p") {
      out = lm::apply_min_p(lp, f["p"].get<float>(), f["keep"].get<int>());
    } else if (op == "top_k") {
      out = lm::apply_top_k(lp, f["k"].get<int>());
    } else {
      // Probability 1: the filter always applies.
      out = lm::apply_xtc(lp, 1.0f, f["threshold"].get<float>(),
                          f["special"].get<std::vector<int>>(), mx::random::key(1));
    }
    mxtest::expect_close(out, decode(f["out"]), shape, 1e-6, 1e-6);
  }
}

TEST(Sample, XtcWithProbabilityZeroChangesNothing) {
  mx::array lp = logprobs();
  auto v = mxtest::to_vector(lp);
  mxtest::expect_close(lm::apply_xtc(lp, 0.0f, 0.05f, {}, mx::random::key(3)), v, lp.shape(), 0, 0);
}

TEST(Sample, GreedyIsArgmax) {
  auto sampler = lm::make_sampler({});
  mx::array tokens = sampler(logprobs());
  EXPECT_EQ(tokens.shape(), (mx::Shape{3}));
  auto got = mxtest::to_vector(tokens);
  auto want = refs()["argmax"].get<std::vector<int>>();
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]);
}

lm::LogitsProcessorOptions processor_options(const json& o) {
  lm::LogitsProcessorOptions p;
  if (o.contains("logit_bias")) {
    for (auto& [k, v] : o["logit_bias"].items()) p.logit_bias[std::stoi(k)] = v.get<float>();
  }
  if (o.contains("repetition_penalty")) p.repetition_penalty = o["repetition_penalty"].get<float>();
  if (o.contains("repetition_context_size")) {
    p.repetition_context_size = o["repetition_context_size"].get<int>();
  }
  if (o.contains("presence_penalty")) p.presence_penalty = o["presence_penalty"].get<float>();
  if (o.contains("presence_context_size")) {
    p.presence_context_size = o["presence_context_size"].get<int>();
  }
  if (o.contains("frequency_penalty")) p.frequency_penalty = o["frequency_penalty"].get<float>();
  if (o.contains("frequency_context_size")) {
    p.frequency_context_size = o["frequency_context_size"].get<int>();
  }
  return p;
}

TEST(Sample, LogitsProcessorsMatchReference) {
  const mx::Shape shape = refs()["logits_shape"].get<mx::Shape>();
  mx::array logits = to_array(refs()["logits"], shape);
  for (const auto& c : refs()["processors"]) {
    SCOPED_TRACE(c["options"].dump() + " tokens " + std::to_string(c["tokens"].size()));
    auto procs = lm::make_logits_processors(processor_options(c["options"]));
    auto tokens = c["tokens"].get<std::vector<int32_t>>();
    mx::array out = logits;
    for (auto& p : procs) out = p(tokens, out);
    mxtest::expect_close(out, decode(c["out"]), shape, 1e-5, 1e-5);
  }
}

TEST(Sample, ProcessorsKeepBfloat16) {
  lm::LogitsProcessorOptions o;
  o.logit_bias = {{1, 0.5f}};
  o.repetition_penalty = 1.5f;
  o.presence_penalty = 0.25f;
  o.frequency_penalty = 0.25f;
  mx::array logits = mx::astype(mx::array({1.0f, -2.0f, 3.0f, 0.5f}, {1, 4}), mx::bfloat16);
  mx::array out = logits;
  for (auto& p : lm::make_logits_processors(o)) out = p({2, 2, 3}, out);
  EXPECT_EQ(out.dtype(), mx::bfloat16);
  // Hand-worked: token 1 +0.5; token 2: 3 / 1.5 - 0.25 - 2 * 0.25; token 3: 0.5 / 1.5 - 0.25 -
  // 0.25.
  mxtest::expect_close(out, {1.0, -1.5, 1.25, 0.5 / 1.5 - 0.5}, {1, 4}, 1e-2, 1e-2);
}

TEST(Sample, UnsetOrZeroPenaltiesAddNoProcessor) {
  EXPECT_TRUE(lm::make_logits_processors({}).empty());
  lm::LogitsProcessorOptions o;
  o.repetition_penalty = 0.0f;
  o.presence_penalty = 0.0f;
  o.frequency_penalty = 0.0f;
  EXPECT_TRUE(lm::make_logits_processors(o).empty());
}

// Draws n tokens from one sampler call on the row broadcast to [n, V] and
// checks the frequencies against the reference probabilities.
void check_frequencies(const lm::Sampler& sampler, const std::vector<double>& probs, int n) {
  const int V = static_cast<int>(probs.size());
  mx::array row = to_array(refs()["row"], {1, V});
  auto tokens = mxtest::to_vector(sampler(mx::broadcast_to(row, {n, V})));
  ASSERT_EQ(tokens.size(), static_cast<size_t>(n));
  std::vector<int> counts(V, 0);
  for (double t : tokens) {
    ASSERT_GE(t, 0);
    ASSERT_LT(t, V);
    ++counts[static_cast<int>(t)];
  }
  for (int i = 0; i < V; ++i) {
    double f = static_cast<double>(counts[i]) / n;
    if (probs[i] == 0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " was filtered out";
    } else {
      // 5 standard deviations of a binomial frequency.
      double tol = 5 * std::sqrt(probs[i] * (1 - probs[i]) / n) + 1e-4;
      EXPECT_NEAR(f, probs[i], tol) << "token " << i;
    }
  }
}

TEST(Sample, CategoricalFrequenciesMatchReference) {
  for (const auto& d : refs()["distributions"]) {
    SCOPED_TRACE(d["options"].dump());
    const json& o = d["options"];
    lm::SamplerOptions s;
    s.temp = o["temp"].get<float>();
    s.top_p = o.value("top_p", 0.0f);
    s.min_p = o.value("min_p", 0.0f);
    s.top_k = o.value("top_k", 0);
    s.xtc_probability = o.value("xtc_probability", 0.0f);
    s.xtc_threshold = o.value("xtc_threshold", 0.1f);
    s.seed = 1234;
    check_frequencies(lm::make_sampler(s), d["probs"].get<std::vector<double>>(), 20000);
  }
}

TEST(Sample, SeededSamplingIsReproducible) {
  lm::SamplerOptions o;
  o.temp = 1.0f;
  o.seed = 99;
  mx::array lp = mx::broadcast_to(logprobs(), {4, 3, 12});
  auto a = lm::make_sampler(o), b = lm::make_sampler(o);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(mxtest::to_vector(a(lp)), mxtest::to_vector(b(lp))) << "draw " << i;
  }
  // Successive draws of one sampler differ (12-way choices over 12 rows).
  EXPECT_NE(mxtest::to_vector(a(lp)), mxtest::to_vector(a(lp)));

  // Unseeded samplers follow mx::random's global sequence.
  o.seed.reset();
  auto c = lm::make_sampler(o);
  mx::random::seed(7);
  auto first = mxtest::to_vector(c(lp));
  mx::random::seed(7);
  EXPECT_EQ(mxtest::to_vector(c(lp)), first);
}

TEST(Sample, XtcAppliesWithItsProbability) {
  // Threshold 0.05 on row 0 removes tokens; count how often it happens.
  mx::array lp = mx::slice(logprobs(), {0, 0}, {1, 12});
  auto plain = mxtest::to_vector(lp);
  mx::array key = mx::random::key(5);
  int applied = 0;
  const int n = 400;
  for (int i = 0; i < n; ++i) {
    auto [next, sub] = mx::random::split(key);
    key = next;
    if (mxtest::to_vector(lm::apply_xtc(lp, 0.5f, 0.05f, {}, sub)) != plain) ++applied;
  }
  // Binomial(400, 0.5): 5 standard deviations = 50.
  EXPECT_NEAR(applied, n / 2, 50);
}

TEST(Sample, ParameterErrors) {
  auto bad = [](lm::SamplerOptions o, const std::string& needle) {
    try {
      lm::make_sampler(o);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  bad({.temp = -0.5f}, "temp");
  bad({.temp = 1, .top_p = 1.5f}, "top_p");
  bad({.temp = 1, .top_p = -0.1f}, "top_p");
  bad({.temp = 1, .min_p = 2.0f}, "min_p");
  bad({.temp = 1, .min_tokens_to_keep = 0}, "min_tokens_to_keep");
  bad({.temp = 1, .top_k = -1}, "top_k");
  bad({.temp = 1, .xtc_probability = 1.5f}, "xtc_probability");
  bad({.temp = 1, .xtc_threshold = 0.6f}, "xtc_threshold");
  bad({.temp = 1, .xtc_special_tokens = {-3}}, "xtc_special_tokens");

  mx::array lp = logprobs();
  EXPECT_THROW(lm::apply_top_k(lp, 12), std::invalid_argument);  // k must be < V
  EXPECT_THROW(lm::apply_top_k(lp, 0), std::invalid_argument);
  EXPECT_THROW(lm::apply_xtc(lp, 1, 0.1f, {12}), std::invalid_argument);
  lm::SamplerOptions big_k{.temp = 1, .top_k = 50};
  EXPECT_THROW(lm::make_sampler(big_k)(lp), std::invalid_argument);

  lm::LogitsProcessorOptions o;
  o.repetition_penalty = -1.0f;
  EXPECT_THROW(lm::make_logits_processors(o), std::invalid_argument);
  o.repetition_penalty = 1.1f;
  o.repetition_context_size = 0;
  EXPECT_THROW(lm::make_logits_processors(o), std::invalid_argument);
  lm::LogitsProcessorOptions bias;
  bias.logit_bias = {{-1, 1.0f}};
  EXPECT_THROW(lm::make_logits_processors(bias), std::invalid_argument);
  bias.logit_bias = {{12, 1.0f}};
  auto procs = lm::make_logits_processors(bias);
  EXPECT_THROW(procs[0]({}, lp), std::invalid_argument);  // V = 12
  lm::LogitsProcessorOptions rep;
  rep.repetition_penalty = 1.2f;
  auto rp = lm::make_logits_processors(rep);
  EXPECT_THROW(rp[0]({3, 40}, lp), std::invalid_argument);
}

}  // namespace
