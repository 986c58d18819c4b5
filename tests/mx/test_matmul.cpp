// Matrix products: matmul, addmm, outer, inner, tensordot and einsum against
// NumPy (tools/reference/matmul_refs.py -> tests/data/mx/matmul_refs.json),
// hand-worked values and naive float64 loops written here; derivatives of the
// primitives against float64 central differences.
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <functional>

#include "common/check.h"
#include "mlxcpp/mx/primitives/matmul.h"

namespace {

using mx::array;
using mx::Shape;
using mxtest::expect_close;
using mxtest::to_vector;

const nlohmann::json& refs() {
  static nlohmann::json j = [] {
    std::ifstream f(std::string(MLXCPP_TEST_DATA) + "/mx/matmul_refs.json");
    if (!f) throw std::runtime_error("cannot open matmul_refs.json");
    return nlohmann::json::parse(f);
  }();
  return j;
}

array from_json(const nlohmann::json& in, mx::Dtype dtype) {
  auto data = in["data"].get<std::vector<double>>();
  Shape shape = in["shape"].get<Shape>();
  return mx::astype(array(data, shape, mx::float64), dtype);
}

// Tolerances: the 16-bit cases have exactly representable inputs and float32
// accumulation, so only the output's rounding (half an ulp) remains.
std::pair<double, double> tolerance(mx::Dtype d) {
  if (d == mx::float64) return {1e-12, 1e-12};
  if (d == mx::float32) return {1e-5, 1e-5};
  if (d == mx::float16) return {1e-6, 1.0 / 2048};
  if (d == mx::bfloat16) return {1e-6, 1.0 / 256};
  return {0, 0};
}

array run_case(const nlohmann::json& c) {
  std::string op = c["op"];
  mx::Dtype dtype = mx::dtype_from_name(c["dtype"]);
  std::vector<array> in;
  for (auto& x : c["inputs"]) in.push_back(from_json(x, op == "einsum" ? mx::float64 : dtype));
  if (op == "matmul") return mx::matmul(in[0], in[1]);
  if (op == "addmm") return mx::addmm(in[0], in[1], in[2], c["alpha"], c["beta"]);
  if (op == "outer") return mx::outer(in[0], in[1]);
  if (op == "inner") return mx::inner(in[0], in[1]);
  if (op == "tensordot" && c.contains("axis")) return mx::tensordot(in[0], in[1], int(c["axis"]));
  if (op == "tensordot") {
    return mx::tensordot(in[0], in[1], c["axes_a"].get<std::vector<int>>(),
                         c["axes_b"].get<std::vector<int>>());
  }
  if (op == "einsum") return mx::einsum(c["spec"], in);
  throw std::runtime_error("unknown op " + op);
}

TEST(Matmul, NumpyReferences) {
  int checked = 0;
  for (auto& c : refs()["cases"]) {
    if (c["op"] == "matmul_complex") continue;
    SCOPED_TRACE(c["name"].get<std::string>());
    array out = run_case(c);
    mx::Dtype dtype = mx::dtype_from_name(c["dtype"]);
    EXPECT_EQ(out.dtype(), c["op"] == "einsum" ? mx::float64 : dtype);
    auto [atol, rtol] = tolerance(out.dtype());
    expect_close(out, c["expected"]["data"].get<std::vector<double>>(),
                 c["expected"]["shape"].get<Shape>(), atol, rtol);
    ++checked;
  }
  EXPECT_GT(checked, 80);
}

TEST(Matmul, Complex64ThroughBlas) {
  for (auto& c : refs()["cases"]) {
    if (c["op"] != "matmul_complex") continue;
    auto make = [](const nlohmann::json& in) {
      auto d = in["data"].get<std::vector<double>>();
      std::vector<mx::complex64_t> v;
      for (size_t i = 0; i < d.size(); i += 2) v.emplace_back(float(d[i]), float(d[i + 1]));
      return array(v, in["shape"].get<Shape>());
    };
    array out = mx::matmul(make(c["inputs"][0]), make(c["inputs"][1]));
    ASSERT_EQ(out.dtype(), mx::complex64);
    auto e = c["expected"]["data"].get<std::vector<double>>();
    std::vector<double> re, im;
    for (size_t i = 0; i < e.size(); i += 2) {
      re.push_back(e[i]);
      im.push_back(e[i + 1]);
    }
    Shape shape = c["expected"]["shape"].get<Shape>();
    expect_close(mx::real(out), re, shape, 1e-5, 1e-5);
    expect_close(mx::imag(out), im, shape, 1e-5, 1e-5);
  }
}

TEST(Matmul, HandWorked) {
  array a({1.0f, 2.0f, 3.0f, 4.0f}, {2, 2});
  array b({5.0f, 6.0f, 7.0f, 8.0f}, {2, 2});
  expect_close(mx::matmul(a, b), {19, 22, 43, 50}, {2, 2}, 0, 0);
  // a^T @ b through a transposed view: [[1,3],[2,4]] @ b
  expect_close(mx::matmul(mx::transpose(a), b), {26, 30, 38, 44}, {2, 2}, 0, 0);
  // vector @ matrix: [1, 1] @ b
  expect_close(mx::matmul(array({1.0f, 1.0f}), b), {12, 14}, {2}, 0, 0);
  // beta * c + alpha * a @ b with c broadcast over rows
  expect_close(mx::addmm(array({1.0f, -1.0f}), a, b, 2.0f, 3.0f), {41, 41, 89, 97}, {2, 2}, 0, 0);
  // integer matmul promotes int32 x int64 -> int64
  array ai({1, 2, 3, 4}, {2, 2}, mx::int32);
  array bi(std::vector<int64_t>{1, 0, 0, 1}, {2, 2});
  array ci = mx::matmul(ai, bi);
  EXPECT_EQ(ci.dtype(), mx::int64);
  expect_close(ci, {1, 2, 3, 4}, {2, 2}, 0, 0);
}

TEST(Matmul, NanAndInfPropagate) {
  for (mx::Dtype d : {mx::float32, mx::float64, mx::bfloat16, mx::float16}) {
    SCOPED_TRACE(mx::dtype_name(d));
    double nan = std::nan(""), inf = INFINITY;
    array a = mx::astype(array(std::vector<double>{nan, 1, 1, 1, inf, 1}, {3, 2}), d);
    array b = mx::astype(array(std::vector<double>{1, 1, 2, 3}, {2, 2}), d);
    expect_close(mx::matmul(a, b), {nan, nan, 3, 4, inf, inf}, {3, 2});
  }
}

// ---- layouts: transposed, sliced, broadcast views against a naive loop

// C = A @ B in float64 with plain loops over row-major data.
std::vector<double> naive(const std::vector<double>& a, const std::vector<double>& b, int M, int N,
                          int K, int batch = 1) {
  std::vector<double> c(size_t(batch) * M * N, 0.0);
  for (int t = 0; t < batch; ++t) {
    for (int i = 0; i < M; ++i) {
      for (int j = 0; j < N; ++j) {
        double s = 0;
        for (int k = 0; k < K; ++k)
          s += a[(size_t(t) * M + i) * K + k] * b[(size_t(t) * K + k) * N + j];
        c[(size_t(t) * M + i) * N + j] = s;
      }
    }
  }
  return c;
}

// Values exactly representable in bfloat16/float16: multiples of 1/8 in (-2, 2).
array exact_values(Shape shape, int seed) {
  size_t n = 1;
  for (int s : shape) n *= s;
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = double(int((i * 37 + seed * 11) % 31) - 15) / 8.0;
  return array(v, shape, mx::float64);
}

const mx::Dtype kAllFloat[] = {mx::float32, mx::float64, mx::float16, mx::bfloat16};

double rtol_for(mx::Dtype d) { return tolerance(d).second + 1e-12; }

TEST(Matmul, TransposedAndSlicedViews) {
  for (mx::Dtype d : kAllFloat) {
    SCOPED_TRACE(mx::dtype_name(d));
    array a64 = exact_values({7, 5}, 1), b64 = exact_values({5, 6}, 2);
    auto expected = naive(to_vector(a64), to_vector(b64), 7, 6, 5);
    array a = mx::astype(a64, d), b = mx::astype(b64, d);
    // Transposes of transposed copies are the original values with column-major strides.
    array at = mx::transpose(mx::copy(mx::transpose(a)));
    array bt = mx::transpose(mx::copy(mx::transpose(b)));
    expect_close(mx::matmul(at, b), expected, {7, 6}, 1e-6, rtol_for(d));
    expect_close(mx::matmul(a, bt), expected, {7, 6}, 1e-6, rtol_for(d));
    expect_close(mx::matmul(at, bt), expected, {7, 6}, 1e-6, rtol_for(d));
    // Strided slices (inner stride 2, and a row-stepped view).
    array wide = mx::astype(exact_values({7, 10}, 3), d);
    array as = mx::slice(wide, Shape{0, 1}, Shape{7, 10}, Shape{1, 2});  // (7, 5), column stride 2
    auto as_v = to_vector(as);
    expect_close(mx::matmul(as, b), naive(as_v, to_vector(b64), 7, 6, 5), {7, 6}, 1e-6,
                 rtol_for(d));
    array tall = mx::astype(exact_values({10, 6}, 4), d);
    array bs = mx::slice(tall, Shape{0, 0}, Shape{10, 6}, Shape{2, 1});  // (5, 6), row stride 12
    expect_close(mx::matmul(a, bs), naive(to_vector(a64), to_vector(bs), 7, 6, 5), {7, 6}, 1e-6,
                 rtol_for(d));
    // A row broadcast to a matrix (row stride 0).
    array row = mx::astype(exact_values({1, 5}, 5), d);
    array rows = mx::broadcast_to(row, {4, 5});
    expect_close(mx::matmul(rows, b), naive(to_vector(rows), to_vector(b64), 4, 6, 5), {4, 6}, 1e-6,
                 rtol_for(d));
  }
}

TEST(Matmul, BatchedTransposedViews) {
  for (mx::Dtype d : kAllFloat) {
    SCOPED_TRACE(mx::dtype_name(d));
    array a64 = exact_values({3, 4, 5}, 6), b64 = exact_values({3, 5, 2}, 7);
    auto expected = naive(to_vector(a64), to_vector(b64), 4, 2, 5, 3);
    array a = mx::astype(a64, d), b = mx::astype(b64, d);
    // Batch-major in memory as (3, 5, 4) then swapped: each matrix is column-major.
    array at = mx::swapaxes(mx::copy(mx::swapaxes(a, 1, 2)), 1, 2);
    expect_close(mx::matmul(at, b), expected, {3, 4, 2}, 1e-6, rtol_for(d));
    // The batch axis last in memory: strides (1, ...) on the batch dim.
    array bm = mx::moveaxis(mx::copy(mx::moveaxis(b, 0, 2)), 2, 0);
    expect_close(mx::matmul(a, bm), expected, {3, 4, 2}, 1e-6, rtol_for(d));
  }
}

TEST(Matmul, BatchBroadcastIsNotMaterialized) {
  // A (1, M, K) operand against a batch of 4: every output batch uses the same
  // matrix; the result is compared with the per-batch naive product.
  array a64 = exact_values({1, 3, 5}, 8), b64 = exact_values({4, 5, 2}, 9);
  auto av = to_vector(a64);
  std::vector<double> arep;
  for (int t = 0; t < 4; ++t) arep.insert(arep.end(), av.begin(), av.end());
  auto expected = naive(arep, to_vector(b64), 3, 2, 5, 4);
  for (mx::Dtype d : kAllFloat) {
    SCOPED_TRACE(mx::dtype_name(d));
    expect_close(mx::matmul(mx::astype(a64, d), mx::astype(b64, d)), expected, {4, 3, 2}, 1e-6,
                 rtol_for(d));
  }
}

// A batch of row blocks against one shared matrix (a linear layer over a batch
// of sequences, [B, M, K] @ [K, N]) runs as one product over all B * M rows;
// rows that are not evenly spaced (a strided slice of a longer batch) still
// take the per-entry path. Both against the naive float64 loop.
TEST(Matmul, SharedRightOperandAcrossTheBatch) {
  for (mx::Dtype d : kAllFloat) {
    SCOPED_TRACE(mx::dtype_name(d));
    for (int M : {1, 3}) {
      array a64 = exact_values({6, M, 5}, 10), w64 = exact_values({5, 7}, 11);
      auto wv = to_vector(w64);
      std::vector<double> wrep;
      for (int t = 0; t < 6; ++t) wrep.insert(wrep.end(), wv.begin(), wv.end());
      auto expected = naive(to_vector(a64), wrep, M, 7, 5, 6);
      array a = mx::astype(a64, d), w = mx::astype(w64, d);
      expect_close(mx::matmul(a, w), expected, {6, M, 7}, 1e-6, rtol_for(d));
      // The weight as a transposed view (how linear layers use it).
      array wt = mx::transpose(mx::copy(mx::transpose(w)));
      expect_close(mx::matmul(a, wt), expected, {6, M, 7}, 1e-6, rtol_for(d));
      // Every other batch entry of a longer batch: rows are not evenly spaced.
      array long64 = exact_values({12, M, 5}, 12);
      array every_other =
          mx::slice(mx::astype(long64, d), Shape{0, 0, 0}, Shape{12, M, 5}, Shape{2, 1, 1});
      auto ev = to_vector(every_other);
      expect_close(mx::matmul(every_other, w), naive(ev, wrep, M, 7, 5, 6), {6, M, 7}, 1e-6,
                   rtol_for(d));
    }
  }
}

// Products big enough for several cache blocks of the 16-bit kernel (and for
// OpenBLAS's threaded path), and every matrix-vector layout.
TEST(Matmul, LargeAndMatrixVectorShapes) {
  struct Case {
    int M, N, K;
    bool ta, tb;
  };
  const Case cases[] = {{200, 270, 300, false, false}, {130, 70, 520, true, false},
                        {97, 300, 64, false, true},    {1, 300, 700, false, true},
                        {1, 302, 45, false, true},     {1, 300, 700, false, false},
                        {300, 1, 700, false, false},   {300, 1, 700, true, false},
                        {1, 1, 1000, false, false},    {2, 33, 3, false, false}};
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.M) + "x" + std::to_string(c.N) + "x" + std::to_string(c.K) +
                 (c.ta ? " ta" : "") + (c.tb ? " tb" : ""));
    array a64 = exact_values({c.M, c.K}, 10), b64 = exact_values({c.K, c.N}, 11);
    auto expected = naive(to_vector(a64), to_vector(b64), c.M, c.N, c.K);
    for (mx::Dtype d : kAllFloat) {
      SCOPED_TRACE(mx::dtype_name(d));
      array a = mx::astype(a64, d), b = mx::astype(b64, d);
      if (c.ta) a = mx::transpose(mx::copy(mx::transpose(a)));
      if (c.tb) b = mx::transpose(mx::copy(mx::transpose(b)));
      // Sums of up to 700 products of multiples of 1/64: exact in float32.
      expect_close(mx::matmul(a, b), expected, {c.M, c.N}, 1e-6, rtol_for(d));
    }
  }
}

TEST(Matmul, Errors) {
  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  auto m = message([] { mx::matmul(mx::zeros({2, 3}), mx::zeros({4, 5})); });
  EXPECT_NE(m.find("[matmul]"), std::string::npos) << m;
  EXPECT_NE(m.find("(2, 3)"), std::string::npos) << m;
  EXPECT_NE(m.find("(4, 5)"), std::string::npos) << m;
  m = message([] { mx::matmul(mx::zeros({2, 3, 4}), mx::zeros({3, 4, 5})); });
  EXPECT_NE(m.find("(2, 3, 4)"), std::string::npos) << m;
  EXPECT_NE(m.find("(3, 4, 5)"), std::string::npos) << m;
  m = message([] { mx::matmul(array(1.0f), mx::zeros({2, 2})); });
  EXPECT_NE(m.find("[matmul]"), std::string::npos) << m;
  m = message([] { mx::matmul(mx::zeros({3}), mx::zeros({4})); });
  EXPECT_NE(m.find("(3,)"), std::string::npos) << m;
  EXPECT_NE(m.find("(4,)"), std::string::npos) << m;
  m = message([] { mx::addmm(mx::zeros({3}), mx::zeros({2, 2}), mx::zeros({2, 2})); });
  EXPECT_NE(m.find("[addmm]"), std::string::npos) << m;
  EXPECT_NE(m.find("(3,)"), std::string::npos) << m;
  m = message([] {
    mx::addmm(mx::zeros({2, 2}, mx::int32), mx::zeros({2, 2}, mx::int32),
              mx::zeros({2, 2}, mx::int32));
  });
  EXPECT_NE(m.find("[addmm]"), std::string::npos) << m;
  m = message([] { mx::inner(mx::zeros({2, 3}), mx::zeros({2, 4})); });
  EXPECT_NE(m.find("(2, 3)"), std::string::npos) << m;
  m = message([] { mx::tensordot(mx::zeros({2, 3}), mx::zeros({2, 4}), {1}, {0}); });
  EXPECT_NE(m.find("[tensordot]"), std::string::npos) << m;
  m = message([] { mx::tensordot(mx::zeros({2, 3}), mx::zeros({3}), 2); });
  EXPECT_NE(m.find("[tensordot]"), std::string::npos) << m;
  m = message([] { mx::einsum("ij,jk->ik", {mx::zeros({2, 3})}); });
  EXPECT_NE(m.find("[einsum]"), std::string::npos) << m;
  m = message([] { mx::einsum("ij,jk->ik", {mx::zeros({2, 3}), mx::zeros({4, 2})}); });
  EXPECT_NE(m.find("'j'"), std::string::npos) << m;
  m = message([] { mx::einsum("ij->ik", {mx::zeros({2, 3})}); });
  EXPECT_NE(m.find("'k'"), std::string::npos) << m;
  m = message([] { mx::einsum("ij", {mx::zeros({2, 3, 4})}); });
  EXPECT_NE(m.find("(2, 3, 4)"), std::string::npos) << m;
  m = message([] { mx::einsum("i1", {mx::zeros({2, 3})}); });
  EXPECT_NE(m.find("'1'"), std::string::npos) << m;
  m = message([] { mx::einsum("...ij->ij", {mx::zeros({2, 3, 4})}); });
  EXPECT_NE(m.find("..."), std::string::npos) << m;
  m = message([] { mx::einsum("ii->i", {mx::zeros({2, 3})}); });
  EXPECT_NE(m.find("[einsum]"), std::string::npos) << m;
}

TEST(Matmul, EmptyAndDtypes) {
  array out = mx::matmul(mx::zeros({0, 3}, mx::bfloat16), mx::zeros({3, 4}, mx::bfloat16));
  EXPECT_EQ(out.shape(), (Shape{0, 4}));
  out.eval();
  // K == 0: a sum of nothing is zero (and beta * c for addmm).
  expect_close(mx::matmul(mx::zeros({2, 0}, mx::float16), mx::zeros({0, 2}, mx::float16)),
               {0, 0, 0, 0}, {2, 2}, 0, 0);
  expect_close(mx::addmm(mx::ones({2, 2}), mx::zeros({2, 0}), mx::zeros({0, 2}), 1.0f, 3.0f),
               {3, 3, 3, 3}, {2, 2}, 0, 0);
  EXPECT_EQ(mx::matmul(mx::zeros({2, 2}, mx::bfloat16), mx::zeros({2, 2}, mx::float32)).dtype(),
            mx::float32);
  EXPECT_EQ(mx::matmul(mx::zeros({2, 2}, mx::int8), mx::zeros({2, 2}, mx::uint8)).dtype(),
            mx::int16);
}

// ---- derivatives against float64 central differences

// d/dx sum(w * f(x)) by central differences, element by element of x = in[arg].
std::vector<double> numeric_grad(const std::function<array(const std::vector<array>&)>& f,
                                 std::vector<array> in, int arg, const array& w) {
  auto base = to_vector(in[arg]);
  std::vector<double> g(base.size());
  const double h = 1e-6;
  for (size_t i = 0; i < base.size(); ++i) {
    auto at = [&](double delta) {
      auto v = base;
      v[i] += delta;
      auto args = in;
      args[arg] = array(v, in[arg].shape(), mx::float64);
      return mx::sum(mx::multiply(w, f(args))).item<double>();
    };
    g[i] = (at(h) - at(-h)) / (2 * h);
  }
  return g;
}

array random_like(Shape shape, int seed) {
  size_t n = 1;
  for (int s : shape) n *= s;
  std::vector<double> v(n);
  uint32_t x = 2463534242u + seed;
  for (auto& e : v) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    e = double(x % 20000) / 10000.0 - 1.0;
  }
  return array(v, shape, mx::float64);
}

TEST(MatmulGrad, VjpWithBatchBroadcastMatchesFiniteDifferences) {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{3, 4}, {4, 2}}, {{2, 1, 3, 4}, {5, 4, 2}}, {{3, 4}, {2, 4, 5}}, {{1, 2, 3}, {3, 1}}};
  for (auto& [sa, sb] : shapes) {
    array a = random_like(sa, 1), b = random_like(sb, 2);
    array out = mx::matmul(a, b);
    ASSERT_STREQ(out.primitive().name(), "Matmul");
    array w = random_like(out.shape(), 3);
    auto grads = out.primitive().vjp(out.inputs(), {w}, {0, 1}, {out});
    ASSERT_EQ(grads[0].shape(), sa);
    ASSERT_EQ(grads[1].shape(), sb);
    auto f = [](const std::vector<array>& x) { return mx::matmul(x[0], x[1]); };
    expect_close(grads[0], numeric_grad(f, {a, b}, 0, w), sa, 1e-7, 1e-6);
    expect_close(grads[1], numeric_grad(f, {a, b}, 1, w), sb, 1e-7, 1e-6);
    // jvp is bilinear: ta @ b + a @ tb, checked by a directional difference.
    array ta = random_like(sa, 4), tb = random_like(sb, 5);
    auto t = out.primitive().jvp(out.inputs(), {ta, tb}, {0, 1});
    const double h = 1e-6;
    array fd = mx::divide(mx::subtract(f({mx::add(a, mx::multiply(array(h), ta)),
                                          mx::add(b, mx::multiply(array(h), tb))}),
                                       f({mx::subtract(a, mx::multiply(array(h), ta)),
                                          mx::subtract(b, mx::multiply(array(h), tb))})),
                          array(2 * h));
    expect_close(t[0], to_vector(fd), out.shape(), 1e-7, 1e-6);
  }
}

TEST(MatmulGrad, AddmmVjpMatchesFiniteDifferences) {
  array a = random_like({2, 3, 4}, 6), b = random_like({4, 2}, 7), c = random_like({2}, 8);
  auto f = [](const std::vector<array>& x) { return mx::addmm(x[2], x[0], x[1], 0.5f, -2.0f); };
  array out = f({a, b, c});
  ASSERT_STREQ(out.primitive().name(), "AddMM");
  array w = random_like(out.shape(), 9);
  auto grads = out.primitive().vjp(out.inputs(), {w}, {0, 1, 2}, {out});
  expect_close(grads[0], numeric_grad(f, {a, b, c}, 0, w), {2, 3, 4}, 1e-7, 1e-6);
  expect_close(grads[1], numeric_grad(f, {a, b, c}, 1, w), {4, 2}, 1e-7, 1e-6);
  // The primitive sees c broadcast to the output; its cotangent is beta * w.
  expect_close(grads[2], to_vector(mx::multiply(array(-2.0), w)), out.shape(), 1e-12, 1e-12);
}

TEST(MatmulGrad, VmapMatchesPerSliceProducts) {
  array a = random_like({3, 4}, 10), bs = random_like({4, 5, 3}, 11);  // mapped over axis 1
  array out = mx::matmul(a, mx::squeeze(mx::slice(bs, {0, 0, 0}, {4, 1, 3}), 1));
  auto [res, axes] = out.primitive().vmap({a, bs}, {-1, 1});
  ASSERT_EQ(axes[0], 0);
  ASSERT_EQ(res[0].shape(), (Shape{5, 3, 3}));
  std::vector<double> expected;
  for (int v = 0; v < 5; ++v) {
    array bv = mx::squeeze(mx::slice(bs, {0, v, 0}, {4, v + 1, 3}), 1);
    auto r = to_vector(mx::matmul(a, bv));
    expected.insert(expected.end(), r.begin(), r.end());
  }
  expect_close(res[0], expected, {5, 3, 3}, 1e-12, 1e-12);
}

}  // namespace
