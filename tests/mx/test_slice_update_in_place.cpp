// mx::slice_update_in_place: the values of slice_update (checked against hand-written
// expectations), written into src's own buffer, which the result shares.
#include <gtest/gtest.h>

#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/transforms.h"

namespace {

TEST(SliceUpdateInPlace, WritesTheWindowAtADeviceStart) {
  // src [1, 2, 4, 1] = 0..7; update [1, 2, 1, 1] = {100, 200} at position 2 of axis 2.
  auto src = mx::reshape(mx::arange(0, 8, mx::int32), {1, 2, 4, 1});
  src = mx::astype(src, mx::float32);
  mx::eval(src);
  auto upd = mx::array(std::vector<float>{100, 200}, {1, 2, 1, 1});
  auto start = mx::remainder(mx::array(std::vector<int32_t>{6}, {1}, mx::int32),
                             mx::array(4, mx::int32));  // computed: 6 % 4 = 2
  auto out = mx::slice_update_in_place(src, upd, start, {2});
  mx::eval(out);
  mxtest::expect_close(out, {0, 1, 100, 3, 4, 5, 200, 7}, {1, 2, 4, 1}, 0, 0);
  // The result is src's buffer: no copy was made.
  EXPECT_EQ(out.data<float>(), src.data<float>());
  // A chain of steps keeps writing the same buffer.
  auto again = mx::slice_update_in_place(out, mx::array(std::vector<float>{-1, -2}, {1, 2, 1, 1}),
                                         mx::array(std::vector<int32_t>{0}, {1}, mx::int32), {2});
  mx::eval(again);
  mxtest::expect_close(again, {-1, 1, 100, 3, -2, 5, 200, 7}, {1, 2, 4, 1}, 0, 0);
  EXPECT_EQ(again.data<float>(), src.data<float>());
}

TEST(SliceUpdateInPlace, SameValuesAsSliceUpdate) {
  auto src = mx::astype(mx::reshape(mx::arange(0, 24, mx::int32), {2, 3, 4}), mx::float32);
  auto upd = mx::full({2, 1, 2}, mx::array(-5.0f));
  auto start = mx::array(std::vector<int32_t>{1, 2}, {2}, mx::int32);
  auto copy = mx::slice_update(src, upd, start, {1, 2});
  mx::eval(copy);
  auto expected = mxtest::to_vector(copy);
  mx::eval(src);
  auto in_place = mx::slice_update_in_place(src, upd, start, {1, 2});
  mx::eval(in_place);
  mxtest::expect_close(in_place, expected, {2, 3, 4}, 0, 0);
  // Positions [b, 1, 2..3] hold -5: b * 12 + 4 + {2, 3}.
  for (int i : {6, 7, 18, 19}) EXPECT_EQ(expected[i], -5.0);
  EXPECT_EQ(expected[5], 5.0);
}

TEST(SliceUpdateInPlace, RefusesAStridedSource) {
  auto src = mx::transpose(mx::zeros({4, 3}, mx::float32), {1, 0});
  mx::eval(src);
  auto out = mx::slice_update_in_place(src, mx::ones({1, 1}, mx::float32),
                                       mx::array(std::vector<int32_t>{0}, {1}, mx::int32), {0});
  EXPECT_THROW(mx::eval(out), std::invalid_argument);
}

}  // namespace
