// A batched prefill's cache joining a decode batch as one block
// (BatchKVCache::add_block). Values are arange ramps, so every expected row is
// the ramp slices the rows were built from.
#include <gtest/gtest.h>

#include "common/check.h"
#include "mlxcpp/lm/server/batch_cache.h"
#include "mlxcpp/mx/ops.h"

namespace {

using lm::server::BatchKVCache;

mx::array ramp(int B, int T, float from) {
  return mx::add(mx::reshape(mx::arange(0, B * 2 * T * 4, mx::float32), {B, 2, T, 4}),
                 mx::array(from));
}

mx::array rows_of(const mx::array& a, int b, int t0, int t1) {
  return mx::slice(a, {b, 0, t0, 0}, {b + 1, a.shape(1), t1, a.shape(3)});
}

bool same(const mx::array& a, const mx::array& b) {
  return a.shape() == b.shape() && mx::array_equal(a, b).item<bool>();
}

// The block of a prefill pass: row 0 held 2 positions and ran 1 token, row 1
// held 4 and ran 3 (both right-padded to T = 3 after their cached positions).
struct Block {
  mx::array a = ramp(1, 2, 100), b = ramp(1, 4, 200), t = ramp(2, 3, 300);
  BatchKVCache cache;
  Block() {
    cache.add_rows({BatchKVCache::Row{{a, a}}, BatchKVCache::Row{{b, b}}});
    cache.update_and_fetch(t, t);
  }
  // Row 0's real positions: a, then the first token of t's row 0.
  mx::array row0() const { return mx::concatenate({a, rows_of(t, 0, 0, 1)}, 2); }
  mx::array row1() const { return mx::concatenate({b, rows_of(t, 1, 0, 3)}, 2); }
};

}  // namespace

TEST(ServerBatchJoin, BlockRowsJoinLeftPaddedBesideEarlierRows) {
  Block blk;
  BatchKVCache dec;
  auto c = ramp(1, 5, 0);
  dec.add_rows({BatchKVCache::Row{{c, c}}});
  dec.add_block(blk.cache, {3, 7});
  ASSERT_EQ(dec.rows(), 3);
  EXPECT_EQ(dec.offset(), 7);  // the longest joining row
  EXPECT_EQ(dec.row_length(0), 5);
  EXPECT_EQ(dec.row_length(1), 3);
  EXPECT_EQ(dec.row_length(2), 7);
  EXPECT_TRUE(same(dec.row(0).first, c));
  EXPECT_TRUE(same(dec.row(1).first, blk.row0()));
  EXPECT_TRUE(same(dec.row(1).second, blk.row0()));
  EXPECT_TRUE(same(dec.row(2).first, blk.row1()));
  // The next decode step appends one position to every row.
  auto u = ramp(3, 1, 1000);
  auto [k, v] = dec.update_and_fetch(u, u);
  ASSERT_EQ(k.shape(), (mx::Shape{3, 2, 8, 4}));
  EXPECT_TRUE(same(dec.row(1).first, mx::concatenate({blk.row0(), rows_of(u, 1, 0, 1)}, 2)));
  EXPECT_TRUE(same(dec.row(0).second, mx::concatenate({c, rows_of(u, 0, 0, 1)}, 2)));
  // The mask hides each row's left padding: 2, 4 and 0 positions before the query.
  auto m = dec.make_mask(1, std::nullopt);
  ASSERT_EQ(m.mode, "array");
  std::vector<double> want;
  for (int pad : {2, 4, 0}) {
    for (int j = 0; j < 9; ++j) want.push_back(j >= pad ? 1 : 0);
  }
  EXPECT_EQ(mxtest::to_vector(mx::astype(*m.array, mx::int32)), want);
}

TEST(ServerBatchJoin, BlockMakesAnEmptyBatchAndShorterRowsJoinLater) {
  Block blk;
  BatchKVCache dec;
  dec.add_block(blk.cache, {3, 7});
  ASSERT_EQ(dec.rows(), 2);
  EXPECT_EQ(dec.offset(), 7);
  EXPECT_TRUE(same(dec.row(0).first, blk.row0()));
  EXPECT_TRUE(same(dec.row(1).second, blk.row1()));
  // A second block shorter than the batch: only its rows are padded.
  Block again;
  dec.add_block(again.cache, {2, 4});  // the cached positions only (a and b)
  ASSERT_EQ(dec.rows(), 4);
  EXPECT_EQ(dec.offset(), 7);
  EXPECT_TRUE(same(dec.row(2).first, again.a));
  EXPECT_TRUE(same(dec.row(3).first, again.b));
  EXPECT_TRUE(same(dec.row(1).first, blk.row1()));
}

TEST(ServerBatchJoin, BadLengthsNameTheRow) {
  Block blk;
  BatchKVCache dec;
  EXPECT_THROW(dec.add_block(blk.cache, {3}), std::invalid_argument);
  EXPECT_THROW(dec.add_block(blk.cache, {3, 9}), std::out_of_range);
  EXPECT_EQ(dec.rows(), 0);
}
