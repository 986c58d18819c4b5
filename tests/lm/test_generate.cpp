// Generation end to end on the trained echo model (models/gemma3-tiny-echo):
// stream_generate, stop conditions, logprobs, processors, sampling, prompt
// caches, ChatSession and bounded KV caches. Expected texts and token ids come
// from the Hugging Face transformers reference recorded by
// tools/reference/gemma3_refs.py (tests/data/gemma3/copy_trained/reference.json):
// its chat-templated prompt ids, greedy continuations and decoded strings.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "lm/tokenizer_test_util.h"
#include "mlxcpp/lm/cache.h"
#include "mlxcpp/lm/chat_session.h"
#include "mlxcpp/lm/generate.h"
#include "mlxcpp/lm/load.h"
#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/lm/prompt.h"
#include "mlxcpp/lm/sample.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/mx/transforms.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int32_t kEndOfTurn = 5;  // the echo vocabulary's <end_of_turn> (its README)

fs::path repo_root() { return fs::path(MLXCPP_TEST_DATA).parent_path().parent_path(); }
fs::path echo_dir() { return repo_root() / "models" / "gemma3-tiny-echo"; }

struct Echo {
  lm::LoadedModel bundle;
  json ref;
  std::vector<int32_t> eos;  // generation_config.json's, read here independently of lm::load
  lm::LanguageModel& model() const { return *bundle.model; }
  const lm::Tokenizer& tok() const { return *bundle.tokenizer; }
  std::vector<int32_t> prompt(size_t i) const {
    return ref.at("prompt_tokens").at(i).get<std::vector<int32_t>>();
  }
  std::vector<int32_t> greedy(size_t i) const {
    return ref.at("greedy").at(i).get<std::vector<int32_t>>();
  }
  std::string str(size_t i) const { return ref.at("strings").at(i).get<std::string>(); }
  // transformers' greedy text up to its first <end_of_turn>: the reply our
  // generation must produce before stopping.
  std::string reply(size_t i) const {
    auto d = ref.at("decoded_greedy").at(i).get<std::string>();
    return d.substr(0, d.find("<end_of_turn>"));
  }
  // transformers' greedy tokens up to and including the first <end_of_turn>.
  std::vector<int32_t> greedy_until_eot(size_t i) const {
    auto g = greedy(i);
    auto it = std::find(g.begin(), g.end(), kEndOfTurn);
    return {g.begin(), it == g.end() ? it : it + 1};
  }
};

const Echo& echo() {
  static const Echo e = [] {
    Echo x;
    x.bundle = lm::load(echo_dir().string());
    x.ref = json::parse(
        lm::testing::slurp(lm::testing::data_dir() / "gemma3/copy_trained/reference.json"));
    auto gen = json::parse(lm::testing::slurp(echo_dir() / "generation_config.json"));
    x.eos = gen.at("eos_token_id").get<std::vector<int32_t>>();
    return x;
  }();
  return e;
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() /
               ("mlxcpp_gen_" + std::to_string(static_cast<long>(::getpid()))) / name;
  fs::create_directories(d);
  return d;
}

lm::GenerateOptions greedy_opts(int max_tokens) {
  lm::GenerateOptions o;
  o.max_tokens = max_tokens;
  o.eos_token_ids = echo().eos;
  return o;
}

std::vector<lm::GenerationResponse> stream(const std::vector<int32_t>& prompt,
                                           const lm::GenerateOptions& opts) {
  std::vector<lm::GenerationResponse> out;
  lm::stream_generate(echo().model(), echo().tok(), prompt, opts,
                      [&](const lm::GenerationResponse& r) {
                        out.push_back(r);
                        return true;
                      });
  return out;
}

std::string concat_text(const std::vector<lm::GenerationResponse>& rs) {
  std::string s;
  for (const auto& r : rs) s += r.text;
  return s;
}

TEST(Generate, ReferenceIsConsistent) {
  const auto& e = echo();
  ASSERT_EQ(e.ref.at("strings").size(), e.ref.at("prompt_tokens").size());
  for (size_t i = 0; i < e.ref.at("strings").size(); ++i) {
    // The model echoes: transformers' reply is the held-out string itself.
    EXPECT_EQ(e.reply(i), e.str(i));
    // Our chat template + tokenizer give transformers' prompt ids.
    EXPECT_EQ(lm::build_prompt(e.tok(), e.str(i), {}), e.prompt(i)) << i;
  }
  EXPECT_NE(std::find(e.eos.begin(), e.eos.end(), kEndOfTurn), e.eos.end());
}

TEST(Generate, EchoesHeldOutStringsAndStopsAtEndOfTurn) {
  const auto& e = echo();
  for (size_t i = 0; i < e.ref.at("strings").size(); ++i) {
    auto rs = stream(e.prompt(i), greedy_opts(100));
    ASSERT_FALSE(rs.empty());
    const auto& last = rs.back();
    EXPECT_EQ(concat_text(rs), e.reply(i)) << i;
    EXPECT_EQ(last.finish_reason, std::optional<std::string>("stop"));
    EXPECT_EQ(last.token, kEndOfTurn);
    EXPECT_EQ(concat_text(rs).find("<end_of_turn>"), std::string::npos);
    std::vector<int32_t> tokens;
    for (const auto& r : rs) tokens.push_back(r.token);
    EXPECT_EQ(tokens, e.greedy_until_eot(i)) << i;
    EXPECT_EQ(last.generation_tokens, static_cast<int>(tokens.size()));
    EXPECT_EQ(last.prompt_tokens, static_cast<int>(e.prompt(i).size()));
    for (size_t k = 0; k + 1 < rs.size(); ++k) EXPECT_FALSE(rs[k].finish_reason.has_value());
    // Timings and memory of the final response.
    EXPECT_GT(last.prompt_tps, 0);
    EXPECT_GT(last.generation_tps, 0);
    EXPECT_GT(last.peak_memory_gb, 0);

    // generate() collects the same.
    auto g = lm::generate(e.model(), e.tok(), e.prompt(i), greedy_opts(100));
    EXPECT_EQ(g.text, e.reply(i));
    EXPECT_EQ(g.tokens, e.greedy_until_eot(i));
    EXPECT_EQ(g.logprobs.size(), g.tokens.size());
  }
}

TEST(Generate, LengthWhenMaxTokensCuts) {
  const auto& e = echo();
  auto rs = stream(e.prompt(0), greedy_opts(5));
  ASSERT_EQ(rs.size(), 5u);
  EXPECT_EQ(rs.back().finish_reason, std::optional<std::string>("length"));
  EXPECT_EQ(rs.back().generation_tokens, 5);
  // One character per token in this vocabulary.
  EXPECT_EQ(concat_text(rs), e.reply(0).substr(0, 5));
}

TEST(Generate, MaxTokensZeroGivesOneEmptyResponse) {
  const auto& e = echo();
  auto rs = stream(e.prompt(0), greedy_opts(0));
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].text, "");
  EXPECT_EQ(rs[0].generation_tokens, 0);
  EXPECT_EQ(rs[0].finish_reason, std::optional<std::string>("length"));
  EXPECT_EQ(rs[0].prompt_tokens, static_cast<int>(e.prompt(0).size()));
}

TEST(Generate, NegativeMaxTokensIsAnError) {
  EXPECT_THROW(stream(echo().prompt(0), greedy_opts(-1)), std::invalid_argument);
}

TEST(Generate, StopStringSpanningTokensCutsTheText) {
  const auto& e = echo();
  const std::string s = e.reply(0);         // "olsikryb vtrmtjdd"
  const std::string stop = s.substr(6, 4);  // "yb v": four tokens
  auto opts = greedy_opts(100);
  opts.stop_strings = {stop};
  auto rs = stream(e.prompt(0), opts);
  EXPECT_EQ(concat_text(rs), s.substr(0, 6));
  EXPECT_EQ(rs.back().finish_reason, std::optional<std::string>("stop"));
  // It stopped at the stop string's last token, not at <end_of_turn>.
  EXPECT_EQ(rs.back().generation_tokens, 10);
  EXPECT_NE(rs.back().token, kEndOfTurn);
}

TEST(Generate, TextThatCouldBeginAStopStringIsHeldBackThenReleased) {
  const auto& e = echo();
  const std::string s = e.reply(0);  // "olsikryb vtrmtjdd"
  // "kryb" begins the stop string "krybQ", which never completes.
  auto opts = greedy_opts(100);
  opts.stop_strings = {s.substr(4, 4) + "Q"};
  auto rs = stream(e.prompt(0), opts);
  ASSERT_GT(rs.size(), 9u);
  std::string emitted;
  for (size_t k = 0; k < rs.size(); ++k) {
    emitted += rs[k].text;
    // Everything emitted is a prefix of the reply.
    ASSERT_EQ(s.compare(0, emitted.size(), emitted), 0) << "after token " << k;
    // While the generated text ends with a prefix of the stop string ("k",
    // "kr", "kry", "kryb": tokens 4..7), that part is not emitted yet.
    if (k >= 4 && k <= 7) {
      EXPECT_LE(emitted.size(), 4u) << "after token " << k;
    }
  }
  EXPECT_EQ(emitted, s);
  EXPECT_EQ(rs.back().finish_reason, std::optional<std::string>("stop"));
  EXPECT_EQ(rs.back().token, kEndOfTurn);
}

TEST(Generate, StopStringsMatchedAcrossTheFinalFlush) {
  const auto& e = echo();
  const std::string s = e.reply(0);
  // A stop string that is the reply's tail is cut even when the text is
  // released only at the end of generation.
  auto opts = greedy_opts(static_cast<int>(s.size()));
  opts.stop_strings = {s.substr(s.size() - 3)};
  auto rs = stream(e.prompt(0), opts);
  EXPECT_EQ(concat_text(rs), s.substr(0, s.size() - 3));
  EXPECT_EQ(rs.back().finish_reason, std::optional<std::string>("stop"));
  auto bad = greedy_opts(4);
  bad.stop_strings = {""};
  EXPECT_THROW(stream(e.prompt(0), bad), std::invalid_argument);
}

TEST(Generate, GreedyLogprobsAreTheRowMaximum) {
  const auto& e = echo();
  auto rs = stream(e.prompt(1), greedy_opts(100));
  ASSERT_FALSE(rs.empty());
  const int V = e.model().vocab_size();
  for (const auto& r : rs) {
    ASSERT_EQ(r.logprobs.ndim(), 1);
    ASSERT_EQ(r.logprobs.shape(0), V);
    auto row = mxtest::to_vector(r.logprobs);
    double chosen = row[static_cast<size_t>(r.token)];
    double mx_v = *std::max_element(row.begin(), row.end());
    EXPECT_TRUE(std::isfinite(chosen));
    EXPECT_EQ(chosen, mx_v);
    EXPECT_LE(chosen, 0.0);
    // A log-softmax: the probabilities sum to 1.
    double sum = 0;
    for (double v : row) sum += std::exp(v);
    EXPECT_NEAR(sum, 1.0, 1e-4);
  }
}

TEST(Generate, CallbackReturningFalseStops) {
  const auto& e = echo();
  int calls = 0;
  lm::stream_generate(e.model(), e.tok(), e.prompt(0), greedy_opts(100),
                      [&](const lm::GenerationResponse&) { return ++calls < 3; });
  EXPECT_EQ(calls, 3);
  std::vector<int32_t> tokens;
  lm::generate_step(e.model(), e.prompt(0), greedy_opts(100), [&](int32_t t, const mx::array&) {
    tokens.push_back(t);
    return tokens.size() < 4;
  });
  auto greedy = e.greedy(0);
  EXPECT_EQ(tokens, std::vector<int32_t>(greedy.begin(), greedy.begin() + 4));
}

TEST(Generate, LogitBiasForcesAToken) {
  const auto& e = echo();
  const int32_t forced = e.tok().token_to_id("Q").value();
  lm::LogitsProcessorOptions p;
  p.logit_bias[forced] = 1000.0f;
  auto opts = greedy_opts(6);
  opts.logits_processors = lm::make_logits_processors(p);
  auto g = lm::generate(e.model(), e.tok(), e.prompt(0), opts);
  EXPECT_EQ(g.tokens, std::vector<int32_t>(6, forced));
  EXPECT_EQ(g.text, "QQQQQQ");
  EXPECT_EQ(g.last.finish_reason, std::optional<std::string>("length"));
}

TEST(Generate, LogitsProcessorsSeeTheTokenHistory) {
  const auto& e = echo();
  auto prompt = e.prompt(0);
  std::vector<size_t> seen;
  std::vector<int32_t> last_history;
  auto opts = greedy_opts(8);
  opts.logits_processors.push_back([&](const std::vector<int32_t>& h, const mx::array& logits) {
    seen.push_back(h.size());
    last_history = h;
    return logits;
  });
  auto g = lm::generate(e.model(), e.tok(), prompt, opts);
  ASSERT_EQ(seen.size(), 8u);
  for (size_t k = 0; k < seen.size(); ++k) EXPECT_EQ(seen[k], prompt.size() + k);
  // The identity processor changes nothing: transformers' greedy tokens.
  auto greedy = e.greedy(0);
  EXPECT_EQ(g.tokens, std::vector<int32_t>(greedy.begin(), greedy.begin() + 8));
  std::vector<int32_t> expected_history = prompt;
  expected_history.insert(expected_history.end(), g.tokens.begin(), g.tokens.end() - 1);
  EXPECT_EQ(last_history, expected_history);
}

TEST(Generate, SeededSamplingIsReproducible) {
  const auto& e = echo();
  auto run = [&](uint64_t seed) {
    lm::SamplerOptions s;
    s.temp = 5.0f;  // flat enough that different seeds draw different tokens
    s.seed = seed;
    auto opts = lm::GenerateOptions{};
    opts.max_tokens = 30;
    opts.sampler = lm::make_sampler(s);
    return lm::generate(e.model(), e.tok(), e.prompt(0), opts).tokens;
  };
  auto a = run(3), b = run(3), c = run(4);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // The global sequence, reset by mx::random::seed, is reproducible too.
  auto global = [&] {
    mx::random::seed(11);
    lm::SamplerOptions s;
    s.temp = 0.7f;
    auto opts = greedy_opts(20);
    opts.sampler = lm::make_sampler(s);
    return lm::generate(e.model(), e.tok(), e.prompt(2), opts).tokens;
  };
  EXPECT_EQ(global(), global());
}

TEST(Generate, FilteredSamplingDrawsFromTheKeptTokens) {
  const auto& e = echo();
  // top_k 1 leaves only the argmax: transformers' greedy tokens at any temperature.
  lm::SamplerOptions one;
  one.temp = 2.0f;
  one.top_k = 1;
  one.seed = 5;
  auto opts = greedy_opts(100);
  opts.sampler = lm::make_sampler(one);
  EXPECT_EQ(lm::generate(e.model(), e.tok(), e.prompt(1), opts).tokens, e.greedy_until_eot(1));

  // With every filter on, each drawn token is among the top_k of its row.
  lm::SamplerOptions s;
  s.temp = 3.0f;
  s.top_p = 0.95f;
  s.min_p = 0.001f;
  s.top_k = 4;
  s.xtc_probability = 0.5f;
  s.xtc_threshold = 0.2f;
  s.seed = 9;
  auto o2 = greedy_opts(40);
  o2.eos_token_ids.clear();
  o2.sampler = lm::make_sampler(s);
  int steps = 0;
  lm::stream_generate(e.model(), e.tok(), e.prompt(0), o2, [&](const lm::GenerationResponse& r) {
    auto row = mxtest::to_vector(r.logprobs);
    double chosen = row[static_cast<size_t>(r.token)];
    int higher = static_cast<int>(
        std::count_if(row.begin(), row.end(), [&](double v) { return v > chosen; }));
    EXPECT_LT(higher, 4) << "step " << steps;
    ++steps;
    return true;
  });
  EXPECT_EQ(steps, 40);
}

TEST(Generate, PromptLongerThanTheContextIsAClearError) {
  // A copy of the echo model with a context of 16 positions.
  fs::path dir = temp_dir("short_context");
  for (const auto& f : fs::directory_iterator(echo_dir())) {
    fs::copy_file(f.path(), dir / f.path().filename(), fs::copy_options::overwrite_existing);
  }
  auto config = json::parse(lm::testing::slurp(echo_dir() / "config.json"));
  config["max_position_embeddings"] = 16;
  std::ofstream(dir / "config.json") << config.dump(2);
  auto b = lm::load(dir.string());
  ASSERT_EQ(b.model->max_context(), 16);
  auto prompt = echo().prompt(0);  // 33 tokens
  try {
    lm::stream_generate(*b.model, *b.tokenizer, prompt, greedy_opts(4),
                        [](const lm::GenerationResponse&) { return true; });
    FAIL() << "no error for a prompt longer than the context";
  } catch (const std::invalid_argument& err) {
    std::string msg = err.what();
    EXPECT_NE(msg.find("33 tokens"), std::string::npos) << msg;
    EXPECT_NE(msg.find("16"), std::string::npos) << msg;
    EXPECT_NE(msg.find("max_position_embeddings"), std::string::npos) << msg;
  }
  fs::remove_all(dir);
}

TEST(Generate, SavedPromptCacheContinuesLikeTheFullPrompt) {
  const auto& e = echo();
  auto prompt = e.prompt(1);  // 48 tokens; the sliding layers' ring (8) wraps
  const size_t cut = 30;
  auto cache = e.model().make_cache();
  std::vector<int32_t> head(prompt.begin(), prompt.begin() + cut);
  lm::prefill(e.model(), head, cache, 7);
  std::vector<mx::array> state;
  for (auto& c : cache) {
    for (auto& a : c->state()) state.push_back(a);
  }
  mx::eval(state);
  fs::path file = temp_dir("prompt_cache") / "cache.safetensors";
  lm::save_prompt_cache(file, cache, {{"model", "gemma3-tiny-echo"}});
  auto [loaded, meta] = lm::load_prompt_cache(file);
  EXPECT_EQ(meta.at("model"), "gemma3-tiny-echo");
  ASSERT_EQ(loaded.size(), cache.size());
  for (auto& c : loaded) EXPECT_EQ(c->offset(), static_cast<int>(cut));

  auto expected = e.greedy(1);
  lm::GenerateOptions opts;
  opts.max_tokens = static_cast<int>(expected.size());
  opts.prompt_cache = &loaded;
  std::vector<int32_t> rest(prompt.begin() + cut, prompt.end()), got;
  lm::generate_step(e.model(), rest, opts, [&](int32_t t, const mx::array&) {
    got.push_back(t);
    return true;
  });
  EXPECT_EQ(got, expected);
  fs::remove_all(file.parent_path());
}

// The templated conversation as transformers' chat template renders it, generated fresh.
lm::GenerateResult fresh_reply(const json& messages, const lm::GenerateOptions& opts) {
  const auto& e = echo();
  auto ids = e.tok().encode(lm::render_chat(e.tok(), messages.dump(), true, false), false);
  return lm::generate(e.model(), e.tok(), ids, opts);
}

TEST(ChatSession, SecondTurnReusesTheCacheAndMatchesAFreshGeneration) {
  const auto& e = echo();
  auto opts = greedy_opts(100);
  lm::ChatSession chat(e.model(), e.tok(), opts);
  std::string streamed;
  auto r1 = chat.reply(e.str(0), [&](const std::string& t) { streamed += t; });
  EXPECT_EQ(streamed, e.reply(0));
  EXPECT_EQ(r1.finish_reason, std::optional<std::string>("stop"));
  EXPECT_EQ(chat.reused_tokens(), 0);

  auto r2 = chat.reply(e.str(2), nullptr);
  EXPECT_GT(chat.reused_tokens(), static_cast<int>(e.prompt(0).size()));
  json conversation = json::array({{{"role", "user"}, {"content", e.str(0)}},
                                   {{"role", "assistant"}, {"content", e.reply(0)}},
                                   {{"role", "user"}, {"content", e.str(2)}}});
  auto fresh = fresh_reply(conversation, opts);
  ASSERT_EQ(chat.messages().size(), 4u);
  EXPECT_EQ(chat.messages()[3]["content"].get<std::string>(), fresh.text);
  EXPECT_EQ(r2.generation_tokens, static_cast<int>(fresh.tokens.size()));

  chat.reset();
  EXPECT_EQ(chat.messages().size(), 0u);
  EXPECT_EQ(chat.cached_tokens(), 0);
  streamed.clear();
  chat.reply(e.str(1), [&](const std::string& t) { streamed += t; });
  EXPECT_EQ(streamed, e.reply(1));
  EXPECT_EQ(chat.reused_tokens(), 0);
}

TEST(ChatSession, SystemPromptIsPartOfTheConversation) {
  const auto& e = echo();
  auto opts = greedy_opts(60);
  lm::ChatSession chat(e.model(), e.tok(), opts, std::string("be brief"));
  chat.reply(e.str(1), nullptr);
  ASSERT_EQ(chat.messages().size(), 3u);
  json conversation = json::array(
      {{{"role", "system"}, {"content", "be brief"}}, {{"role", "user"}, {"content", e.str(1)}}});
  EXPECT_EQ(chat.messages()[2]["content"].get<std::string>(), fresh_reply(conversation, opts).text);
  chat.reset();
  EXPECT_EQ(chat.messages().size(), 1u);  // the system prompt stays
}

TEST(ChatSession, BoundedRotatingCacheMatchesAFreshGeneration) {
  const auto& e = echo();
  auto opts = greedy_opts(60);
  opts.max_kv_size = 12;  // every layer a ring smaller than one turn
  lm::ChatSession chat(e.model(), e.tok(), opts);
  chat.reply(e.str(0), nullptr);
  json conversation = json::array({{{"role", "user"}, {"content", e.str(0)}}});
  EXPECT_EQ(chat.messages()[1]["content"].get<std::string>(), fresh_reply(conversation, opts).text);
  conversation.push_back(chat.messages()[1]);
  chat.reply(e.str(2), nullptr);
  conversation.push_back({{"role", "user"}, {"content", e.str(2)}});
  // The cache held a prefix of the new prompt: it continues.
  EXPECT_GT(chat.reused_tokens(), 0);
  EXPECT_EQ(chat.messages()[3]["content"].get<std::string>(), fresh_reply(conversation, opts).text);
}

TEST(ChatSession, UntrimmableCacheRestartsAndMatchesAFreshGeneration) {
  const auto& e = echo();
  auto opts = greedy_opts(60);
  // Room for the first prompt (33 tokens), so that the first reply is the
  // echo; the sliding layers' rings (window 8) are past their size anyway.
  opts.max_kv_size = 36;
  // The stop string cuts the reply after tokens the cache has already seen,
  // so the next prompt diverges from the cache inside it; rotating caches past
  // their window cannot trim back, so the session must start over.
  const std::string s = e.reply(0);
  opts.stop_strings = {s.substr(4, 4)};
  lm::ChatSession chat(e.model(), e.tok(), opts);
  chat.reply(e.str(0), nullptr);
  EXPECT_EQ(chat.messages()[1]["content"].get<std::string>(), s.substr(0, 4));
  chat.reply(e.str(2), nullptr);
  EXPECT_EQ(chat.reused_tokens(), 0);
  json conversation = json::array({{{"role", "user"}, {"content", e.str(0)}},
                                   {{"role", "assistant"}, {"content", s.substr(0, 4)}},
                                   {{"role", "user"}, {"content", e.str(2)}}});
  EXPECT_EQ(chat.messages()[3]["content"].get<std::string>(), fresh_reply(conversation, opts).text);

  // The same without max_kv_size: the sliding layers' rings (window 8) cannot trim either.
  auto unbounded = opts;
  unbounded.max_kv_size.reset();
  lm::ChatSession chat2(e.model(), e.tok(), unbounded);
  chat2.reply(e.str(0), nullptr);
  chat2.reply(e.str(2), nullptr);
  EXPECT_EQ(chat2.reused_tokens(), 0);
  EXPECT_EQ(chat2.messages()[3]["content"].get<std::string>(),
            fresh_reply(conversation, unbounded).text);
}

// mlx-lm ignores --max-kv-size for Gemma 3 (#118); here every layer stays bounded.
TEST(Generate, MaxKvSizeBoundsEveryLayerCache) {
  const auto& e = echo();
  const int M = 16;
  auto cache = e.model().make_cache(M);
  lm::GenerateOptions opts;
  opts.max_tokens = 120;  // no eos: run well past M positions
  opts.prompt_cache = &cache;
  auto prompt = e.prompt(1);
  // keys + values of one position: Nkv 2 x head_dim 32 x float32, twice.
  const size_t per_position = 2 * 2 * 32 * 4;
  std::vector<size_t> first_decode;
  int steps = 0;
  lm::generate_step(e.model(), prompt, opts, [&](int32_t, const mx::array&) {
    ++steps;
    for (size_t l = 0; l < cache.size(); ++l) {
      EXPECT_LE(cache[l]->nbytes(), M * per_position) << "layer " << l << " step " << steps;
    }
    if (steps == 2) {
      for (auto& c : cache) first_decode.push_back(c->nbytes());
    }
    return true;
  });
  EXPECT_EQ(steps, 120);
  EXPECT_GT(cache[0]->offset(), static_cast<int>(prompt.size()) + 100);
  ASSERT_EQ(first_decode.size(), cache.size());
  for (size_t l = 0; l < cache.size(); ++l) EXPECT_EQ(cache[l]->nbytes(), first_decode[l]);
  // Without the bound the global layers grow with the sequence.
  auto unbounded = e.model().make_cache();
  lm::GenerateOptions o2 = opts;
  o2.prompt_cache = &unbounded;
  lm::generate_step(e.model(), prompt, o2, [](int32_t, const mx::array&) { return true; });
  EXPECT_GT(lm::prompt_cache_nbytes(unbounded), lm::prompt_cache_nbytes(cache));
}

}  // namespace
