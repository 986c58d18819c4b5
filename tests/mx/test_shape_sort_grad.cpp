// Derivatives and vmap of the primitives that test_grad_checks.cpp does not
// reach: dynamic slice / slice_update, the pad value, as_strided (overlapping),
// view (not differentiable), argsort (zero derivative). vjp and jvp are
// compared with float64 central finite differences; vmap with slice-by-slice
// application.
#include <cmath>
#include <functional>
#include <random>
#include <string>

#include "common/check.h"

namespace {

using mx::array;
using mx::Shape;
using mxtest::expect_close;
using mxtest::to_vector;
using Fn = std::function<array(const array&)>;

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

std::vector<double> random_values(size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

size_t numel(const Shape& s) {
  size_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

std::vector<double> eval_at(const Fn& f, const std::vector<double>& x, const Shape& shape) {
  return to_vector(f(array(x, shape, mx::float64)));
}

// vjp with a random cotangent and jvp with a random tangent, both against
// central differences of f.
void check_derivatives(const Fn& f, const Shape& shape, const std::string& name) {
  constexpr double eps = 1e-6, tol = 1e-6;
  auto x = random_values(numel(shape), 1);
  array y = f(array(x, shape, mx::float64));
  auto cot = random_values(y.size(), 2);
  auto [outs, grads] = mx::vjp(f, array(x, shape, mx::float64), array(cot, y.shape(), mx::float64));
  ASSERT_EQ(grads.shape(), shape) << name;
  auto g = to_vector(grads);
  for (size_t j = 0; j < x.size(); ++j) {
    auto xp = x, xm = x;
    xp[j] += eps;
    xm[j] -= eps;
    auto fp = eval_at(f, xp, shape), fm = eval_at(f, xm, shape);
    double fd = 0;
    for (size_t i = 0; i < fp.size(); ++i) fd += cot[i] * (fp[i] - fm[i]) / (2 * eps);
    EXPECT_NEAR(g[j], fd, tol * (1 + std::abs(fd))) << name << " vjp element " << j;
  }
  auto t = random_values(x.size(), 3);
  auto [o2, tan] = mx::jvp(f, array(x, shape, mx::float64), array(t, shape, mx::float64));
  auto xp = x, xm = x;
  for (size_t j = 0; j < x.size(); ++j) {
    xp[j] += eps * t[j];
    xm[j] -= eps * t[j];
  }
  auto fp = eval_at(f, xp, shape), fm = eval_at(f, xm, shape);
  auto tv = to_vector(tan);
  ASSERT_EQ(tv.size(), fp.size()) << name;
  for (size_t i = 0; i < fp.size(); ++i) {
    double fd = (fp[i] - fm[i]) / (2 * eps);
    EXPECT_NEAR(tv[i], fd, tol * (1 + std::abs(fd))) << name << " jvp element " << i;
  }
}

// vmap(f) over axis 0 of a (B, shape...) input equals f of each slice.
void check_vmap(const Fn& f, const Shape& shape, const std::string& name) {
  constexpr int B = 3;
  Shape bs = shape;
  bs.insert(bs.begin(), B);
  array xb(random_values(numel(bs), 4), bs, mx::float64);
  array out = mx::vmap(f)(xb);
  ASSERT_EQ(out.shape(0), B) << name;
  for (int b = 0; b < B; ++b) {
    Shape start(bs.size(), 0), stop = bs;
    start[0] = b;
    stop[0] = b + 1;
    array xs = mx::squeeze(mx::slice(xb, start, stop), 0);
    Shape os(out.ndim(), 0), oe = out.shape();
    os[0] = b;
    oe[0] = b + 1;
    array want = f(xs);
    expect_close(mx::squeeze(mx::slice(out, os, oe), 0), to_vector(want), want.shape(), 1e-12,
                 1e-12);
  }
}

TEST(ShapeGrad, DynamicSlice) {
  array start = mx::array({1, 2}, mx::int32);
  Fn f = [start](const array& x) { return mx::square(mx::slice(x, start, {0, 1}, {2, 2})); };
  check_derivatives(f, {4, 5}, "dynamic slice");
  check_vmap(f, {4, 5}, "dynamic slice");
  // The start is an integer input: it gets a zero cotangent.
  auto [o, g] = mx::vjp(
      [](const std::vector<array>& in) {
        return std::vector<array>{mx::slice(in[0], in[1], {0}, {2})};
      },
      {mx::array({1.0, 2.0, 3.0}), mx::array({1})}, {mx::array({1.0, 1.0})});
  expect_close(g[0], {0, 1, 1}, {3});
  expect_invalid(
      [&] {
        mx::vmap([](const array& s) { return mx::slice(mx::zeros({4}), s, {0}, {2}); })(
            mx::array({0, 1}, {2, 1}));
      },
      {"[slice]", "start"});
}

TEST(ShapeGrad, DynamicSliceUpdate) {
  array start = mx::array({2, 1});
  array upd = mx::array({0.5, -1.0, 2.0}, {1, 3});
  // Derivative with respect to the source (the window is overwritten).
  Fn fs = [&](const array& x) { return mx::sin(mx::slice_update(x, upd, start, {0, 1})); };
  check_derivatives(fs, {3, 4}, "slice_update src");
  check_vmap(fs, {3, 4}, "slice_update src");
  // With respect to the update.
  array src = mx::array(random_values(12, 7), {3, 4}, mx::float64);
  Fn fu = [&](const array& u) { return mx::sin(mx::slice_update(src, u, start, {0, 1})); };
  check_derivatives(fu, {1, 3}, "slice_update update");
  check_vmap(fu, {1, 3}, "slice_update update");
}

TEST(ShapeGrad, PadValueAndVmap) {
  array x = mx::array(random_values(6, 9), {2, 3}, mx::float64);
  // Scalar pad value: the gradient sums the cotangent over the padding.
  Fn fv = [&](const array& v) { return mx::square(mx::pad(x, {{1, 0}, {0, 2}}, v)); };
  check_derivatives(fv, {}, "pad value");
  Fn fx = [](const array& a) { return mx::pad(a, {{1, 0}, {2, 1}}, mx::array(0.5)); };
  check_vmap(fx, {2, 3}, "pad");
  Fn fe = [](const array& a) { return mx::pad(a, {{0, 2}, {1, 1}}, mx::array(0), "edge"); };
  check_vmap(fe, {2, 3}, "pad edge");
}

TEST(ShapeGrad, AsStrided) {
  // Overlapping windows: x[1 + 2i + j] and x[1 + i + j] read some elements
  // more than once, so their cotangents add up.
  for (auto strides : {mx::Strides{2, 1}, mx::Strides{1, 1}, mx::Strides{-2, 0}}) {
    size_t off = strides[0] < 0 ? 5 : 1;
    Fn f = [strides, off](const array& x) {
      return mx::square(mx::as_strided(x, {3, 2}, strides, off));
    };
    std::string name =
        "as_strided strides " + std::to_string(strides[0]) + "," + std::to_string(strides[1]);
    check_derivatives(f, {8}, name);
    check_vmap(f, {8}, name);
  }
  // Hand-worked: as_strided(arange(4), (2, 2), (1, 1)) = [[0, 1], [1, 2]];
  // a cotangent of ones gives [1, 2, 1, 0].
  auto [o, g] = mx::vjp(
      [](const array& x) {
        return mx::as_strided(x, {2, 2}, {1, 1}, 0);
      },
      mx::array({0.0, 1.0, 2.0, 3.0}), mx::ones({2, 2}, mx::float64));
  expect_close(g, {1, 2, 1, 0}, {4});
}

TEST(ShapeGrad, ViewIsNotDifferentiableButBatches) {
  // A float result (float32 bytes as float16) reaches View's vjp, which refuses.
  Fn f = [](const array& x) { return mx::view(x, mx::float16); };
  expect_invalid([&] { mx::vjp(f, mx::ones({2}), mx::ones({4}, mx::float16)); },
                 {"[view]", "not differentiable"});
  expect_invalid([&] { mx::jvp(f, mx::ones({2}), mx::ones({2})); }, {"[view]"});
  // vmap over rows of a (2, 2) float32 array viewed as bytes.
  array x = mx::array({1.0f, -2.0f, 0.5f, 3.0f}, {2, 2});
  array v = mx::vmap([](const array& r) { return mx::view(r, mx::uint8); })(x);
  EXPECT_EQ(v.shape(), (Shape{2, 8}));
  expect_close(v, to_vector(mx::view(x, mx::uint8)), {2, 8});
}

TEST(SortGrad, ArgsortHasZeroDerivative) {
  // sum(take_along_axis(x, argsort(x))) = sum(x): gradient one everywhere,
  // with nothing flowing through the indices.
  auto g = mx::grad([](const array& x) {
    return mx::sum(mx::take_along_axis(x, mx::argsort(x, 0), 0));
  })(mx::array({3.0, -1.0, 2.0}));
  expect_close(g, {1, 1, 1}, {3});
  // Sort's vjp routes each cotangent to the element that landed there:
  // sort([3, -1, 2]) = [-1, 2, 3]; cot [10, 20, 30] -> [30, 10, 20].
  auto [o, gs] = mx::vjp([](const array& x) { return mx::sort(x); }, mx::array({3.0, -1.0, 2.0}),
                         mx::array({10.0, 20.0, 30.0}));
  expect_close(gs, {30, 10, 20}, {3});
  check_vmap([](const array& x) { return mx::argsort(x, -1); }, {2, 5}, "argsort");
  check_vmap([](const array& x) { return mx::argpartition(x, 2, 0); }, {5, 2}, "argpartition");
}

}  // namespace
