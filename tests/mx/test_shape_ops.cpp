// concatenate, stack, split, meshgrid, repeat, tile, pad, diag, diagonal, roll,
// eye/identity/tri/tril/triu, as_strided, view and the dynamic slices.
// Expected values come from NumPy (tools/reference/shape_sort_refs.py) or are
// worked by hand in the comments.
#include <cstring>
#include <stdexcept>
#include <string>

#include "mlxcpp/mx/primitive.h"
#include "mx/shape_sort_refs.h"

namespace {

using mx::array;
using mx::Shape;
using mxtest::expect_close;
using mxtest::expect_ref;
using mxtest::ref_input;
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

// Whether `b` reads the same buffer as `a` (a view, not a copy).
bool shares_buffer(array a, array b) {
  mx::eval(a, b);
  const char* pa = a.data<char>();
  const char* pb = b.data<char>();
  return pb >= pa && pb < pa + a.buffer_size();
}

// ---------------------------------------------------------------- concatenate / stack / split

TEST(Concatenate, MatchesNumpy) {
  expect_ref(mx::concatenate({ref_input("concat_axis1", 0), ref_input("concat_axis1", 1)}, 1),
             "concat_axis1");
  expect_ref(mx::concatenate({ref_input("concat_axis_neg2", 0), ref_input("concat_axis_neg2", 1),
                              ref_input("concat_axis_neg2", 2)},
                             -2),
             "concat_axis_neg2");
  expect_ref(mx::concatenate({ref_input("concat_promote", 0), ref_input("concat_promote", 1)}),
             "concat_promote");
  expect_ref(mx::concatenate({ref_input("concat_flat", 0), ref_input("concat_flat", 1)}),
             "concat_flat");
  // A transposed (strided) input is read through its strides.
  expect_ref(
      mx::concatenate(
          {mx::transpose(ref_input("concat_transposed", 0)), ref_input("concat_transposed", 1)}, 1),
      "concat_transposed");
}

TEST(Concatenate, DtypesAndEmpty) {
  array a = mx::array({1.5f, -2.25f}, mx::bfloat16);
  array b = mx::array({true, false, true});
  array c = mx::concatenate({a, b});
  EXPECT_EQ(c.dtype(), mx::bfloat16);
  expect_close(c, {1.5, -2.25, 1, 0, 1}, {5});
  array bools = mx::concatenate({mx::array({true}), mx::array({false, true})});
  EXPECT_EQ(bools.dtype(), mx::bool_);
  expect_close(bools, {1, 0, 1}, {3});
  array e = mx::concatenate({mx::zeros({0, 2}), mx::ones({2, 2}), mx::zeros({0, 2})}, 0);
  expect_close(e, {1, 1, 1, 1}, {2, 2});
  expect_close(mx::concatenate({mx::zeros({2, 0}), mx::zeros({2, 0})}, 1), {}, {2, 0});
}

TEST(Concatenate, Errors) {
  expect_invalid(
      [] {
        mx::concatenate({mx::zeros({2, 3}), mx::zeros({3, 3})}, 1);
      },
      {"[concatenate]", "(2, 3)", "(3, 3)", "axis 1"});
  expect_invalid(
      [] {
        mx::concatenate({mx::zeros({2, 3}), mx::zeros({2})}, 0);
      },
      {"[concatenate]", "(2, 3)", "(2,)"});
  expect_invalid([] { mx::concatenate({mx::zeros({2})}, 1); }, {"[concatenate]", "axis 1"});
  expect_invalid([] { mx::concatenate(std::vector<array>{}, 0); }, {"[concatenate]"});
}

TEST(Stack, MatchesNumpy) {
  std::vector<array> xs{ref_input("stack_axis1", 0), ref_input("stack_axis1", 1),
                        ref_input("stack_axis1", 2)};
  expect_ref(mx::stack(xs, 1), "stack_axis1");
  expect_ref(mx::stack(xs, -1), "stack_axis_neg1");
  expect_close(mx::stack({mx::array(1), mx::array(2)}), {1, 2}, {2});
  expect_invalid([] { mx::stack({mx::zeros({2}), mx::zeros({3})}); }, {"[stack]", "(2,)", "(3,)"});
  expect_invalid([] { mx::stack({mx::zeros({2})}, 3); }, {"[stack]", "axis 3"});
}

TEST(Split, MatchesNumpy) {
  array a = ref_input("split_3_axis0", 0);
  auto check = [&](const std::vector<array>& parts, const std::string& name, size_t n) {
    ASSERT_EQ(parts.size(), n) << name;
    for (size_t i = 0; i < n; ++i) expect_ref(parts[i], name, static_cast<int>(i));
  };
  check(mx::split(a, 3), "split_3_axis0", 3);
  check(mx::split(a, Shape{1, 3}, 1), "split_idx_axis1", 3);
  check(mx::split(a, Shape{-1}, 0), "split_idx_neg", 2);
  check(mx::split(a, Shape{3, 1}, -1), "split_idx_decreasing", 3);
  // Splits are views of the input.
  EXPECT_TRUE(shares_buffer(a, mx::split(a, 3)[1]));
  expect_invalid([&] { mx::split(a, 4, 0); }, {"[split]", "(6, 4)", "4 equal parts", "axis 0"});
  expect_invalid([&] { mx::split(a, 2, 2); }, {"[split]", "axis 2"});
}

TEST(Meshgrid, MatchesNumpy) {
  array x = ref_input("meshgrid_ij3", 0), y = ref_input("meshgrid_ij3", 1),
        z = ref_input("meshgrid_ij3", 2);
  auto xy = mx::meshgrid({x, y});
  ASSERT_EQ(xy.size(), 2u);
  expect_ref(xy[0], "meshgrid_xy", 0);
  expect_ref(xy[1], "meshgrid_xy", 1);
  auto ij = mx::meshgrid({x, y, z}, false, "ij");
  for (int i = 0; i < 3; ++i) expect_ref(ij[i], "meshgrid_ij3", i);
  auto sp = mx::meshgrid({x, y, z}, true, "xy");
  for (int i = 0; i < 3; ++i) expect_ref(sp[i], "meshgrid_xy3_sparse", i);
  expect_invalid([&] { mx::meshgrid({x, y}, false, "yx"); }, {"[meshgrid]", "yx"});
}

// ---------------------------------------------------------------- repeat / tile / pad

TEST(Repeat, MatchesNumpy) {
  array a = ref_input("repeat_axis1", 0);
  expect_ref(mx::repeat(a, 2, 1), "repeat_axis1");
  expect_ref(mx::repeat(a, 3, -2), "repeat_axis_neg2");
  expect_ref(mx::repeat(a, 2), "repeat_flat");
  expect_ref(mx::repeat(a, 0, 1), "repeat_zero");
  expect_invalid([&] { mx::repeat(a, -1, 0); }, {"[repeat]", "-1"});
  expect_invalid([&] { mx::repeat(a, 2, 2); }, {"[repeat]", "axis 2"});
}

TEST(Tile, MatchesNumpy) {
  array a = ref_input("tile_2", 0);
  expect_ref(mx::tile(a, {2}), "tile_2");
  expect_ref(mx::tile(a, {2, 1, 2}), "tile_2_1_2");
  expect_ref(mx::tile(ref_input("tile_1d_2_2", 0), {2, 2}), "tile_1d_2_2");
  expect_invalid([&] { mx::tile(a, {2, -1}); }, {"[tile]", "-1"});
}

TEST(Pad, MatchesNumpy) {
  array f = ref_input("pad_const", 0);
  expect_ref(mx::pad(f, {{1, 2}, {0, 1}}, mx::array(5.0f)), "pad_const");
  expect_ref(mx::pad(f, {{2, 1}, {1, 3}}, mx::array(0.0f), "edge"), "pad_edge");
  expect_ref(mx::pad(f, 1), "pad_int1");
  expect_ref(mx::pad(ref_input("pad_axes", 0), {-1}, {2}, {1}, mx::array(-1.0f)), "pad_axes");
}

TEST(Pad, DtypesAndErrors) {
  // bfloat16 with a float pad value that bfloat16 rounds: 1/3 -> 0.333984375.
  array b = mx::pad(mx::array({1.0f, 2.0f}, mx::bfloat16), 1, mx::array(1.0f / 3));
  EXPECT_EQ(b.dtype(), mx::bfloat16);
  expect_close(b, {0.333984375, 1, 2, 0.333984375}, {4});
  array bl = mx::pad(mx::array({true}), {{0, 2}}, mx::array(false));
  expect_close(bl, {1, 0, 0}, {3});
  // Padding an empty array gives only padding.
  expect_close(mx::pad(mx::zeros({0}, mx::int32), 2, mx::array(7)), {7, 7, 7, 7}, {4});
  array x = mx::zeros({2, 3});
  expect_invalid([&] { mx::pad(x, {{1, -1}, {0, 0}}); }, {"[pad]", "-1", "axis 0"});
  expect_invalid([&] { mx::pad(x, {{1, 1}, {0, 0}, {0, 0}}); }, {"[pad]", "3", "(2, 3)"});
  expect_invalid([&] { mx::pad(x, 1, mx::array(0), "reflect"); }, {"[pad]", "reflect"});
  expect_invalid([&] { mx::pad(mx::zeros({0}), 1, mx::array(0), "edge"); },
                 {"[pad]", "empty axis 0"});
}

// ---------------------------------------------------------------- diagonals

TEST(Diag, MatchesNumpy) {
  array v = ref_input("diag1d_k0", 0);
  expect_ref(mx::diag(v), "diag1d_k0");
  expect_ref(mx::diag(v, 2), "diag1d_k2");
  expect_ref(mx::diag(v, -1), "diag1d_km1");
  array m = ref_input("diag2d_k0", 0);
  expect_ref(mx::diag(m), "diag2d_k0");
  expect_ref(mx::diag(m, 1), "diag2d_k1");
  expect_ref(mx::diag(m, -2), "diag2d_km2");
  expect_ref(mx::diag(m, 5), "diag2d_k5");
  expect_invalid([] { mx::diag(mx::zeros({2, 2, 2})); }, {"[diag]", "(2, 2, 2)"});
  // A 1-D empty input gives a |k| x |k| zero matrix.
  expect_close(mx::diag(mx::zeros({0}), -2), {0, 0, 0, 0}, {2, 2});
}

TEST(Diagonal, MatchesNumpyAndIsAView) {
  array t = ref_input("diagonal_o1_a2_a0", 0);
  expect_ref(mx::diagonal(t, 1, 2, 0), "diagonal_o1_a2_a0");
  expect_ref(mx::diagonal(t, -1, 1, 2), "diagonal_om1_a1_a2");
  expect_ref(mx::diagonal(t, -1, -2, -1), "diagonal_om1_a1_a2");
  expect_ref(mx::diagonal(ref_input("diagonal_om1", 0), -1), "diagonal_om1");
  EXPECT_TRUE(shares_buffer(t, mx::diagonal(t, 1, 2, 0)));
  // Of a transposed array: still a view, and reads through the strides.
  array m = mx::reshape(mx::arange(12), {3, 4});
  array d = mx::diagonal(mx::transpose(m));  // m.T[i, i] = m[i, i]
  expect_close(d, {0, 5, 10}, {3});
  EXPECT_TRUE(shares_buffer(m, d));
  expect_invalid([] { mx::diagonal(mx::zeros({3})); }, {"[diagonal]", "(3,)"});
  expect_invalid(
      [] {
        mx::diagonal(mx::zeros({3, 3}), 0, 1, -1);
      },
      {"[diagonal]", "axis1 and axis2", "(3, 3)"});
}

// ---------------------------------------------------------------- roll

TEST(Roll, MatchesNumpy) {
  array r = ref_input("roll_1_axis1", 0);
  expect_ref(mx::roll(r, 1, 1), "roll_1_axis1");
  expect_ref(mx::roll(r, -5, 0), "roll_m5_axis0");
  expect_ref(mx::roll(r, 7), "roll_flat_7");
  expect_ref(mx::roll(r, Shape{1, -2}, {0, 1}), "roll_multi");
  expect_close(mx::roll(mx::zeros({0}), 3), {}, {0});
  expect_invalid([&] { mx::roll(r, 1, 2); }, {"[roll]", "axis 2"});
}

// ---------------------------------------------------------------- creation

TEST(Creation, EyeTriMatchNumpy) {
  expect_ref(mx::eye(3, 4, 1), "eye_3_4_k1");
  expect_ref(mx::eye(4, 3, -2), "eye_4_3_km2");
  expect_ref(mx::tri(4, 3, -1, mx::float32), "tri_4_3_km1");
  expect_ref(mx::tri(3, 5, 2, mx::float32), "tri_3_5_k2");
  array id = mx::identity(3, mx::int32);
  EXPECT_EQ(id.dtype(), mx::int32);
  expect_close(id, {1, 0, 0, 0, 1, 0, 0, 0, 1}, {3, 3});
  array eb = mx::eye(2, mx::bool_);
  EXPECT_EQ(eb.dtype(), mx::bool_);
  expect_close(eb, {1, 0, 0, 1}, {2, 2});
  expect_close(mx::eye(0), {}, {0, 0});
  expect_invalid([] { mx::eye(-1); }, {"[eye]", "-1"});
  expect_invalid([] { mx::tri(2, -3, 0, mx::float32); }, {"[tri]", "-3"});
}

TEST(Creation, TrilTriuMatchNumpy) {
  array m = ref_input("tril_k0", 0);
  expect_ref(mx::tril(m), "tril_k0");
  expect_ref(mx::tril(m, 1), "tril_k1");
  expect_ref(mx::triu(m, -1), "triu_km1");
  expect_ref(mx::triu(m, 2), "triu_k2");
  expect_ref(mx::tril(ref_input("tril_batched", 0)), "tril_batched");
  expect_invalid([] { mx::tril(mx::zeros({3})); }, {"[tril]", "(3,)"});
  expect_invalid([] { mx::triu(mx::zeros({3})); }, {"[triu]", "(3,)"});
}

// ---------------------------------------------------------------- as_strided / view

TEST(AsStrided, MatchesNumpyAndIsAView) {
  array base = ref_input("as_strided_windows", 0);
  array w = mx::as_strided(base, {4, 3}, {2, 1}, 2);
  expect_ref(w, "as_strided_windows");
  EXPECT_TRUE(shares_buffer(base, w));
  expect_ref(mx::as_strided(base, {2, 3}, {0, 3}, 5), "as_strided_bcast");
  // Strides address the row-major order even of a transposed input:
  // transpose(reshape(arange(6), (2, 3))) is [[0, 3], [1, 4], [2, 5]].
  array t = mx::transpose(mx::reshape(mx::arange(6), {2, 3}));
  expect_close(mx::as_strided(t, {3}, {2}, 0), {0, 1, 2}, {3});
  // Negative strides walk backwards.
  expect_close(mx::as_strided(mx::arange(5), {5}, {-1}, 4), {4, 3, 2, 1, 0}, {5});
  expect_invalid(
      [&] {
        mx::as_strided(base, {4, 3}, {3, 1}, 2);
      },
      {"[as_strided]", "(4, 3)", "(12,)"});
  expect_invalid([&] { mx::as_strided(base, {4}, {1, 1}, 0); }, {"[as_strided]", "(4,)"});
}

TEST(View, MatchesNumpy) {
  array f = ref_input("view_f32_i32", 0);
  expect_ref(mx::view(f, mx::int32), "view_f32_i32");
  expect_ref(mx::view(f, mx::uint8), "view_f32_u8");
  array i16 = ref_input("view_i16_i32", 0);
  expect_ref(mx::view(i16, mx::int32), "view_i16_i32");
  expect_ref(mx::view(i16, mx::float16), "view_i16_f16");
  EXPECT_TRUE(shares_buffer(f, mx::view(f, mx::int32)));
  // Round trip through bytes.
  expect_close(mx::view(mx::view(f, mx::uint8), mx::float32), mxtest::to_vector(f), {2, 3});
  // bfloat16 1.0 is 0x3F80.
  expect_close(mx::view(mx::array({1.0f, -2.0f}, mx::bfloat16), mx::uint16), {0x3F80, 0xC000}, {2});
  // A transposed input is viewed in its logical (row-major) order.
  array t = mx::transpose(mx::reshape(mx::array({1, 2, 3, 4}, mx::int16), {2, 2}));
  expect_close(mx::view(t, mx::uint16), {1, 3, 2, 4}, {2, 2});
  // Three int16 (6 bytes) do not make whole int64s.
  expect_invalid(
      [] {
        mx::view(mx::zeros({2, 3}, mx::int16), mx::int64);
      },
      {"[view]", "(2, 3)", "int64"});
  expect_invalid([] { mx::view(mx::array(1.0f), mx::float16); }, {"[view]", "0-d"});
}

// ---------------------------------------------------------------- dynamic slices

TEST(DynamicSlice, ReadsStartAtEvalTime) {
  array a = mx::reshape(mx::arange(20), {4, 5});
  array start = mx::array({1, 2}, mx::int32);
  array s = mx::slice(a, start, {0, 1}, {2, 3});
  // a[1:3, 2:5]
  expect_close(s, {7, 8, 9, 12, 13, 14}, {2, 3});
  EXPECT_TRUE(shares_buffer(a, s));
  // One axis; the other keeps its full size from 0.
  expect_close(mx::slice(a, mx::array({3}, mx::int64), {-1}, {4, 2}), {3, 4, 8, 9, 13, 14, 18, 19},
               {4, 2});
  // Out-of-range starts clamp so the window stays inside: start 10 -> 2.
  expect_close(mx::slice(a, mx::array({10}, mx::uint32), {0}, {2, 1}), {10, 15}, {2, 1});
  // Negative starts count from the end: -1 -> 3 (then clamps to 4 - 2 = 2).
  expect_close(mx::slice(a, mx::array({-1}), {0}, {1, 1}), {15}, {1, 1});
  // The start can itself be computed lazily.
  array st = mx::add(mx::array({0}), mx::array({2}));
  expect_close(mx::slice(mx::arange(6), st, {0}, {3}), {2, 3, 4}, {3});
  expect_invalid([&] { mx::slice(a, mx::array({1.0f}), {0}, {1, 1}); }, {"[slice]", "float32"});
  expect_invalid([&] { mx::slice(a, start, {0}, {1, 1}); }, {"[slice]", "(2,)"});
  expect_invalid([&] { mx::slice(a, start, {0, 1}, {5, 1}); }, {"[slice]", "(5, 1)", "(4, 5)"});
  expect_invalid([&] { mx::slice(a, start, {0, 2}, {1, 1}); }, {"[slice]", "axis 2"});
}

TEST(DynamicSlice, UpdateWritesAtStart) {
  array src = mx::zeros({3, 4}, mx::int32);
  array upd = mx::array({1, 2, 3, 4}, {2, 2});
  array out = mx::slice_update(src, upd, mx::array({1, 2}), {0, 1});
  expect_close(out, {0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4}, {3, 4});
  // The source is not modified.
  expect_close(src, std::vector<double>(12, 0), {3, 4});
  // A KV-cache style write: one row at a position read from an array.
  array cache = mx::zeros({4, 2}, mx::bfloat16);
  array row = mx::array({0.5f, -1.5f}, {1, 2});
  array c2 = mx::slice_update(cache, row, mx::array({3}), {0});
  EXPECT_EQ(c2.dtype(), mx::bfloat16);
  expect_close(c2, {0, 0, 0, 0, 0, 0, 0.5, -1.5}, {4, 2});
  // Fewer dims in the update are left-padded with 1s; clamped start (9 -> 2).
  expect_close(mx::slice_update(mx::zeros({4}), mx::array({7.0f, 8.0f}), mx::array({9}), {0}),
               {0, 0, 7, 8}, {4});
  expect_invalid(
      [&] {
        mx::slice_update(src, mx::zeros({4, 1}), mx::array({0}), {0});
      },
      {"[slice_update]", "(4, 1)", "(3, 4)"});
  expect_invalid([&] { mx::slice_update(src, upd, mx::array({true}), {0}); },
                 {"[slice_update]", "bool"});
}

// output_shapes (used for shapeless recompilation) agrees with the op.
TEST(OutputShapes, AgreeWithTheOps) {
  array x = mx::zeros({2, 3});
  for (array y : {mx::concatenate({x, mx::ones({2, 4})}, 1), mx::pad(x, {{1, 0}, {2, 3}}),
                  mx::as_strided(x, {2, 2}, {1, 1}, 0), mx::slice(x, mx::array({1}), {1}, {2, 2}),
                  mx::slice_update(x, mx::ones({1, 2}), mx::array({1}), {1}), mx::sort(x, 0),
                  mx::argpartition(x, 1, 1)}) {
    ASSERT_TRUE(y.has_primitive());
    auto shapes = y.primitive().output_shapes(y.inputs());
    ASSERT_EQ(shapes.size(), 1u) << y.primitive().name();
    EXPECT_EQ(shapes[0], y.shape()) << y.primitive().name();
  }
}

}  // namespace
