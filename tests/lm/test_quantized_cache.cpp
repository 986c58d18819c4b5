// Quantized KV caches against the float caches fed the same keys and values (within the
// affine rounding bound of half a quantization step per group), their prompt-cache files in
// mlx-lm's layout, and greedy generation on the echo model with an 8-bit KV cache against
// transformers' greedy tokens.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "common/check.h"
#include "mlxcpp/lm/cache.h"
#include "mlxcpp/lm/generate.h"
#include "mlxcpp/lm/load.h"
#include "mlxcpp/mx.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kB = 1, kN = 2, kD = 64;

mx::array random_kv(int T, uint64_t seed) {
  return mx::random::normal({kB, kN, T, kD}, mx::float32, 0.0f, 1.0f, mx::random::key(seed));
}

// One quantization step s = range / (2^bits - 1) of the widest group in x bounds MLX's affine
// error: the larger-magnitude edge is exact, the step becomes edge / round(edge / s) (at most
// s (1 + 1/n) since |edge| >= range / 2), interior values round to half of that, and the far
// edge loses at most range * 0.5 / (n / 2 + 0.5) < s to clipping.
double one_step(const std::vector<double>& x, int group, int bits) {
  double worst = 0;
  for (size_t g = 0; g + group <= x.size(); g += group) {
    auto [lo, hi] = std::minmax_element(x.begin() + g, x.begin() + g + group);
    worst = std::max(worst, static_cast<double>(*hi - *lo));
  }
  return worst / ((1 << bits) - 1) * 1.001 + 1e-6;
}

void expect_within(const mx::array& got, const mx::array& want, double bound, const char* what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  auto g = mxtest::to_vector(mx::astype(got, mx::float32));
  auto w = mxtest::to_vector(mx::astype(want, mx::float32));
  double m = 0;
  for (size_t i = 0; i < g.size(); ++i)
    m = std::max(m, static_cast<double>(std::fabs(g[i] - w[i])));
  EXPECT_LE(m, bound) << what;
}

// Feeds the same updates to a float and a quantized cache and compares every fetch.
void compare_caches(lm::KVCacheBase& flt, lm::KVCacheBase& q, int bits, int group,
                    const std::vector<int>& chunks, std::optional<int> window) {
  uint64_t seed = 1;
  for (int T : chunks) {
    auto k = random_kv(T, seed++), v = random_kv(T, seed++);
    auto mf = flt.make_mask(T, window), mq = q.make_mask(T, window);
    EXPECT_EQ(mf.mode, mq.mode);
    EXPECT_EQ(mf.window, mq.window);
    auto [kf, vf] = flt.update_and_fetch(k, v);
    auto [kq, vq] = q.update_and_fetch(k, v);
    const double bound = std::max(one_step(mxtest::to_vector(kf), group, bits),
                                  one_step(mxtest::to_vector(vf), group, bits));
    expect_within(kq, kf, bound, "keys");
    expect_within(vq, vf, bound, "values");
    EXPECT_EQ(flt.offset(), q.offset());
  }
}

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() /
            ("mlxcpp_qcache_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

}  // namespace

TEST(QuantizedKVCache, MatchesFloatCacheWithinRounding) {
  for (int bits : {4, 8}) {
    for (int group : {32, 64}) {
      lm::KVCache f;
      lm::QuantizedKVCache q(group, bits);
      compare_caches(f, q, bits, group, {5, 1, 1, 300, 1, 2}, std::nullopt);
      EXPECT_LT(q.nbytes(), f.nbytes());
    }
  }
}

TEST(QuantizedKVCache, RotatingMatchesFloatRingWithinRounding) {
  for (int keep : {0, 2}) {
    lm::RotatingKVCache f(8, keep);
    lm::QuantizedRotatingKVCache q(8, keep, 32, 8);
    // Prefill chunks, single tokens wrapping the ring, then a chunk into a full ring.
    compare_caches(f, q, 8, 32, {3, 1, 1, 1, 1, 1, 1, 1, 1, 5, 1, 1, 4, 1}, 8);
    auto qm = q.meta_state();
    ASSERT_EQ(qm.size(), 6u);
    EXPECT_EQ(f.meta_state(), std::vector<std::string>(qm.begin(), qm.begin() + 4));
  }
}

TEST(QuantizedKVCache, ToQuantizedKeepsContents) {
  lm::KVCache f;
  lm::RotatingKVCache r(8, 0);
  auto k = random_kv(11, 7), v = random_kv(11, 8);
  f.update_and_fetch(k, v);
  r.update_and_fetch(k, v);
  auto qf = f.to_quantized(32, 8);
  auto qr = r.to_quantized(32, 8);
  ASSERT_TRUE(qf && qr);
  EXPECT_EQ(qf->class_name(), "QuantizedKVCache");
  EXPECT_EQ(qr->class_name(), "QuantizedRotatingKVCache");
  EXPECT_EQ(qf->offset(), 11);
  EXPECT_EQ(qr->offset(), 11);
  EXPECT_EQ(qf->to_quantized(32, 8), nullptr);
  // The next token sees the same history (within rounding) in both forms.
  compare_caches(f, *qf, 8, 32, {1, 1}, std::nullopt);
  compare_caches(r, *qr, 8, 32, {1, 1}, 8);

  lm::PromptCache cache{std::make_shared<lm::KVCache>(), std::make_shared<lm::RotatingKVCache>(8)};
  for (auto& c : cache) c->update_and_fetch(k, v);
  EXPECT_FALSE(lm::maybe_quantize_kv_cache(cache, {std::nullopt, 32, 0}));
  EXPECT_FALSE(lm::maybe_quantize_kv_cache(cache, {8, 32, 12}));  // 11 positions < 12
  EXPECT_TRUE(lm::maybe_quantize_kv_cache(cache, {8, 32, 11}));
  EXPECT_EQ(cache[0]->class_name(), "QuantizedKVCache");
  EXPECT_EQ(cache[1]->class_name(), "QuantizedRotatingKVCache");
  EXPECT_FALSE(lm::maybe_quantize_kv_cache(cache, {8, 32, 0}));  // already quantized
}

TEST(QuantizedKVCache, GroupSizeMustDivideHeadDim) {
  lm::QuantizedKVCache q(128, 8);
  try {
    q.update_and_fetch(random_kv(1, 1), random_kv(1, 2));
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("head dimension 64"), std::string::npos) << e.what();
  }
  EXPECT_THROW(lm::QuantizedKVCache(48, 8), std::invalid_argument);
  EXPECT_THROW(lm::QuantizedKVCache(64, 7), std::invalid_argument);
}

// mlx-lm's layout: <layer>.<i>.<j> tensors (codes uint32, scales, biases) and meta state
// (offset, group_size, bits); our rotating variant adds (keep, max_size, offset, idx) first.
TEST(QuantizedKVCache, PromptCacheFileRoundTrip) {
  TempDir tmp;
  auto q = std::make_shared<lm::QuantizedKVCache>(32, 4);
  auto r = std::make_shared<lm::QuantizedRotatingKVCache>(8, 0, 64, 8);
  q->update_and_fetch(random_kv(6, 3), random_kv(6, 4));
  for (int i = 0; i < 10; ++i) r->update_and_fetch(random_kv(1, 10 + i), random_kv(1, 30 + i));
  fs::path file = tmp.path() / "cache.safetensors";
  lm::save_prompt_cache(file, {q, r}, {{"model", "m"}});

  auto [arrays, meta] = mx::load_safetensors(file.string());
  EXPECT_EQ(arrays.at("0.0.0").dtype(), mx::uint32);
  EXPECT_EQ(arrays.at("0.0.0").shape(), (mx::Shape{1, 2, 6, 64 * 4 / 32}));
  EXPECT_EQ(arrays.at("0.0.1").shape(), (mx::Shape{1, 2, 6, 2}));
  EXPECT_EQ(arrays.at("0.1.2").shape(), (mx::Shape{1, 2, 6, 2}));
  EXPECT_EQ(arrays.at("1.0.0").shape(), (mx::Shape{1, 2, 8, 64 * 8 / 32}));
  EXPECT_EQ(arrays.size(), 12u);
  EXPECT_EQ(meta.at("2.0"), "QuantizedKVCache");
  EXPECT_EQ(meta.at("0.0.0"), "6");
  EXPECT_EQ(meta.at("0.0.1"), "32");
  EXPECT_EQ(meta.at("0.0.2"), "4");
  EXPECT_EQ(meta.at("2.1"), "QuantizedRotatingKVCache");
  EXPECT_EQ(meta.at("0.1.2"), "10");
  EXPECT_EQ(meta.at("0.1.5"), "8");

  auto [loaded, user] = lm::load_prompt_cache(file);
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_EQ(user.at("model"), "m");
  for (size_t l = 0; l < 2; ++l) {
    const auto& a = l == 0 ? static_cast<lm::KVCacheBase&>(*q) : *r;
    EXPECT_EQ(loaded[l]->class_name(), a.class_name());
    EXPECT_EQ(loaded[l]->meta_state(), a.meta_state());
    auto sa = a.state(), sb = loaded[l]->state();
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t i = 0; i < sa.size(); ++i) {
      EXPECT_TRUE(mx::array_equal(sa[i], sb[i]).item<bool>()) << l << "." << i;
    }
  }
  // The loaded caches keep working: the next token fetches the same keys.
  auto k = random_kv(1, 99), v = random_kv(1, 98);
  auto [k1, v1] = q->update_and_fetch(k, v);
  auto [k2, v2] = loaded[0]->update_and_fetch(k, v);
  EXPECT_TRUE(mx::array_equal(k1, k2).item<bool>());
}

// The echo model with an 8-bit KV cache quantized from the first token (group 32 = its head
// dimension) on both its global (KVCache) and sliding-window (RotatingKVCache) layers still
// reproduces transformers' greedy tokens (margins >= 10 logits).
TEST(QuantizedKVCache, EchoModelGreedyWith8BitCache) {
  const fs::path root = fs::path(MLXCPP_TEST_DATA).parent_path().parent_path();
  auto m = lm::load((root / "models" / "gemma3-tiny-echo").string());
  json ref =
      lm::read_json_file(fs::path(MLXCPP_TEST_DATA) / "gemma3" / "copy_trained" / "reference.json");
  for (size_t i = 0; i < ref["prompt_tokens"].size(); ++i) {
    auto prompt = ref["prompt_tokens"][i].get<std::vector<int32_t>>();
    auto want = ref["greedy"][i].get<std::vector<int32_t>>();
    lm::GenerateOptions o;
    o.max_tokens = static_cast<int>(want.size());
    o.kv = {8, 32, 0};
    lm::PromptCache cache = m.model->make_cache();
    o.prompt_cache = &cache;
    std::vector<int32_t> got;
    lm::generate_step(*m.model, prompt, o, [&](int32_t t, const mx::array&) {
      got.push_back(t);
      return true;
    });
    EXPECT_EQ(got, want) << "prompt " << i;
    EXPECT_EQ(cache[0]->class_name(), "QuantizedRotatingKVCache");
    EXPECT_EQ(cache[1]->class_name(), "QuantizedKVCache");
  }
}
