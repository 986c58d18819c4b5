// The view ops of ops/shape.cpp: reshape, transpose, slice (negative steps,
// clamping), slice_update, broadcast_to, squeeze/expand_dims, and which of
// them share the input's buffer. Expected values are worked by hand from
// arange inputs (the comments give the NumPy expression they equal).
#include <cmath>
#include <stdexcept>
#include <string>

#include "common/check.h"

namespace {

using mx::array;
using mx::Shape;
using mxtest::expect_close;
using mxtest::to_vector;

template <typename F>
void expect_invalid(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    for (auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg << " lacks " << p;
  }
}

bool shares_buffer(array a, array b) {
  mx::eval(a, b);
  const char* pa = a.data<char>();
  const char* pb = b.data<char>();
  return pb >= pa && pb < pa + a.buffer_size();
}

array iota(Shape shape, mx::Dtype dtype = mx::float32) {
  int n = 1;
  for (auto d : shape) n *= d;
  return mx::reshape(mx::astype(mx::arange(n), dtype), shape);
}

TEST(Views, ReshapeOfContiguousSharesAndOfTransposedCopies) {
  array a = iota({2, 3});
  array r = mx::reshape(a, {3, 2});
  expect_close(r, {0, 1, 2, 3, 4, 5}, {3, 2});
  EXPECT_TRUE(shares_buffer(a, r));
  // np.arange(6).reshape(2, 3).T.reshape(6) = [0, 3, 1, 4, 2, 5]
  array t = mx::transpose(a);
  EXPECT_TRUE(shares_buffer(a, t));
  array rt = mx::reshape(t, {6});
  expect_close(rt, {0, 3, 1, 4, 2, 5}, {6});
  EXPECT_FALSE(shares_buffer(a, rt));
  // -1 is inferred; 3-D transpose then reshape:
  // np.arange(24).reshape(2,3,4).transpose(2,0,1).reshape(4,-1)[1] = [1,5,9,13,17,21]
  array b = mx::reshape(mx::transpose(iota({2, 3, 4}), {2, 0, 1}), {4, -1});
  EXPECT_EQ(b.shape(), (Shape{4, 6}));
  expect_close(mx::slice(b, {1, 0}, {2, 6}), {1, 5, 9, 13, 17, 21}, {1, 6});
  // A reshaped broadcast copies the repeated values.
  expect_close(mx::reshape(mx::broadcast_to(mx::array({1.0f, 2.0f}), {2, 2}), {4}), {1, 2, 1, 2},
               {4});
  // bfloat16 and bool go through the same path.
  expect_close(mx::reshape(mx::transpose(iota({2, 2}, mx::bfloat16)), {4}), {0, 2, 1, 3}, {4});
  expect_close(mx::reshape(mx::transpose(mx::array({true, false, false, false}, {2, 2})), {4}),
               {1, 0, 0, 0}, {4});
  expect_close(mx::reshape(mx::zeros({0, 3}), {3, 0}), {}, {3, 0});
  expect_invalid([&] { mx::reshape(a, {4, 2}); }, {"[reshape]", "(2, 3)", "(4, 2)"});
  expect_invalid([&] { mx::reshape(a, {-1, 4}); }, {"[reshape]", "(2, 3)"});
}

TEST(Views, SliceWithNegativeStepsAndClamping) {
  array a = iota({4, 5});
  // a[3:0:-1, 4:0:-2] = rows 3, 2, 1 and columns 4, 2
  array s = mx::slice(a, {3, 4}, {0, 0}, {-1, -2});
  expect_close(s, {19, 17, 14, 12, 9, 7}, {3, 2});
  EXPECT_TRUE(shares_buffer(a, s));
  // a[::-1] along axis 0 needs a stop before the start: -5 - 1 = -6 clamps to "before 0".
  expect_close(mx::slice(iota({4}), {-1}, {-5}, {-1}), {3, 2, 1, 0}, {4});
  // Starts and stops past the ends clamp (a[-10:10:3] of 5 -> 0, 3).
  expect_close(mx::slice(iota({5}), {-10}, {10}, {3}), {0, 3}, {2});
  // start >= stop with a positive step is empty; a[3:-1:-1] is empty too.
  expect_close(mx::slice(iota({5}), {3}, {1}), {}, {0});
  expect_close(mx::slice(iota({4}), {3}, {-1}, {-1}), {}, {0});
  // Slices of a transposed array and of a broadcast.
  array t = mx::transpose(a);  // (5, 4); t[1:4:2, 1:3] = a[1:3, 1:4:2].T
  expect_close(mx::slice(t, {1, 1}, {4, 3}, {2, 1}), {6, 11, 8, 13}, {2, 2});
  array bc = mx::broadcast_to(mx::array({1.0f, 2.0f, 3.0f}), {4, 3});
  expect_close(mx::slice(bc, {1, 2}, {3, 0}, {1, -1}), {3, 2, 3, 2}, {2, 2});
  // A slice of a slice keeps the first one's offset.
  array ss = mx::slice(mx::slice(a, {1, 1}, {4, 5}), {1, 1}, {3, 3});  // a[2:4, 2:4]
  expect_close(ss, {12, 13, 17, 18}, {2, 2});
  expect_invalid([&] { mx::slice(a, {0, 0}, {1, 1}, {1, 0}); }, {"[slice]", "zero"});
  expect_invalid([&] { mx::slice(a, {0}, {1}); }, {"[slice]", "(4, 5)"});
}

TEST(Views, SliceUpdate) {
  array a = iota({3, 4});
  // b = a.copy(); b[0:3:2, 3:0:-2] = [[-1, -2], [-3, -4]]
  array u = mx::array({-1.0f, -2.0f, -3.0f, -4.0f}, {2, 2});
  array b = mx::slice_update(a, u, {0, 3}, {3, 0}, {2, -2});
  expect_close(b, {0, -2, 2, -1, 4, 5, 6, 7, 8, -4, 10, -3}, {3, 4});
  // The source is unchanged.
  expect_close(a, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 4});
  // The update broadcasts and converts to src's dtype (7.9 -> int 7).
  array ints = mx::zeros({2, 3}, mx::int32);
  expect_close(mx::slice_update(ints, mx::array(7.9f), {0, 1}, {2, 3}), {0, 7, 7, 0, 7, 7}, {2, 3});
  // Into a transposed source.
  array t = mx::transpose(iota({2, 3}));  // [[0, 3], [1, 4], [2, 5]]
  expect_close(mx::slice_update(t, mx::array({9.0f, 9.0f}), {1, 0}, {2, 2}), {0, 3, 9, 9, 2, 5},
               {3, 2});
  // bfloat16 rounds the update: 1/3 -> 0.333984375.
  array h = mx::slice_update(mx::zeros({3}, mx::bfloat16), mx::array(1.0f / 3), {1}, {2});
  expect_close(h, {0, 0.333984375, 0}, {3});
  // An empty window is a no-op.
  expect_close(mx::slice_update(iota({3}), mx::zeros({0}), {2}, {1}), {0, 1, 2}, {3});
  expect_invalid([&] { mx::slice_update(a, mx::zeros({3}), {0, 0}, {2, 2}); }, {"(3,)", "(2, 2)"});
}

TEST(Views, BroadcastTo) {
  array x = mx::array({1.0f, 2.0f, 3.0f}, {3, 1});
  array b = mx::broadcast_to(x, {2, 3, 2});
  expect_close(b, {1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3}, {2, 3, 2});
  EXPECT_TRUE(shares_buffer(x, b));
  // Broadcast of a transposed array.
  array t = mx::transpose(iota({2, 3}));  // (3, 2)
  expect_close(mx::broadcast_to(t, {2, 3, 2}), {0, 3, 1, 4, 2, 5, 0, 3, 1, 4, 2, 5}, {2, 3, 2});
  expect_close(mx::broadcast_to(mx::zeros({1, 3}), {0, 3}), {}, {0, 3});
  expect_invalid([&] { mx::broadcast_to(x, {3, 2, 4}); }, {"(3, 1)", "(3, 2, 4)"});
  expect_invalid([&] { mx::broadcast_to(x, {2}); }, {"[broadcast_to]", "(3, 1)", "(2,)"});
  expect_invalid(
      [] {
        mx::broadcast_arrays({mx::zeros({2, 3}), mx::zeros({3, 2})});
      },
      {"[broadcast_arrays]", "(2, 3)", "(3, 2)"});
}

TEST(Views, SqueezeExpandDimsMoveaxis) {
  array a = iota({1, 3, 1});
  EXPECT_EQ(mx::squeeze(a).shape(), (Shape{3}));
  EXPECT_EQ(mx::squeeze(a, -1).shape(), (Shape{1, 3}));
  EXPECT_TRUE(shares_buffer(a, mx::squeeze(a)));
  EXPECT_EQ(mx::expand_dims(iota({2, 3}), {0, -1}).shape(), (Shape{1, 2, 3, 1}));
  // np.moveaxis(np.arange(24).reshape(2,3,4), 0, -1).shape == (3, 4, 2), [0, 1] == [1, 13]
  array m = mx::moveaxis(iota({2, 3, 4}), 0, -1);
  EXPECT_EQ(m.shape(), (Shape{3, 4, 2}));
  expect_close(mx::slice(m, {0, 1, 0}, {1, 2, 2}), {1, 13}, {1, 1, 2});
  expect_close(mx::swapaxes(iota({2, 3}), -1, 0), {0, 3, 1, 4, 2, 5}, {3, 2});
  expect_invalid([&] { mx::squeeze(a, 1); }, {"[squeeze]", "axis 1", "(1, 3, 1)"});
  expect_invalid([&] { mx::expand_dims(a, 4); }, {"[expand_dims]", "axis 4"});
  expect_invalid([&] { mx::transpose(a, {0, 1}); }, {"[transpose]"});
  expect_invalid([&] { mx::transpose(a, {0, 1, 1}); }, {"[transpose]", "repeated"});
}

TEST(Views, FlattenAndUnflatten) {
  array a = iota({2, 3, 4});
  EXPECT_EQ(mx::flatten(a, 1, 2).shape(), (Shape{2, 12}));
  EXPECT_EQ(mx::flatten(mx::array(3.0f)).shape(), (Shape{1}));
  EXPECT_EQ(mx::unflatten(a, -1, {2, -1}).shape(), (Shape{2, 3, 2, 2}));
  // Flattening a transposed array reads in its logical order.
  expect_close(mx::flatten(mx::transpose(iota({2, 2}))), {0, 2, 1, 3}, {4});
  expect_invalid([&] { mx::flatten(a, 2, 1); }, {"[flatten]"});
}

// The error names broadcast_to itself and both shapes.
TEST(Views, BroadcastToErrorNamesTheOp) {
  expect_invalid(
      [] {
        mx::broadcast_to(mx::zeros({3, 1}), {3, 2, 4});
      },
      {"[broadcast_to]", "(3, 1)", "(3, 2, 4)"});
}

// float64 results keep float64 precision (a float32 computation gives 1/6 as 0.1666666716337204).
TEST(Views, LinspaceFloat64KeepsDoublePrecision) {
  std::vector<double> want;
  for (int i = 0; i < 7; ++i) want.push_back(i / 6.0);
  expect_close(mx::linspace(0, 1, 7, mx::float64), want, {7}, 0, 1e-15);
}

}  // namespace
