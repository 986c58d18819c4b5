// sort, argsort, partition, argpartition and topk. Expected values come from
// NumPy (tools/reference/shape_sort_refs.py; argsort with kind="stable") or
// are worked by hand; partitions are checked by their defining property.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "mx/shape_sort_refs.h"

namespace {

using mx::array;
using mx::Shape;
using mxtest::expect_close;
using mxtest::expect_ref;
using mxtest::ref_input;
using mxtest::to_vector;

const double kNaN = std::nan("");
const double kInf = std::numeric_limits<double>::infinity();

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

// NaN sorts after everything (NumPy's order).
bool nan_less(double a, double b) {
  if (std::isnan(a)) return false;
  if (std::isnan(b)) return true;
  return a < b;
}

// Row r of a row-major (rows, n) matrix.
std::vector<double> row(const std::vector<double>& v, int n, int r) {
  return std::vector<double>(v.begin() + r * n, v.begin() + (r + 1) * n);
}

// `got` is a partition of the row whose sorted values are `sorted` around kth:
// got[kth] is the kth smallest, nothing before it is larger, nothing after it
// smaller, and got holds the same values.
void expect_partitioned(std::vector<double> got, const std::vector<double>& sorted, int kth,
                        const std::string& what) {
  ASSERT_EQ(got.size(), sorted.size()) << what;
  if (std::isnan(sorted[kth])) {
    EXPECT_TRUE(std::isnan(got[kth])) << what;
  } else {
    EXPECT_EQ(got[kth], sorted[kth]) << what;
  }
  for (int i = 0; i < kth; ++i) EXPECT_FALSE(nan_less(got[kth], got[i])) << what << " at " << i;
  for (size_t i = kth + 1; i < got.size(); ++i) {
    EXPECT_FALSE(nan_less(got[i], got[kth])) << what << " at " << i;
  }
  std::sort(got.begin(), got.end(), nan_less);
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(sorted[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << what;
    } else {
      EXPECT_EQ(got[i], sorted[i]) << what;
    }
  }
}

TEST(Sort, MatchesNumpyWithNanAndInf) {
  array x = ref_input("sort_axis_m1", 0);
  expect_ref(mx::sort(x, -1), "sort_axis_m1");
  expect_ref(mx::sort(x, 0), "sort_axis0");
  expect_ref(mx::sort(x), "sort_flat");
  // Strided input: sorting x.T along 1 is sorting x along 0, transposed.
  expect_ref(mx::transpose(mx::sort(mx::transpose(x), 1)), "sort_axis0");
  array big = ref_input("sort_big_axis1", 0);
  expect_ref(mx::sort(big, 1), "sort_big_axis1");
}

TEST(Sort, IntegerBoolAndHalfDtypes) {
  expect_ref(mx::sort(ref_input("sort_int64_axis1", 0), 1), "sort_int64_axis1");
  expect_ref(mx::sort(ref_input("sort_uint8", 0)), "sort_uint8");
  expect_ref(mx::sort(ref_input("sort_bool", 0)), "sort_bool");
  for (auto dt : {mx::bfloat16, mx::float16}) {
    array h =
        mx::astype(mx::array({2.5, -1.0, kNaN, 0.5, kInf, -kInf, -0.75}, {7}, mx::float64), dt);
    array s = mx::sort(h);
    EXPECT_EQ(s.dtype(), dt);
    expect_close(s, {-kInf, -1, -0.75, 0.5, 2.5, kInf, kNaN}, {7});
    // argsort: -inf (5), -1 (1), -0.75 (6), 0.5 (3), 2.5 (0), inf (4), nan (2)
    expect_close(mx::argsort(h), {5, 1, 6, 3, 0, 4, 2}, {7});
  }
  // Complex numbers order by real part, then imaginary part (as NumPy).
  array c = mx::astype(mx::array({2.0f, 1.0f, 2.0f}), mx::complex64);
  c = mx::add(c, mx::multiply(mx::astype(mx::array({-1.0f, 0.0f, -3.0f}), mx::complex64),
                              mx::array(mx::complex64_t(0, 1))));
  expect_close(mx::imag(mx::sort(c)), {0, -3, -1}, {3});
}

TEST(ArgSort, StableUint32MatchesNumpy) {
  array x = ref_input("argsort_axis_m1", 0);
  array i = mx::argsort(x, -1);
  EXPECT_EQ(i.dtype(), mx::uint32);
  expect_ref(i, "argsort_axis_m1");
  expect_ref(mx::argsort(x, 0), "argsort_axis0");
  expect_ref(mx::argsort(ref_input("argsort_ties", 0)), "argsort_ties");
  expect_ref(mx::argsort(ref_input("argsort_int64_axis1", 0), 1), "argsort_int64_axis1");
  expect_ref(mx::argsort(ref_input("argsort_bool", 0)), "argsort_bool");
  expect_ref(mx::argsort(ref_input("argsort_big_axis0", 0), 0), "argsort_big_axis0");
  // Flattened: [[3, 1], [2, 0]] -> order 3, 1, 2, 0.
  expect_close(mx::argsort(mx::array({3, 1, 2, 0}, {2, 2})), {3, 1, 2, 0}, {4});
}

TEST(Sort, EmptyAndErrors) {
  expect_close(mx::sort(mx::zeros({0, 3}), 0), {}, {0, 3});
  expect_close(mx::argsort(mx::zeros({2, 0}), 1), {}, {2, 0});
  EXPECT_EQ(mx::argsort(mx::zeros({2, 0}), 1).dtype(), mx::uint32);
  expect_close(mx::sort(mx::zeros({0})), {}, {0});
  expect_invalid([] { mx::sort(mx::array(1.0f), 0); }, {"[sort]", "0-d"});
  expect_invalid([] { mx::sort(mx::zeros({2, 3}), 2); }, {"[sort]", "axis 2"});
  expect_invalid([] { mx::argsort(mx::zeros({2, 3}), -3); }, {"[argsort]", "axis -3"});
}

TEST(Partition, HasThePartitionProperty) {
  array p = ref_input("partition_ref", 0);  // (4, 9) with one NaN
  auto sorted_rows = mxtest::ref_values(mxtest::shape_sort_case("partition_ref")["outputs"][0]);
  auto sorted_cols = mxtest::ref_values(mxtest::shape_sort_case("partition_ref")["outputs"][1]);
  auto x = to_vector(p);
  for (int kth : {0, 4, 8, -1, -9}) {
    int k = kth < 0 ? kth + 9 : kth;
    auto got = to_vector(mx::partition(p, kth, -1));
    auto idx = mx::argpartition(p, kth, 1);
    EXPECT_EQ(idx.dtype(), mx::uint32);
    auto gathered = to_vector(mx::take_along_axis(p, idx, 1));
    auto iv = to_vector(idx);
    for (int r = 0; r < 4; ++r) {
      std::string what = "row " + std::to_string(r) + " kth " + std::to_string(kth);
      expect_partitioned(row(got, 9, r), row(sorted_rows, 9, r), k, what);
      expect_partitioned(row(gathered, 9, r), row(sorted_rows, 9, r), k, "arg " + what);
      auto ir = row(iv, 9, r);
      std::sort(ir.begin(), ir.end());
      for (int j = 0; j < 9; ++j) EXPECT_EQ(ir[j], j) << "indices are a permutation, " << what;
    }
  }
  // Along axis 0 (strided rows): column c of the result.
  auto got = to_vector(mx::partition(p, 2, 0));
  for (int c = 0; c < 9; ++c) {
    std::vector<double> col, ref;
    for (int r = 0; r < 4; ++r) {
      col.push_back(got[r * 9 + c]);
      ref.push_back(sorted_cols[r * 9 + c]);
    }
    expect_partitioned(col, ref, 2, "column " + std::to_string(c));
  }
  // Flattened.
  auto flat = to_vector(mx::partition(p, 20));
  std::vector<double> all = x;
  std::sort(all.begin(), all.end(), nan_less);
  expect_partitioned(flat, all, 20, "flat");
  auto fi = mx::argpartition(p, 20);
  EXPECT_EQ(fi.shape(), Shape{36});
  expect_partitioned(to_vector(mx::take(mx::flatten(p), fi)), all, 20, "flat arg");
  expect_invalid([&] { mx::partition(p, 9, 1); }, {"[partition]", "kth 9", "axis 1", "(4, 9)"});
  expect_invalid([&] { mx::argpartition(p, -10, 1); }, {"[argpartition]", "kth -10"});
}

TEST(TopK, ReturnsTheLargestK) {
  array p = ref_input("topk_ref", 0);
  array t = mx::topk(p, 3, -1);
  EXPECT_EQ(t.shape(), (Shape{4, 3}));
  // Any order is allowed: compare sorted.
  expect_ref(mx::sort(t, -1), "topk_ref", 0);
  expect_ref(mx::sort(mx::topk(p, 5)), "topk_ref", 1);
  // Along axis 0 of a small hand-worked matrix: column maxima pairs.
  array m = mx::array({1, 9, 5, 7, 3, 2, 8, 4, 6}, {3, 3});
  expect_close(mx::sort(mx::topk(m, 2, 0), 0), {7, 4, 5, 8, 9, 6}, {2, 3});
  expect_close(mx::topk(m, 0, 1), {}, {3, 0});
  expect_close(mx::sort(mx::topk(m, 3, 1), 1), {1, 5, 9, 2, 3, 7, 4, 6, 8}, {3, 3});
  // bfloat16 keeps its dtype.
  array hb = mx::topk(mx::array({0.5f, 3.0f, -1.0f, 2.0f}, mx::bfloat16), 2);
  EXPECT_EQ(hb.dtype(), mx::bfloat16);
  expect_close(mx::sort(hb), {2, 3}, {2});
  expect_invalid([&] { mx::topk(m, 4, 1); }, {"[topk]", "k 4", "(3, 3)"});
  expect_invalid([&] { mx::topk(m, -1, 1); }, {"[topk]", "k -1"});
}

}  // namespace
