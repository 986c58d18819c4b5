// The serving engine of `mlxcpp server` (lm/server/): request validation, the
// left-padded batch cache, prompt-cache reuse, the JSON grammar and the engine
// itself. Engine outputs are checked against Hugging Face transformers' greedy
// continuations of the trained echo model (tests/data/gemma3/copy_trained/
// reference.json, recorded by tools/reference/gemma3_refs.py); grammar and
// request checks against hand-written cases.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "lm/server_test_util.h"
#include "lm/tokenizer_test_util.h"
#include "mlxcpp/lm/load.h"
#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/lm/server/batch_cache.h"
#include "mlxcpp/lm/server/engine.h"
#include "mlxcpp/lm/server/http_server.h"
#include "mlxcpp/lm/server/json_grammar.h"
#include "mlxcpp/lm/server/prompt_store.h"
#include "mlxcpp/lm/server/request.h"
#include "mlxcpp/lm/server/tool_calls.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/mx/transforms.h"

namespace fs = std::filesystem;
using lm::server::ApiError;
using nlohmann::json;
using servertest::collect;
using servertest::echo;
using servertest::greedy_job;
using servertest::reference;

namespace {

lm::server::RequestDefaults defaults() {
  lm::server::RequestDefaults d;
  d.model_id = "echo";
  return d;
}

// The status and param of the ApiError a body raises.
std::pair<int, std::string> rejection(const json& body, bool chat = true) {
  try {
    lm::server::parse_request(body, chat, defaults());
  } catch (const ApiError& e) {
    auto b = e.body();
    EXPECT_TRUE(b["error"].contains("message") && b["error"].contains("type") &&
                b["error"].contains("param") && b["error"].contains("code"));
    return {e.status(),
            b["error"]["param"].is_string() ? b["error"]["param"].get<std::string>() : ""};
  }
  return {200, ""};
}

json chat(json extra = json::object()) {
  json b = {{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  for (auto& [k, v] : extra.items()) b[k] = v;
  return b;
}

// ------------------------------------------------------------------ requests

TEST(ServerRequest, InvalidBodies) {
  EXPECT_THROW(lm::server::parse_body("{not json"), ApiError);
  EXPECT_THROW(lm::server::parse_body("[1, 2]"), ApiError);
  EXPECT_THROW(lm::server::parse_body(""), ApiError);
  try {
    lm::server::parse_body("{\"a\": ");
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.body()["error"]["code"], "invalid_json");
  }
}

TEST(ServerRequest, WrongFieldsNameTheParam) {
  struct Case {
    json body;
    int status;
    std::string param;
  };
  std::vector<Case> cases = {
      {json::object(), 400, "messages"},
      {{{"messages", "hi"}}, 400, "messages"},
      {{{"messages", json::array()}}, 400, "messages"},
      {{{"messages", json::array({{{"role", "wizard"}, {"content", "x"}}})}},
       400,
       "messages[0].role"},
      {{{"messages", json::array({{{"role", "user"}}})}}, 400, "messages[0].content"},
      {{{"messages",
         json::array({{{"role", "user"}, {"content", json::array({{{"type", "image_url"}}})}}})}},
       400,
       "messages[0].content[0].type"},
      {chat({{"temperature", "hot"}}), 400, "temperature"},
      {chat({{"temperature", -1}}), 400, "temperature"},
      {chat({{"top_p", 1.5}}), 400, "top_p"},
      {chat({{"top_k", 2.5}}), 400, "top_k"},
      {chat({{"min_p", -0.1}}), 400, "min_p"},
      {chat({{"max_tokens", -1}}), 400, "max_tokens"},
      {chat({{"max_completion_tokens", "10"}}), 400, "max_completion_tokens"},
      {chat({{"n", 2}}), 400, "n"},
      {chat({{"stream", "yes"}}), 400, "stream"},
      {chat({{"stream_options", {{"include_usage", true}}}}), 400, "stream_options"},
      {chat({{"stop", 5}}), 400, "stop"},
      {chat({{"stop", json::array({"a", "b", "c", "d", "e"})}}), 400, "stop"},
      {chat({{"logit_bias", {{"abc", 1}}}}), 400, "logit_bias.abc"},
      {chat({{"logit_bias", {{"5", 500}}}}), 400, "logit_bias.5"},
      {chat({{"logprobs", 1}}), 400, "logprobs"},
      {chat({{"top_logprobs", 5}}), 400, "top_logprobs"},
      {chat({{"top_logprobs", 50}, {"logprobs", true}}), 400, "top_logprobs"},
      {chat({{"presence_penalty", 3}}), 400, "presence_penalty"},
      {chat({{"response_format", {{"type", "xml"}}}}), 400, "response_format.type"},
      {chat({{"response_format", {{"type", "json_schema"}}}}), 400, "response_format.json_schema"},
      {chat({{"tool_choice", "required"}}), 400, "tool_choice"},
      {chat({{"tools", json::array({{{"type", "function"}}})}}), 400, "tools[0].function"},
      {chat({{"chat_template_kwargs", json::array()}}), 400, "chat_template_kwargs"},
      {chat({{"model", "gpt-4o"}}), 404, "model"},
      {json{{"prompt", 5}}, 400, "prompt"},
  };
  for (const auto& c : cases) {
    bool is_chat = !c.body.contains("prompt");
    auto [status, param] = rejection(c.body, is_chat);
    EXPECT_EQ(status, c.status) << c.body.dump();
    EXPECT_EQ(param, c.param) << c.body.dump();
  }
}

TEST(ServerRequest, AcceptedFields) {
  auto r = lm::server::parse_request(
      chat({{"model", "echo"},
            {"messages",
             json::array({{{"role", "developer"}, {"content", "be brief"}},
                          {{"role", "user"},
                           {"content", json::array({{{"type", "text"}, {"text", "a"}},
                                                    {{"type", "text"}, {"text", "b"}}})}}})},
            {"max_completion_tokens", 7},
            {"temperature", 0.5},
            {"top_k", 3},
            {"seed", 11},
            {"stop", "zz"},
            {"logprobs", true},
            {"top_logprobs", 2},
            {"logit_bias", {{"12", -100}}},
            {"stream", true},
            {"stream_options", {{"include_usage", true}}},
            {"n", 1},
            {"chat_template_kwargs", {{"enable_thinking", false}}},
            {"response_format",
             {{"type", "json_schema"},
              {"json_schema", {{"name", "x"}, {"schema", {{"type", "object"}}}}}}}}),
      true, defaults());
  EXPECT_EQ(r.messages[0]["role"], "system");
  EXPECT_EQ(r.messages[1]["content"], "ab");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.sampling.temp, 0.5f);
  EXPECT_EQ(r.sampling.top_k, 3);
  EXPECT_EQ(r.sampling.seed, 11u);
  EXPECT_EQ(r.stop, std::vector<std::string>{"zz"});
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 2);
  EXPECT_FLOAT_EQ(r.processors.logit_bias.at(12), -100.0f);
  EXPECT_TRUE(r.stream && r.include_usage);
  EXPECT_EQ(r.template_kwargs["enable_thinking"], false);
  EXPECT_EQ(r.response_format.kind, lm::server::ResponseFormat::Kind::json_schema);

  auto c = lm::server::parse_request({{"prompt", json::array({2, 4, 5})}, {"logprobs", 3}}, false,
                                     defaults());
  EXPECT_EQ(c.prompt_tokens, (std::vector<int32_t>{2, 4, 5}));
  EXPECT_TRUE(c.logprobs);
  EXPECT_EQ(c.top_logprobs, 3);
}

TEST(ServerRequest, ChatPromptUsesTheTemplate) {
  auto r = lm::server::parse_request(chat(), true, defaults());
  auto ids = lm::server::request_prompt(*echo().tokenizer, r, std::nullopt);
  // Gemma 3's template: <bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n
  EXPECT_EQ(echo().tokenizer->decode(ids),
            "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n");
}

// ------------------------------------------------------------------ tool calls

TEST(ServerToolCalls, Parses) {
  json tools = json::array({{{"type", "function"}, {"function", {{"name", "get_weather"}}}}});
  auto c =
      lm::server::parse_tool_calls(R"({"name":"get_weather","arguments":{"city":"Oslo"}})", tools);
  ASSERT_TRUE(c);
  EXPECT_EQ((*c)[0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse((*c)[0]["function"]["arguments"].get<std::string>())["city"], "Oslo");
  EXPECT_EQ((*c)[0]["type"], "function");
  auto h = lm::server::parse_tool_calls(
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>", tools);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->size(), 1u);
  EXPECT_FALSE(lm::server::parse_tool_calls(R"({"name":"other","arguments":{}})", tools));
  EXPECT_FALSE(lm::server::parse_tool_calls("just text", tools));
}

// ------------------------------------------------------------------ grammar

bool accepts(const std::shared_ptr<const lm::server::JsonGrammar>& g, const std::string& s) {
  auto st = g->start();
  return st.feed(s) && st.complete();
}

TEST(ServerJsonGrammar, HandWrittenDocuments) {
  json schema = {
      {"type", "object"},
      {"properties",
       {{"name", {{"type", "string"}, {"maxLength", 5}}},
        {"age", {{"type", "integer"}}},
        {"ok", {{"type", "boolean"}}},
        {"tags", {{"type", "array"}, {"items", {{"enum", {"a", "bc"}}}}, {"maxItems", 2}}},
        {"score", {{"type", {"number", "null"}}}}}},
      {"required", {"name", "age"}}};
  auto g = lm::server::JsonGrammar::from_schema(schema);
  // nlohmann sorts object keys: the grammar emits properties in that order.
  EXPECT_TRUE(accepts(g, R"({"age":42,"name":"bob","ok":true,"score":-1.5e3,"tags":["a","bc"]})"));
  EXPECT_TRUE(accepts(g, R"({"age":0,"name":"","ok":false,"score":null,"tags":[]})"));
  EXPECT_FALSE(accepts(g, R"({"age":042,"name":"","ok":false,"score":null,"tags":[]})"));
  EXPECT_FALSE(accepts(g, R"({"age":1.5,"name":"","ok":false,"score":null,"tags":[]})"));
  EXPECT_FALSE(accepts(g, R"({"age":1,"name":"toolong","ok":false,"score":null,"tags":[]})"));
  EXPECT_FALSE(accepts(g, R"({"age":1,"name":"a","ok":false,"score":null,"tags":["a","a","a"]})"));
  EXPECT_FALSE(accepts(g, R"({"age":1,"name":"a","ok":0,"score":null,"tags":[]})"));
  EXPECT_FALSE(accepts(g, R"({"name":"a","age":1,"ok":true,"score":null,"tags":[]})"));
  EXPECT_FALSE(accepts(g, R"({"age":1,"name":"a")"));  // incomplete

  auto any = lm::server::JsonGrammar::from_schema({{"type", "object"}});
  EXPECT_TRUE(accepts(any, R"({})"));
  EXPECT_TRUE(accepts(any, R"({"a":[1,{"b":null}],"c":"\u00e9\n","d":-0.5})"));
  EXPECT_FALSE(accepts(any, R"([1])"));
  EXPECT_FALSE(accepts(any, R"({"a":tru})"));
  EXPECT_FALSE(accepts(any, "{\"a\":\"x\ny\"}"));  // raw control character in a string

  json defs = json::parse(R"({"$defs": {"node": {"type": "object",
      "properties": {"next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}}}},
    "$ref": "#/$defs/node"})");
  auto rec = lm::server::JsonGrammar::from_schema(defs);
  EXPECT_TRUE(accepts(rec, R"({"next":{"next":null}})"));
  EXPECT_FALSE(accepts(rec, R"({"next":1})"));
  EXPECT_THROW(lm::server::JsonGrammar::from_schema({{"$ref", "#/$defs/missing"}}),
               std::invalid_argument);
  EXPECT_THROW(lm::server::JsonGrammar::from_schema({{"type", "color"}}), std::invalid_argument);

  json tools = json::parse(R"([
    {"type": "function", "function": {"name": "f", "parameters": {"type": "object",
      "properties": {"x": {"type": "integer"}}}}},
    {"type": "function", "function": {"name": "g"}}])");
  auto tc = lm::server::JsonGrammar::for_tool_calls(tools);
  EXPECT_TRUE(accepts(tc, R"({"name":"f","arguments":{"x":3}})"));
  EXPECT_TRUE(accepts(tc, R"({"name":"g","arguments":{}})"));
  EXPECT_FALSE(accepts(tc, R"({"name":"h","arguments":{}})"));
  EXPECT_FALSE(accepts(tc, R"({"name":"f","arguments":{"x":"3"}})"));
}

// Random walks through the token masks always end in a document that parses
// and matches the schema (checked field by field here).
TEST(ServerJsonGrammar, TokenMasksOnlyAllowValidOutput) {
  const auto& tok = *echo().tokenizer;
  const int vocab = echo().model->vocab_size();
  json schema = {{"type", "object"},
                 {"properties",
                  {{"city", {{"type", "string"}, {"maxLength", 12}}},
                   {"n", {{"type", "integer"}}},
                   {"unit", {{"enum", {"c", "f"}}}}}}};
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    auto c = lm::server::make_json_constraint(tok, vocab, schema);
    std::string out;
    for (int step = 0; step < 200 && !c->complete(); ++step) {
      const auto& allowed = c->allowed();
      std::vector<int32_t> ids;
      for (int i = 0; i < vocab; ++i) {
        if (allowed[i]) ids.push_back(i);
      }
      ASSERT_FALSE(ids.empty()) << out;
      // Prefer closing quotes/digits now and then so walks end.
      int32_t id = ids[rng() % ids.size()];
      c->accept(id);
      std::vector<int32_t> one{id};
      out += tok.decode(one);
    }
    ASSERT_TRUE(c->complete()) << out;
    json j = json::parse(out);
    ASSERT_TRUE(j.is_object()) << out;
    EXPECT_TRUE(j["city"].is_string() && j["city"].get<std::string>().size() <= 12) << out;
    EXPECT_TRUE(j["n"].is_number_integer()) << out;
    EXPECT_TRUE(j["unit"] == "c" || j["unit"] == "f") << out;
  }
}

// ------------------------------------------------------------------ batch cache

// Rows of different lengths in one left-padded batch give the logits each row
// gives alone (the unbatched path is checked against transformers elsewhere).
TEST(ServerBatchCache, BatchedDecodeMatchesSingleRows) {
  auto& model = *echo().model;
  const auto& prompts = reference()["prompt_tokens"];
  std::vector<std::vector<int32_t>> rows;
  for (const auto& p : prompts) rows.push_back(p.get<std::vector<int32_t>>());
  std::vector<std::shared_ptr<lm::server::BatchKVCache>> batch;
  for (int l = 0; l < model.num_layers(); ++l)
    batch.push_back(std::make_shared<lm::server::BatchKVCache>());
  std::vector<mx::array> single;
  for (const auto& r : rows) {
    lm::PromptCache c;
    for (int l = 0; l < model.num_layers(); ++l) c.push_back(std::make_shared<lm::KVCache>());
    model(
        mx::array(std::vector<int32_t>(r.begin(), r.end() - 1), {1, int(r.size()) - 1}, mx::int32),
        &c);
    auto logits = model(mx::array(std::vector<int32_t>{r.back()}, {1, 1}, mx::int32), &c);
    single.push_back(mx::reshape(logits, {-1}));
    for (int l = 0; l < model.num_layers(); ++l) {
      auto st = c[l]->state();
      // The batch holds every position but the last, which the step below feeds.
      auto cut = [&](const mx::array& a) {
        return mx::slice(a, {0, 0, 0, 0}, {1, a.shape(1), a.shape(2) - 1, a.shape(3)});
      };
      batch[l]->add_row(cut(st[0]), cut(st[1]));
    }
  }
  std::vector<int32_t> last;
  for (const auto& r : rows) last.push_back(r.back());
  lm::PromptCache pc(batch.begin(), batch.end());
  auto logits = model(mx::array(last, {int(rows.size()), 1}, mx::int32), &pc);
  for (size_t b = 0; b < rows.size(); ++b) {
    auto got =
        mxtest::to_vector(mx::slice(logits, {int(b), 0, 0}, {int(b) + 1, 1, logits.shape(2)}));
    auto want = mxtest::to_vector(single[b]);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], want[i], 1e-3) << "row " << b << " logit " << i;
  }
  // Removing a row keeps the others intact; the last row moves into the freed slot.
  for (auto& c : batch) c->remove_row(0);
  const auto order = lm::server::BatchKVCache::order_after_removal(int(rows.size()), {0});
  ASSERT_EQ(batch[0]->rows(), int(rows.size()) - 1);
  ASSERT_EQ(order.size(), rows.size() - 1);
  for (size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(batch[0]->row_length(int(i)), int(rows[order[i]].size())) << "row " << i;
  }
}

TEST(ServerBatchCache, QuantizedRowsRoundTripThroughTheKvQuantizer) {
  // Rows of different lengths, left-padded in packed form: each row reads back as the
  // quantizer's own round trip of what went in, and an update appends to every row.
  lm::server::BatchKVCache cache(32, 4);
  lm::KVQuantizer q(32, 4);
  auto key = mx::random::key(3);
  auto a = mx::random::normal({1, 2, 5, 64}, mx::float32, 0.0f, 1.0f, key);
  auto b = mx::random::normal({1, 2, 3, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(4));
  cache.add_rows({{a, a}, {b, b}});
  auto round_trip = [&](const mx::array& x) { return q.unpack(q.pack(x)); };
  EXPECT_TRUE(mx::array_equal(cache.row(0).first, round_trip(a)).item<bool>());
  EXPECT_TRUE(mx::array_equal(cache.row(1).second, round_trip(b)).item<bool>());
  auto t = mx::random::normal({2, 2, 1, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(5));
  auto [k, v] = cache.update_and_fetch(t, t);
  ASSERT_EQ(k.shape(), (mx::Shape{2, 2, 6, 64}));
  auto last = mx::slice(k, {0, 0, 5, 0}, {2, 2, 6, 64});
  EXPECT_TRUE(mx::array_equal(last, round_trip(t)).item<bool>());
  EXPECT_EQ(cache.row_length(1), 4);
  EXPECT_LT(cache.nbytes(), size_t{2} * 2 * 2 * 256 * 64 * 4);  // below the float32 buffers
}

// ------------------------------------------------------------------ prompt store

TEST(ServerPromptStore, LongestPrefixAndLimits) {
  auto kv = [](int n) {
    auto a = mx::astype(mx::reshape(mx::arange(0, n, 1), {1, 1, n, 1}), mx::float32);
    return lm::server::LayerKV{{a, a}};
  };
  lm::server::PromptStore store(2, 1 << 20);
  store.insert({1, 2, 3, 4}, kv(4));
  store.insert({1, 2, 9}, kv(3));
  auto hit = store.lookup({1, 2, 3, 7, 8}, 4);
  EXPECT_EQ(hit.length, 3);
  EXPECT_EQ(mxtest::to_vector(hit.layers[0].first), (std::vector<double>{0, 1, 2}));
  EXPECT_EQ(store.lookup({5}, 1).length, 0);
  EXPECT_EQ(store.lookup({1, 2, 3, 4}, 3).length, 3);  // capped by the limit
  store.insert({7, 7}, kv(2));                         // evicts the least recently used
  EXPECT_EQ(store.entries(), 2u);
  EXPECT_EQ(store.lookup({1, 2, 9}, 3).length, 2);  // {1,2,9} was evicted, {1,2,3,4} stays
  lm::server::PromptStore tiny(10, 16);
  tiny.insert({1, 2, 3, 4, 5, 6}, kv(6));  // 48 bytes > 16: not kept
  EXPECT_EQ(tiny.entries(), 0u);
}

// ------------------------------------------------------------------ engine

// Concurrent requests share decode steps and still produce transformers' greedy tokens.
TEST(ServerEngine, ConcurrentRequestsMatchTransformers) {
  lm::server::EngineOptions o;
  o.decode_concurrency = 8;
  o.prompt_concurrency = 2;
  o.prefill_step_size = 7;                                       // several chunks per prompt
  lm::server::Engine engine(echo().model, echo().tokenizer, o);  // no EOS: full 48 tokens
  const auto& ref = reference();
  std::vector<std::shared_ptr<lm::server::RequestStream>> streams;
  for (int round = 0; round < 2; ++round) {
    for (const auto& p : ref["prompt_tokens"]) {
      streams.push_back(
          engine.submit(greedy_job(p.get<std::vector<int32_t>>(), ref["max_new_tokens"])));
    }
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    auto c = collect(streams[i]);
    const auto& want = ref["greedy"][i % ref["greedy"].size()];
    EXPECT_EQ(c.tokens, want.get<std::vector<int32_t>>()) << "request " << i;
    EXPECT_EQ(c.final.finish_reason, "length");
    EXPECT_EQ(c.final.completion_tokens, 48);
    EXPECT_EQ(c.text, ref["decoded_greedy"][i % ref["greedy"].size()].get<std::string>());
  }
  auto st = engine.stats();
  EXPECT_EQ(st.completed, streams.size());
  EXPECT_LT(st.steps, streams.size() * 48u);  // decode steps were shared
}

// --kv-bits: the decode batch keeps its rows quantized. 8-bit keys and values of the echo model
// leave its greedy continuations (transformers' float reference) unchanged.
TEST(ServerEngine, QuantizedBatchCacheKeepsTheGreedyTokens) {
  lm::server::EngineOptions o;
  o.decode_concurrency = 8;
  o.kv_bits = 8;
  o.kv_group_size = 32;
  lm::server::Engine engine(echo().model, echo().tokenizer, o);
  const auto& ref = reference();
  std::vector<std::shared_ptr<lm::server::RequestStream>> streams;
  for (const auto& p : ref["prompt_tokens"]) {
    streams.push_back(
        engine.submit(greedy_job(p.get<std::vector<int32_t>>(), ref["max_new_tokens"])));
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    auto c = collect(streams[i]);
    EXPECT_EQ(c.tokens, ref["greedy"][i].get<std::vector<int32_t>>()) << "request " << i;
  }
}

TEST(ServerEngine, PromptCacheReuseStopsAndCancel) {
  lm::server::EngineOptions o;
  o.eos_token_ids = echo().eos_token_ids;
  lm::server::Engine engine(echo().model, echo().tokenizer, o);
  const auto& tok = *echo().tokenizer;
  auto prompt = [&](const std::string& s) {
    return tok.encode("<bos><start_of_turn>user\n" + s + "<end_of_turn>\n<start_of_turn>model\n",
                      false);
  };
  auto first = collect(engine.submit(greedy_job(prompt("hello there world"), 64)));
  EXPECT_EQ(first.text, "hello there world");  // the echo model's reply, EOS at <end_of_turn>
  EXPECT_EQ(first.final.finish_reason, "stop");
  EXPECT_EQ(first.final.cached_tokens, 0);
  // The same prompt again reuses all but its last token.
  auto again = collect(engine.submit(greedy_job(prompt("hello there world"), 64)));
  EXPECT_EQ(again.text, "hello there world");
  EXPECT_EQ(again.final.cached_tokens, int(prompt("hello there world").size()) - 1);
  // A stop string cuts the text.
  auto job = greedy_job(prompt("abc def ghi"), 64);
  job.stop = {" gh"};
  auto stopped = collect(engine.submit(job));
  EXPECT_EQ(stopped.text, "abc def");
  EXPECT_EQ(stopped.final.finish_reason, "stop");
  // max_tokens.
  auto len = collect(engine.submit(greedy_job(prompt("abcdefgh"), 3)));
  EXPECT_EQ(len.text, "abc");
  EXPECT_EQ(len.final.finish_reason, "length");
  // A cancelled request ends with "cancelled" and others go on.
  auto s = engine.submit(greedy_job(prompt("this one is cancelled at once"), 200));
  s->cancel();
  auto other = engine.submit(greedy_job(prompt("still served"), 64));
  EXPECT_EQ(collect(s).final.finish_reason, "cancelled");
  EXPECT_EQ(collect(other).text, "still served");
  // A prompt over the context is refused.
  std::vector<int32_t> huge(echo().model->max_context() + 1, 300);
  EXPECT_THROW(engine.submit(greedy_job(huge, 1)), std::length_error);
  EXPECT_THROW(engine.submit(greedy_job({}, 1)), std::invalid_argument);
}

TEST(ServerEngine, ConstrainedOutputParses) {
  lm::server::EngineOptions o;
  o.eos_token_ids = echo().eos_token_ids;
  lm::server::Engine engine(echo().model, echo().tokenizer, o);
  json schema = {
      {"type", "object"},
      {"properties",
       {{"word", {{"type", "string"}, {"maxLength", 8}}}, {"flag", {{"type", "boolean"}}}}}};
  auto job =
      greedy_job(echo().tokenizer->encode(
                     "<bos><start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n", false),
                 100);
  job.constraint =
      lm::server::make_json_constraint(*echo().tokenizer, echo().model->vocab_size(), schema);
  auto c = collect(engine.submit(job));
  EXPECT_EQ(c.final.finish_reason, "stop");
  json j = json::parse(c.text);
  EXPECT_TRUE(j["word"].is_string() && j["word"].get<std::string>().size() <= 8) << c.text;
  EXPECT_TRUE(j["flag"].is_boolean()) << c.text;
}

}  // namespace

namespace {

// A constraint that fails on its third token: the request ends with an error,
// the one decoding beside it is unaffected.
class FailingConstraint : public lm::server::TokenConstraint {
 public:
  explicit FailingConstraint(int vocab) : mask_(vocab, 1) {}
  const std::vector<uint8_t>& allowed() override {
    if (++calls_ == 3) throw std::runtime_error("constraint failed on purpose");
    return mask_;
  }
  void accept(int32_t) override {}
  bool complete() const override { return false; }

 private:
  std::vector<uint8_t> mask_;
  int calls_ = 0;
};

TEST(ServerEngine, OneFailingRequestDoesNotHurtOthers) {
  lm::server::EngineOptions o;
  o.eos_token_ids = echo().eos_token_ids;
  lm::server::Engine engine(echo().model, echo().tokenizer, o);
  const auto& tok = *echo().tokenizer;
  auto prompt = [&](const std::string& s) {
    return tok.encode("<bos><start_of_turn>user\n" + s + "<end_of_turn>\n<start_of_turn>model\n",
                      false);
  };
  auto bad = greedy_job(prompt("doomed request here"), 64);
  bad.constraint = std::make_shared<FailingConstraint>(echo().model->vocab_size());
  auto s_bad = engine.submit(bad);
  auto s_good = engine.submit(greedy_job(prompt("the good one survives"), 64));
  auto b = collect(s_bad);
  EXPECT_EQ(b.final.finish_reason, "error");
  EXPECT_NE(b.final.error.find("constraint failed on purpose"), std::string::npos);
  EXPECT_EQ(collect(s_good).text, "the good one survives");
  EXPECT_EQ(collect(engine.submit(greedy_job(prompt("and after"), 64))).text, "and after");
}

}  // namespace

namespace {

TEST(ServerRequest, DeepNestingIsRefusedBeforeParsing) {
  std::string deep = "{\"messages\":" + std::string(200000, '[') + std::string(200000, ']') + "}";
  try {
    lm::server::parse_body(deep);
    ADD_FAILURE() << "accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
  }
  // Brackets inside strings do not count.
  std::string text = "{\"a\": \"" + std::string(1000, '[') + "\"}";
  EXPECT_EQ(lm::server::parse_body(text)["a"].get<std::string>().size(), 1000u);
}

}  // namespace
