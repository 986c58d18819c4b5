// The batching parts of `mlxcpp server`'s engine (lm/server/): prompts prefilled
// together (against each prompt prefilled alone, and against Hugging Face
// transformers' greedy continuations of the trained echo model), the batch
// sampler (against make_sampler row by row, and hand-worked distributions), and
// non-streaming clients that disconnect.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "lm/server_test_util.h"
#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/lm/server/batch_cache.h"
#include "mlxcpp/lm/server/batch_sampler.h"
#include "mlxcpp/lm/server/engine.h"
#include "mlxcpp/lm/server/http_server.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/mx/transforms.h"

using nlohmann::json;
using servertest::collect;
using servertest::echo;
using servertest::greedy_job;
using servertest::reference;

// ------------------------------------------------------------------ batched prefill

namespace {

// Rows may join with nothing cached (a one-token prompt): the buffer takes its
// shape from the first non-empty row or the first update. Values are arange
// ramps, so every expected position is worked out by hand.
TEST(ServerBatchCache, EmptyRowsJoinAndPrefixesReadBack) {
  auto ramp = [](int B, int T, float from) {
    return mx::add(mx::reshape(mx::arange(0, B * 2 * T * 4, mx::float32), {B, 2, T, 4}),
                   mx::array(from));
  };
  lm::server::BatchKVCache c;
  c.add_rows({lm::server::BatchKVCache::Row{}, lm::server::BatchKVCache::Row{}});
  EXPECT_EQ(c.rows(), 2);
  EXPECT_EQ(c.offset(), 0);
  EXPECT_TRUE(c.state().empty());
  auto t = ramp(2, 3, 0);  // positions 0..2 of both rows
  auto [k, v] = c.update_and_fetch(t, t);
  EXPECT_TRUE(mx::array_equal(k, t).item<bool>());
  EXPECT_EQ(c.row_length(1), 3);
  // A third, empty row joins: it is padded over the three positions it lacks.
  c.add_rows({lm::server::BatchKVCache::Row{}});
  EXPECT_EQ(c.row_length(2), 0);
  auto u = ramp(3, 1, 1000);
  c.update_and_fetch(u, u);
  auto row2 = c.row(2).first;
  ASSERT_EQ(row2.shape(), (mx::Shape{1, 2, 1, 4}));
  EXPECT_TRUE(mx::array_equal(row2, mx::slice(u, {2, 0, 0, 0}, {3, 2, 1, 4})).item<bool>());
  auto row0 = c.row(0).first;  // t's row 0, then u's row 0
  EXPECT_TRUE(mx::array_equal(row0, mx::concatenate({mx::slice(t, {0, 0, 0, 0}, {1, 2, 3, 4}),
                                                     mx::slice(u, {0, 0, 0, 0}, {1, 2, 1, 4})},
                                                    2))
                  .item<bool>());
  // The first two positions of row 1 only.
  EXPECT_TRUE(
      mx::array_equal(c.row(1, 2).second, mx::slice(t, {1, 0, 0, 0}, {2, 2, 2, 4})).item<bool>());
  EXPECT_THROW(c.row(2, 2), std::out_of_range);
  // The padding mask hides row 2's three empty positions from its query.
  auto m = c.make_mask(1, std::nullopt);
  ASSERT_EQ(m.mode, "array");
  EXPECT_EQ(mxtest::to_vector(mx::astype(*m.array, mx::int32)),
            (std::vector<double>{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1}));
  // An empty row beside a non-empty one in the same call.
  lm::server::BatchKVCache d;
  auto a = ramp(1, 2, 5);
  d.add_rows({lm::server::BatchKVCache::Row{}, lm::server::BatchKVCache::Row{{a, a}}});
  EXPECT_EQ(d.row_length(0), 0);
  EXPECT_EQ(d.row_length(1), 2);
  EXPECT_TRUE(mx::array_equal(d.row(1).first, a).item<bool>());
}

lm::PromptCache fresh_cache(int layers) {
  lm::PromptCache c;
  for (int l = 0; l < layers; ++l) c.push_back(std::make_shared<lm::KVCache>());
  return c;
}

mx::array ids(const std::vector<int32_t>& v, size_t from, size_t to) {
  return mx::array(std::vector<int32_t>(v.begin() + from, v.begin() + to), {1, int(to - from)},
                   mx::int32);
}

// Prompts with different cached prefixes (none, 10 and 20 tokens, and a row
// holding nothing that runs one token) and different chunk lengths, run in one
// forward pass, leave each cache as running that prompt alone leaves it; the
// next token's logits then agree too. The echo model's sliding window (8) is
// shorter than the chunks, so the window masks are exercised as well.
TEST(ServerPrefill, TogetherLeavesEachCacheAsAlone) {
  auto& model = *echo().model;
  const int L = model.num_layers();
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& p : reference()["prompt_tokens"])
    prompts.push_back(p.get<std::vector<int32_t>>());
  prompts.push_back({prompts[0][0]});
  const std::vector<size_t> cached = {0, 10, 20, 0};
  const std::vector<size_t> upto = {prompts[0].size() - 1, 15, prompts[2].size() - 1, 1};
  std::vector<lm::PromptCache> alone, together;
  for (size_t i = 0; i < prompts.size(); ++i) {
    alone.push_back(fresh_cache(L));
    together.push_back(fresh_cache(L));
    if (cached[i] > 0) {
      model(ids(prompts[i], 0, cached[i]), &alone[i]);
      model(ids(prompts[i], 0, cached[i]), &together[i]);
    }
    model(ids(prompts[i], cached[i], upto[i]), &alone[i]);
  }
  std::vector<lm::PromptCache*> caches;
  std::vector<std::vector<int32_t>> tokens;
  for (size_t i = 0; i < prompts.size(); ++i) {
    caches.push_back(&together[i]);
    tokens.emplace_back(prompts[i].begin() + cached[i], prompts[i].begin() + upto[i]);
  }
  lm::server::prefill_together(model, caches, tokens);
  for (size_t i = 0; i < prompts.size(); ++i) {
    for (int l = 0; l < L; ++l) {
      auto want = alone[i][l]->state(), got = together[i][l]->state();
      ASSERT_EQ(got.size(), 2u);
      ASSERT_EQ(got[0].shape(), want[0].shape()) << "prompt " << i << " layer " << l;
      for (int j = 0; j < 2; ++j) {
        auto w = mxtest::to_vector(want[j]);
        auto g = mxtest::to_vector(got[j]);
        for (size_t e = 0; e < w.size(); ++e)
          ASSERT_NEAR(g[e], w[e], 1e-4) << "prompt " << i << " layer " << l << " entry " << e;
      }
    }
    auto next = ids(prompts[i], upto[i], upto[i] + 1);
    if (upto[i] + 1 > prompts[i].size()) next = ids(prompts[0], 1, 2);
    auto a = mx::reshape(model(next, &alone[i]), {-1});
    auto b = mx::reshape(model(next, &together[i]), {-1});
    EXPECT_EQ(mx::argmax(a).item<uint32_t>(), mx::argmax(b).item<uint32_t>()) << "prompt " << i;
    EXPECT_TRUE(mx::allclose(a, b, 1e-4, 1e-4).item<bool>()) << "prompt " << i;
  }
  EXPECT_THROW(lm::server::prefill_together(model, caches, {{1}, {2}}), std::invalid_argument);
}

// Several prompts waiting together are prefilled in shared forward passes and
// still give transformers' greedy tokens; arbitrary chat prompts (one with a
// cached prefix) give exactly the tokens of an engine that prefills one prompt
// at a time.
TEST(ServerEngine, BatchedPrefillKeepsTheGreedyTokens) {
  const auto& ref = reference();
  auto run = [&](int prompt_concurrency, const std::vector<std::vector<int32_t>>& prompts,
                 const std::vector<int32_t>& warm, int max_tokens, uint64_t* passes,
                 uint64_t* chunks) {
    lm::server::EngineOptions o;
    o.decode_concurrency = 16;
    o.prompt_concurrency = prompt_concurrency;
    o.prefill_step_size = 16;
    lm::server::Engine engine(echo().model, echo().tokenizer, o);
    if (!warm.empty()) collect(engine.submit(greedy_job(warm, 1)));
    std::vector<std::shared_ptr<lm::server::RequestStream>> streams;
    for (const auto& p : prompts) streams.push_back(engine.submit(greedy_job(p, max_tokens)));
    std::vector<std::vector<int32_t>> out;
    for (auto& s : streams) out.push_back(collect(s).tokens);
    if (passes) *passes = engine.stats().prefill_passes;
    if (chunks) *chunks = engine.stats().prefill_chunks;
    return out;
  };
  std::vector<std::vector<int32_t>> prompts;
  for (int round = 0; round < 2; ++round) {
    for (const auto& p : ref["prompt_tokens"]) prompts.push_back(p.get<std::vector<int32_t>>());
  }
  uint64_t passes = 0, chunks = 0;
  auto got = run(8, prompts, {}, ref["max_new_tokens"], &passes, &chunks);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i], ref["greedy"][i % 3].get<std::vector<int32_t>>()) << "request " << i;
  }
  EXPECT_LT(passes, chunks);  // prompts shared forward passes

  const auto& tok = *echo().tokenizer;
  std::vector<std::vector<int32_t>> chats;
  for (std::string s : {"hello there world", "a", "the quick brown fox jumps over the lazy dog",
                        "one two three four five six seven", "zz", "abc def ghi jkl mno pqr"}) {
    chats.push_back(tok.encode(
        "<bos><start_of_turn>user\n" + s + "<end_of_turn>\n<start_of_turn>model\n", false));
  }
  chats.push_back({chats[0][0]});  // a one-token prompt
  // The warm-up request leaves the first 12 tokens of chats[2] in the prompt cache.
  std::vector<int32_t> warm(chats[2].begin(), chats[2].begin() + 12);
  auto together = run(8, chats, warm, 24, nullptr, nullptr);
  auto one_by_one = run(1, chats, warm, 24, nullptr, nullptr);
  for (size_t i = 0; i < chats.size(); ++i) {
    EXPECT_EQ(together[i].size(), 24u) << "prompt " << i;
    EXPECT_EQ(together[i], one_by_one[i]) << "prompt " << i;
  }
}

// Requests that wait together while nothing decodes are all prefilled (in passes of
// prompt_concurrency prompts) before the first decode step, as mlx-lm's BatchGenerator does:
// every row then decodes in the same steps, and the tokens are still transformers'. A
// submission of several jobs is all or nothing, naming the invalid one.
TEST(ServerEngine, WaitingPromptsAllJoinBeforeTheFirstStep) {
  const auto& ref = reference();
  const int max_tokens = ref["max_new_tokens"];
  lm::server::EngineOptions o;
  o.decode_concurrency = 16;
  o.prompt_concurrency = 4;
  // Submits the reference prompts four times over as one batch and checks every request's
  // tokens; returns the engine's stats afterwards.
  auto burst = [&](lm::server::Engine& engine) {
    std::vector<lm::server::GenerationJob> jobs;
    for (int round = 0; round < 4; ++round) {
      for (const auto& p : ref["prompt_tokens"]) {
        jobs.push_back(greedy_job(p.get<std::vector<int32_t>>(), max_tokens));
      }
    }
    const size_t n = jobs.size();
    auto streams = engine.submit(std::move(jobs));
    EXPECT_EQ(streams.size(), n);
    for (size_t i = 0; i < streams.size(); ++i) {
      EXPECT_EQ(collect(streams[i]).tokens,
                ref["greedy"][i % ref["greedy"].size()].get<std::vector<int32_t>>())
          << "request " << i;
    }
    return std::make_pair(n, engine.stats());
  };
  lm::server::Engine engine(echo().model, echo().tokenizer, o);
  const auto [n, st] = burst(engine);
  EXPECT_GE(st.prefill_passes, (n + 3) / 4);  // passes of at most prompt_concurrency prompts
  // max_tokens steps, plus the one launched before the last is read (pipelining); a decode
  // step after each round of four prompts would add two more.
  EXPECT_LE(st.steps, static_cast<uint64_t>(max_tokens) + 1);

  // A small prefill step bounds what is prefilled before the first step (four steps' worth of
  // tokens with nothing decoding): the first prompts start while later ones still wait, and the
  // tokens stay the same.
  {
    lm::server::EngineOptions small = o;
    small.prefill_step_size = 8;
    lm::server::Engine bounded(echo().model, echo().tokenizer, small);
    EXPECT_GT(burst(bounded).second.steps, static_cast<uint64_t>(max_tokens) + 1);
  }

  std::vector<lm::server::GenerationJob> bad;
  bad.push_back(greedy_job({1, 2, 3}, 4));
  bad.push_back(greedy_job({}, 4));
  try {
    engine.submit(std::move(bad));
    FAIL() << "an empty prompt was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("request 1: the prompt is empty"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(engine.stats().completed, n);  // the valid job of the batch was not queued
}

// Decode steps padded to a power of two of rows (spare rows of the batch cache run along and
// are never read) give every request transformers' greedy tokens and the logprobs of the
// unpadded steps, as rows join in rounds and leave at different steps (6 rows run as 8, then
// 3 as 4).
TEST(ServerEngine, PaddedStepsKeepTokensAndLogprobs) {
  const auto& ref = reference();
  const int long_run = ref["max_new_tokens"];
  auto run = [&](bool pad) {
    lm::server::EngineOptions o;
    o.decode_concurrency = 8;
    o.prompt_concurrency = 2;
    o.prefill_step_size = 7;
    o.pad_step_rows = pad;
    lm::server::Engine engine(echo().model, echo().tokenizer, o);
    std::vector<std::shared_ptr<lm::server::RequestStream>> streams;
    for (int round = 0; round < 2; ++round) {
      for (const auto& p : ref["prompt_tokens"]) {
        const int n = streams.size() % 2 ? 17 : long_run;
        streams.push_back(engine.submit(greedy_job(p.get<std::vector<int32_t>>(), n)));
      }
    }
    std::vector<servertest::Collected> out;
    for (auto& s : streams) out.push_back(collect(s));
    return out;
  };
  const auto padded = run(true), plain = run(false);
  for (size_t i = 0; i < padded.size(); ++i) {
    const auto& want = ref["greedy"][i % ref["greedy"].size()].get<std::vector<int32_t>>();
    const size_t n = i % 2 ? 17 : want.size();
    EXPECT_EQ(padded[i].tokens, std::vector<int32_t>(want.begin(), want.begin() + n))
        << "request " << i;
    ASSERT_EQ(padded[i].logprobs.size(), plain[i].logprobs.size()) << "request " << i;
    for (size_t t = 0; t < n; ++t) {
      EXPECT_NEAR(padded[i].logprobs[t], plain[i].logprobs[t], 1e-4)
          << "request " << i << " token " << t;
    }
  }
}

}  // namespace

// ------------------------------------------------------------------ batch sampler

namespace {

// The logprob of each request's first token (the decode step that feeds the prompt's last
// token) against transformers' log-softmax at the prompt's last position, in a batch of greedy
// rows only (the argmax of the logits, lse subtracted from the chosen logits alone) and in one
// with a sampled row (every row through sample_rows' logprobs).
TEST(ServerEngine, FirstTokenLogprobsMatchTransformers) {
  const auto& ref = reference();
  for (bool mixed : {false, true}) {
    SCOPED_TRACE(mixed ? "with a sampled row" : "greedy rows only");
    lm::server::EngineOptions o;
    o.decode_concurrency = 8;
    o.prompt_concurrency = 4;
    lm::server::Engine engine(echo().model, echo().tokenizer, o);
    std::vector<std::shared_ptr<lm::server::RequestStream>> streams;
    for (const auto& p : ref["prompt_tokens"]) {
      streams.push_back(engine.submit(greedy_job(p.get<std::vector<int32_t>>(), 2)));
    }
    if (mixed) {
      auto j = greedy_job(ref["prompt_tokens"][0].get<std::vector<int32_t>>(), 2);
      j.sampling.temp = 1.0f;
      j.sampling.seed = 7;
      streams.push_back(engine.submit(std::move(j)));
    }
    for (size_t i = 0; i < ref["prompt_tokens"].size(); ++i) {
      const auto got = collect(streams[i]);
      ASSERT_FALSE(got.tokens.empty()) << "request " << i;
      const int32_t want_token = ref["greedy"][i][0];
      EXPECT_EQ(got.tokens[0], want_token) << "request " << i;
      if (i == 0) {
        // The reference's logits and logsumexp are of the first prompt.
        const int last = static_cast<int>(ref["prompt_tokens"][0].size()) - 1;
        const double want =
            ref["logits"][last][want_token].get<double>() - ref["logsumexp"][last].get<double>();
        EXPECT_NEAR(got.logprobs[0], want, 1e-4);
      }
    }
    if (mixed) collect(streams.back());
  }
}

mx::array random_logprobs(int B, int V, uint64_t seed) {
  auto x = mx::random::normal({B, V}, mx::float32, 0.0f, 2.0f, mx::random::key(seed));
  return mx::subtract(x, mx::logsumexp(x, -1, true));
}

// Every seeded row draws, step after step, exactly the token that a seeded
// make_sampler of the same options draws from that row alone (sample.cpp's
// filters are tested against numpy in test_sample), whichever rows share its
// group; greedy rows give the argmax.
TEST(ServerBatchSampler, SeededRowsDrawAsTheirOwnSampler) {
  std::vector<lm::SamplerOptions> opts(9);
  opts[0].temp = 0;  // greedy
  opts[1].temp = 0.8f;
  opts[1].seed = 1;
  opts[2].temp = 1.3f;
  opts[2].top_p = 0.9f;
  opts[2].seed = 2;
  opts[3].temp = 1.0f;
  opts[3].top_k = 5;
  opts[3].seed = 3;
  opts[4].temp = 0.7f;
  opts[4].top_k = 9;  // same filters as row 3, another k: the per-row rank path
  opts[4].seed = 4;
  opts[5].temp = 1.1f;
  opts[5].min_p = 0.05f;
  opts[5].top_p = 0.95f;
  opts[5].seed = 5;
  opts[6].temp = 0.9f;
  opts[6].xtc_probability = 0.5f;
  opts[6].xtc_threshold = 0.05f;
  opts[6].seed = 6;
  opts[7].temp = 1.0f;  // unseeded, in row 1's group
  opts[8].temp = 0.6f;
  opts[8].top_p = 0.5f;
  opts[8].seed = 8;
  const int B = static_cast<int>(opts.size()), V = 64;
  std::vector<std::unique_ptr<lm::server::RowSampler>> rows;
  std::vector<lm::server::RowSampler*> ptrs;
  std::vector<lm::Sampler> alone;
  for (const auto& o : opts) {
    rows.push_back(std::make_unique<lm::server::RowSampler>(o));
    ptrs.push_back(rows.back().get());
    alone.push_back(lm::make_sampler(o));
  }
  for (int step = 0; step < 6; ++step) {
    auto lp = random_logprobs(B, V, 100 + step);
    auto tokens = lm::server::sample_rows(lp, ptrs);
    ASSERT_EQ(tokens.shape(), (mx::Shape{B}));
    ASSERT_EQ(tokens.dtype(), mx::int32);
    auto got = mxtest::to_vector(tokens);
    for (int b = 0; b < B; ++b) {
      if (b == 7) {
        EXPECT_GE(got[b], 0);
        EXPECT_LT(got[b], V);
        continue;
      }
      auto row = mx::slice(lp, {b, 0}, {b + 1, V});
      auto want = mx::astype(alone[b](row), mx::int32).item<int32_t>();
      EXPECT_EQ(got[b], want) << "row " << b << " step " << step;
    }
  }
  EXPECT_THROW(lm::server::sample_rows(random_logprobs(2, V, 1), ptrs), std::invalid_argument);
  lm::SamplerOptions bad;
  bad.temp = 1;
  bad.top_p = 2;
  EXPECT_THROW(lm::server::RowSampler{bad}, std::invalid_argument);
}

// Unseeded rows share one draw: over many steps each row's frequencies follow
// its own filtered, tempered softmax (worked out by hand for p = .1 .2 .3 .4),
// within 5 standard deviations.
TEST(ServerBatchSampler, UnseededRowsFollowTheirDistributions) {
  const std::vector<float> p = {0.1f, 0.2f, 0.3f, 0.4f};
  std::vector<float> logp;
  for (float v : p) logp.push_back(std::log(v));
  // Row 0: temp 1. Row 1: top_k 2 -> .3/.7, .4/.7. Row 2: top_k 3 -> .2/.9, .3/.9, .4/.9.
  // Row 3: temp 0.5 -> p^2 / sum p^2 = 1, 4, 9, 16 over 30. Row 4: min_p 0.6 -> keeps p >= .24:
  // .3/.7, .4/.7. Row 5: top_p 0.75 -> keeps .4, .3, .2 (cumulative from the top reaches .9).
  const std::vector<std::vector<double>> want = {{.1, .2, .3, .4},
                                                 {0, 0, 3. / 7, 4. / 7},
                                                 {0, 2. / 9, 3. / 9, 4. / 9},
                                                 {1. / 30, 4. / 30, 9. / 30, 16. / 30},
                                                 {0, 0, 3. / 7, 4. / 7},
                                                 {0, 2. / 9, 3. / 9, 4. / 9}};
  std::vector<lm::SamplerOptions> opts(6);
  for (auto& o : opts) o.temp = 1;
  opts[1].top_k = 2;
  opts[2].top_k = 3;
  opts[3].temp = 0.5f;
  opts[4].min_p = 0.6f;
  opts[5].top_p = 0.75f;
  const int B = 6, V = 4, steps = 1500;
  std::vector<std::unique_ptr<lm::server::RowSampler>> rows;
  std::vector<lm::server::RowSampler*> ptrs;
  for (const auto& o : opts) {
    rows.push_back(std::make_unique<lm::server::RowSampler>(o));
    ptrs.push_back(rows.back().get());
  }
  std::vector<float> flat;
  for (int b = 0; b < B; ++b) flat.insert(flat.end(), logp.begin(), logp.end());
  mx::array lp(flat, {B, V}, mx::float32);
  mx::random::seed(11);
  std::vector<std::vector<int>> counts(B, std::vector<int>(V, 0));
  for (int s = 0; s < steps; ++s) {
    auto t = mxtest::to_vector(lm::server::sample_rows(lp, ptrs));
    for (int b = 0; b < B; ++b) counts[b][static_cast<int>(t[b])] += 1;
  }
  for (int b = 0; b < B; ++b) {
    for (int v = 0; v < V; ++v) {
      double q = want[b][v];
      double sd = std::sqrt(steps * q * (1 - q));
      if (q == 0) {
        EXPECT_EQ(counts[b][v], 0) << "row " << b << " token " << v;
      } else {
        EXPECT_NEAR(counts[b][v], steps * q, 5 * sd + 1) << "row " << b << " token " << v;
      }
    }
  }
}

// Per-request logit_bias (applied to the whole batch in one scatter) and
// penalties (row by row) change only their own rows: a row biased towards a
// token emits it, its neighbour in the batch keeps transformers' tokens.
TEST(ServerEngine, LogitBiasAndPenaltiesStayInTheirRows) {
  lm::server::EngineOptions o;
  o.decode_concurrency = 8;
  lm::server::Engine engine(echo().model, echo().tokenizer, o);
  const auto& ref = reference();
  auto p0 = ref["prompt_tokens"][0].get<std::vector<int32_t>>();
  auto p1 = ref["prompt_tokens"][1].get<std::vector<int32_t>>();
  auto biased = greedy_job(p0, 6);
  biased.processors.logit_bias = {{77, 100.0f}};
  // A penalty far above any logit: a token used once (or among the prompt's last
  // tokens) never comes again within the context of 20.
  auto penalised = greedy_job(p1, 6);
  penalised.processors.frequency_penalty = 1000.0f;
  penalised.processors.logit_bias = {{91, 100.0f}};
  auto s_plain = engine.submit(greedy_job(p1, 8));
  auto s_biased = engine.submit(biased);
  auto s_pen = engine.submit(penalised);
  EXPECT_EQ(collect(s_biased).tokens, std::vector<int32_t>(6, 77));
  auto pen = collect(s_pen).tokens;
  ASSERT_EQ(pen.size(), 6u);
  EXPECT_EQ(pen[0], 91);
  for (size_t i = 0; i < pen.size(); ++i) {
    for (size_t j = 0; j < i; ++j) EXPECT_NE(pen[i], pen[j]) << "tokens " << j << ", " << i;
    EXPECT_EQ(std::find(p1.end() - 14, p1.end(), pen[i]), p1.end()) << "token " << i;
  }
  auto plain = collect(s_plain).tokens;
  auto want = ref["greedy"][1].get<std::vector<int32_t>>();
  EXPECT_EQ(plain, std::vector<int32_t>(want.begin(), want.begin() + 8));
}

}  // namespace

// ------------------------------------------------------------------ disconnects

namespace {

// Sends a raw HTTP request on a new loopback connection; returns the socket.
int send_request(int port, const std::string& body) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  std::string req =
      "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
      "application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return -1;
  }
  return fd;
}

// A client that leaves a NON-streaming request before its answer cancels the
// generation (nothing is written to it until the end, so the server watches
// its socket). The request waits behind others (one decode row), so it is
// still queued or running when its client goes; one that stays is answered.
TEST(ServerHttp, NonStreamingClientThatLeavesIsCancelled) {
  lm::server::EngineOptions eo;
  eo.decode_concurrency = 1;
  lm::server::Engine engine(echo().model, echo().tokenizer, eo);
  lm::server::ServerOptions so;
  so.port = 0;
  so.defaults.model_id = "echo";
  lm::server::HttpServer http(engine, so);
  int port = http.bind();
  std::thread serving([&] { http.serve(); });
  auto prompt = reference()["prompt_tokens"][0].get<std::vector<int32_t>>();
  std::vector<std::shared_ptr<lm::server::RequestStream>> blockers;
  for (int i = 0; i < 8; ++i) blockers.push_back(engine.submit(greedy_job(prompt, 400)));
  json body = {{"prompt", prompt}, {"max_tokens", 400}};
  int leaving = send_request(port, body.dump());
  ASSERT_GE(leaving, 0);
  int staying = send_request(port, json{{"prompt", prompt}, {"max_tokens", 3}}.dump());
  ASSERT_GE(staying, 0);
  // Both HTTP requests have reached the engine (behind 8 x 400 tokens) before the client leaves.
  auto submitted = [&] {
    auto st = engine.stats();
    return st.waiting + st.prefilling + st.decoding + st.completed + st.cancelled;
  };
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
       submitted() < 10 && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  close(leaving);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (engine.stats().cancelled == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(engine.stats().cancelled, 1u);
  // The one still connected gets its whole answer.
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = read(staying, buf, sizeof(buf))) > 0;) {
    answer.append(buf, n);
    if (answer.find("\"usage\"") != std::string::npos) break;
  }
  close(staying);
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
  EXPECT_NE(answer.find("\"completion_tokens\":3"), std::string::npos) << answer;
  for (auto& b : blockers) EXPECT_EQ(collect(b).final.finish_reason, "length");
  EXPECT_EQ(engine.stats().cancelled, 1u);
  http.stop();
  serving.join();
}

}  // namespace
