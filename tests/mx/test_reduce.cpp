// Reductions: NumPy references (tools/reference/reduce_refs.py ->
// data/mx/reduce_refs.json), hand-worked cases, MLX's dtype rules, errors,
// long sums against a float64 loop over the same inputs, and float64 finite
// differences for the derivatives of Reduce and ArgReduce.
#include <limits>

#include "reduce_test_util.h"

namespace {

using mx::array;
using mx::Shape;
using mxtest::expect_close;
using mxtest::to_vector;
using reducetest::check_cases;
using reducetest::check_derivatives;
using reducetest::check_vmap;
using reducetest::f64;
using reducetest::from_json;
using reducetest::json;
using reducetest::random_values;

std::vector<int> axes_of(const json& c) {
  return c["axes"].is_null() ? std::vector<int>{} : c["axes"].get<std::vector<int>>();
}

array run_reduction(const json& c) {
  std::string op = c["op"];
  array a = from_json(c["a"]);
  bool keep = c["keepdims"].get<bool>();
  if (op == "argmax" || op == "argmin") {
    bool mx_ = op == "argmax";
    if (c["axis"].is_null()) return mx_ ? mx::argmax(a, keep) : mx::argmin(a, keep);
    int ax = c["axis"].get<int>();
    return mx_ ? mx::argmax(a, ax, keep) : mx::argmin(a, ax, keep);
  }
  bool all = c["axes"].is_null();
  auto axes = axes_of(c);
  int ddof = c.contains("ddof") ? c["ddof"].get<int>() : 0;
  if (op == "sum") return all ? mx::sum(a, keep) : mx::sum(a, axes, keep);
  if (op == "prod") return all ? mx::prod(a, keep) : mx::prod(a, axes, keep);
  if (op == "max") return all ? mx::max(a, keep) : mx::max(a, axes, keep);
  if (op == "min") return all ? mx::min(a, keep) : mx::min(a, axes, keep);
  if (op == "all") return all ? mx::all(a, keep) : mx::all(a, axes, keep);
  if (op == "any") return all ? mx::any(a, keep) : mx::any(a, axes, keep);
  if (op == "mean") return all ? mx::mean(a, keep) : mx::mean(a, axes, keep);
  if (op == "var") return all ? mx::var(a, keep, ddof) : mx::var(a, axes, keep, ddof);
  if (op == "std") return all ? mx::std(a, keep, ddof) : mx::std(a, axes, keep, ddof);
  if (op == "logsumexp") return all ? mx::logsumexp(a, keep) : mx::logsumexp(a, axes, keep);
  throw std::runtime_error("unknown op " + op);
}

TEST(Reduce, NumpyReferences) {
  check_cases({"sum", "prod", "max", "min", "all", "any", "mean", "var", "std", "logsumexp",
               "argmax", "argmin"},
              run_reduction, 120);
}

TEST(Reduce, HandWorked) {
  array a({1, 2, 3, 4, 5, 6}, {2, 3});
  expect_close(mx::sum(a), {21}, {});
  expect_close(mx::sum(a, 0), {5, 7, 9}, {3});
  expect_close(mx::sum(a, -1, true), {6, 15}, {2, 1});
  expect_close(mx::prod(a, 1), {6, 120}, {2});
  expect_close(mx::max(a, 0), {4, 5, 6}, {3});
  expect_close(mx::min(a, {0, 1}, true), {1}, {1, 1});
  expect_close(mx::mean(a, 1), {2, 5}, {2});
  expect_close(mx::var(a, 1), {2.0 / 3, 2.0 / 3}, {2});
  expect_close(mx::std(a, 1, false, 1), {1, 1}, {2});
  expect_close(mx::argmax(a), {5}, {});
  expect_close(mx::argmin(a, 1), {0, 0}, {2});
  EXPECT_EQ(mx::argmax(a, true).shape(), (Shape{1, 1}));
  expect_close(mx::logsumexp(array({0.0f, 0.0f})), {std::log(2.0)}, {});
  EXPECT_TRUE(mx::all(array({true, true})).item<bool>());
  EXPECT_FALSE(mx::all(array({true, false})).item<bool>());
  EXPECT_TRUE(mx::any(array({false, true})).item<bool>());
}

TEST(Reduce, Dtypes) {
  // MLX's rules (not NumPy's int64): small integers widen to 32 bits.
  EXPECT_EQ(mx::sum(array({true, false})).dtype(), mx::int32);
  EXPECT_EQ(mx::sum(mx::astype(array({1, 2}), mx::int8)).dtype(), mx::int32);
  EXPECT_EQ(mx::sum(mx::astype(array({1, 2}), mx::int16)).dtype(), mx::int32);
  EXPECT_EQ(mx::sum(mx::astype(array({1, 2}), mx::uint8)).dtype(), mx::uint32);
  EXPECT_EQ(mx::sum(mx::astype(array({1, 2}), mx::uint16)).dtype(), mx::uint32);
  EXPECT_EQ(mx::sum(mx::astype(array({1, 2}), mx::int64)).dtype(), mx::int64);
  EXPECT_EQ(mx::sum(mx::astype(array({1, 2}), mx::uint64)).dtype(), mx::uint64);
  EXPECT_EQ(mx::sum(mx::astype(array({1, 2}), mx::float16)).dtype(), mx::float16);
  EXPECT_EQ(mx::prod(mx::astype(array({1, 2}), mx::int8)).dtype(), mx::int32);
  EXPECT_EQ(mx::max(mx::astype(array({1, 2}), mx::int8)).dtype(), mx::int8);
  EXPECT_EQ(mx::mean(array({1, 2})).dtype(), mx::float32);
  EXPECT_EQ(mx::mean(mx::astype(array({1, 2}), mx::bfloat16)).dtype(), mx::bfloat16);
  EXPECT_EQ(mx::var(array({1, 2})).dtype(), mx::float32);
  EXPECT_EQ(mx::argmax(array({1.0f, 2.0f})).dtype(), mx::uint32);
  EXPECT_EQ(mx::all(array({1.0f, 2.0f})).dtype(), mx::bool_);
  EXPECT_EQ(mx::sum(mx::astype(array({1.0f, 2.0f}), mx::complex64)).dtype(), mx::complex64);
}

TEST(Reduce, EmptyAxesAndScalars) {
  array a({1.5f, -2.0f}, {2});
  // MLX: reducing over no axes returns the input (all/any convert to bool).
  EXPECT_TRUE(mx::sum(a, std::vector<int>{}).is_same(a));
  EXPECT_TRUE(mx::max(a, std::vector<int>{}).is_same(a));
  EXPECT_EQ(mx::all(a, std::vector<int>{}).dtype(), mx::bool_);
  expect_close(mx::any(array({0.0f, 2.0f}), std::vector<int>{}), {0, 1}, {2});
  array s(3.0f);
  expect_close(mx::sum(s), {3}, {});
  expect_close(mx::max(s), {3}, {});
  expect_close(mx::mean(s), {3}, {});
  expect_close(mx::var(s), {0}, {});
  expect_close(mx::argmax(s), {0}, {});
  expect_close(mx::logsumexp(s), {3}, {});
}

TEST(Reduce, EmptyArrays) {
  array e = mx::zeros({0, 3});
  expect_close(mx::sum(e), {0}, {});
  expect_close(mx::sum(e, 0), {0, 0, 0}, {3});
  expect_close(mx::prod(e, 0), {1, 1, 1}, {3});
  expect_close(mx::all(e), {1}, {});
  expect_close(mx::any(e), {0}, {});
  EXPECT_EQ(mx::sum(e, 1).shape(), (Shape{0}));
  EXPECT_EQ(mx::sum(e, 1).size(), 0u);
  try {
    mx::max(e);
    FAIL() << "max of an empty array must throw";
  } catch (const std::invalid_argument& err) {
    EXPECT_NE(std::string(err.what()).find("[max]"), std::string::npos);
    EXPECT_NE(std::string(err.what()).find("(0, 3)"), std::string::npos);
  }
  EXPECT_THROW(mx::min(e, 1), std::invalid_argument);
  EXPECT_THROW(mx::argmax(e, 0), std::invalid_argument);
  EXPECT_THROW(mx::argmin(e), std::invalid_argument);
  EXPECT_THROW(mx::logsumexp(e), std::invalid_argument);
}

TEST(Reduce, Errors) {
  array a = mx::zeros({2, 3});
  try {
    mx::sum(a, 2);
    FAIL();
  } catch (const std::invalid_argument& err) {
    std::string m = err.what();
    EXPECT_NE(m.find("[sum]"), std::string::npos) << m;
    EXPECT_NE(m.find("axis 2"), std::string::npos) << m;
    EXPECT_NE(m.find("2 dimensions"), std::string::npos) << m;
  }
  try {
    mx::max(a, std::vector<int>{1, -1});
    FAIL();
  } catch (const std::invalid_argument& err) {
    std::string m = err.what();
    EXPECT_NE(m.find("[max]"), std::string::npos) << m;
    EXPECT_NE(m.find("duplicate"), std::string::npos) << m;
  }
  EXPECT_THROW(mx::mean(a, -3), std::invalid_argument);
  EXPECT_THROW(mx::var(a, 5), std::invalid_argument);
  EXPECT_THROW(mx::all(a, 3), std::invalid_argument);
  EXPECT_THROW(mx::argmax(a, 2), std::invalid_argument);
  EXPECT_THROW(mx::logsumexp(a, std::vector<int>{0, 0}), std::invalid_argument);
  EXPECT_THROW(mx::max(mx::astype(a, mx::complex64)).eval(), std::invalid_argument);
}

// A float64 loop over the very same float32 inputs is the reference.
TEST(Reduce, LongFloat32SumIsAccurate) {
  const int n = 1000000;
  std::vector<float> v(n);
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> dist(0.0f, 1.0f);
  double ref = 0;
  for (auto& x : v) {
    x = dist(gen);
    ref += x;
  }
  array a(v, {n});
  EXPECT_NEAR(mx::sum(a).item<float>(), ref, 1e-5 * ref);
  EXPECT_NEAR(mx::mean(a).item<float>(), ref / n, 1e-5 * ref / n);
  // Two rows, split across threads, and the same data read through a transpose.
  array rows = mx::reshape(a, {2, n / 2});
  auto r = to_vector(mx::sum(rows, 1));
  double r0 = 0, r1 = 0;
  for (int i = 0; i < n / 2; ++i) r0 += v[i], r1 += v[n / 2 + i];
  EXPECT_NEAR(r[0], r0, 1e-5 * r0);
  EXPECT_NEAR(r[1], r1, 1e-5 * r1);
  auto c = to_vector(mx::sum(mx::transpose(rows), 0));
  EXPECT_NEAR(c[0], r0, 1e-5 * r0);
  EXPECT_NEAR(c[1], r1, 1e-5 * r1);
  // bfloat16 accumulates in a wide type: 4096 ones sum exactly (a bfloat16
  // accumulator would stall at 256).
  expect_close(mx::sum(mx::ones({4096}, mx::bfloat16)), {4096}, {});
  expect_close(mx::sum(mx::ones({4096}, mx::float16)), {4096}, {});
}

TEST(Reduce, LayoutsAgree) {
  // The same reduction through row-major, transposed and broadcast inputs.
  auto v = random_values(4 * 5 * 6, 11);
  array x = f64(v, {4, 5, 6});
  std::vector<double> ref(5, 0.0);  // sum over axes 0 and 2
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j)
      for (int k = 0; k < 6; ++k) ref[j] += v[(i * 5 + j) * 6 + k];
  expect_close(mx::sum(x, {0, 2}), ref, {5}, 1e-12, 1e-12);
  array xt = mx::transpose(x, {2, 1, 0});
  expect_close(mx::sum(xt, {0, 2}), ref, {5}, 1e-12, 1e-12);
  array xs = mx::slice(mx::transpose(x, {1, 0, 2}), Shape{0, 0, 0}, Shape{5, 4, 6}, Shape{1, 1, 1});
  expect_close(mx::sum(xs, {1, 2}), ref, {5}, 1e-12, 1e-12);
  array bc = mx::broadcast_to(array({1.0, 2.0, 3.0}), {1000, 3});
  expect_close(mx::sum(bc, 0), {1000, 2000, 3000}, {3});
  expect_close(mx::max(bc, 1), std::vector<double>(1000, 3.0), {1000});
  // Many short rows: the parallel row paths.
  array big = mx::ones({20000, 7}, mx::float32);
  expect_close(mx::sum(big, 1), std::vector<double>(20000, 7.0), {20000});
  expect_close(mx::sum(big, 0), std::vector<double>(7, 20000.0), {7});
  expect_close(mx::argmax(big, 0), std::vector<double>(7, 0.0), {7});
}

TEST(ReduceGrad, SumProdMaxMin) {
  auto v = random_values(3 * 4 * 5, 21, 0.5, 1.5);
  for (std::vector<int> axes : {std::vector<int>{0}, {1}, {2}, {0, 2}, {0, 1, 2}}) {
    SCOPED_TRACE(::testing::PrintToString(axes));
    check_derivatives([&](const array& x) { return mx::sum(x, axes, true); }, v, {3, 4, 5});
    check_derivatives([&](const array& x) { return mx::prod(x, axes, true); }, v, {3, 4, 5});
    check_derivatives([&](const array& x) { return mx::max(x, axes, true); }, v, {3, 4, 5});
    check_derivatives([&](const array& x) { return mx::min(x, axes, true); }, v, {3, 4, 5});
  }
}

TEST(ReduceGrad, ProdWithZeros) {
  // One zero: only that element has a non-zero partial (the product of the
  // others). Two zeros: every partial is zero. Hand-worked.
  array x = f64({2, 0, 3, 0, 0, 5}, {2, 3});
  array out = mx::prod(x, 1, true);
  array g = out.primitive().vjp(out.inputs(), {f64({1, 1}, {2, 1})}, {0}, {out})[0];
  expect_close(g, {0, 6, 0, 0, 0, 0}, {2, 3});
  check_derivatives([](const array& x) { return mx::prod(x, 1, true); }, {2, 0, 3, 1.5, 0.5, 4},
                    {2, 3});
}

TEST(ReduceGrad, MaxTiesShareTheCotangent) {
  array x = f64({1, 3, 3, 2}, {4});
  array out = mx::max(x, 0, true);
  array g = out.primitive().vjp(out.inputs(), {f64({1}, {1})}, {0}, {out})[0];
  expect_close(g, {0, 0.5, 0.5, 0}, {4});
}

TEST(ReduceGrad, ArgReduceIsConstant) {
  array x = f64({1, 3, 2}, {3});
  array out = mx::argmax(x, 0, true);
  array g = out.primitive().vjp(out.inputs(), {mx::ones({1}, mx::uint32)}, {0}, {out})[0];
  expect_close(g, {0, 0, 0}, {3});
}

TEST(ReduceVmap, AllReductions) {
  auto v = random_values(3 * 4 * 5, 31);
  array xb = f64(v, {3, 4, 5});
  for (int bax = 0; bax < 3; ++bax) {
    SCOPED_TRACE(bax);
    check_vmap([](const array& x) { return mx::sum(x, {1}, true); }, xb, bax);
    check_vmap([](const array& x) { return mx::prod(x, {0, 1}, true); }, xb, bax);
    check_vmap([](const array& x) { return mx::max(x, {0}, true); }, xb, bax);
    check_vmap([](const array& x) { return mx::min(x, {1}, true); }, xb, bax);
    check_vmap([](const array& x) { return mx::all(x, {0}, true); }, xb, bax);
    check_vmap([](const array& x) { return mx::any(x, {1}, true); }, xb, bax);
    check_vmap([](const array& x) { return mx::argmax(x, 1, true); }, xb, bax);
    check_vmap([](const array& x) { return mx::argmin(x, 0, true); }, xb, bax);
  }
}

TEST(Reduce, NumberOfElements) {
  array a = mx::zeros({2, 3, 4});
  expect_close(mx::number_of_elements(a, {0, 2}, false), {8}, {});
  expect_close(mx::number_of_elements(a, {-1}, true, mx::float32), {0.25}, {});
  expect_close(mx::number_of_elements(a, {}, false), {24}, {});
  EXPECT_EQ(mx::number_of_elements(a, {1}, false).dtype(), mx::int32);
  EXPECT_THROW(mx::number_of_elements(a, {3}, false), std::invalid_argument);
}

}  // namespace

// Long contiguous rows (the vocabulary argmax of greedy decoding) take a lane-parallel
// path: the first extremum still wins ties across lanes and blocks, the first NaN wins
// over everything, and the tail after the last full block counts.
TEST(Reduce, LongRowArgExtremaKeepNumpyRules) {
  const int n = 1000;
  for (auto dt : {mx::float32, mx::bfloat16}) {
    SCOPED_TRACE(mx::dtype_name(dt));
    std::vector<float> v(n);
    for (int i = 0; i < n; ++i) v[i] = static_cast<float>((i * 37) % 101) - 50.0f;  // in [-50, 50]
    v[613] = 100.0f;  // the maximum, tied later at 877 (another lane) and 999 (the tail)
    v[877] = 100.0f;
    v[999] = 100.0f;
    v[250] = -100.0f;  // the minimum, tied earlier-in-lane-order at 251 (next lane)
    v[251] = -100.0f;
    array a = mx::astype(array(v, {1, n}), dt);
    expect_close(mx::argmax(a, 1), {613}, {1});
    expect_close(mx::argmin(a, 1), {250}, {1});
    v[998] = 200.0f;  // a larger value in the tail
    expect_close(mx::argmax(mx::astype(array(v, {1, n}), dt), 1), {998}, {1});
    v[700] = std::numeric_limits<float>::quiet_NaN();
    v[900] = std::numeric_limits<float>::quiet_NaN();
    array b = mx::astype(array(v, {1, n}), dt);
    expect_close(mx::argmax(b, 1), {700}, {1});
    expect_close(mx::argmin(b, 1), {700}, {1});
  }
}

// Many long rows (a batch's vocabulary argmax): each row is cut into chunks whose values a
// thread loads eight at a time; the first extremum still wins ties inside a thread's eight,
// across threads, chunks and the tail, and the first NaN wins over everything.
TEST(Reduce, ManyLongRowsArgExtremaKeepNumpyRules) {
  const int rows = 8, n = 3 * 8192 + 77;
  std::vector<float> v(static_cast<size_t>(rows) * n);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 37) % 101) - 50.0f;
  std::vector<double> want_max(rows), want_min(rows);
  for (int r = 0; r < rows; ++r) {
    float* row = v.data() + static_cast<size_t>(r) * n;
    const int a = 300 + 1000 * r, b = 5000 + 700 * r;
    // Ties: the next value of the same thread (256 on), a later chunk, the tail.
    row[a] = row[a + 256] = row[a + 9 * 512] = row[n - 1] = 100.0f;
    row[b] = row[b + 1] = row[n - 2] = -100.0f;
    want_max[r] = a;
    want_min[r] = b;
  }
  v[3 * static_cast<size_t>(n) + n - 1] = 200.0f;  // row 3: a larger value in the tail
  want_max[3] = n - 1;
  v[5 * static_cast<size_t>(n) + 7000] = std::numeric_limits<float>::quiet_NaN();
  v[5 * static_cast<size_t>(n) + 9000] = std::numeric_limits<float>::quiet_NaN();
  want_max[5] = want_min[5] = 7000;  // row 5: the first NaN
  for (auto dt : {mx::float32, mx::bfloat16}) {
    SCOPED_TRACE(mx::dtype_name(dt));
    array a = mx::astype(array(v, {rows, n}), dt);
    expect_close(mx::argmax(a, 1), want_max, {rows});
    expect_close(mx::argmin(a, 1), want_min, {rows});
  }
}
