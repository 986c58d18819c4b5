// Indexing ops: NumPy references (tools/reference/indexing_refs.py ->
// data/mx/indexing_refs.json: np.take, np.take_along_axis, np.put_along_axis,
// np.add.at / np.multiply.at / np.maximum.at / np.minimum.at, slicing for
// gather windows), hand-worked cases, large inputs that take the parallel
// paths checked against plain loops over the input data, errors, and float64
// finite differences for the Gather and Scatter derivatives.
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <random>

#include "common/check.h"
#include "mlxcpp/mx/primitive.h"

namespace {

using mx::array;
using mx::Shape;
using mxtest::expect_close;
using mxtest::to_vector;
using json = nlohmann::json;

const json& refs() {
  static const json j = [] {
    std::ifstream f(std::string(MLXCPP_TEST_DATA) + "/mx/indexing_refs.json");
    if (!f) throw std::runtime_error("cannot open indexing_refs.json");
    return json::parse(f);
  }();
  return j;
}

std::vector<double> values_of(const json& j) {
  std::vector<double> v;
  for (auto& x : j["data"]) {
    if (x.is_string()) {
      auto s = x.get<std::string>();
      double inf = std::numeric_limits<double>::infinity();
      v.push_back(s == "nan" ? std::nan("") : (s == "inf" ? inf : -inf));
    } else if (x.is_boolean()) {
      v.push_back(x.get<bool>() ? 1.0 : 0.0);
    } else {
      v.push_back(x.get<double>());
    }
  }
  return v;
}

Shape shape_of(const json& j) { return j["shape"].get<Shape>(); }

array from_json(const json& j) {
  return mx::astype(array(values_of(j), shape_of(j), mx::float64),
                    mx::dtype_from_name(j["dtype"].get<std::string>()));
}

std::vector<array> list_from_json(const json& j) {
  std::vector<array> out;
  for (auto& x : j) out.push_back(from_json(x));
  return out;
}

array run_case(const json& c) {
  std::string op = c["op"];
  array a = from_json(c["a"]);
  if (op == "take") return mx::take(a, from_json(c["indices"]), c["axis"].get<int>());
  if (op == "take_flat") return mx::take(a, from_json(c["indices"]));
  if (op == "take_along_axis") {
    return mx::take_along_axis(a, from_json(c["indices"]), c["axis"].get<int>());
  }
  if (op == "put_along_axis") {
    return mx::put_along_axis(a, from_json(c["indices"]), from_json(c["values"]),
                              c["axis"].get<int>());
  }
  if (op == "gather") {
    return mx::gather(a, list_from_json(c["indices"]), c["axes"].get<std::vector<int>>(),
                      c["slice_sizes"].get<Shape>());
  }
  auto idx = list_from_json(c["indices"]);
  auto upd = from_json(c["updates"]);
  auto axes = c["axes"].get<std::vector<int>>();
  if (op == "scatter") return mx::scatter(a, idx, upd, axes);
  if (op == "scatter_add") return mx::scatter_add(a, idx, upd, axes);
  if (op == "scatter_prod") return mx::scatter_prod(a, idx, upd, axes);
  if (op == "scatter_max") return mx::scatter_max(a, idx, upd, axes);
  if (op == "scatter_min") return mx::scatter_min(a, idx, upd, axes);
  throw std::runtime_error("unknown op " + op);
}

TEST(Indexing, NumpyReferences) {
  const auto& cases = refs()["cases"];
  ASSERT_GT(cases.size(), 20u);
  for (auto& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    array out = run_case(c);
    EXPECT_EQ(out.dtype(), mx::dtype_from_name(c["a"]["dtype"].get<std::string>()));
    // bfloat16 inputs hold exactly representable values, so every case is exact
    // up to float32 rounding of the reference.
    expect_close(out, values_of(c["expected"]), shape_of(c["expected"]), 1e-6, 1e-6);
  }
}

// ---------------------------------------------------------------- hand-worked

TEST(Indexing, GatherWindowsByHand) {
  array a = mx::reshape(mx::arange(6), {2, 3});  // [[0 1 2] [3 4 5]]
  array g = mx::gather(a, array({1, 0}), 0, {1, 3});
  expect_close(g, {3, 4, 5, 0, 1, 2}, {2, 1, 3});
  // Window of 2 columns starting at the indexed column.
  g = mx::gather(a, array({1, -2}), 1, {2, 2});
  expect_close(g, {1, 2, 4, 5, 1, 2, 4, 5}, {2, 2, 2});
  // No index arrays: one window at the origin.
  g = mx::gather(a, std::vector<array>{}, std::vector<int>{}, {1, 2});
  expect_close(g, {0, 1}, {1, 2});
}

TEST(Indexing, TakeIntIndex) {
  array a = mx::reshape(mx::arange(6), {2, 3});
  expect_close(mx::take(a, -1, 1), {2, 5}, {2});
  expect_close(mx::take(a, 1, 0), {3, 4, 5}, {3});
  expect_close(mx::take(a, 4), {4}, {});
  expect_close(mx::take(a, -6), {0}, {});
  EXPECT_EQ(mx::take(a, 0, 1).dtype(), mx::int32);
}

TEST(Indexing, TakeOfStridedInputs) {
  // A transposed array and transposed (non-contiguous) indices.
  array a = mx::transpose(mx::reshape(mx::arange(12), {3, 4}));          // (4, 3): a[i][j] = 4j + i
  array idx = mx::transpose(mx::reshape(array({3, 0, -1, 1}), {2, 2}));  // [[3 -1] [0 1]]
  array t = mx::take(a, idx, 0);
  expect_close(t, {3, 7, 11, 3, 7, 11, 0, 4, 8, 1, 5, 9}, {2, 2, 3});
  // Broadcast (stride 0) data.
  array b = mx::broadcast_to(array({1.5f, 2.5f}), {3, 2});
  expect_close(mx::take(b, array({1, 1, 0}), 1), {2.5, 2.5, 1.5, 2.5, 2.5, 1.5, 2.5, 2.5, 1.5},
               {3, 3});
}

TEST(Indexing, Int64DataKeepsAllBits) {
  int64_t big = (int64_t{1} << 62) + 3;
  array a = array({big, -big, int64_t{7}}, {3});
  array t = mx::take(a, array({1, 0}), 0);
  t.eval();
  ASSERT_EQ(t.dtype(), mx::int64);
  EXPECT_EQ(t.data<int64_t>()[0], -big);
  EXPECT_EQ(t.data<int64_t>()[1], big);
  array s =
      mx::scatter_add(a, array({0, 0}), mx::reshape(array({int64_t{1}, int64_t{2}}), {2, 1}), 0);
  s.eval();
  EXPECT_EQ(s.data<int64_t>()[0], big + 3);
}

TEST(Indexing, ScatterLastWriteWins) {
  array z = mx::zeros({3});
  array s =
      mx::scatter(z, array({1, 2, 1, 1}), mx::reshape(array({5.f, 9.f, 6.f, 7.f}), {4, 1}), 0);
  expect_close(s, {0, 7, 9}, {3});
  array p = mx::put_along_axis(mx::zeros({1, 3}), mx::reshape(array({0, 2, 0}), {1, 3}),
                               mx::reshape(array({1.f, 2.f, 3.f}), {1, 3}), 1);
  expect_close(p, {3, 0, 2}, {1, 3});
}

TEST(Indexing, ScatterBroadcastUpdatesAndBool) {
  // Updates broadcast over the index shape (the window comes from their last dims).
  array s = mx::scatter_add(mx::zeros({2, 3}, mx::int32), array({1, 1}), mx::full({1, 1, 3}, 4), 0);
  expect_close(s, {0, 0, 0, 8, 8, 8}, {2, 3});
  EXPECT_EQ(s.dtype(), mx::int32);
  // bool: add is "or", prod is "and".
  array b = array({false, true, true}, {3});
  array ones_b = mx::reshape(array({true, false}, {2}), {2, 1});
  expect_close(mx::scatter_add(b, array({0, 1}), ones_b, 0), {1, 1, 1}, {3});
  expect_close(mx::scatter_prod(b, array({2, 1}), ones_b, 0), {0, 0, 1}, {3});
  // Updates of another dtype are converted to the array's.
  array f = mx::scatter(mx::zeros({2}, mx::int32), array({1}), array({2.9f}, {1, 1}), 0);
  EXPECT_EQ(f.dtype(), mx::int32);
  expect_close(f, {0, 2}, {2});
}

TEST(Indexing, MixedIndexDtypes) {
  array a = mx::reshape(mx::arange(12, mx::float32), {3, 4});
  array i0 = mx::astype(array({2, 0}), mx::uint8);
  array i1 = mx::astype(array({-1, 1}), mx::int64);
  expect_close(mx::gather(a, {i0, i1}, {0, 1}, {1, 1}), {11, 1}, {2, 1, 1});
  // uint64 values above INT64_MAX must not wrap into valid negative indices.
  array huge = array({uint64_t{1} << 63}, {1});
  array t = mx::take(a, huge, 1);
  EXPECT_THROW(t.eval(), std::invalid_argument);
}

TEST(Indexing, EmptyIndexArrays) {
  array a = mx::reshape(mx::arange(6, mx::float32), {2, 3});
  array none = mx::zeros({0}, mx::int32);
  expect_close(mx::take(a, none, 0), {}, {0, 3});
  expect_close(mx::take(a, none), {}, {0});
  array empty2 = mx::reshape(none, {2, 0});
  expect_close(mx::take_along_axis(a, empty2, 1), {}, {2, 0});
  expect_close(mx::put_along_axis(a, empty2, array(1.f), 1), {0, 1, 2, 3, 4, 5}, {2, 3});
  expect_close(mx::scatter_add(a, none, mx::zeros({0, 1, 3}), 0), {0, 1, 2, 3, 4, 5}, {2, 3});
  // An empty array can be indexed by an empty index array.
  array e = mx::zeros({0, 2});
  expect_close(mx::take(e, none, 0), {}, {0, 2});
}

// ---------------------------------------------------------------- errors

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Indexing, OutOfBoundsIsAnError) {
  array a = mx::reshape(mx::arange(6), {2, 3});
  auto msg = error_of([&] { mx::take(a, array({0, 3}), 1).eval(); });
  EXPECT_NE(msg.find("[gather] index 3 is out of bounds for axis 1 with size 3"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("(2, 3)"), std::string::npos) << msg;
  msg = error_of([&] { mx::take(a, array({-3}), 0).eval(); });
  EXPECT_NE(msg.find("index -3 is out of bounds for axis 0 with size 2"), std::string::npos) << msg;
  msg = error_of([&] { mx::take(a, 2, 0); });
  EXPECT_NE(msg.find("[take] index 2 is out of bounds for axis 0"), std::string::npos) << msg;
  msg = error_of([&] { mx::scatter_add(a, array({5}), mx::ones({1, 1, 1}, mx::int32), 1).eval(); });
  EXPECT_NE(msg.find("[scatter_add] index 5 is out of bounds for axis 1 with size 3"),
            std::string::npos)
      << msg;
  msg = error_of([&] { mx::gather(a, array({2}), 1, {1, 2}).eval(); });
  EXPECT_NE(msg.find("index 2 with a slice of 2 is out of bounds for axis 1"), std::string::npos)
      << msg;
  // The first bad position is reported, whatever the thread split.
  std::vector<int> many(200000, 1);
  many[123456] = 9;
  many[190000] = 8;
  array big(many, {200000});
  msg = error_of([&] { mx::take(mx::arange(4), big, 0).eval(); });
  EXPECT_NE(msg.find("index 9 is out of bounds"), std::string::npos) << msg;
  msg = error_of([&] { mx::take(mx::zeros({0, 2}), array({0}), 0); });
  EXPECT_NE(msg.find("size 0"), std::string::npos) << msg;
}

TEST(Indexing, ArgumentErrorsNameShapes) {
  array a = mx::zeros({2, 3});
  auto msg = error_of([&] { mx::take(a, array({1.0f}), 0); });
  EXPECT_NE(msg.find("[take] indices need an integer dtype, got float32"), std::string::npos)
      << msg;
  msg = error_of([&] { mx::take(a, array({true}), 0); });
  EXPECT_NE(msg.find("got bool"), std::string::npos) << msg;
  msg = error_of([&] { mx::take(a, array({0}), 2); });
  EXPECT_NE(msg.find("[take] axis 2"), std::string::npos) << msg;
  msg = error_of([&] { mx::take_along_axis(a, array({0, 1}), 1); });
  EXPECT_NE(msg.find("[take_along_axis] indices of shape (2,) and array of shape (2, 3)"),
            std::string::npos)
      << msg;
  msg = error_of([&] { mx::take_along_axis(a, mx::zeros({3, 1}, mx::int32), 1); });
  EXPECT_NE(msg.find("(3, 1) do not broadcast against the array of shape (2, 3) on axis 0"),
            std::string::npos)
      << msg;
  msg = error_of([&] { mx::put_along_axis(a, mx::zeros({2, 2}, mx::int32), mx::zeros({3}), 1); });
  EXPECT_NE(msg.find("[put_along_axis] values of shape (3,) do not broadcast to the index shape "
                     "(2, 2)"),
            std::string::npos)
      << msg;
  msg = error_of([&] { mx::scatter(a, array({0, 1}), mx::zeros({2, 3}), 0); });
  EXPECT_NE(msg.find("[scatter] updates of shape (2, 3) need 3 dimensions"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("(2,)"), std::string::npos) << msg;
  msg = error_of([&] { mx::scatter(a, array({0, 1}), mx::zeros({2, 1, 4}), 0); });
  EXPECT_NE(msg.find("update slice (1, 4) exceeds the array shape (2, 3) on axis 1"),
            std::string::npos)
      << msg;
  msg = error_of([&] { mx::scatter(a, array({0, 1}), mx::zeros({3, 1, 3}), 0); });
  EXPECT_NE(msg.find("updates of shape (3, 1, 3) do not broadcast to the index shape (2,)"),
            std::string::npos)
      << msg;
  msg = error_of([&] { mx::gather(a, {array({0, 1}), array({0, 1, 2})}, {0, 1}, {1, 1}); });
  EXPECT_NE(msg.find("index shapes (2,) and (3,)"), std::string::npos) << msg;
  msg = error_of([&] { mx::gather(a, array({0}), 0, {1, 4}); });
  EXPECT_NE(msg.find("slice sizes (1, 4) do not fit the array of shape (2, 3) on axis 1"),
            std::string::npos)
      << msg;
  msg = error_of([&] { mx::gather(a, {array({0}), array({0})}, {0, -2}, {1, 1}); });
  EXPECT_NE(msg.find("repeats"), std::string::npos) << msg;
  msg = error_of([&] { mx::gather(a, {array({0})}, {0, 1}, {1, 1}); });
  EXPECT_NE(msg.find("1 index arrays but 2 axes"), std::string::npos) << msg;
  msg = error_of([&] {
    mx::scatter_max(mx::zeros({2}, mx::complex64), array({0}), mx::zeros({1, 1}, mx::complex64), 0);
  });
  EXPECT_NE(msg.find("[scatter_max] is not defined for complex64"), std::string::npos) << msg;
}

// ---------------------------------------------------------------- parallel paths

TEST(Indexing, LargeGatherMatchesLoop) {
  // Embedding-style lookup (rows of 512) and a column gather (strided windows).
  const int V = 300, D = 512, N = 700;
  std::mt19937 gen(7);
  std::vector<float> table(V * D);
  for (auto& x : table) x = std::uniform_real_distribution<float>(-1, 1)(gen);
  std::vector<int> ids(N);
  for (auto& i : ids) i = std::uniform_int_distribution<int>(-V, V - 1)(gen);
  array a(table, {V, D});
  array out = mx::take(a, array(ids, {N}), 0);
  auto got = to_vector(out);
  ASSERT_EQ(out.shape(), (Shape{N, D}));
  for (int n = 0; n < N; ++n) {
    int r = ids[n] < 0 ? ids[n] + V : ids[n];
    for (int d = 0; d < D; ++d) ASSERT_EQ(got[n * D + d], table[r * D + d]) << n << "," << d;
  }
  std::vector<int> cols(N);
  for (auto& c : cols) c = std::uniform_int_distribution<int>(0, D - 1)(gen);
  auto gc = to_vector(mx::take(a, array(cols, {N}), 1));
  for (int v = 0; v < V; ++v) {
    for (int n = 0; n < N; ++n) ASSERT_EQ(gc[v * N + n], table[v * D + cols[n]]);
  }
}

TEST(Indexing, LargeScatterMatchesSerialLoop) {
  // Many duplicate rows with a wide window: the kernel splits the window across
  // threads; every destination must still see its updates in index order.
  const int R = 16, C = 4096, N = 64;
  std::mt19937 gen(11);
  std::vector<double> base(R * C), upd(N * C);
  for (auto& x : base) x = std::uniform_real_distribution<double>(-1, 1)(gen);
  for (auto& x : upd) x = std::uniform_real_distribution<double>(-1, 1)(gen);
  std::vector<int> rows(N);
  for (auto& r : rows) r = std::uniform_int_distribution<int>(0, R - 1)(gen);
  array a(base, {R, C});
  array u = array(upd, {N, 1, C});
  array idx(rows, {N});
  std::vector<double> add = base, last = base, mx_ = base;
  for (int n = 0; n < N; ++n) {
    for (int c = 0; c < C; ++c) {
      double v = upd[n * C + c];
      add[rows[n] * C + c] += v;
      last[rows[n] * C + c] = v;
      mx_[rows[n] * C + c] = std::max(mx_[rows[n] * C + c], v);
    }
  }
  expect_close(mx::scatter_add(a, idx, u, 0), add, {R, C}, 1e-12, 1e-12);
  expect_close(mx::scatter(a, idx, u, 0), last, {R, C}, 0, 0);
  expect_close(mx::scatter_max(a, idx, u, 0), mx_, {R, C}, 0, 0);
  // Strided updates: every other column of a wider array.
  std::vector<double> wide(N * 2 * C, 99.0);
  for (int n = 0; n < N; ++n) {
    for (int c = 0; c < C; ++c) wide[n * 2 * C + 2 * c] = upd[n * C + c];
  }
  array u2 =
      mx::slice(array(wide, {N, 1, 2 * C}), Shape{0, 0, 0}, Shape{N, 1, 2 * C}, Shape{1, 1, 2});
  expect_close(mx::scatter_add(a, idx, u2, 0), add, {R, C}, 1e-12, 1e-12);
}

// ---------------------------------------------------------------- derivatives

std::vector<double> random_values(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::vector<double> v(n);
  for (auto& x : v) x = std::uniform_real_distribution<double>(-1, 1)(gen);
  return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Checks the vjp of `f` at input position `arg` (of float64 `inputs`) against
// central differences of <cot, f(inputs)>.
void check_vjp(const std::function<array(const std::vector<array>&)>& f,
               const std::vector<array>& inputs, int arg, int prim_arg) {
  array out = f(inputs);
  array cot(random_values(out.size(), 3), out.shape());
  auto cots = out.primitive().vjp(out.inputs(), {cot}, {prim_arg}, {out});
  ASSERT_EQ(cots.size(), 1u);
  auto g = to_vector(cots[0]);
  auto c = to_vector(cot);
  auto x = to_vector(inputs[arg]);
  ASSERT_EQ(g.size(), x.size());
  const double eps = 1e-6;
  for (size_t k = 0; k < x.size(); ++k) {
    auto probe = [&](double delta) {
      auto xs = x;
      xs[k] += delta;
      auto in = inputs;
      in[arg] = array(xs, inputs[arg].shape());
      return dot(c, to_vector(f(in)));
    };
    double fd = (probe(eps) - probe(-eps)) / (2 * eps);
    EXPECT_NEAR(g[k], fd, 1e-6) << "element " << k;
  }
}

TEST(IndexingGrad, GatherVjpMatchesFiniteDifferences) {
  array a(random_values(12, 1), {3, 4});
  array idx = array({2, 0, 2, -1});  // duplicates accumulate
  auto f = [&](const std::vector<array>& in) { return mx::gather(in[0], idx, 0, {1, 3}); };
  check_vjp(f, {a}, 0, 0);
  auto f2 = [&](const std::vector<array>& in) {
    return mx::gather(in[0], {array({1, 1}), array({0, 2})}, {0, 1}, {2, 2});
  };
  check_vjp(f2, {a}, 0, 0);
}

TEST(IndexingGrad, GatherJvpMatchesFiniteDifferences) {
  array a(random_values(12, 1), {3, 4});
  array t(random_values(12, 2), {3, 4});
  array idx = array({2, 0, 2});
  auto f = [&](const array& x) { return mx::gather(x, idx, 1, {3, 1}); };
  array out = f(a);
  auto jt = out.primitive().jvp(out.inputs(), {t}, {0});
  auto got = to_vector(jt[0]);
  const double eps = 1e-6;
  auto plus = to_vector(f(a + t * eps)), minus = to_vector(f(a - t * eps));
  for (size_t k = 0; k < got.size(); ++k) {
    EXPECT_NEAR(got[k], (plus[k] - minus[k]) / (2 * eps), 1e-6);
  }
  // Indices carry no derivative.
  auto ji = out.primitive().vjp(out.inputs(), {mx::ones(out.shape(), mx::float64)}, {1}, {out});
  expect_close(ji[0], {0, 0, 0}, {3});
}

TEST(IndexingGrad, ScatterAddVjpMatchesFiniteDifferences) {
  array a(random_values(8, 4), {2, 4});
  array u(random_values(9, 5), {3, 1, 3});
  array idx = array({1, 0, 1});
  auto f = [&](const std::vector<array>& in) { return mx::scatter_add(in[0], idx, in[1], 0); };
  check_vjp(f, {a, u}, 0, 0);
  check_vjp(f, {a, u}, 1, 2);
}

TEST(IndexingGrad, ScatterVjpSendsGradientToTheLastWrite) {
  array a(random_values(8, 4), {2, 4});
  array u(random_values(12, 5), {3, 1, 4});
  array idx = array({1, 0, 1});  // the first update of row 1 is overwritten
  auto f = [&](const std::vector<array>& in) { return mx::scatter(in[0], idx, in[1], 0); };
  check_vjp(f, {a, u}, 0, 0);
  check_vjp(f, {a, u}, 1, 2);
}

TEST(IndexingGrad, ScatterMaxMinVjpMatchFiniteDifferences) {
  // Distinct values, so max/min are differentiable at this point.
  array a = array({0.1, 0.9, -0.3, 0.5}, {4});
  array u = array({0.7, -0.8, 0.2, 0.95, 0.3}, {5, 1});
  array idx = array({0, 1, 2, 1, 0});
  auto fmax = [&](const std::vector<array>& in) { return mx::scatter_max(in[0], idx, in[1], 0); };
  auto fmin = [&](const std::vector<array>& in) { return mx::scatter_min(in[0], idx, in[1], 0); };
  check_vjp(fmax, {a, u}, 0, 0);
  check_vjp(fmax, {a, u}, 1, 2);
  check_vjp(fmin, {a, u}, 0, 0);
  check_vjp(fmin, {a, u}, 1, 2);
}

// Checks the jvp of `f` for a tangent on input `arg` against central differences.
void check_jvp(const std::function<array(const std::vector<array>&)>& f,
               const std::vector<array>& inputs, int arg, int prim_arg) {
  array out = f(inputs);
  array t(random_values(inputs[arg].size(), 17), inputs[arg].shape());
  auto jt = out.primitive().jvp(out.inputs(), {t}, {prim_arg});
  ASSERT_EQ(jt.size(), 1u);
  ASSERT_EQ(jt[0].shape(), out.shape());
  const double eps = 1e-6;
  auto shifted = [&](double h) {
    auto in = inputs;
    in[arg] = inputs[arg] + t * h;
    return to_vector(f(in));
  };
  auto plus = shifted(eps), minus = shifted(-eps), got = to_vector(jt[0]);
  for (size_t k = 0; k < got.size(); ++k) {
    EXPECT_NEAR(got[k], (plus[k] - minus[k]) / (2 * eps), 1e-6) << "element " << k;
  }
}

TEST(IndexingGrad, ScatterProdMatchesFiniteDifferences) {
  // Duplicates, one position with a single zero update and one with two.
  array a = array({0.5, -1.5, 2.0, 0.75}, {4});
  array u = array({0.8, 0.0, -1.2, 0.0, 1.5, 0.0, 0.6}, {7, 1});
  array idx = array({0, 1, 0, 2, 1, 2, 3});
  auto f = [&](const std::vector<array>& in) { return mx::scatter_prod(in[0], idx, in[1], 0); };
  check_vjp(f, {a, u}, 0, 0);
  check_vjp(f, {a, u}, 1, 2);
  check_jvp(f, {a, u}, 0, 0);
  check_jvp(f, {a, u}, 1, 2);
}

TEST(IndexingGrad, ScatterJvpsMatchFiniteDifferences) {
  array a = array({0.1, 0.9, -0.3, 0.5}, {4});
  array u = array({0.7, -0.8, 0.2, 0.95, 0.3}, {5, 1});
  array idx = array({0, 1, 2, 1, 0});
  using Op = std::function<array(const array&, const array&)>;
  std::vector<Op> ops{
      [&](const array& x, const array& v) { return mx::scatter_max(x, idx, v, 0); },
      [&](const array& x, const array& v) { return mx::scatter_min(x, idx, v, 0); },
      [&](const array& x, const array& v) { return mx::scatter_add(x, idx, v, 0); }};
  for (auto& op : ops) {
    auto f = [&](const std::vector<array>& in) { return op(in[0], in[1]); };
    check_jvp(f, {a, u}, 0, 0);
    check_jvp(f, {a, u}, 1, 2);
  }
  array uniq = array({3, 0, 2});
  auto fs = [&](const std::vector<array>& in) { return mx::scatter(in[0], uniq, in[1], 0); };
  array u3 = array({1.0, 2.0, 3.0}, {3, 1});
  check_jvp(fs, {a, u3}, 0, 0);
  check_jvp(fs, {a, u3}, 1, 2);
}

TEST(IndexingGrad, ScatterJvp) {
  array a = array({1.0, 2.0, 3.0}, {3});
  array u = array({10.0, 20.0}, {2, 1});
  array out = mx::scatter_add(a, array({2, 2}), u, 0);
  array ta = array({0.5, 0.25, 1.0}, {3});
  array tu = array({2.0, -1.0}, {2, 1});
  // d(out) = ta + scatter_add(tu) by hand: [0.5, 0.25, 1 + 2 - 1]
  expect_close(out.primitive().jvp(out.inputs(), {ta, tu}, {0, 2})[0], {0.5, 0.25, 2.0}, {3});
  array out2 = mx::scatter(a, array({0}), array({5.0}, {1, 1}), 0);
  expect_close(out2.primitive().jvp(out2.inputs(), {ta}, {0})[0], {0.0, 0.25, 1.0}, {3});
}

// Ops built on gather/scatter inherit their derivatives; checked end to end
// through mx::vjp against central differences of <cot, f(x)>.
void check_fun_vjp(const std::function<array(const array&)>& f, const array& x) {
  array out = f(x);
  array cot(random_values(out.size(), 9), out.shape());
  auto [value, g] = mx::vjp(f, x, cot);
  auto gv = to_vector(g);
  auto c = to_vector(cot);
  auto xv = to_vector(x);
  ASSERT_EQ(g.shape(), x.shape());
  const double eps = 1e-6;
  for (size_t k = 0; k < xv.size(); ++k) {
    auto probe = [&](double delta) {
      auto xs = xv;
      xs[k] += delta;
      return dot(c, to_vector(f(array(xs, x.shape()))));
    };
    EXPECT_NEAR(gv[k], (probe(eps) - probe(-eps)) / (2 * eps), 1e-6) << "element " << k;
  }
}

TEST(IndexingGrad, OpsBuiltOnGatherAndScatter) {
  array x(random_values(12, 21), {3, 4});
  array idx = mx::reshape(array({3, 0, 0, -1, 2, 1}), {3, 2});
  check_fun_vjp([&](const array& a) { return mx::take_along_axis(a, idx, 1); }, x);
  check_fun_vjp([&](const array& a) { return mx::take(a, idx, 1); }, x);
  check_fun_vjp([&](const array& a) { return mx::take(a, array({5, -1, 5})); }, x);
  array v(random_values(6, 22), {3, 2});
  array uniq = mx::reshape(array({3, 0, 1, 2, 2, 0}), {3, 2});
  check_fun_vjp([&](const array& a) { return mx::put_along_axis(a, uniq, v, 1); }, x);
  check_fun_vjp([&](const array& vals) { return mx::put_along_axis(x, uniq, vals, 1); }, v);
}

// ---------------------------------------------------------------- vmap

TEST(IndexingVmap, GatherBatchedDataOrIndices) {
  array a = mx::reshape(mx::arange(12, mx::float32), {2, 2, 3});  // batch of two (2, 3)
  array idx = array({2, 0});
  // Batched data, shared indices: per batch b, out[b][i][r] = a[b][r][idx[i]].
  array prim = mx::gather(mx::take(a, 0, 0), idx, 1, {2, 1});  // template for the primitive
  auto [outs, ax] = prim.primitive().vmap({a, idx}, {0, -1});
  array o = mx::moveaxis(outs[0], ax[0], 0);  // (B, 2, 2, 1)
  expect_close(o, {2, 5, 0, 3, 8, 11, 6, 9}, {2, 2, 2, 1});
  // Batched indices and data: batch b uses its own index row.
  array bidx = mx::reshape(array({0, 2, 1, 1}), {2, 2});
  auto [outs2, ax2] = prim.primitive().vmap({a, bidx}, {0, 0});
  array o2 = mx::moveaxis(outs2[0], ax2[0], 0);
  // b=0: rows [0 1 2] [3 4 5] at cols 0,2 -> [[0,3],[2,5]]; b=1: cols 1,1 -> [[7,10],[7,10]]
  expect_close(o2, {0, 3, 2, 5, 7, 10, 7, 10}, {2, 2, 2, 1});
  // Batched indices, unbatched data.
  auto [outs3, ax3] = prim.primitive().vmap({mx::take(a, 0, 0), bidx}, {-1, 0});
  array o3 = mx::moveaxis(outs3[0], ax3[0], 0);
  expect_close(o3, {0, 3, 2, 5, 1, 4, 1, 4}, {2, 2, 2, 1});
}

TEST(IndexingVmap, ScatterAddBatched) {
  array base = mx::zeros({3});
  array prim = mx::scatter_add(base, array({0}), array({1.f}, {1, 1}), 0);
  // Batch of 2: data (2, 3), indices (2, 2) batched, updates (2, 2, 1) batched.
  array a = mx::reshape(mx::arange(6, mx::float32), {2, 3});
  array idx = mx::reshape(array({2, 2, 0, 1}), {2, 2});
  array upd = mx::reshape(array({1.f, 2.f, 10.f, 20.f}), {2, 2, 1});
  auto [outs, ax] = prim.primitive().vmap({a, idx, upd}, {0, 0, 0});
  array o = mx::moveaxis(outs[0], ax[0], 0);
  expect_close(o, {0, 1, 5, 13, 24, 5}, {2, 3});
  // Unbatched data and updates, batched indices.
  auto [outs2, ax2] = prim.primitive().vmap({base, idx, array({1.f, 2.f}, {2, 1})}, {-1, 0, -1});
  expect_close(mx::moveaxis(outs2[0], ax2[0], 0), {0, 0, 3, 1, 2, 0}, {2, 3});
}

TEST(Indexing, PrimitiveMetadata) {
  array a = mx::zeros({3, 4});
  array g1 = mx::gather(a, array({0, 2}), 1, {3, 1});
  array g2 = mx::gather(a, array({1, 1}), 1, {3, 1});
  array g3 = mx::gather(a, array({1, 1}), 1, {2, 1});
  EXPECT_STREQ(g1.primitive().name(), "Gather");
  EXPECT_TRUE(g1.primitive().is_equivalent(g2.primitive()));
  EXPECT_FALSE(g1.primitive().is_equivalent(g3.primitive()));
  EXPECT_EQ(g1.primitive().output_shapes(g1.inputs()), (std::vector<Shape>{{2, 3, 1}}));
  array u = mx::zeros({2, 3, 1});
  array s1 = mx::scatter_add(a, array({0, 2}), u, 1);
  array s2 = mx::scatter_max(a, array({0, 2}), u, 1);
  EXPECT_STREQ(s1.primitive().name(), "ScatterAdd");
  EXPECT_STREQ(s2.primitive().name(), "ScatterMax");
  EXPECT_FALSE(s1.primitive().is_equivalent(s2.primitive()));
  EXPECT_TRUE(s1.primitive().is_equivalent(mx::scatter_add(a, array({1, 3}), u, 1).primitive()));
  EXPECT_EQ(s1.primitive().output_shapes(s1.inputs()), (std::vector<Shape>{{3, 4}}));
}

TEST(IndexingVmap, ThroughTransforms) {
  // vmap over the rows of x of take(row, idx): out[b] = x[b][idx].
  array x = mx::reshape(mx::arange(8, mx::float32), {2, 4});
  array idx = array({3, 0, -1});
  auto f = mx::vmap([&](const array& row) { return mx::take(row, idx, 0); });
  expect_close(f(x), {3, 0, 3, 7, 4, 7}, {2, 3});
  // vmap over a batch of index rows with shared data.
  array data = array({10.f, 20.f, 30.f});
  auto g = mx::vmap([&](const array& i) { return mx::take(data, i, 0); });
  expect_close(g(mx::reshape(array({2, 0, 1, 1}), {2, 2})), {30, 10, 20, 20}, {2, 2});
  // A batched scatter_add where only the data is batched.
  auto h = mx::vmap([&](const array& row) {
    return mx::scatter_add(row, array({1, 1}), mx::reshape(array({1.f, 2.f}), {2, 1}), 0);
  });
  expect_close(h(x), {0, 4, 2, 3, 4, 8, 6, 7}, {2, 4});
}

}  // namespace
