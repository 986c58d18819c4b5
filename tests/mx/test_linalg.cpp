// mx::linalg against numpy.linalg (tools/reference/linalg_refs.py →
// tests/data/mx/linalg_refs.json), reconstruction identities, error messages
// and derivatives against float64 central differences.
#include <fstream>
#include <functional>
#include <limits>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "mlxcpp/mx/linalg.h"

namespace {

using mx::array;
using mx::Shape;
namespace linalg = mx::linalg;
using mxtest::expect_close;
using mxtest::to_vector;

const nlohmann::json& refs() {
  static nlohmann::json j = [] {
    std::ifstream f(std::string(MLXCPP_TEST_DATA) + "/mx/linalg_refs.json");
    return nlohmann::json::parse(f);
  }();
  return j;
}

array from_json(const nlohmann::json& j, mx::Dtype dtype) {
  Shape shape = j["shape"].get<Shape>();
  auto data = j["data"].get<std::vector<double>>();
  return mx::astype(array(data.begin(), shape, mx::float64), dtype);
}

array input(const std::string& name, int i = 0, mx::Dtype dtype = mx::float64) {
  return from_json(refs()["cases"][name]["inputs"][i], dtype);
}

void expect_output(const array& got, const std::string& name, int i = 0, double tol = 1e-10) {
  const auto& o = refs()["cases"][name]["outputs"][i];
  expect_close(got, o["data"].get<std::vector<double>>(), o["shape"].get<Shape>(), tol, tol);
}

array mT(const array& a) { return mx::swapaxes(a, -1, -2); }

void expect_throws_with(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    for (auto& p : parts) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << " lacks " << p;
    }
  }
}

TEST(Linalg, VectorNorms) {
  array v = input("norm_vec_2");
  expect_output(linalg::norm(v), "norm_vec_2");
  const double inf = std::numeric_limits<double>::infinity();
  for (auto [ord, name] : std::vector<std::pair<double, std::string>>{{2, "2"},
                                                                      {1, "1"},
                                                                      {inf, "inf"},
                                                                      {-inf, "-inf"},
                                                                      {0, "0"},
                                                                      {3, "3"},
                                                                      {0.5, "0.5"},
                                                                      {-1, "-1"}}) {
    expect_output(linalg::norm(v, ord), "norm_vec_" + name);
    expect_output(linalg::norm(v, ord, 0), "norm_vec_" + name);
  }
  // float32 and integer inputs (integers become float32).
  expect_output(linalg::norm(mx::astype(v, mx::float32), 3.0), "norm_vec_3", 0, 1e-5);
  expect_close(linalg::norm(array({3, 4})), {5}, {}, 1e-6);
  EXPECT_EQ(linalg::norm(array({3, 4})).dtype(), mx::float32);
}

TEST(Linalg, MatrixNorms) {
  array m = input("norm_mat_fro");
  const double inf = std::numeric_limits<double>::infinity();
  for (auto [ord, name] : std::vector<std::pair<double, std::string>>{
           {1, "1"}, {-1, "-1"}, {2, "2"}, {-2, "-2"}, {inf, "inf"}, {-inf, "-inf"}}) {
    expect_output(linalg::norm(m, ord), "norm_mat_" + name);
  }
  expect_output(linalg::norm(m, "fro"), "norm_mat_fro");
  expect_output(linalg::norm(m, "nuc"), "norm_mat_nuc");
  expect_output(linalg::norm(m, std::vector<int>{0, 1}), "norm_mat_fro");
}

TEST(Linalg, NormAxesAndKeepdims) {
  array t = input("norm_default_3d");
  expect_output(linalg::norm(t), "norm_default_3d");
  expect_output(linalg::norm(t, std::nullopt, true), "norm_default_keepdims");
  expect_output(linalg::norm(t, 1), "norm_axis1");
  expect_output(linalg::norm(t, -1, true), "norm_axis_m1_keep");
  expect_output(linalg::norm(t, std::vector<int>{0, 2}), "norm_axes_02_fro");
  expect_output(linalg::norm(t, "fro", std::vector<int>{0, 2}), "norm_axes_02_fro");
  expect_output(linalg::norm(t, 3.0, 0), "norm_ord3_axis0");
  const double inf = std::numeric_limits<double>::infinity();
  expect_output(linalg::norm(t, inf, std::vector<int>{2, 0}), "norm_inf_axes_20");
  expect_output(linalg::norm(t, 1.0, std::vector<int>{1, 2}, true), "norm_1_axes_12_keep");
  expect_output(linalg::norm(t, -1.0, std::vector<int>{2, 1}), "norm_m1_axes_21");
  expect_output(linalg::norm(t, 2.0, std::vector<int>{1, 2}, true), "norm_2_axes_12_keep");
  expect_output(linalg::norm(t, "nuc", std::vector<int>{0, 1}), "norm_nuc_axes_01");
  expect_output(linalg::norm(t, -2.0, std::vector<int>{2, 1}), "norm_m2_axes_21");
}

TEST(Linalg, NormErrors) {
  array t = input("norm_default_3d");
  expect_throws_with([&] { linalg::norm(t, 2.0); }, {"(2, 3, 4)"});
  expect_throws_with([&] { linalg::norm(t, "fro", 1); }, {"fro", "2 axes"});
  expect_throws_with([&] { linalg::norm(t, 3.0, std::vector<int>{0, 1}); }, {"ord"});
  expect_throws_with([&] { linalg::norm(t, "bad", std::vector<int>{0, 1}); }, {"bad"});
  expect_throws_with([&] { linalg::norm(t, std::vector<int>{1, -2}); }, {"differ"});
  expect_throws_with([&] { linalg::norm(t, 3); }, {"axis 3"});
}

TEST(Linalg, InverseAndSolve) {
  array a = input("inv_batched");
  array ai = linalg::inv(a);
  expect_output(ai, "inv_batched", 0, 1e-10);
  // A A^-1 = I for each matrix of the batch.
  auto prod = to_vector(mx::matmul(a, ai));
  for (int b = 0; b < 3; ++b) {
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 4; ++j) EXPECT_NEAR(prod[b * 16 + i * 4 + j], i == j, 1e-12);
    }
  }
  expect_output(linalg::solve(a, input("solve_matrix", 1)), "solve_matrix");
  array bv = input("solve_vector", 1);
  array x = linalg::solve(a, bv);
  expect_output(x, "solve_vector");
  expect_close(mx::squeeze(mx::matmul(a, mx::expand_dims(x, -1)), -1), to_vector(bv), {3, 4}, 1e-12,
               1e-12);
  expect_output(linalg::solve(input("solve_broadcast"), input("solve_broadcast", 1)),
                "solve_broadcast");
  // float32
  expect_output(linalg::inv(mx::astype(a, mx::float32)), "inv_batched", 0, 1e-5);
  EXPECT_EQ(linalg::inv(mx::astype(a, mx::float32)).dtype(), mx::float32);
}

TEST(Linalg, TriangularInverses) {
  expect_output(linalg::tri_inv(input("tri_inv_lower"), false), "tri_inv_lower");
  expect_output(linalg::tri_inv(input("tri_inv_upper"), true), "tri_inv_upper");
  // Only the requested triangle is read.
  array lo = input("tri_inv_lower");
  array noisy = mx::add(lo, mT(mx::subtract(lo, mx::multiply(lo, mx::eye(4, mx::float64)))));
  expect_output(linalg::tri_inv(noisy, false), "tri_inv_lower");
  expect_output(linalg::cholesky_inv(input("cholesky_inv"), false), "cholesky_inv", 0, 1e-10);
  expect_output(linalg::cholesky_inv(mT(input("cholesky_inv")), true), "cholesky_inv", 0, 1e-10);
  array b = input("solve_matrix", 1);
  array y = linalg::solve_triangular(mx::take(lo, 0, 0), mx::take(b, 0, 0), false);
  expect_close(mx::matmul(mx::take(lo, 0, 0), y), to_vector(mx::take(b, 0, 0)), {4, 2}, 1e-12);
}

TEST(Linalg, Cholesky) {
  array s = input("cholesky_lower");
  array l = linalg::cholesky(s);
  expect_output(l, "cholesky_lower");
  expect_close(mx::matmul(l, mT(l)), to_vector(s), s.shape(), 1e-10, 1e-12);
  array u = linalg::cholesky(s, true);
  expect_output(u, "cholesky_upper");
  expect_close(mx::matmul(mT(u), u), to_vector(s), s.shape(), 1e-10, 1e-12);
  expect_output(linalg::cholesky(mx::astype(s, mx::float32)), "cholesky_lower", 0, 1e-4);
}

TEST(Linalg, QR) {
  for (std::string name : {"qr_5x3", "qr_3x5", "qr_2x4x4"}) {
    array a = input(name);
    auto [q, r] = linalg::qr(a);
    // numpy uses the same Householder routines, so the signs agree too.
    expect_output(q, name, 0);
    expect_output(r, name, 1);
    expect_close(mx::matmul(q, r), to_vector(a), a.shape(), 1e-12, 1e-12);
    int k = q.shape(-1);
    auto qtq = to_vector(mx::matmul(mT(q), q));
    for (size_t i = 0; i < qtq.size(); ++i) {
      int r_ = (i / k) % k, c = i % k;
      EXPECT_NEAR(qtq[i], r_ == c, 1e-12) << name;
    }
  }
}

TEST(Linalg, SVD) {
  for (std::string name : {"5x3", "3x5", "2x4x4"}) {
    array a = input("svdvals_" + name);
    expect_output(linalg::svd(a, false)[0], "svdvals_" + name);
    auto usv = linalg::svd(a);
    ASSERT_EQ(usv.size(), 3u);
    expect_output(usv[1], "svdvals_" + name);
    int m = a.shape(-2), n = a.shape(-1), k = std::min(m, n);
    EXPECT_EQ(usv[0].shape(-1), m);
    EXPECT_EQ(usv[2].shape(-1), n);
    Shape us = usv[0].shape(), vs = usv[2].shape();
    Shape ustart(us.size(), 0), vstart(vs.size(), 0);
    us.back() = k;
    vs[vs.size() - 2] = k;
    array uk = mx::slice(usv[0], ustart, us);
    array vk = mx::slice(usv[2], vstart, vs);
    array recon = mx::matmul(mx::multiply(uk, mx::expand_dims(usv[1], -2)), vk);
    expect_close(recon, to_vector(a), a.shape(), 1e-12, 1e-12);
    expect_output(linalg::pinv(a), "pinv_" + name, 0, 1e-10);
  }
}

TEST(Linalg, Eigh) {
  array a = input("eigh_L");
  auto [w, v] = linalg::eigh(a);
  expect_output(w, "eigh_L", 0);
  expect_output(linalg::eigvalsh(a), "eigh_L", 0);
  // Eigenvectors are unique up to sign: compare |v| and check A V = V diag(w).
  const auto& ref = refs()["cases"]["eigh_L"]["outputs"][1]["data"];
  auto got = to_vector(v);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(std::abs(got[i]), std::abs(ref[i].get<double>()), 1e-10);
  }
  expect_close(mx::matmul(a, v), to_vector(mx::multiply(v, mx::expand_dims(w, -2))), a.shape(),
               1e-10, 1e-10);
  expect_output(linalg::eigvalsh(input("eigvalsh_L_reads_lower")), "eigvalsh_L_reads_lower");
  expect_output(linalg::eigvalsh(input("eigvalsh_U"), "U"), "eigvalsh_U");
  expect_output(linalg::eigvalsh(mx::astype(a, mx::float32)), "eigh_L", 0, 1e-4);
}

TEST(Linalg, Cross) {
  // As MLX, both inputs need the same rank; size-1 axes broadcast.
  expect_output(linalg::cross(input("cross"), mx::reshape(input("cross", 1), {1, 3})), "cross");
  expect_throws_with([] { linalg::cross(mx::zeros({2, 3}), mx::zeros({3})); }, {"(2, 3)", "(3,)"});
  expect_output(linalg::cross(input("cross_axis0"), input("cross_axis0", 1), 0), "cross_axis0");
  expect_throws_with(
      [] {
        linalg::cross(mx::zeros({2, 3}), mx::zeros({2, 4}));
      },
      {"(2, 3)", "(2, 4)", "size 3"});
}

TEST(Linalg, EmptyBatches) {
  array e = mx::zeros({0, 3, 3}, mx::float64);
  EXPECT_EQ(linalg::inv(e).shape(), (Shape{0, 3, 3}));
  EXPECT_EQ(to_vector(linalg::inv(e)).size(), 0u);
  EXPECT_EQ(to_vector(linalg::cholesky(e)).size(), 0u);
  EXPECT_EQ(linalg::svd(e, false)[0].shape(), (Shape{0, 3}));
  EXPECT_EQ(to_vector(linalg::svd(e, false)[0]).size(), 0u);
  EXPECT_EQ(to_vector(linalg::eigvalsh(e)).size(), 0u);
  EXPECT_EQ(to_vector(linalg::qr(e).first).size(), 0u);
  EXPECT_EQ(to_vector(linalg::solve(e, mx::zeros({0, 3}, mx::float64))).size(), 0u);
}

TEST(Linalg, Errors) {
  expect_throws_with([] { linalg::inv(mx::zeros({2, 3})); }, {"[linalg::inv]", "(2, 3)"});
  expect_throws_with([] { linalg::inv(mx::zeros({3})); }, {"(3,)"});
  expect_throws_with([] { linalg::inv(array({1, 2, 3, 4}, {2, 2})); }, {"int32"});
  expect_throws_with([] { linalg::inv(array({1.f, 2.f, 2.f, 4.f}, {2, 2})).eval(); }, {"singular"});
  auto batch = mx::stack({mx::eye(2), array({1.f, 2.f, 2.f, 4.f}, {2, 2})});
  expect_throws_with([&] { linalg::inv(batch).eval(); }, {"matrix 1 of the batch", "singular"});
  expect_throws_with(
      [] {
        linalg::cholesky(array({1.f, 2.f, 2.f, 1.f}, {2, 2})).eval();
      },
      {"positive definite"});
  expect_throws_with([] { linalg::solve(mx::eye(3), mx::zeros({4, 2})); }, {"(3, 3)", "(4, 2)"});
  expect_throws_with(
      [] {
        linalg::solve(mx::zeros({2, 3, 3}), mx::zeros({4, 3, 1}));
      },
      {"(2, 3, 3)", "(4, 3, 1)"});
  expect_throws_with(
      [] {
        linalg::solve(array({1.f, 2.f, 2.f, 4.f}, {2, 2}), mx::ones({2})).eval();
      },
      {"singular"});
  expect_throws_with([] { linalg::eigh(mx::eye(2), "X"); }, {"UPLO", "X"});
  expect_throws_with([] { linalg::cholesky(mx::zeros({2, 3})); }, {"(2, 3)"});
}

// ---------------------------------------------------------------- derivatives

// Central-difference gradient of sum(c * f(a)) with respect to a (float64).
std::vector<double> numeric_grad(const std::function<array(const array&)>& f, const array& a,
                                 const array& c, double eps = 1e-6) {
  auto av = to_vector(a);
  auto cv = to_vector(c);
  auto loss = [&](const std::vector<double>& x) {
    auto y = to_vector(f(array(x.begin(), a.shape(), mx::float64)));
    double s = 0;
    for (size_t i = 0; i < y.size(); ++i) s += y[i] * cv[i];
    return s;
  };
  std::vector<double> g(av.size());
  for (size_t i = 0; i < av.size(); ++i) {
    auto p = av, m = av;
    p[i] += eps;
    m[i] -= eps;
    g[i] = (loss(p) - loss(m)) / (2 * eps);
  }
  return g;
}

void check_vjp(const std::function<array(const array&)>& f, const array& a, uint64_t seed,
               double tol = 1e-6) {
  array out = f(a);
  array c = mx::random::normal(out.shape(), mx::float64, mx::random::key(seed));
  auto [y, g] = mx::vjp(f, a, c);
  expect_close(g, numeric_grad(f, a, c), a.shape(), tol, tol);
}

void check_jvp(const std::function<array(const array&)>& f, const array& a, uint64_t seed,
               double tol = 1e-6) {
  array t = mx::random::normal(a.shape(), mx::float64, mx::random::key(seed));
  auto [y, dy] = mx::jvp(f, a, t);
  double eps = 1e-6;
  auto yp = to_vector(f(mx::add(a, mx::multiply(array(eps), t))));
  auto ym = to_vector(f(mx::subtract(a, mx::multiply(array(eps), t))));
  std::vector<double> fd(yp.size());
  for (size_t i = 0; i < fd.size(); ++i) fd[i] = (yp[i] - ym[i]) / (2 * eps);
  expect_close(dy, fd, y.shape(), tol, tol);
}

TEST(LinalgGrad, Inverse) {
  array a = input("inv_batched");
  check_vjp([](const array& x) { return linalg::inv(x); }, a, 1);
  check_jvp([](const array& x) { return linalg::inv(x); }, a, 2);
  array lo = input("tri_inv_lower");
  check_vjp([](const array& x) { return linalg::tri_inv(x, false); }, lo, 3);
  check_jvp([](const array& x) { return linalg::tri_inv(x, true); }, mT(lo), 4);
}

TEST(LinalgGrad, Solve) {
  array a = input("solve_matrix"), b = input("solve_matrix", 1);
  check_vjp([&](const array& x) { return linalg::solve(x, b); }, a, 5);
  check_vjp([&](const array& x) { return linalg::solve(a, x); }, b, 6);
  check_jvp([&](const array& x) { return linalg::solve(x, b); }, a, 7);
  array bv = input("solve_vector", 1);
  check_vjp([&](const array& x) { return linalg::solve(a, x); }, bv, 8);
}

TEST(LinalgGrad, Cholesky) {
  array s = input("cholesky_lower");
  // Only one triangle is read, so the other gets zero gradient (checked by FD too).
  check_vjp([](const array& x) { return linalg::cholesky(x); }, s, 9);
  check_vjp([](const array& x) { return linalg::cholesky(x, true); }, s, 10);
  check_jvp([](const array& x) { return linalg::cholesky(x); }, s, 11);
  check_jvp([](const array& x) { return linalg::cholesky(x, true); }, s, 12);
}

TEST(LinalgGrad, EighAndSVD) {
  array a = input("eigh_L");
  check_vjp([](const array& x) { return linalg::eigvalsh(x); }, a, 13);
  check_vjp([](const array& x) { return linalg::eigvalsh(x, "U"); }, a, 14);
  check_jvp([](const array& x) { return linalg::eigvalsh(x); }, a, 15);
  // Squares of eigenvector entries do not depend on the sign LAPACK picks.
  check_vjp([](const array& x) { return mx::square(linalg::eigh(x).second); }, a, 16, 1e-5);
  array m = input("svdvals_5x3");
  check_vjp([](const array& x) { return linalg::svd(x, false)[0]; }, m, 17);
  check_vjp([](const array& x) { return linalg::svd(x, true)[1]; }, m, 18);
  check_jvp([](const array& x) { return linalg::svd(x, false)[0]; }, input("svdvals_3x5"), 19);
  check_vjp([](const array& x) { return linalg::norm(x, "nuc"); }, m, 20);
  check_vjp([](const array& x) { return linalg::norm(x, 2.0); }, m, 21);
}

// A function of the full SVD that does not depend on the sign of each singular
// vector nor on the basis LAPACK picks for the complement of the leading K
// columns of U (rows of Vt): only the projector onto that complement enters.
array svd_invariants(const array& x) {
  int m = x.shape(-2), n = x.shape(-1), k = std::min(m, n);
  auto usv = linalg::svd(x, true);
  array u1 = mx::slice(usv[0], {0, 0}, {m, k}), u2 = mx::slice(usv[0], {0, k}, {m, m});
  array v1 = mx::slice(usv[2], {0, 0}, {k, n}), v2 = mx::slice(usv[2], {k, 0}, {n, n});
  return mx::concatenate({mx::flatten(mx::square(u1)), mx::flatten(mx::square(v1)), usv[1],
                          mx::flatten(mx::matmul(u2, mT(u2))),
                          mx::flatten(mx::matmul(mT(v2), v2))});
}

TEST(LinalgGrad, SVDVectors) {
  for (const char* name : {"svdvals_5x3", "svdvals_3x5"}) {
    SCOPED_TRACE(name);
    array m = input(name);
    check_vjp(svd_invariants, m, 25, 1e-5);
    check_jvp(svd_invariants, m, 26, 1e-5);
    // Second order: the gradient of a scalar of U, S, Vt, differentiated again.
    auto scalar = [](const array& x) { return mx::sum(mx::sin(svd_invariants(x))); };
    check_vjp(mx::grad(scalar), m, 27, 1e-5);
  }
}

TEST(LinalgGrad, ForwardModeFactors) {
  array a = input("qr_5x3");
  check_jvp([](const array& x) { return linalg::qr(x).first; }, a, 28);
  check_jvp([](const array& x) { return linalg::qr(x).second; }, a, 29);
  check_jvp([](const array& x) { return mx::square(linalg::eigh(x).second); }, input("eigh_L"), 30,
            1e-5);
  check_jvp([](const array& x) { return mx::square(linalg::eigh(x, "U").second); }, input("eigh_L"),
            31, 1e-5);
  expect_throws_with(
      [] {
        mx::jvp([](const array& x) { return linalg::qr(x).first; }, mx::ones({2, 3}),
                mx::ones({2, 3}));
      },
      {"[linalg::qr]", "(2, 3)"});
}

TEST(LinalgGrad, QR) {
  array a = input("qr_5x3");
  check_vjp([](const array& x) { return linalg::qr(x).first; }, a, 22);
  check_vjp([](const array& x) { return linalg::qr(x).second; }, a, 23);
  check_vjp(
      [](const array& x) {
        auto [q, r] = linalg::qr(x);
        return mx::add(mx::sum(q), mx::sum(r));
      },
      input("qr_2x4x4"), 24);
  expect_throws_with(
      [] {
        mx::vjp([](const array& x) { return linalg::qr(x).second; }, mx::ones({2, 3}),
                mx::ones({2, 3}));
      },
      {"(2, 3)"});
}

TEST(LinalgGrad, Vmap) {
  array a = input("inv_batched");
  auto f = mx::vmap([](const array& x) { return linalg::inv(x); }, 0, 0);
  expect_output(f(a), "inv_batched");
  auto g = mx::vmap([](const array& x) { return linalg::inv(x); }, 2, 0);
  expect_output(g(mx::transpose(a, {1, 2, 0})), "inv_batched");
}

}  // namespace
