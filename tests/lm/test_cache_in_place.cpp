// KV caches write each step into the buffer they own (the slice update reuses it when no other
// array holds it) and copy it first whenever someone still reads the old contents: a fetched
// view, a saved state, a lazy slice, a held batch row. Every case is checked against the
// values written (entry (b, n, p, d) of position p carries tag + 1000 b + 100 p + 10 n + d,
// worked out on the host), and "in place" as the same buffer before and after a step. Runs on
// the default device, so MLXCPP_DEFAULT_DEVICE=gpu runs the same assertions on the GPU.
#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "common/check.h"
#include "common/temp_dir.h"
#include "mlxcpp/lm/cache.h"
#include "mlxcpp/lm/server/batch_cache.h"
#include "mlxcpp/mx.h"

namespace {

constexpr int kHeads = 2;

// Keys for positions start .. start + T - 1 of B rows, [B, kHeads, T, D], tagged.
mx::array tagged(int B, int start, int T, int D, float tag) {
  std::vector<float> v;
  for (int b = 0; b < B; ++b)
    for (int n = 0; n < kHeads; ++n)
      for (int t = 0; t < T; ++t)
        for (int d = 0; d < D; ++d)
          v.push_back(tag + 1000.0f * b + 100.0f * (start + t) + 10.0f * n + d);
  return mx::array(v, {B, kHeads, T, D});
}

// What a [B, kHeads, L, D] array holding positions pos[i] (with tags tags[i]) reads.
std::vector<double> expected(int B, const std::vector<int>& pos, const std::vector<float>& tags,
                             int D) {
  std::vector<double> v;
  for (int b = 0; b < B; ++b)
    for (int n = 0; n < kHeads; ++n)
      for (size_t i = 0; i < pos.size(); ++i)
        for (int d = 0; d < D; ++d)
          v.push_back(tags[i] + 1000.0 * b + 100.0 * pos[i] + 10.0 * n + d);
  return v;
}

std::vector<int> range(int start, int stop) {
  std::vector<int> r;
  for (int i = start; i < stop; ++i) r.push_back(i);
  return r;
}

const void* base(const mx::array& a) { return a.buffer().ptr(); }

// One decode step; returns the buffers the fetched keys and values live in (nothing of the
// step is kept, so the next step may write in place).
std::pair<const void*, const void*> step(lm::KVCacheBase& c, int B, int pos, int D, float tag = 0) {
  auto [k, v] = c.update_and_fetch(tagged(B, pos, 1, D, tag), tagged(B, pos, 1, D, tag + 0.5f));
  mx::eval({k, v});
  return {base(k), base(v)};
}

TEST(CacheInPlace, KVCacheDecodeWritesItsOwnBuffer) {
  lm::KVCache c;
  const int D = 4;
  {
    auto [k, v] = c.update_and_fetch(tagged(1, 0, 5, D, 0), tagged(1, 0, 5, D, 0.5f));
    mx::eval({k, v});
  }
  auto prev = step(c, 1, 5, D);
  for (int p = 6; p < 12; ++p) {
    auto now = step(c, 1, p, D);
    EXPECT_EQ(now.first, prev.first) << "keys copied at position " << p;
    EXPECT_EQ(now.second, prev.second) << "values copied at position " << p;
    prev = now;
  }
  auto st = c.state();
  mxtest::expect_close(st[0], expected(1, range(0, 12), std::vector<float>(12, 0), D),
                       {1, kHeads, 12, D});
  mxtest::expect_close(st[1], expected(1, range(0, 12), std::vector<float>(12, 0.5f), D),
                       {1, kHeads, 12, D});
}

TEST(CacheInPlace, HeldFetchSurvivesTrimAndRewrite) {
  // A fetched (evaluated) view of positions 0..5, then trim(2) and position 4 written again:
  // the view still reads the old position 4; the cache reads the new one.
  lm::KVCache c;
  const int D = 4;
  c.update_and_fetch(tagged(1, 0, 5, D, 0), tagged(1, 0, 5, D, 0.5f));
  auto held = c.update_and_fetch(tagged(1, 5, 1, D, 0), tagged(1, 5, 1, D, 0.5f));
  mx::eval({held.first, held.second});
  const void* held_buffer = base(held.first);
  ASSERT_EQ(c.trim(2), 2);
  auto now = step(c, 1, 4, D, 7.0f);
  EXPECT_NE(now.first, held_buffer) << "the write went into a buffer a live view reads";
  mxtest::expect_close(held.first, expected(1, range(0, 6), std::vector<float>(6, 0), D),
                       {1, kHeads, 6, D});
  mxtest::expect_close(held.second, expected(1, range(0, 6), std::vector<float>(6, 0.5f), D),
                       {1, kHeads, 6, D});
  mxtest::expect_close(c.state()[0], expected(1, range(0, 5), {0, 0, 0, 0, 7}, D),
                       {1, kHeads, 5, D});
}

TEST(CacheInPlace, LazyStateSurvivesTrimAndRewrite) {
  // A state slice not yet evaluated when the cache rewrites a position it covers.
  lm::KVCache c;
  const int D = 4;
  {
    auto [k, v] = c.update_and_fetch(tagged(1, 0, 4, D, 0), tagged(1, 0, 4, D, 0.5f));
    mx::eval({k, v});
  }
  auto lazy = c.state();
  c.trim(1);
  step(c, 1, 3, D, 3.0f);
  mxtest::expect_close(lazy[0], expected(1, range(0, 4), std::vector<float>(4, 0), D),
                       {1, kHeads, 4, D});
  mxtest::expect_close(c.state()[0], expected(1, range(0, 4), {0, 0, 0, 3}, D), {1, kHeads, 4, D});
}

TEST(CacheInPlace, SavedPromptCacheHoldsWhatWasWritten) {
  mxtest::TempDir dir("mlxcpp_cache_in_place");
  lm::PromptCache cache{std::make_shared<lm::KVCache>(), std::make_shared<lm::RotatingKVCache>(4)};
  const int D = 4;
  for (int p = 0; p < 7; ++p)
    for (auto& c : cache) step(*c, 1, p, D);
  const auto file = dir.path() / "cache.safetensors";
  lm::save_prompt_cache(file, cache);
  // Steps after the save write in place again and do not change the file.
  const void* before = step(*cache[0], 1, 7, D).first;
  EXPECT_EQ(step(*cache[0], 1, 8, D).first, before);
  auto [loaded, meta] = lm::load_prompt_cache(file);
  ASSERT_EQ(loaded.size(), 2u);
  mxtest::expect_close(loaded[0]->state()[0], expected(1, range(0, 7), std::vector<float>(7, 0), D),
                       {1, kHeads, 7, D});
  // The ring of 4 after positions 0..6: slot s holds the last position p with p % 4 == s.
  mxtest::expect_close(loaded[1]->state()[1],
                       expected(1, {4, 5, 6, 3}, std::vector<float>(4, 0.5f), D),
                       {1, kHeads, 4, D});
}

// The ring after writing position p one token at a time: slot s of max_size slots, the first
// `keep` pinned.
std::vector<int> ring_slots(int max_size, int keep, int p) {
  std::vector<int> slots(max_size);
  for (int q = 0; q <= p; ++q) {
    const int s = q < keep ? q : keep + (q - keep) % (max_size - keep);
    slots.at(static_cast<size_t>(s)) = q;
  }
  return slots;
}

TEST(CacheInPlace, RotatingRingWritesInPlaceAndHeldRingsKeepTheirSlots) {
  for (int keep : {0, 1}) {
    SCOPED_TRACE("keep " + std::to_string(keep));
    lm::RotatingKVCache c(4, keep);
    const int D = 4;
    std::pair<const void*, const void*> prev{};
    for (int p = 0; p < 9; ++p) {
      auto now = step(c, 1, p, D);
      if (p > 0) {
        EXPECT_EQ(now.first, prev.first) << "ring copied at position " << p;
      }
      prev = now;
    }
    // A held ring, then a step that overwrites one of its slots.
    auto held = c.update_and_fetch(tagged(1, 9, 1, D, 0), tagged(1, 9, 1, D, 0.5f));
    mx::eval({held.first, held.second});
    auto next = step(c, 1, 10, D);
    EXPECT_NE(next.first, base(held.first));
    mxtest::expect_close(held.first,
                         expected(1, ring_slots(4, keep, 9), std::vector<float>(4, 0), D),
                         {1, kHeads, 4, D});
    auto st = c.state();
    mxtest::expect_close(st[0], expected(1, ring_slots(4, keep, 10), std::vector<float>(4, 0), D),
                         {1, kHeads, 4, D});
    // With nothing held, the next step writes in place again.
    auto after = step(c, 1, 11, D);
    st.clear();
    EXPECT_EQ(step(c, 1, 12, D).first, after.first);
  }
}

TEST(CacheInPlace, QuantizedCacheWritesInPlaceAndCopiesWhenHeld) {
  const int D = 64;
  lm::KVQuantizer q(32, 8);
  lm::QuantizedKVCache c(32, 8);
  for (int p = 0; p < 3; ++p) step(c, 1, p, D);
  // The key codes of state() are a view of the packed buffer.
  auto packed_buffer = [&]() {
    auto st = c.state();
    mx::eval(st);
    return base(st[0]);
  };
  const void* b0 = packed_buffer();
  step(c, 1, 3, D);
  EXPECT_EQ(packed_buffer(), b0);
  step(c, 1, 4, D);
  EXPECT_EQ(packed_buffer(), b0);
  // A held state, then position 4 written again.
  auto held = c.state();
  mx::eval(held);
  auto held_codes = mxtest::to_vector(held[0]);
  ASSERT_EQ(c.trim(1), 1);
  auto [k, v] = c.update_and_fetch(tagged(1, 4, 1, D, 9.0f), tagged(1, 4, 1, D, 9.5f));
  EXPECT_EQ(mxtest::to_vector(held[0]), held_codes) << "a held state changed under a rewrite";
  // Quantization is per position: the cache reads what the quantizer makes of each one.
  auto want = mx::concatenate({tagged(1, 0, 4, D, 0), tagged(1, 4, 1, D, 9.0f)}, 2);
  EXPECT_EQ(mxtest::to_vector(k), mxtest::to_vector(q.unpack(q.pack(want))));
}

// ---------------------------------------------------------------- batch cache

TEST(CacheInPlace, RemovalOrderIsHandWorked) {
  using lm::server::BatchKVCache;
  EXPECT_EQ(BatchKVCache::order_after_removal(6, {1, 4}), (std::vector<int>{0, 5, 2, 3}));
  EXPECT_EQ(BatchKVCache::order_after_removal(4, {2, 0, 1}), (std::vector<int>{3}));
  EXPECT_EQ(BatchKVCache::order_after_removal(4, {3}), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(BatchKVCache::order_after_removal(5, {4, 3}), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(BatchKVCache::order_after_removal(3, {}), (std::vector<int>{0, 1, 2}));
  EXPECT_THROW(BatchKVCache::order_after_removal(3, {3}), std::out_of_range);
}

// Row b's keys of the test below: positions 0 .. L-1 of its own, tagged b.
mx::array row_keys(int b, int L, int D) { return tagged(1, 0, L, D, 10.0f * b); }

TEST(CacheInPlace, BatchCacheStepsAndRemovalsKeepTheBuffer) {
  const int D = 4;
  lm::server::BatchKVCache c;
  const std::vector<int> lengths{2, 5, 3, 4};
  std::vector<lm::server::BatchKVCache::Row> rows;
  for (int b = 0; b < 4; ++b)
    rows.emplace_back(std::pair{row_keys(b, lengths[b], D), row_keys(b, lengths[b], D)});
  c.add_rows(rows);
  // A step writes position row_length(b) of every row b (tag 0.25 + 10 b on the new
  // position), in place.
  std::vector<int> len = lengths;
  auto batch_step = [&](const std::vector<int>& who) {
    const int B = static_cast<int>(who.size());
    std::vector<float> v;
    for (int i = 0; i < B; ++i)
      for (int n = 0; n < kHeads; ++n)
        for (int d = 0; d < D; ++d)
          v.push_back(10.0f * who[i] + 0.25f + 100.0f * len[who[i]] + 10.0f * n + d);
    mx::array x(v, {B, kHeads, 1, D});
    auto [k, vv] = c.update_and_fetch(x, x);
    mx::eval({k, vv});
    for (int b : who) ++len[b];
    return base(k);
  };
  // Row b holds positions 0 .. len[b] - 1 with tag 10 b, then the stepped ones with 0.25 more.
  auto check_row = [&](int slot, int b) {
    std::vector<int> pos = range(0, len[b]);
    std::vector<float> tags;
    for (int p = 0; p < len[b]; ++p) tags.push_back(10.0f * b + (p >= lengths[b] ? 0.25f : 0.0f));
    mxtest::expect_close(c.row(slot).first, expected(1, pos, tags, D), {1, kHeads, len[b], D});
  };
  std::vector<int> who{0, 1, 2, 3};
  const void* b0 = batch_step(who);
  EXPECT_EQ(batch_step(who), b0);
  // Rows 0 and 1 leave: rows 2 and 3 move into their slots; no copy of the buffer.
  c.remove_rows({1, 0});
  who = {2, 3};
  ASSERT_EQ(c.rows(), 2);
  check_row(0, 2);
  check_row(1, 3);
  EXPECT_EQ(batch_step(who), b0) << "removing rows copied the buffer";
  check_row(0, 2);
  check_row(1, 3);
  // A held row (a prompt-cache entry that did not copy it) keeps its contents while the
  // removal moves another row over its slot.
  auto held = c.row(0);
  mx::eval({held.first, held.second});
  const int held_len = len[2];
  c.remove_rows({0});
  who = {3};
  EXPECT_NE(batch_step(who), b0);
  std::vector<float> tags;
  for (int p = 0; p < held_len; ++p) tags.push_back(20.0f + (p >= lengths[2] ? 0.25f : 0.0f));
  mxtest::expect_close(held.first, expected(1, range(0, held_len), tags, D),
                       {1, kHeads, held_len, D});
  check_row(0, 3);
}

// Rows reserved ahead (a burst of requests joining in rounds): a later round fills spare rows
// of the same buffer instead of copying it into a larger one, and every row reads back its own
// positions.
TEST(CacheInPlace, BatchCacheJoinsIntoReservedRows) {
  const int D = 4;
  lm::server::BatchKVCache c;
  c.reserve_rows(4);
  const std::vector<int> lengths{5, 3, 2, 4};
  auto add = [&](int from, int to) {
    std::vector<lm::server::BatchKVCache::Row> rows;
    for (int b = from; b < to; ++b)
      rows.emplace_back(std::pair{row_keys(b, lengths[b], D), row_keys(b, lengths[b], D)});
    c.add_rows(rows);
  };
  auto buffer = [&] {
    auto st = c.state();
    mx::eval(st);
    return base(st[0]);
  };
  add(0, 2);
  ASSERT_EQ(c.rows(), 2);
  EXPECT_EQ(c.row_capacity(), 4);
  const void* b0 = buffer();
  add(2, 4);  // no longer than the batch: no new padding, no new buffer
  ASSERT_EQ(c.rows(), 4);
  EXPECT_EQ(buffer(), b0) << "joining rows copied the buffer";
  for (int b = 0; b < 4; ++b) {
    mxtest::expect_close(
        c.row(b).first,
        expected(1, range(0, lengths[b]), std::vector<float>(lengths[b], 10.0f * b), D),
        {1, kHeads, lengths[b], D});
  }
  // A fifth row outgrows the buffer: a new one for the rows held (the reserve, 2 now, is
  // less), the rows kept.
  c.reserve_rows(2);
  std::vector<lm::server::BatchKVCache::Row> more;
  more.emplace_back(std::pair{row_keys(4, 1, D), row_keys(4, 1, D)});
  c.add_rows(more);
  ASSERT_EQ(c.rows(), 5);
  EXPECT_EQ(c.row_capacity(), 5);
  for (int b = 0; b < 4; ++b) {
    mxtest::expect_close(
        c.row(b).second,
        expected(1, range(0, lengths[b]), std::vector<float>(lengths[b], 10.0f * b), D),
        {1, kHeads, lengths[b], D});
  }
  mxtest::expect_close(c.row(4).first, expected(1, {0}, {40.0f}, D), {1, kHeads, 1, D});
}

}  // namespace
