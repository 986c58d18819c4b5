// Every differentiable primitive's vjp and jvp against float64 central finite
// differences, and its vmap against applying the op slice by slice.
//   vjp: J^T c (c random) vs (<c, f(x + eps e_j)> - <c, f(x - eps e_j)>) / 2 eps
//   jvp: J t (t random) vs (f(x + eps t) - f(x - eps t)) / 2 eps
//   vmap: vmap(f)(X) row b vs f(X[b]), with every input mapped (axis 0) and
//         with the first input mapped along its last axis, the others unmapped.
// The cases live in grad_check_cases.h (one line per op, with a safe domain).
#include <cmath>
#include <functional>
#include <random>
#include <string>

#include "common/check.h"
#include "mx/grad_check_cases.h"

namespace {

using mx::array;
using mx::Shape;
using mxtest::to_vector;
using Arrays = std::vector<array>;
using Host = std::vector<std::vector<double>>;
using gradcheck::Domain;
using gradcheck::GradCase;

size_t numel(const Shape& s) {
  size_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

std::vector<double> sample(std::mt19937_64& rng, const Domain& d, size_t n) {
  std::uniform_real_distribution<double> u(d.lo, d.hi);
  std::vector<double> v(n);
  for (auto& x : v) {
    x = u(rng);
    if (d.either_sign && (rng() & 1)) x = -x;
  }
  if (d.zero_at >= 0 && static_cast<size_t>(d.zero_at) < n) v[d.zero_at] = 0;
  return v;
}

const Domain& domain_of(const GradCase& c, size_t i) {
  return c.domains.empty() ? gradcheck::kDefaultDomain
                           : c.domains[std::min(i, c.domains.size() - 1)];
}

Arrays to_arrays(const Host& xs, const std::vector<Shape>& shapes) {
  Arrays a;
  for (size_t i = 0; i < xs.size(); ++i) a.emplace_back(xs[i], shapes[i], mx::float64);
  return a;
}

std::vector<double> evaluate(const GradCase& c, const Host& xs) {
  array y = c.f(to_arrays(xs, c.shapes));
  EXPECT_EQ(y.dtype(), mx::float64) << c.name;
  return to_vector(y);
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

void expect_near_all(const std::vector<double>& got, const std::vector<double>& want,
                     const GradCase& c, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << c.name << " " << what;
  for (size_t j = 0; j < got.size(); ++j) {
    EXPECT_NEAR(got[j], want[j], c.tol * (1 + std::abs(want[j])))
        << c.name << " " << what << " element " << j;
  }
}

std::mt19937_64 rng_for(const GradCase& c, int salt) {
  return std::mt19937_64(std::hash<std::string>{}(c.name) + salt);
}

Host random_inputs(const GradCase& c, std::mt19937_64& rng) {
  Host xs;
  for (size_t i = 0; i < c.shapes.size(); ++i) {
    xs.push_back(sample(rng, domain_of(c, i), numel(c.shapes[i])));
  }
  return xs;
}

class GradCheck : public ::testing::TestWithParam<GradCase> {};

TEST_P(GradCheck, VjpMatchesFiniteDifferences) {
  const GradCase& c = GetParam();
  auto rng = rng_for(c, 1);
  Host xs = random_inputs(c, rng);
  array y = c.f(to_arrays(xs, c.shapes));
  std::vector<double> cot = sample(rng, {-1, 1}, y.size());
  auto fun = [&c](const Arrays& in) { return Arrays{c.f(in)}; };
  auto [outs, grads] = mx::vjp(fun, to_arrays(xs, c.shapes), {array(cot, y.shape(), mx::float64)});
  expect_near_all(to_vector(outs[0]), to_vector(y), c, "value");
  ASSERT_EQ(grads.size(), xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    ASSERT_EQ(grads[i].shape(), c.shapes[i]) << c.name << " input " << i;
    std::vector<double> fd(xs[i].size());
    for (size_t j = 0; j < xs[i].size(); ++j) {
      Host xp = xs, xm = xs;
      xp[i][j] += c.eps;
      xm[i][j] -= c.eps;
      fd[j] = (dot(cot, evaluate(c, xp)) - dot(cot, evaluate(c, xm))) / (2 * c.eps);
    }
    expect_near_all(to_vector(grads[i]), fd, c, "vjp of input " + std::to_string(i));
  }
}

TEST_P(GradCheck, JvpMatchesFiniteDifferences) {
  const GradCase& c = GetParam();
  auto rng = rng_for(c, 2);
  Host xs = random_inputs(c, rng);
  Host ts;
  for (auto& x : xs) ts.push_back(sample(rng, {-1, 1}, x.size()));
  auto fun = [&c](const Arrays& in) { return Arrays{c.f(in)}; };
  auto [outs, tans] = mx::jvp(fun, to_arrays(xs, c.shapes), to_arrays(ts, c.shapes));
  Host xp = xs, xm = xs;
  for (size_t i = 0; i < xs.size(); ++i) {
    for (size_t j = 0; j < xs[i].size(); ++j) {
      xp[i][j] += c.eps * ts[i][j];
      xm[i][j] -= c.eps * ts[i][j];
    }
  }
  auto fp = evaluate(c, xp), fm = evaluate(c, xm);
  std::vector<double> fd(fp.size());
  for (size_t j = 0; j < fd.size(); ++j) fd[j] = (fp[j] - fm[j]) / (2 * c.eps);
  ASSERT_EQ(tans[0].shape(), outs[0].shape()) << c.name;
  expect_near_all(to_vector(tans[0]), fd, c, "jvp");
}

// Reverse over reverse: the vjp of x -> J(x)^T c, i.e. Hessian-vector
// products of <c, f(x)>, against finite differences of the first vjp. This
// differentiates the ops each vjp rule is built from.
TEST_P(GradCheck, SecondOrderVjpMatchesFiniteDifferences) {
  const GradCase& c = GetParam();
  auto rng = rng_for(c, 5);
  Host xs = random_inputs(c, rng);
  array y = c.f(to_arrays(xs, c.shapes));
  array cot(sample(rng, {-1, 1}, y.size()), y.shape(), mx::float64);
  auto fun = [&c](const Arrays& in) { return Arrays{c.f(in)}; };
  auto first = [&](const Arrays& in) { return mx::vjp(fun, in, {cot}).second; };
  Host ds;
  for (auto& x : xs) ds.push_back(sample(rng, {-1, 1}, x.size()));
  auto inner = [&](const Host& at) {
    auto g = first(to_arrays(at, c.shapes));
    double s = 0;
    for (size_t i = 0; i < g.size(); ++i) s += dot(ds[i], to_vector(g[i]));
    return s;
  };
  auto [gs, hs] = mx::vjp(first, to_arrays(xs, c.shapes), to_arrays(ds, c.shapes));
  for (size_t i = 0; i < xs.size(); ++i) {
    std::vector<double> fd(xs[i].size());
    for (size_t j = 0; j < xs[i].size(); ++j) {
      Host xp = xs, xm = xs;
      xp[i][j] += c.eps2;
      xm[i][j] -= c.eps2;
      fd[j] = (inner(xp) - inner(xm)) / (2 * c.eps2);
    }
    expect_near_all(to_vector(hs[i]), fd, c, "second-order vjp of input " + std::to_string(i));
  }
}

// Element b of `data` (row-major, `shape`) along `axis`.
std::vector<double> host_slice(const std::vector<double>& data, const Shape& shape, int axis,
                               int b) {
  size_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= shape[d];
  for (size_t d = axis + 1; d < shape.size(); ++d) inner *= shape[d];
  std::vector<double> out;
  for (size_t o = 0; o < outer; ++o) {
    size_t base = (o * shape[axis] + b) * inner;
    out.insert(out.end(), data.begin() + base, data.begin() + base + inner);
  }
  return out;
}

void check_vmap(const GradCase& c, const std::vector<int>& in_axes, int salt) {
  constexpr int B = 3;
  auto rng = rng_for(c, salt);
  Host xs;
  std::vector<Shape> shapes;
  for (size_t i = 0; i < c.shapes.size(); ++i) {
    Shape s = c.shapes[i];
    if (in_axes[i] >= 0) s.insert(s.begin() + in_axes[i], B);
    shapes.push_back(s);
    xs.push_back(sample(rng, domain_of(c, i), numel(s)));
  }
  auto fun = [&c](const Arrays& in) { return Arrays{c.f(in)}; };
  auto out = mx::vmap(fun, in_axes, {0})(to_arrays(xs, shapes))[0];
  ASSERT_GE(out.ndim(), 1u) << c.name;
  ASSERT_EQ(out.shape(0), B) << c.name;
  auto got = to_vector(out);
  size_t per = got.size() / B;
  for (int b = 0; b < B; ++b) {
    Host slice;
    for (size_t i = 0; i < xs.size(); ++i) {
      slice.push_back(in_axes[i] >= 0 ? host_slice(xs[i], shapes[i], in_axes[i], b) : xs[i]);
    }
    auto want = evaluate(c, slice);
    std::vector<double> row(got.begin() + b * per, got.begin() + (b + 1) * per);
    expect_near_all(row, want, c, "vmap row " + std::to_string(b));
  }
}

TEST_P(GradCheck, VmapMatchesSlices) {
  const GradCase& c = GetParam();
  if (!c.check_vmap) GTEST_SKIP() << c.name << " has no vmap rule to check";
  check_vmap(c, std::vector<int>(c.shapes.size(), 0), 3);
  std::vector<int> axes(c.shapes.size(), -1);
  axes[0] = static_cast<int>(c.shapes[0].size());
  check_vmap(c, axes, 4);
}

std::string case_name(const ::testing::TestParamInfo<GradCase>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Elementwise, GradCheck,
                         ::testing::ValuesIn(gradcheck::elementwise_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Shape, GradCheck, ::testing::ValuesIn(gradcheck::shape_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(Reduce, GradCheck, ::testing::ValuesIn(gradcheck::reduce_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(Products, GradCheck, ::testing::ValuesIn(gradcheck::product_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(Indexing, GradCheck, ::testing::ValuesIn(gradcheck::indexing_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(Linalg, GradCheck, ::testing::ValuesIn(gradcheck::linalg_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(ComplexFFT, GradCheck, ::testing::ValuesIn(gradcheck::fft_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(Fast, GradCheck, ::testing::ValuesIn(gradcheck::fast_cases()), case_name);

}  // namespace
