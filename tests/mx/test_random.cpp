// mx::random: Threefry known-answer vectors (Random123), bit streams and key
// splits checked against values JAX's Threefry-2x32 produces (as quoted in
// MLX's tests), and sampler statistics against their analytic moments.
#include <cmath>
#include <numbers>
#include <set>

#include "common/check.h"
#include "mlxcpp/mx/primitives/random.h"
#include "mlxcpp/mx/random.h"

namespace {

using mx::array;
using mx::Shape;
namespace random = mx::random;
using mxtest::to_vector;

std::vector<double> u32(std::initializer_list<uint32_t> v) { return {v.begin(), v.end()}; }

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / v.size();
}

double var_of(const std::vector<double>& v) {
  double m = mean_of(v), s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s / v.size();
}

// Pearson's chi-square statistic of observed counts against expected probabilities.
double chi_square(const std::vector<double>& counts, const std::vector<double>& probs) {
  double n = 0, chi = 0;
  for (double c : counts) n += c;
  for (size_t i = 0; i < counts.size(); ++i) {
    double e = n * probs[i];
    chi += (counts[i] - e) * (counts[i] - e) / e;
  }
  return chi;
}

TEST(Random, ThreefryKnownAnswers) {
  // Random123's kat_vectors, threefry2x32 with 20 rounds: counter, key, expected.
  using P = std::pair<uint32_t, uint32_t>;
  auto tf = random::detail::threefry2x32;
  EXPECT_EQ(tf(P{0, 0}, P{0, 0}), (P{0x6b200159u, 0x99ba4efeu}));
  EXPECT_EQ(tf(P{0xffffffffu, 0xffffffffu}, P{0xffffffffu, 0xffffffffu}),
            (P{0x1cb996fcu, 0xbb002be7u}));
  EXPECT_EQ(tf(P{0x13198a2eu, 0x03707344u}, P{0x243f6a88u, 0x85a308d3u}),
            (P{0xc4923a9cu, 0x483df7a0u}));
}

TEST(Random, KeyFromSeed) {
  auto k = random::key(0);
  EXPECT_EQ(k.dtype(), mx::uint32);
  mxtest::expect_close(k, {0, 0}, {2}, 0, 0);
  mxtest::expect_close(random::key(1), {0, 1}, {2}, 0, 0);
  mxtest::expect_close(random::key(uint64_t{1} << 32), {1, 0}, {2}, 0, 0);
  mxtest::expect_close(random::key((uint64_t{1} << 32) + 1), {1, 1}, {2}, 0, 0);
}

TEST(Random, SplitMatchesJax) {
  auto [k, sub] = random::split(random::key(0));
  mxtest::expect_close(k, u32({4146024105u, 967050713u}), {2}, 0, 0);
  mxtest::expect_close(sub, u32({2718843009u, 1272950319u}), {2}, 0, 0);
  auto keys = random::split(random::key(0), 3);
  mxtest::expect_close(
      keys, u32({2467461003u, 428148500u, 3186719485u, 3840466878u, 2562233961u, 1946702221u}),
      {3, 2}, 0, 0);
}

TEST(Random, BitsMatchJax) {
  auto k0 = random::key(0), k1 = random::key(1);
  EXPECT_EQ(random::bits({}, k0).item<uint32_t>(), 1797259609u);
  EXPECT_EQ(random::bits({}, 2, k0).item<uint16_t>(), 345);
  EXPECT_EQ(random::bits({}, 1, k0).item<uint8_t>(), 89);
  EXPECT_EQ(random::bits({}, k1).item<uint32_t>(), 507451445u);
  EXPECT_EQ(random::bits({}, 2, k1).item<uint16_t>(), 6197);
  EXPECT_EQ(random::bits({}, 1, k1).item<uint8_t>(), 53);
  mxtest::expect_close(random::bits({3, 1}, k0), u32({4146024105u, 1351547692u, 2718843009u}),
                       {3, 1}, 0, 0);
  // Odd and even word counts, with a partial last word.
  auto x = random::bits({5}, 2, k0);
  EXPECT_EQ(x.dtype(), mx::uint16);
  mxtest::expect_close(x, {20137, 63263, 64300, 20622, 16513}, {5}, 0, 0);
  mxtest::expect_close(random::bits({6}, 2, k0), {20137, 63263, 64300, 20622, 16513, 41486}, {6}, 0,
                       0);
  mxtest::expect_close(random::bits({7}, 2, k0), {20137, 63263, 1497, 14756, 16513, 41486, 44591},
                       {7}, 0, 0);
  mxtest::expect_close(random::bits({8}, 2, k0),
                       {20137, 63263, 1497, 14756, 16513, 41486, 44591, 19423}, {8}, 0, 0);
  EXPECT_EQ(random::bits({0}, k0).size(), 0u);
}

TEST(Random, VmapOverBatchedKeysMatchesJax) {
  auto key = array({0u, 0u, 1u, 1u}, Shape{2, 2}, mx::uint32);
  auto fn = [](const array& k) { return random::bits({3}, k); };
  mxtest::expect_close(
      mx::vmap(fn)(key),
      u32({4146024105u, 1351547692u, 2718843009u, 3725146706u, 1802982961u, 1349634643u}), {2, 3},
      0, 0);
  // Mapping over axis 1: both columns are the key (0, 1).
  mxtest::expect_close(
      mx::vmap(fn, 1)(key),
      u32({2441914641u, 1110694964u, 3819641963u, 2441914641u, 1110694964u, 3819641963u}), {2, 3},
      0, 0);
  auto keys = array({0u, 0u, 1u, 1u, 2u, 2u, 3u, 3u, 4u, 4u, 5u, 5u}, Shape{3, 2, 2}, mx::uint32);
  auto fn2 = [](const array& k) { return random::bits({2}, k); };
  mxtest::expect_close(
      mx::vmap(mx::vmap(fn2))(keys),
      u32({928981903u, 3453687069u, 3606183818u, 460005496u, 2799733733u, 856293553u, 4081856343u,
           3445925136u, 2775548010u, 1430281703u, 305173070u, 2615843348u}),
      {3, 2, 2}, 0, 0);
  mxtest::expect_close(
      mx::vmap(mx::vmap(fn2, 1), 0)(keys),
      u32({1948878966u, 4237131848u, 1948878966u, 4237131848u, 2531170506u, 1858648356u,
           2531170506u, 1858648356u, 740561898u, 4234094099u, 740561898u, 4234094099u}),
      {3, 2, 2}, 0, 0);
}

TEST(Random, BitsAreAPureFunctionOfKeyAndShape) {
  auto k = random::key(1234);
  auto a = to_vector(random::bits({1000}, k));
  auto b = to_vector(random::bits({1000}, k));
  EXPECT_EQ(a, b);
  auto c = to_vector(random::bits({1000}, random::key(1235)));
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == c[i];
  EXPECT_LT(same, 3);
  // A large draw (parallel kernel) agrees with the same prefix layout rule:
  // its first half and second half come from counters (j, j + n/2).
  auto big = random::bits({1 << 18}, k);
  auto big2 = random::bits({1 << 18}, k);
  EXPECT_EQ(to_vector(big), to_vector(big2));
}

TEST(Random, BitsErrors) {
  auto k = random::key(0);
  EXPECT_THROW(random::bits({}, 0, k), std::invalid_argument);
  EXPECT_THROW(random::bits({}, 5, k), std::invalid_argument);
  EXPECT_THROW(random::bits({}, -1, k), std::invalid_argument);
  EXPECT_THROW(random::uniform({}, array({0, 0})), std::invalid_argument);  // int32 key
  EXPECT_THROW(random::uniform({}, array({0u, 0u}, Shape{1, 2}, mx::uint32)),
               std::invalid_argument);
  EXPECT_THROW(random::uniform({}, array({0u, 0u, 0u}, Shape{3}, mx::uint32)),
               std::invalid_argument);
  try {
    random::bits({2}, array({0u, 0u}, Shape{2, 1}, mx::uint32));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("(2, 1)"), std::string::npos) << e.what();
  }
}

TEST(Random, GlobalSeedIsReproducible) {
  random::seed(4);
  auto x = random::bits({});
  auto y = random::bits({});
  random::seed(4);
  auto a = random::bits({});
  auto b = random::bits({});
  EXPECT_EQ(x.item<uint32_t>(), a.item<uint32_t>());
  EXPECT_EQ(y.item<uint32_t>(), b.item<uint32_t>());
  EXPECT_NE(x.item<uint32_t>(), y.item<uint32_t>());
}

TEST(Random, UniformKnownValues) {
  auto to_float = [](uint32_t n) { return static_cast<float>(n) / 4294967295.0f; };
  auto k0 = random::key(0);
  EXPECT_EQ(random::uniform({}, k0).item<float>(), to_float(1797259609u));
  EXPECT_EQ(random::uniform({}, random::key(1)).item<float>(), to_float(507451445u));
  mxtest::expect_close(random::uniform({3, 1}, k0),
                       {to_float(4146024105u), to_float(1351547692u), to_float(2718843009u)},
                       {3, 1}, 0, 0);
}

TEST(Random, UniformStatistics) {
  auto v = to_vector(random::uniform(-1.0, 3.0, {100000}, mx::float32, random::key(7)));
  for (double x : v) {
    ASSERT_GE(x, -1.0);
    ASSERT_LT(x, 3.0);
  }
  // U(-1, 3): mean 1, variance 16/12; sampling error ~0.004 and ~0.006.
  EXPECT_NEAR(mean_of(v), 1.0, 0.03);
  EXPECT_NEAR(var_of(v), 16.0 / 12.0, 0.03);
}

TEST(Random, UniformDtypesAndBroadcasting) {
  auto k = random::key(3);
  for (auto dt : {mx::float16, mx::bfloat16, mx::float32, mx::float64}) {
    auto x = random::uniform({20000}, dt, k);
    EXPECT_EQ(x.dtype(), dt);
    auto v = to_vector(x);
    for (double e : v) {
      ASSERT_GE(e, 0.0);
      ASSERT_LT(e, 1.0) << mx::dtype_name(dt);
    }
    EXPECT_NEAR(mean_of(v), 0.5, 0.02) << mx::dtype_name(dt);
  }
  auto x = random::uniform(mx::zeros({3, 1}), mx::ones({1, 3}), {3, 3});
  EXPECT_EQ(x.shape(), (Shape{3, 3}));
  EXPECT_THROW(random::uniform(mx::zeros({3, 3}), array(1.0f), {1, 3}), std::invalid_argument);
  EXPECT_THROW(random::uniform(mx::zeros({3, 1}), mx::ones({1, 3}), {1, 3}), std::invalid_argument);
  EXPECT_THROW(random::uniform({}, mx::int32), std::invalid_argument);
  EXPECT_EQ(random::uniform({0}).size(), 0u);
}

TEST(Random, NormalStatistics) {
  auto v = to_vector(random::normal({100000}, random::key(11)));
  EXPECT_NEAR(mean_of(v), 0.0, 0.02);
  EXPECT_NEAR(var_of(v), 1.0, 0.03);
  // P(|Z| < 1) = erf(1/sqrt 2) = 0.6827 for a standard normal.
  double inside = 0;
  for (double x : v) inside += std::abs(x) < 1.0;
  EXPECT_NEAR(inside / v.size(), std::erf(1.0 / std::numbers::sqrt2), 0.01);
  auto w = to_vector(random::normal({100000}, mx::float32, 3.0f, 0.5f, random::key(12)));
  EXPECT_NEAR(mean_of(w), 3.0, 0.01);
  EXPECT_NEAR(var_of(w), 0.25, 0.01);
}

TEST(Random, NormalLocScaleAndDtypes) {
  auto k = random::key(0);
  auto a = to_vector(random::normal({3, 2}, 1.0f, 2.0f, k));
  auto b = to_vector(random::normal({3, 2}, k));
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], 2 * b[i] + 1, 1e-5);
  for (auto dt : {mx::float16, mx::bfloat16, mx::float64}) {
    auto x = random::normal({20000}, dt, random::key(128291));
    EXPECT_EQ(x.dtype(), dt);
    auto v = to_vector(x);
    for (double e : v) ASSERT_TRUE(std::isfinite(e)) << mx::dtype_name(dt);
    EXPECT_NEAR(mean_of(v), 0.0, 0.05) << mx::dtype_name(dt);
    EXPECT_NEAR(var_of(v), 1.0, 0.05) << mx::dtype_name(dt);
  }
  EXPECT_THROW(random::normal({}, mx::int32), std::invalid_argument);
  try {
    random::normal({2}, mx::float32, array({1.f, 2.f, 3.f}), std::nullopt, k);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("(2,)"), std::string::npos) << e.what();
  }
}

TEST(Random, MultivariateNormal) {
  auto mean = array({4.0f, 7.0f});
  auto cov = array({2.0f, 0.5f, 0.5f, 1.0f}, {2, 2});
  auto x = random::multivariate_normal(mean, cov, {100000}, mx::float32, random::key(21));
  EXPECT_EQ(x.shape(), (Shape{100000, 2}));
  auto v = to_vector(x);
  double m0 = 0, m1 = 0;
  for (size_t i = 0; i < v.size(); i += 2) {
    m0 += v[i];
    m1 += v[i + 1];
  }
  m0 /= 100000;
  m1 /= 100000;
  double c00 = 0, c01 = 0, c11 = 0;
  for (size_t i = 0; i < v.size(); i += 2) {
    c00 += (v[i] - m0) * (v[i] - m0);
    c01 += (v[i] - m0) * (v[i + 1] - m1);
    c11 += (v[i + 1] - m1) * (v[i + 1] - m1);
  }
  EXPECT_NEAR(m0, 4.0, 0.03);
  EXPECT_NEAR(m1, 7.0, 0.03);
  EXPECT_NEAR(c00 / 100000, 2.0, 0.05);
  EXPECT_NEAR(c01 / 100000, 0.5, 0.03);
  EXPECT_NEAR(c11 / 100000, 1.0, 0.03);
  EXPECT_EQ(
      random::multivariate_normal(mx::zeros({3}), mx::zeros({1, 2, 3, 3}), {1000, 2}, mx::float32)
          .shape(),
      (Shape{1000, 2, 3}));
  EXPECT_THROW(random::multivariate_normal(mx::zeros({3}), mx::eye(4), {10}, mx::float32),
               std::invalid_argument);
  EXPECT_THROW(random::multivariate_normal(mx::zeros({3}), mx::eye(3), {10}, mx::float16),
               std::invalid_argument);
}

TEST(Random, TruncatedNormal) {
  double lo = -1.0, hi = 2.0;
  auto v = to_vector(
      random::truncated_normal(array(lo), array(hi), {100000}, mx::float32, random::key(5)));
  for (double x : v) {
    ASSERT_GE(x, lo);
    ASSERT_LE(x, hi);
  }
  // Mean of N(0,1) truncated to [a, b]: (phi(a) - phi(b)) / (Phi(b) - Phi(a)).
  auto phi = [](double x) { return std::exp(-x * x / 2) / std::sqrt(2 * std::numbers::pi); };
  auto Phi = [](double x) { return 0.5 * (1 + std::erf(x / std::numbers::sqrt2)); };
  double z = Phi(hi) - Phi(lo);
  double m = (phi(lo) - phi(hi)) / z;
  double var = 1 + (lo * phi(lo) - hi * phi(hi)) / z - m * m;
  EXPECT_NEAR(mean_of(v), m, 0.01);
  EXPECT_NEAR(var_of(v), var, 0.01);

  auto lower = mx::reshape(array({-2.0f, 0.0f}), {1, 2});
  auto upper = mx::reshape(array({0.0f, 1.0f, 2.0f}), {3, 1});
  auto x = random::truncated_normal(lower, upper);
  EXPECT_EQ(x.shape(), (Shape{3, 2}));
  auto xv = to_vector(x);
  double lows[2] = {-2, 0}, ups[3] = {0, 1, 2};
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 2; ++j) {
      EXPECT_GE(xv[i * 2 + j], std::min(lows[j], ups[i]));
      EXPECT_LE(xv[i * 2 + j], std::max(lows[j], ups[i]));
    }
  }
  // Empty interval (upper < lower): clipped to lower, as MLX.
  mxtest::expect_close(random::truncated_normal(array(2.0f), array(-2.0f), {4}), {2, 2, 2, 2}, {4},
                       0, 0);
  auto h = random::truncated_normal(array(-1.0f), array(1.0f), {1000}, mx::bfloat16);
  EXPECT_EQ(h.dtype(), mx::bfloat16);
  for (double e : to_vector(h)) ASSERT_LE(std::abs(e), 1.0);
  EXPECT_THROW(random::truncated_normal(array(0.f), array(1.f), {2}, mx::int32),
               std::invalid_argument);
}

TEST(Random, RandintRangeAndFrequencies) {
  auto x = random::randint(3, 15, {120000}, mx::int32, random::key(9));
  EXPECT_EQ(x.dtype(), mx::int32);
  std::vector<double> counts(12, 0);
  for (double e : to_vector(x)) {
    ASSERT_GE(e, 3);
    ASSERT_LT(e, 15);
    counts[static_cast<int>(e) - 3] += 1;
  }
  // 11 degrees of freedom: P(chi2 > 40) < 1e-4.
  EXPECT_LT(chi_square(counts, std::vector<double>(12, 1.0 / 12)), 40.0);
  mxtest::expect_close(random::randint(20, -10, {3, 3}), std::vector<double>(9, 20), {3, 3}, 0, 0);
  auto neg = to_vector(random::randint(-10, 10, {10000}, mx::int8, random::key(1)));
  for (double e : neg) ASSERT_TRUE(e >= -10 && e < 10);
  auto b = random::randint(0, 2, {1000}, mx::bool_, random::key(2));
  EXPECT_EQ(b.dtype(), mx::bool_);
  double ones = 0;
  for (double e : to_vector(b)) ones += e;
  EXPECT_GT(ones, 400);
  EXPECT_LT(ones, 600);
  // Beyond float32's 24-bit mantissa every integer stays reachable.
  int64_t base = int64_t{1} << 40;
  auto big = to_vector(
      random::randint(array(base), array(base + 1024), {20000}, mx::int64, random::key(42)));
  std::set<double> seen(big.begin(), big.end());
  EXPECT_EQ(seen.size(), 1024u);
  for (double e : big) ASSERT_TRUE(e >= base && e < base + 1024);
  EXPECT_THROW(random::randint(0, 5, {1}, mx::float32), std::invalid_argument);
  EXPECT_THROW(random::randint(mx::zeros({3}, mx::int32), array(5), {2}), std::invalid_argument);
}

TEST(Random, Bernoulli) {
  auto v = to_vector(random::bernoulli(array(0.3f), {100000}, random::key(8)));
  EXPECT_NEAR(mean_of(v), 0.3, 0.01);
  mxtest::expect_close(random::bernoulli(array({2.0f, -2.0f})), {1, 0}, {2}, 0, 0);
  EXPECT_TRUE(random::bernoulli(array(1.0f)).item<bool>());
  EXPECT_FALSE(random::bernoulli(array(0.0f)).item<bool>());
  auto p = mx::reshape(array({0.1f, 0.5f, 0.9f}), {1, 3});
  auto x = random::bernoulli(p, {40000, 3}, random::key(3));
  EXPECT_EQ(x.shape(), (Shape{40000, 3}));
  EXPECT_EQ(x.dtype(), mx::bool_);
  auto xv = to_vector(x);
  double rates[3] = {0, 0, 0};
  for (size_t i = 0; i < xv.size(); ++i) rates[i % 3] += xv[i] / 40000.0;
  EXPECT_NEAR(rates[0], 0.1, 0.01);
  EXPECT_NEAR(rates[1], 0.5, 0.015);
  EXPECT_NEAR(rates[2], 0.9, 0.01);
  EXPECT_THROW(random::bernoulli(array({0.1f, 0.2f, 0.3f}), mx::Shape{2}), std::invalid_argument);
  EXPECT_THROW(random::bernoulli(array(1)), std::invalid_argument);
  EXPECT_EQ(random::bernoulli().shape(), Shape{});
}

TEST(Random, GumbelAndLaplaceMoments) {
  auto g = to_vector(random::gumbel({100000}, mx::float32, random::key(4)));
  // Standard Gumbel: mean Euler's gamma, variance pi^2 / 6.
  EXPECT_NEAR(mean_of(g), std::numbers::egamma, 0.02);
  EXPECT_NEAR(var_of(g), std::numbers::pi * std::numbers::pi / 6, 0.05);
  auto l = to_vector(random::laplace({100000}, mx::float32, 1.0f, 2.0f, random::key(6)));
  // Laplace(1, 2): mean 1, variance 2 * 2^2.
  EXPECT_NEAR(mean_of(l), 1.0, 0.05);
  EXPECT_NEAR(var_of(l), 8.0, 0.2);
}

TEST(Random, SplitKeysGiveUncorrelatedStreams) {
  auto [a, b] = random::split(random::key(99));
  auto x = to_vector(random::uniform({100000}, a));
  auto y = to_vector(random::uniform({100000}, b));
  double mx_ = mean_of(x), my = mean_of(y), cov = 0;
  for (size_t i = 0; i < x.size(); ++i) cov += (x[i] - mx_) * (y[i] - my);
  cov /= x.size();
  double r = cov / std::sqrt(var_of(x) * var_of(y));
  EXPECT_LT(std::abs(r), 0.015);  // ~4.7 standard errors
  auto ks = random::split(random::key(99), 4);
  auto kv = to_vector(ks);
  std::set<std::pair<double, double>> uniq;
  for (int i = 0; i < 4; ++i) uniq.insert({kv[2 * i], kv[2 * i + 1]});
  EXPECT_EQ(uniq.size(), 4u);
}

TEST(Random, CategoricalFrequencies) {
  std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  auto logits = mx::log(array({0.1f, 0.2f, 0.3f, 0.4f}));
  auto x = random::categorical(logits, 0, 100000, random::key(10));
  EXPECT_EQ(x.shape(), (Shape{100000}));
  std::vector<double> counts(4, 0);
  for (double e : to_vector(x)) counts[static_cast<int>(e)] += 1;
  // 3 degrees of freedom: P(chi2 > 25) < 2e-5.
  EXPECT_LT(chi_square(counts, probs), 25.0);
  // Unnormalised logits and a batch axis: rows sample from their own softmax.
  auto two = array({0.0f, 0.0f, 5.0f, -5.0f}, {2, 2});
  auto y = random::categorical(two, -1, {5000, 2}, random::key(1));
  EXPECT_EQ(y.shape(), (Shape{5000, 2}));
  auto yv = to_vector(y);
  double r0 = 0, r1 = 0;
  for (size_t i = 0; i < yv.size(); i += 2) {
    r0 += yv[i];
    r1 += yv[i + 1];
  }
  EXPECT_NEAR(r0 / 5000, 0.5, 0.03);
  EXPECT_NEAR(r1 / 5000, 1.0 / (1.0 + std::exp(10.0)), 0.002);
  EXPECT_EQ(random::categorical(two).shape(), (Shape{2}));
  EXPECT_THROW(random::categorical(two, 2), std::invalid_argument);
  EXPECT_THROW(random::categorical(two, -1, Shape{3}), std::invalid_argument);
}

TEST(Random, Permutation) {
  auto p = to_vector(random::permutation(50, random::key(3)));
  auto sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 50; ++i) EXPECT_EQ(sorted[i], i);
  int fixed = 0;
  for (int i = 0; i < 50; ++i) fixed += p[i] == i;
  EXPECT_LT(fixed, 50);
  auto x = mx::reshape(mx::arange(12.0), {3, 4});
  auto y = random::permutation(x, 1, random::key(4));
  EXPECT_EQ(y.shape(), (Shape{3, 4}));
  auto yv = to_vector(y);
  // Columns move together: each row is row 0 plus 4 * row index.
  for (int i = 1; i < 3; ++i) {
    for (int j = 0; j < 4; ++j) EXPECT_EQ(yv[i * 4 + j], yv[j] + 4 * i);
  }
}

}  // namespace
