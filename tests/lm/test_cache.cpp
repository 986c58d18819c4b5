// KV caches: attention through a cache, fed in chunks, must equal attention
// over the whole sequence with the explicit visibility mask of
// tools/reference/cache_refs.py (tests/data/lm/cache_refs.json); plus growth,
// trimming and prompt-cache files in mlx-lm's layout (formats.md §5).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "common/check.h"
#include "common/temp_dir.h"
#include "mlxcpp/lm/cache.h"
#include "mlxcpp/mx.h"
#include "mlxcpp/mx/io.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const json& refs() {
  static json j = [] {
    std::ifstream f(std::string(MLXCPP_TEST_DATA) + "/lm/cache_refs.json");
    return json::parse(f);
  }();
  return j;
}

mx::array from64(const json& ints, const mx::Shape& shape) {
  std::vector<float> v;
  for (const auto& x : ints) v.push_back(x.get<float>() / 64.0f);
  return mx::array(v, shape);
}

mx::array seq(const mx::array& a, int start, int stop) {
  return mx::slice(a, {0, 0, start, 0}, {a.shape(0), a.shape(1), stop, a.shape(3)});
}

std::string tmp_path(const std::string& name) {
  return (mxtest::process_temp_dir("mlxcpp_cache") / name).string();
}

std::shared_ptr<lm::KVCacheBase> make(const json& c) {
  if (c["kind"] == "kv") return std::make_shared<lm::KVCache>();
  return std::make_shared<lm::RotatingKVCache>(c["max_size"].get<int>(), c["keep"].get<int>());
}

std::optional<int> window_of(const json& c) {
  if (c["window"].is_null()) return std::nullopt;
  return c["window"].get<int>();
}

std::string describe(const json& c) {
  return c["kind"].get<std::string>() + " max_size " + std::to_string(c["max_size"].get<int>()) +
         " keep " + std::to_string(c["keep"].get<int>()) + " window " +
         (c["window"].is_null() ? std::string("none") : std::to_string(c["window"].get<int>()));
}

// Runs chunks [from, to) of `chunks` through `cache` starting at position `pos`,
// appending each chunk's attention output to `outs`.
int run_chunks(lm::KVCacheBase& cache, const json& c, const std::vector<int>& chunks, size_t from,
               size_t to, int pos, std::vector<mx::array>& outs) {
  const json& r = refs();
  mx::array q = from64(r["q64"], r["shape_q"].get<mx::Shape>());
  mx::array k = from64(r["k64"], r["shape_kv"].get<mx::Shape>());
  mx::array v = from64(r["v64"], r["shape_kv"].get<mx::Shape>());
  float scale = r["scale"].get<float>();
  for (size_t i = from; i < to; ++i) {
    int T = chunks[i];
    EXPECT_EQ(cache.offset(), pos);
    lm::AttentionMask mask = cache.make_mask(T, window_of(c));
    auto [K, V] = cache.update_and_fetch(seq(k, pos, pos + T), seq(v, pos, pos + T));
    if (c["kind"] == "rotating") {
      // Never more than a full window before the chunk plus the chunk.
      int M = c["max_size"].get<int>();
      EXPECT_LE(K.shape(2), std::max(M, M - 1 + T)) << describe(c);
    }
    outs.push_back(lm::scaled_dot_product_attention(seq(q, pos, pos + T), K, V, scale, mask));
    mx::eval(outs.back());
    pos += T;
    EXPECT_EQ(cache.offset(), pos);
  }
  return pos;
}

std::vector<std::vector<int>> schedules() {
  const int N = refs()["shape_q"][2].get<int>();
  auto fill = [&](std::vector<int> s) {
    int sum = std::accumulate(s.begin(), s.end(), 0);
    if (sum < N) s.push_back(N - sum);
    return s;
  };
  return {
      std::vector<int>(N, 1),
      fill(std::vector<int>(N / 3, 3)),
      fill(std::vector<int>(N / 7, 7)),
      fill({20, 1, 1, 3, 1, 7, 1, 2}),
      fill({1, 2, 1, 1, 5, 1, 9, 1, 1, 1, 8, 1, 1, 1}),
      fill({5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 1, 1}),
      {N},
  };
}

std::string show(const std::vector<int>& s) {
  std::string r;
  for (int x : s) r += std::to_string(x) + " ";
  return r;
}

TEST(Cache, ChunkedAttentionEqualsFullSequenceReference) {
  const json& r = refs();
  const mx::Shape qshape = r["shape_q"].get<mx::Shape>();
  for (const auto& c : r["cases"]) {
    for (const auto& chunks : schedules()) {
      SCOPED_TRACE(describe(c) + ", chunks " + show(chunks));
      auto cache = make(c);
      std::vector<mx::array> outs;
      run_chunks(*cache, c, chunks, 0, chunks.size(), 0, outs);
      mxtest::expect_close(mx::concatenate(outs, 2), c["expected"].get<std::vector<double>>(),
                           qshape, 1e-5, 1e-5);
    }
  }
}

TEST(Cache, SaveLoadMidwayThenContinueEqualsReference) {
  const json& r = refs();
  const mx::Shape qshape = r["shape_q"].get<mx::Shape>();
  auto chunks = schedules()[4];
  std::string file = tmp_path("midway.safetensors");
  for (const auto& c : r["cases"]) {
    for (size_t split : {size_t(1), size_t(3), size_t(6), size_t(9), size_t(12)}) {
      SCOPED_TRACE(describe(c) + ", split after chunk " + std::to_string(split));
      // Two layers (a plain one and the case's) so layer indices matter.
      lm::PromptCache pc{std::make_shared<lm::KVCache>(), make(c)};
      std::vector<mx::array> outs0, outs;
      int pos = run_chunks(*pc[0],
                           json{{"kind", "kv"}, {"max_size", 0}, {"keep", 0}, {"window", nullptr}},
                           chunks, 0, split, 0, outs0);
      run_chunks(*pc[1], c, chunks, 0, split, 0, outs);
      lm::save_prompt_cache(file, pc, {{"model", "some/repo"}, {"tokenizer_config", "{}"}});
      auto [loaded, meta] = lm::load_prompt_cache(file);
      ASSERT_EQ(loaded.size(), 2u);
      EXPECT_EQ(meta, (std::map<std::string, std::string>{{"model", "some/repo"},
                                                          {"tokenizer_config", "{}"}}));
      EXPECT_EQ(loaded[1]->class_name(), pc[1]->class_name());
      EXPECT_EQ(loaded[1]->meta_state(), pc[1]->meta_state());
      EXPECT_EQ(loaded[1]->offset(), pos);
      run_chunks(*loaded[1], c, chunks, split, chunks.size(), pos, outs);
      mxtest::expect_close(mx::concatenate(outs, 2), c["expected"].get<std::vector<double>>(),
                           qshape, 1e-5, 1e-5);
    }
  }
}

// Keys whose every element is the position, to read back what a cache holds.
mx::array marked(const std::vector<int>& positions) {
  std::vector<float> v;
  for (int p : positions) v.insert(v.end(), {float(p), float(p)});
  return mx::array(v, {1, 1, static_cast<int>(positions.size()), 2});
}

std::vector<int> positions_of(const mx::array& keys) {
  auto v = mxtest::to_vector(keys);
  std::vector<int> out;
  for (size_t i = 0; i < v.size(); i += 2) out.push_back(static_cast<int>(v[i]));
  return out;
}

std::vector<int> range(int a, int b) {
  std::vector<int> r(b - a);
  std::iota(r.begin(), r.end(), a);
  return r;
}

TEST(Cache, KVCacheGrowsInStepsOf256) {
  lm::KVCache c;
  const size_t per_pos = 2 * 2 * sizeof(float);  // keys + values, D = 2
  auto [k1, v1] = c.update_and_fetch(marked({0}), marked({0}));
  EXPECT_EQ(k1.shape(), (mx::Shape{1, 1, 1, 2}));
  EXPECT_EQ(c.nbytes(), 256 * per_pos);
  for (int p = 1; p < 256; ++p) c.update_and_fetch(marked({p}), marked({p}));
  EXPECT_EQ(c.nbytes(), 256 * per_pos);
  auto [k2, v2] = c.update_and_fetch(marked({256}), marked({256}));
  EXPECT_EQ(c.nbytes(), 512 * per_pos);
  EXPECT_EQ(positions_of(k2), range(0, 257));
  EXPECT_EQ(positions_of(v2), range(0, 257));
  EXPECT_EQ(c.offset(), 257);

  // A 300-token chunk takes two steps at once; a later chunk that overflows
  // keeps only the valid prefix and adds ceil(T / 256) steps (mlx-lm).
  lm::KVCache d;
  d.update_and_fetch(marked(range(0, 200)), marked(range(0, 200)));
  EXPECT_EQ(d.nbytes(), 256 * per_pos);
  auto [k3, v3] = d.update_and_fetch(marked(range(200, 300)), marked(range(200, 300)));
  EXPECT_EQ(d.nbytes(), (200 + 256) * per_pos);
  EXPECT_EQ(positions_of(k3), range(0, 300));
  lm::KVCache e;
  e.update_and_fetch(marked(range(0, 300)), marked(range(0, 300)));
  EXPECT_EQ(e.nbytes(), 512 * per_pos);
  EXPECT_EQ(e.state()[0].shape(2), 300);
}

TEST(Cache, KVCacheTrim) {
  lm::KVCache c;
  c.update_and_fetch(marked(range(0, 10)), marked(range(0, 10)));
  EXPECT_TRUE(c.is_trimmable());
  EXPECT_EQ(c.trim(3), 3);
  EXPECT_EQ(c.offset(), 7);
  auto [k, v] = c.update_and_fetch(marked({70, 71}), marked({70, 71}));
  EXPECT_EQ(positions_of(k), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 70, 71}));
  EXPECT_EQ(c.trim(100), 9);
  EXPECT_EQ(c.offset(), 0);
  EXPECT_TRUE(c.empty());
  EXPECT_THROW(c.trim(-1), std::invalid_argument);
}

TEST(Cache, KVCacheMaskForms) {
  lm::KVCache c;
  auto m = c.make_mask(5, std::nullopt);
  EXPECT_EQ(m.mode, "causal");
  EXPECT_FALSE(m.window);
  m = c.make_mask(1, 4);
  EXPECT_EQ(m.mode, "");
  EXPECT_EQ(m.window, 4);
  m = c.make_mask(3, 4);
  EXPECT_EQ(m.mode, "causal");
  EXPECT_EQ(m.window, 4);
}

TEST(Cache, RotatingKVCacheRingLayoutAndMasks) {
  // max_size 4, keep 0: single tokens fill then wrap the ring.
  lm::RotatingKVCache c(4);
  for (int p = 0; p < 4; ++p) c.update_and_fetch(marked({p}), marked({p}));
  auto m = c.make_mask(1, 4);
  EXPECT_EQ(m.mode, "");  // the whole ring is the window: no mask
  EXPECT_FALSE(m.window);
  EXPECT_FALSE(m.array);
  auto [k, v] = c.update_and_fetch(marked({4}), marked({4}));
  EXPECT_EQ(positions_of(k), (std::vector<int>{4, 1, 2, 3}));
  // Three at once: the last max_size - 1 = 3 positions plus the new ones, in order.
  m = c.make_mask(3, 4);
  EXPECT_EQ(m.mode, "causal");
  EXPECT_EQ(m.window, 4);
  auto [k2, v2] = c.update_and_fetch(marked({5, 6, 7}), marked({5, 6, 7}));
  EXPECT_EQ(positions_of(k2), (std::vector<int>{2, 3, 4, 5, 6, 7}));
  // The next single token cuts back to max_size.
  auto [k3, v3] = c.update_and_fetch(marked({8}), marked({8}));
  EXPECT_EQ(positions_of(k3), (std::vector<int>{8, 5, 6, 7}));
  EXPECT_EQ(c.nbytes(), 2 * 4 * 2 * sizeof(float));

  // keep 2: pinned positions survive every wrap.
  lm::RotatingKVCache p(5, 2);
  for (int i = 0; i < 9; ++i) p.update_and_fetch(marked({i}), marked({i}));
  auto [k4, v4] = p.update_and_fetch(marked({9}), marked({9}));
  EXPECT_EQ(positions_of(k4), (std::vector<int>{0, 1, 8, 9, 7}));
  auto [k5, v5] = p.update_and_fetch(marked({10, 11}), marked({10, 11}));
  EXPECT_EQ(positions_of(k5), (std::vector<int>{0, 1, 8, 9, 10, 11}));

  EXPECT_THROW(lm::RotatingKVCache(0), std::invalid_argument);
  EXPECT_THROW(lm::RotatingKVCache(4, 4), std::invalid_argument);
  EXPECT_THROW(lm::RotatingKVCache(4, -1), std::invalid_argument);
}

TEST(Cache, RotatingKVCacheTrimOnlyBeforeFull) {
  lm::RotatingKVCache c(8);
  c.update_and_fetch(marked(range(0, 5)), marked(range(0, 5)));
  EXPECT_TRUE(c.is_trimmable());
  EXPECT_EQ(c.trim(2), 2);
  EXPECT_EQ(c.offset(), 3);
  auto [k, v] = c.update_and_fetch(marked({30}), marked({30}));
  EXPECT_EQ(positions_of(k), (std::vector<int>{0, 1, 2, 30}));
  auto [k2, v2] = c.update_and_fetch(marked({40, 41}), marked({40, 41}));
  EXPECT_EQ(positions_of(k2), (std::vector<int>{0, 1, 2, 30, 40, 41}));
  c.update_and_fetch(marked({50, 51}), marked({50, 51}));  // offset 8 = max_size
  EXPECT_FALSE(c.is_trimmable());
  EXPECT_EQ(c.trim(1), 0);
  EXPECT_EQ(c.offset(), 8);

  lm::PromptCache pc{std::make_shared<lm::KVCache>(), std::make_shared<lm::RotatingKVCache>(4)};
  for (auto& l : pc) l->update_and_fetch(marked(range(0, 3)), marked(range(0, 3)));
  EXPECT_TRUE(lm::can_trim_prompt_cache(pc));
  EXPECT_EQ(lm::trim_prompt_cache(pc, 2), 2);
  EXPECT_EQ(pc[0]->offset(), 1);
  EXPECT_EQ(pc[1]->offset(), 1);
  for (auto& l : pc) l->update_and_fetch(marked(range(1, 5)), marked(range(1, 5)));
  EXPECT_FALSE(lm::can_trim_prompt_cache(pc));
  EXPECT_EQ(lm::trim_prompt_cache(pc, 1), 0);
  EXPECT_EQ(pc[0]->offset(), 5);  // untouched
  EXPECT_EQ(lm::prompt_cache_nbytes(pc), pc[0]->nbytes() + pc[1]->nbytes());
}

TEST(Cache, SavedFileHasMlxLmLayout) {
  lm::PromptCache pc{std::make_shared<lm::KVCache>(), std::make_shared<lm::RotatingKVCache>(4, 1)};
  for (auto& l : pc) {
    for (int p = 0; p < 6; ++p) l->update_and_fetch(marked({p}), marked({p}));
  }
  std::string file = tmp_path("layout.safetensors");
  lm::save_prompt_cache(file, pc, {{"model", "m"}});
  auto [arrays, meta] = mx::load_safetensors(file);
  std::set<std::string> keys;
  for (auto& [k, a] : arrays) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"0.0", "0.1", "1.0", "1.1"}));
  EXPECT_EQ(positions_of(arrays.at("0.0")), range(0, 6));  // trimmed to offset
  // Ring in physical order: keep 1, ring slots 1..3 hold 4, 5, 3 (next write at 3).
  EXPECT_EQ(positions_of(arrays.at("1.1")), (std::vector<int>{0, 4, 5, 3}));
  std::map<std::string, std::string> m(meta.begin(), meta.end());
  EXPECT_EQ(m, (std::map<std::string, std::string>{{"0.0", ""},
                                                   {"0.1.0", "1"},
                                                   {"0.1.1", "4"},
                                                   {"0.1.2", "6"},
                                                   {"0.1.3", "3"},
                                                   {"1.model", "m"},
                                                   {"2.0", "KVCache"},
                                                   {"2.1", "RotatingKVCache"}}));
}

// A file written by hand in mlx-lm's layout: KVCache of 3 positions and a
// RotatingKVCache(max_size 4, keep 0) at offset 6 with _idx 2, whose ring holds
// positions [4, 5, 2, 3] (temporal order [2, 3, 4, 5] by formats.md §5).
TEST(Cache, LoadsHandMadeMlxLmFile) {
  std::string file = tmp_path("handmade.safetensors");
  mx::save_safetensors(file,
                       {{"0.0", marked({0, 1, 2})},
                        {"0.1", marked({0, 1, 2})},
                        {"1.0", marked({4, 5, 2, 3})},
                        {"1.1", marked({4, 5, 2, 3})}},
                       {{"0.0", ""},
                        {"0.1.0", "0"},
                        {"0.1.1", "4"},
                        {"0.1.2", "6"},
                        {"0.1.3", "2"},
                        {"1.model", "mlx-community/x"},
                        {"1.tokenizer_config", "{\"a\": 1}"},
                        {"2.0", "KVCache"},
                        {"2.1", "RotatingKVCache"}});
  auto [pc, meta] = lm::load_prompt_cache(file);
  ASSERT_EQ(pc.size(), 2u);
  EXPECT_EQ(meta.at("model"), "mlx-community/x");
  EXPECT_EQ(meta.at("tokenizer_config"), "{\"a\": 1}");
  EXPECT_EQ(pc[0]->class_name(), "KVCache");
  EXPECT_EQ(pc[0]->offset(), 3);
  auto [k0, v0] = pc[0]->update_and_fetch(marked({3}), marked({3}));
  EXPECT_EQ(positions_of(k0), range(0, 4));
  auto* rot = dynamic_cast<lm::RotatingKVCache*>(pc[1].get());
  ASSERT_NE(rot, nullptr);
  EXPECT_EQ(rot->max_size(), 4);
  EXPECT_EQ(rot->keep(), 0);
  EXPECT_EQ(rot->offset(), 6);
  EXPECT_FALSE(rot->is_trimmable());
  auto [k1, v1] = rot->update_and_fetch(marked({6}), marked({6}));
  EXPECT_EQ(positions_of(k1), (std::vector<int>{4, 5, 6, 3}));
  auto [k2, v2] = rot->update_and_fetch(marked({7, 8}), marked({7, 8}));
  EXPECT_EQ(positions_of(v2), (std::vector<int>{4, 5, 6, 7, 8}));
}

void expect_load_error(const mx::ArrayMap& arrays, const mx::StringMap& meta,
                       const std::string& needle) {
  std::string file = tmp_path("bad.safetensors");
  mx::save_safetensors(file, arrays, meta);
  try {
    lm::load_prompt_cache(file);
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(file), std::string::npos) << what;
    EXPECT_NE(what.find(needle), std::string::npos) << what;
  }
}

TEST(Cache, LoadErrorsNameFileAndProblem) {
  mx::array k = marked({0, 1});
  expect_load_error({{"0.0", k}, {"0.1", k}}, {{"0.0", ""}, {"2.0", "MambaCache"}},
                    "unknown cache class 'MambaCache'");
  expect_load_error({{"0.0", k}}, {{"0.0", ""}, {"2.0", "KVCache"}}, "missing tensor '0.1'");
  expect_load_error({{"0.1", k}}, {{"0.0", ""}, {"2.0", "KVCache"}}, "missing tensor '0.0'");
  expect_load_error(
      {{"0.0", k}, {"0.1", k}},
      {{"0.0.0", "0"}, {"0.0.1", "4x"}, {"0.0.2", "2"}, {"0.0.3", "2"}, {"2.0", "RotatingKVCache"}},
      "expected a decimal integer, got '4x'");
  expect_load_error({{"0.0", k}, {"0.1", k}},
                    {{"0.0.0", "0"}, {"0.0.1", "4"}, {"0.0.2", "2"}, {"2.0", "RotatingKVCache"}},
                    "meta state must hold 4 integers");
  expect_load_error(
      {{"0.0", k}, {"0.1", k}},
      {{"0.0.0", "0"}, {"0.0.1", "4"}, {"0.0.2", "9"}, {"0.0.3", "2"}, {"2.0", "RotatingKVCache"}},
      "stored positions do not fit the offset");
  expect_load_error({{"0.0", k}, {"0.1", k}, {"1.0", k}, {"1.1", k}},
                    {{"0.0", ""}, {"2.0", "KVCache"}}, "names layer 1 but the file has 1 layers");
  expect_load_error({{"0.0", k}, {"0.1", k}}, {{"0.1", ""}, {"2.1", "KVCache"}},
                    "no class name (metadata '2.0') for layer 0");
  expect_load_error({{"0.0", k}, {"0.1", marked({0, 1, 2})}}, {{"0.0", ""}, {"2.0", "KVCache"}},
                    "equal B, Nkv and T");
  EXPECT_THROW(lm::load_prompt_cache(tmp_path("does_not_exist.safetensors")), std::runtime_error);
}

TEST(Cache, UpdateShapeErrors) {
  lm::KVCache c;
  c.update_and_fetch(marked({0}), marked({0}));
  EXPECT_THROW(c.update_and_fetch(mx::zeros({1, 2, 1, 2}), mx::zeros({1, 2, 1, 2})),
               std::invalid_argument);
  EXPECT_THROW(c.update_and_fetch(mx::zeros({1, 1, 2, 2}), mx::zeros({1, 1, 1, 2})),
               std::invalid_argument);
  EXPECT_THROW(c.update_and_fetch(mx::zeros({1, 2}), mx::zeros({1, 2})), std::invalid_argument);
}

}  // namespace
