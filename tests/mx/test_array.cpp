// Array construction, element access, layout flags and printing.
#include <sstream>

#include "common/check.h"

using mx::array;

TEST(Array, ScalarsAndLists) {
  array a(3);
  EXPECT_EQ(a.dtype(), mx::int32);
  EXPECT_EQ(a.ndim(), 0u);
  EXPECT_EQ(a.size(), 1u);
  EXPECT_EQ(a.item<int>(), 3);
  array b(2.5f);
  EXPECT_EQ(b.dtype(), mx::float32);
  EXPECT_EQ(b.item<float>(), 2.5f);
  array c({1, 2, 3});
  EXPECT_EQ(c.dtype(), mx::int32);
  EXPECT_EQ(c.shape(), mx::Shape{3});
  array d({1.0f, 2.0f, 3.0f, 4.0f}, {2, 2});
  EXPECT_EQ(d.shape(), (mx::Shape{2, 2}));
  EXPECT_EQ(d.shape(-1), 2);
  EXPECT_EQ(d.strides(), (mx::Strides{2, 1}));
  array e({1, 2}, mx::float16);
  EXPECT_EQ(e.dtype(), mx::float16);
  mxtest::expect_close(e, {1, 2}, {2});
  array f(true);
  EXPECT_EQ(f.dtype(), mx::bool_);
  EXPECT_THROW(array({1.0f, 2.0f, 3.0f}, {2, 2}), std::invalid_argument);
  EXPECT_THROW(d.shape(2), std::out_of_range);
}

TEST(Array, ItemConvertsAndChecksSize) {
  array x(7.9f);
  EXPECT_EQ(x.item<int>(), 7);
  EXPECT_EQ(x.item<double>(), static_cast<double>(7.9f));
  EXPECT_THROW(array({1, 2}).item<int>(), std::invalid_argument);
  array h = mx::astype(array(1.5f), mx::bfloat16);
  EXPECT_EQ(h.item<float>(), 1.5f);
  EXPECT_EQ(h.item<mx::bfloat16_t>().bits, 0x3fc0);
}

TEST(Array, ExternalBufferWithDeleter) {
  bool freed = false;
  {
    auto buf = mx::allocator::malloc(4 * sizeof(float));
    float* p = static_cast<float*>(buf.raw_ptr());
    for (int i = 0; i < 4; ++i) p[i] = static_cast<float>(i);
    array a(buf, {4}, mx::float32, [&](mx::allocator::Buffer b) {
      freed = true;
      mx::allocator::free(b);
    });
    mxtest::expect_close(a * 2.0f, {0, 2, 4, 6}, {4});
  }
  EXPECT_TRUE(freed);
}

TEST(Array, ViewsShareTheBuffer) {
  array a = mx::reshape(mx::arange(12.0f), {3, 4});
  a.eval();
  array t = mx::transpose(a);
  t.eval();
  EXPECT_EQ(t.data<float>(), a.data<float>());
  EXPECT_EQ(t.strides(), (mx::Strides{1, 4}));
  EXPECT_FALSE(t.flags().row_contiguous);
  EXPECT_TRUE(t.flags().col_contiguous);
  array s = mx::slice(a, {1, 1}, {3, 3});
  s.eval();
  EXPECT_EQ(s.data<float>(), a.data<float>() + 5);
  array b = mx::broadcast_to(array({1.0f, 2.0f}), {3, 2});
  b.eval();
  EXPECT_EQ(b.strides(), (mx::Strides{0, 1}));
  mxtest::expect_close(b, {1, 2, 1, 2, 1, 2}, {3, 2});
  array r = mx::reshape(a, {2, 6});
  r.eval();
  EXPECT_EQ(r.data<float>(), a.data<float>());
}

TEST(Array, IteratesOverFirstAxis) {
  array a = mx::reshape(mx::arange(6), {3, 2});
  int i = 0;
  for (auto row : a) {
    mxtest::expect_close(row, {2.0 * i, 2.0 * i + 1}, {2}, 0, 0);
    ++i;
  }
  EXPECT_EQ(i, 3);
}

TEST(Array, PrintsLikeMlx) {
  std::ostringstream os;
  os << array({1, 2, 3});
  EXPECT_EQ(os.str(), "array([1, 2, 3], dtype=int32)");
  os.str("");
  os << mx::reshape(mx::arange(4), {2, 2});
  EXPECT_EQ(os.str(), "array([[0, 1],\n       [2, 3]], dtype=int32)");
  os.str("");
  os << array({true, false});
  EXPECT_EQ(os.str(), "array([true, false], dtype=bool)");
  os.str("");
  os << array(1.5f);
  EXPECT_EQ(os.str(), "array(1.5, dtype=float32)");
  os.str("");
  os << mx::reshape(mx::arange(8), {2, 2, 2});
  EXPECT_EQ(os.str(),
            "array([[[0, 1],\n        [2, 3]],\n\n       [[4, 5],\n        [6, 7]]], dtype=int32)");
  os.str("");
  os << mx::arange(2000);
  EXPECT_EQ(os.str(), "array([0, 1, 2, ..., 1997, 1998, 1999], dtype=int32)");
}

TEST(Dtype, PromotionTableAndCategories) {
  using namespace mx;
  EXPECT_EQ(promote_types(uint8, int8), int16);
  EXPECT_EQ(promote_types(uint32, int32), int64);
  EXPECT_EQ(promote_types(uint64, int8), float32);
  EXPECT_EQ(promote_types(int64, float16), float16);
  EXPECT_EQ(promote_types(bfloat16, float16), float32);
  EXPECT_EQ(promote_types(float64, complex64), complex64);
  EXPECT_EQ(promote_types(bool_, bool_), bool_);
  EXPECT_TRUE(issubdtype(float16, floating));
  EXPECT_TRUE(issubdtype(bfloat16, inexact));
  EXPECT_TRUE(issubdtype(int8, signedinteger));
  EXPECT_TRUE(issubdtype(uint8, integer));
  EXPECT_FALSE(issubdtype(uint8, signedinteger));
  EXPECT_TRUE(issubdtype(complex64, number));
  EXPECT_TRUE(issubdtype(floating, inexact));
  EXPECT_EQ(dtype_from_name("bfloat16"), bfloat16);
  EXPECT_THROW(dtype_from_name("float8"), std::invalid_argument);
  EXPECT_EQ(size_of(complex64), 8u);
}

TEST(Dtype, HalfConversionsRoundToNearestEven) {
  // Values straddling float16 rounding boundaries, worked by hand.
  EXPECT_EQ(mx::float16_t(1.0f).bits, 0x3c00);
  EXPECT_EQ(mx::float16_t(65504.0f).bits, 0x7bff);
  EXPECT_EQ(mx::float16_t(65520.0f).bits, 0x7c00);  // rounds up to inf
  EXPECT_EQ(mx::float16_t(-2.0f).bits, 0xc000);
  EXPECT_EQ(mx::float16_t(1.0f + 1.0f / 2048).bits, 0x3c00);        // tie, even
  EXPECT_EQ(mx::float16_t(1.0f + 3.0f / 2048).bits, 0x3c02);        // tie, even (up)
  EXPECT_EQ(mx::float16_t(5.960464477539063e-08f).bits, 0x0001);    // smallest subnormal
  EXPECT_EQ(mx::float16_t(2.98023223876953125e-08f).bits, 0x0000);  // half of it: tie to 0
  EXPECT_TRUE(std::isnan(static_cast<float>(mx::float16_t(std::nanf("")))));
  EXPECT_EQ(mx::bfloat16_t(1.0f).bits, 0x3f80);
  EXPECT_EQ(mx::bfloat16_t(3.0e38f).bits, 0x7f62);
  EXPECT_EQ(mx::bfloat16_t(std::numeric_limits<float>::max()).bits, 0x7f80);  // rounds to inf
  EXPECT_TRUE(std::isnan(static_cast<float>(mx::bfloat16_t(std::nanf("")))));
  EXPECT_EQ(static_cast<float>(mx::bfloat16_t::from_bits(0x4049)), 3.140625f);
}
