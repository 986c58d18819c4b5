// GPU kernels of the less common dtypes (complex64, int16, uint16, integer and
// complex products) and of the fused backward passes (rms_norm, layer_norm,
// attention), against the CPU kernels of the same ops on the same inputs (the
// CPU kernels are tested against NumPy and finite differences elsewhere); and
// the GPU's index and dynamic-slice behaviour against the CPU's. Every test
// skips where no GPU exists (ctest label `gpu`).
#include <cmath>
#include <complex>
#include <functional>
#include <string>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/random.h"

using mx::array;

namespace {

const mx::Device kGpu(mx::Device::gpu);
const mx::Device kCpu(mx::Device::cpu);

class GpuPrims : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  }
};

array rand(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed, float lo = -2, float hi = 2) {
  array x = mx::random::uniform(lo, hi, shape, mx::float32, mx::random::key(seed), kCpu);
  return mx::astype(x, dtype, kCpu);
}

// A complex64 array with real and imaginary parts drawn like rand().
array crand(const mx::Shape& shape, uint64_t seed) {
  array re = mx::astype(rand(shape, mx::float32, seed), mx::complex64, kCpu);
  array im = mx::astype(rand(shape, mx::float32, seed + 1000), mx::complex64, kCpu);
  return mx::add(re, mx::multiply(im, array(mx::complex64_t(0, 1)), kCpu), kCpu);
}

void expect_equal_arrays(array got, array want, double atol, double rtol) {
  mx::eval({want, got});
  ASSERT_EQ(got.dtype(), want.dtype());
  ASSERT_EQ(got.shape(), want.shape());
  if (want.dtype() == mx::complex64) {
    mxtest::expect_close(mx::real(got, kCpu), mxtest::to_vector(mx::real(want, kCpu)), want.shape(),
                         atol, rtol);
    mxtest::expect_close(mx::imag(got, kCpu), mxtest::to_vector(mx::imag(want, kCpu)), want.shape(),
                         atol, rtol);
  } else {
    mxtest::expect_close(got, mxtest::to_vector(want), want.shape(), atol, rtol);
  }
}

// Runs `f` on the CPU and on the GPU and expects the same values.
void expect_same(const std::function<array(mx::StreamOrDevice)>& f, double atol, double rtol,
                 const std::string& what) {
  SCOPED_TRACE(what);
  expect_equal_arrays(f(kGpu), f(kCpu), atol, rtol);
}

// The same for functions with several outputs.
void expect_same_all(const std::function<std::vector<array>(mx::StreamOrDevice)>& f, double atol,
                     double rtol, const std::string& what) {
  SCOPED_TRACE(what);
  auto want = f(kCpu);
  auto got = f(kGpu);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE("output " + std::to_string(i));
    expect_equal_arrays(got[i], want[i], atol, rtol);
  }
}

double tol(mx::Dtype d) {
  if (d == mx::bfloat16) return 2e-2;
  if (d == mx::float16) return 2e-3;
  return 1e-5;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_F(GpuPrims, ComplexElementwise) {
  array a = crand({3, 40}, 1), b = crand({3, 40}, 2);
  using F = std::function<array(const array&, const array&, mx::StreamOrDevice)>;
  const std::vector<std::pair<std::string, F>> binary = {
      {"add", [](auto& x, auto& y, auto s) { return mx::add(x, y, s); }},
      {"subtract", [](auto& x, auto& y, auto s) { return mx::subtract(x, y, s); }},
      {"multiply", [](auto& x, auto& y, auto s) { return mx::multiply(x, y, s); }},
      {"divide", [](auto& x, auto& y, auto s) { return mx::divide(x, y, s); }},
      {"power", [](auto& x, auto& y, auto s) { return mx::power(x, y, s); }},
      {"equal", [](auto& x, auto& y, auto s) { return mx::equal(x, x, s); }},
      {"not_equal", [](auto& x, auto& y, auto s) { return mx::not_equal(x, y, s); }},
      // A broadcast, transposed operand walks the strided path.
      {"add strided",
       [](auto& x, auto& y, auto s) {
         return mx::add(mx::transpose(x), mx::slice(y, {0, 0}, {1, 3}), s);
       }},
  };
  for (auto& [name, f] : binary) {
    expect_same([&](mx::StreamOrDevice s) { return f(a, b, s); }, 1e-5, 1e-5, name);
  }
  using U = std::function<array(const array&, mx::StreamOrDevice)>;
  const std::vector<std::pair<std::string, U>> unary = {
      {"negative", [](auto& x, auto s) { return mx::negative(x, s); }},
      {"abs", [](auto& x, auto s) { return mx::abs(x, s); }},
      {"conjugate", [](auto& x, auto s) { return mx::conjugate(x, s); }},
      {"real", [](auto& x, auto s) { return mx::real(x, s); }},
      {"imag", [](auto& x, auto s) { return mx::imag(x, s); }},
      {"square", [](auto& x, auto s) { return mx::square(x, s); }},
      {"sign", [](auto& x, auto s) { return mx::sign(x, s); }},
      {"exp", [](auto& x, auto s) { return mx::exp(x, s); }},
      {"log", [](auto& x, auto s) { return mx::log(x, s); }},
      {"sqrt", [](auto& x, auto s) { return mx::sqrt(x, s); }},
      {"sin", [](auto& x, auto s) { return mx::sin(x, s); }},
      {"tanh", [](auto& x, auto s) { return mx::tanh(x, s); }},
      {"isnan", [](auto& x, auto s) { return mx::isnan(x, s); }},
      {"to float32", [](auto& x, auto s) { return mx::astype(x, mx::float32, s); }},
      {"to bool", [](auto& x, auto s) { return mx::astype(x, mx::bool_, s); }},
      {"from int16",
       [](auto& x, auto s) {
         return mx::astype(mx::astype(mx::real(x, kCpu), mx::int16, kCpu), mx::complex64, s);
       }},
  };
  for (auto& [name, f] : unary) {
    expect_same([&](mx::StreamOrDevice s) { return f(a, s); }, 1e-5, 1e-5, name);
  }
}

TEST_F(GpuPrims, ComplexReductionsScansSortsAndSelect) {
  array a = crand({4, 33}, 3);
  expect_same([&](auto s) { return mx::sum(a, {1}, false, s); }, 1e-5, 1e-5, "sum rows");
  expect_same([&](auto s) { return mx::sum(a, s); }, 1e-4, 1e-5, "sum all");
  array small = mx::multiply(a, array(mx::complex64_t(0.5f, 0.0f)), kCpu);
  expect_same([&](auto s) { return mx::prod(small, {0}, false, s); }, 1e-5, 1e-4, "prod");
  expect_same([&](auto s) { return mx::cumsum(a, 1, false, true, s); }, 1e-5, 1e-5, "cumsum");
  expect_same([&](auto s) { return mx::sort(a, 1, s); }, 0, 0, "sort");
  array c = mx::greater(rand({4, 33}, mx::float32, 4), array(0.0f), kCpu);
  expect_same([&](auto s) { return mx::where(c, a, mx::conjugate(a, kCpu), s); }, 0, 0, "where");
  expect_same([&](auto s) { return mx::take(a, array({3, 0, 2}), 1, s); }, 0, 0, "take");
  EXPECT_THROW(mx::max(a, kGpu).eval(), std::invalid_argument);
  EXPECT_THROW(mx::cummax(a, 0, false, true, kGpu).eval(), std::invalid_argument);
}

TEST_F(GpuPrims, SixteenBitIntegers) {
  for (auto dt : {mx::int16, mx::uint16}) {
    const std::string n = mx::dtype_name(dt);
    array a = rand({5, 300}, dt, 5, 0, 3000), b = rand({5, 300}, dt, 6, 1, 300);
    expect_same([&](auto s) { return mx::astype(a, mx::float32, s); }, 0, 0, n + " to float32");
    expect_same([&](auto s) { return mx::astype(mx::astype(a, mx::float32, kCpu), dt, s); }, 0, 0,
                "float32 to " + n);
    expect_same([&](auto s) { return mx::add(a, b, s); }, 0, 0, n + " add");
    expect_same([&](auto s) { return mx::multiply(a, b, s); }, 0, 0, n + " multiply (wraps)");
    expect_same([&](auto s) { return mx::floor_divide(a, b, s); }, 0, 0, n + " floor_divide");
    expect_same([&](auto s) { return mx::sum(a, {1}, false, s); }, 0, 0, n + " sum");
    expect_same([&](auto s) { return mx::max(a, {0}, false, s); }, 0, 0, n + " max");
    expect_same([&](auto s) { return mx::argmax(a, 1, false, s); }, 0, 0, n + " argmax");
    expect_same([&](auto s) { return mx::sort(a, 1, s); }, 0, 0, n + " sort");
    expect_same([&](auto s) { return mx::argsort(a, 1, s); }, 0, 0, n + " argsort");
    expect_same([&](auto s) { return mx::cumsum(a, 1, false, true, s); }, 0, 0, n + " cumsum");
    expect_same([&](auto s) { return mx::transpose(a, s) + array(1, dt); }, 0, 0, n + " strided");
  }
}

TEST_F(GpuPrims, IntegerBoolAndComplexMatmul) {
  for (auto dt : {mx::int8, mx::int16, mx::int32, mx::int64, mx::uint8, mx::uint32, mx::uint64}) {
    const std::string n = mx::dtype_name(dt);
    array a = rand({2, 1, 37, 20}, dt, 7, 0, 100), b = rand({3, 20, 45}, dt, 8, 0, 100);
    // Broadcast batches; products that overflow 8-bit types wrap as on the CPU.
    expect_same([&](auto s) { return mx::matmul(a, b, s); }, 0, 0, n + " batched");
    expect_same(
        [&](auto s) {
          return mx::matmul(mx::transpose(b, {0, 2, 1}), mx::slice(b, {0, 0, 0}, {1, 20, 45}), s);
        },
        0, 0, n + " transposed");
  }
  array ba = mx::greater(rand({9, 17}, mx::float32, 9), array(1.0f), kCpu);
  array bb = mx::greater(rand({17, 5}, mx::float32, 10), array(1.0f), kCpu);
  expect_same([&](auto s) { return mx::matmul(ba, bb, s); }, 0, 0, "bool");
  array ca = crand({3, 18, 25}, 11), cb = crand({25, 7}, 12);
  expect_same([&](auto s) { return mx::matmul(ca, cb, s); }, 1e-4, 1e-4, "complex64");
  // addmm with K = 0: out = beta * c, for betas other than 0 and 1 too.
  array c = rand({4, 6}, mx::float32, 13);
  for (float beta : {0.0f, 1.0f, 0.5f, -2.0f}) {
    expect_same(
        [&](auto s) {
          return mx::addmm(c, mx::zeros({4, 0}), mx::zeros({0, 6}), 1.5f, beta, s);
        },
        1e-6, 1e-6, "addmm K=0 beta " + std::to_string(beta));
  }
  array h = rand({4, 6}, mx::float16, 14);
  expect_same(
      [&](auto s) {
        return mx::addmm(h, mx::zeros({4, 0}, mx::float16), mx::zeros({0, 6}, mx::float16), 1.0f,
                         0.25f, s);
      },
      1e-3, 1e-3, "addmm K=0 float16");
}

TEST_F(GpuPrims, NormBackwardPasses) {
  for (auto dt : {mx::float32, mx::float16, mx::bfloat16}) {
    const std::string n = mx::dtype_name(dt);
    // 300 rows: more rows than the kernel's chunks; 200 features: more than a warp.
    array x = rand({3, 100, 200}, dt, 20), w = rand({200}, dt, 21), b = rand({200}, dt, 22);
    array g = rand({3, 100, 200}, dt, 23);
    const double t = tol(dt) * 4;
    expect_same_all(
        [&](mx::StreamOrDevice s) {
          return mx::vjp(
                     [&](const std::vector<array>& in) {
                       return std::vector<array>{mx::fast::rms_norm(in[0], in[1], 1e-5f, s)};
                     },
                     {x, w}, {g})
              .second;
        },
        t, t, "rms_norm vjp " + n);
    expect_same_all(
        [&](mx::StreamOrDevice s) {
          return mx::vjp(
                     [&](const std::vector<array>& in) {
                       return std::vector<array>{mx::fast::rms_norm(in[0], std::nullopt, 1e-5f, s)};
                     },
                     {x}, {g})
              .second;
        },
        t, t, "rms_norm vjp without weight " + n);
    expect_same_all(
        [&](mx::StreamOrDevice s) {
          return mx::vjp(
                     [&](const std::vector<array>& in) {
                       return std::vector<array>{
                           mx::fast::layer_norm(in[0], in[1], in[2], 1e-5f, s)};
                     },
                     {x, w, b}, {g})
              .second;
        },
        t, t, "layer_norm vjp " + n);
    expect_same_all(
        [&](mx::StreamOrDevice s) {
          return mx::vjp(
                     [&](const std::vector<array>& in) {
                       return std::vector<array>{
                           mx::fast::layer_norm(in[0], std::nullopt, in[1], 1e-5f, s)};
                     },
                     {x, b}, {g})
              .second;
        },
        t, t, "layer_norm vjp bias only " + n);
  }
}

TEST_F(GpuPrims, AttentionBackwardPass) {
  struct Case {
    std::string name;
    int Hq, Hkv, Lq, Lk, D;
    std::string mode;
    int window;
    int mask;  // 0: none, 1: bool, 2: additive
    bool sinks;
  };
  const std::vector<Case> cases = {
      {"plain", 2, 2, 5, 7, 16, "", 0, 0, false},
      {"causal gqa", 4, 2, 9, 9, 64, "causal", 0, 0, false},
      {"causal window, cache", 4, 1, 3, 11, 40, "causal", 4, 0, false},
      {"bool mask", 2, 1, 6, 8, 32, "", 0, 1, false},
      {"additive mask and sinks", 2, 2, 6, 8, 32, "", 0, 2, true},
      {"rows that see no key", 2, 2, 4, 6, 16, "", 0, 3, false},
  };
  for (const auto& c : cases) {
    for (auto dt : {mx::float32, mx::bfloat16}) {
      array q = rand({2, c.Hq, c.Lq, c.D}, dt, 30), k = rand({2, c.Hkv, c.Lk, c.D}, dt, 31);
      array v = rand({2, c.Hkv, c.Lk, c.D}, dt, 32), g = rand({2, c.Hq, c.Lq, c.D}, dt, 33);
      std::optional<array> mask, sinks;
      if (c.mask == 1 || c.mask == 3) {
        array m = mx::greater(rand({c.Lq, c.Lk}, mx::float32, 34),
                              array(c.mask == 1 ? -1.0f : 9.0f), kCpu);
        // Case 3: about half the rows see every key, the others none.
        if (c.mask == 3) {
          m = mx::logical_or(m, mx::greater(rand({c.Lq, 1}, mx::float32, 36), array(0.0f), kCpu),
                             kCpu);
        }
        mask = m;
      } else if (c.mask == 2) {
        mask = rand({1, c.Hq, c.Lq, c.Lk}, dt, 35);
      }
      if (c.sinks) sinks = rand({c.Hq}, dt, 37);
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
      const double t = dt == mx::float32 ? 2e-4 : 5e-2;
      expect_same_all(
          [&](mx::StreamOrDevice s) {
            return mx::vjp(
                       [&](const std::vector<array>& in) {
                         return std::vector<array>{mx::fast::scaled_dot_product_attention(
                             in[0], in[1], in[2], scale, c.mode, mask, sinks,
                             c.window > 0 ? std::optional<int>(c.window) : std::nullopt, s)};
                       },
                       {q, k, v}, {g})
                .second;
          },
          t, t, "sdpa vjp " + c.name + " " + mx::dtype_name(dt));
    }
  }
}

TEST_F(GpuPrims, OutOfBoundsIndicesRaiseTheCpuError) {
  array a = mx::reshape(mx::arange(6), {2, 3});
  for (auto dev : {kCpu, kGpu}) {
    SCOPED_TRACE(dev == kGpu ? "gpu" : "cpu");
    auto msg = error_of([&] { mx::take(a, array({0, 3}), 1, dev).eval(); });
    EXPECT_NE(msg.find("[gather] index 3 is out of bounds for axis 1 with size 3"),
              std::string::npos)
        << msg;
    msg = error_of([&] {
      mx::scatter_add(a, array({5}), mx::ones({1, 1, 1}, mx::int32), 1, dev).eval();
    });
    EXPECT_NE(msg.find("[scatter_add] index 5 is out of bounds for axis 1 with size 3"),
              std::string::npos)
        << msg;
  }
  // In-bounds indices computed on the device in the same graph still gather.
  array idx = mx::add(array({0, 1}), array({1, 1}), kGpu);
  expect_same([&](auto s) { return mx::take(a, idx, 1, s); }, 0, 0, "device-made indices");
}

TEST_F(GpuPrims, DynamicSliceOfAHostStartIsAView) {
  array a = mx::reshape(mx::arange(20), {4, 5});
  array s = mx::slice(a, array({1, 2}, mx::int32), {0, 1}, {2, 3}, kGpu);
  mx::eval({a, s});
  EXPECT_EQ(s.data<int32_t>(), a.data<int32_t>() + 7);
  mxtest::expect_close(s, {7, 8, 9, 12, 13, 14}, {2, 3});
  // A start still being computed on the device is read there.
  array st = mx::add(array({0}), array({2}), kGpu);
  mxtest::expect_close(mx::slice(mx::arange(6), st, {0}, {3}, kGpu), {2, 3, 4}, {3});
}

// Long rows are reduced by several blocks each and merged, as argmax's are: sums, extrema,
// products and logsumexp of vocabulary-sized rows (a few rows, a strided layout) match the CPU,
// a sum of ones is exact and a NaN still wins max.
TEST_F(GpuPrims, ReductionsOfLongRowsMatchTheCpu) {
  const int n = 262208;
  array x = rand({3, n}, mx::float32, 41);
  for (auto dt : {mx::float32, mx::bfloat16}) {
    const double rtol = dt == mx::float32 ? 1e-4 : 1e-2;
    array xd = mx::astype(x, dt, kCpu);
    expect_same([&](auto s) { return mx::sum(xd, 1, false, s); }, 1e-2, rtol, "sum");
    expect_same([&](auto s) { return mx::max(xd, 1, false, s); }, 0, 0, "max");
    expect_same([&](auto s) { return mx::min(xd, 1, false, s); }, 0, 0, "min");
    expect_same([&](auto s) { return mx::logsumexp(xd, 1, false, s); }, 1e-4, rtol, "logsumexp");
    array xt = mx::transpose(xd, kCpu);  // reduced along its strided axis 0
    expect_same([&](auto s) { return mx::sum(xt, 0, false, s); }, 1e-2, rtol, "strided sum");
  }
  array near_one = rand({2, n}, mx::float32, 43, 0.999f, 1.001f);
  expect_same([&](auto s) { return mx::prod(near_one, 1, false, s); }, 0, 1e-3, "prod");
  EXPECT_EQ(mx::sum(mx::ones({n}, mx::float32, kCpu), 0, false, kGpu).item<float>(),
            static_cast<float>(n));
  std::vector<float> v(n, 1.0f);
  v[200001] = std::nanf("");
  EXPECT_TRUE(std::isnan(mx::max(array(v, {n}, mx::float32), 0, false, kGpu).item<float>()));
}

// Long rows (a vocabulary's logits) are cut into chunks reduced by separate blocks and merged:
// the answer must still be the first extremum, with NaN counting as the extremum (NumPy's rule).
// The expected positions are placed by hand.
TEST_F(GpuPrims, ArgReduceOfLongRowsIsTheFirstExtremum) {
  const int n = 262208;
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f;  // < 1
  v[70001] = 5.0f;
  v[200000] = 5.0f;  // a later tie loses
  v[9000] = -3.0f;
  v[260000] = -3.0f;
  array x(v, {n}, mx::float32);
  EXPECT_EQ(mx::argmax(x, 0, false, kGpu).item<uint32_t>(), 70001u);
  EXPECT_EQ(mx::argmin(x, 0, false, kGpu).item<uint32_t>(), 9000u);
  EXPECT_EQ(mx::argmax(mx::astype(x, mx::bfloat16, kGpu), 0, false, kGpu).item<uint32_t>(), 70001u);
  std::vector<float> w = v;
  w[150000] = std::nanf("");
  w[250000] = std::nanf("");
  array xn(w, {n}, mx::float32);
  EXPECT_EQ(mx::argmax(xn, 0, false, kGpu).item<uint32_t>(), 150000u);
  EXPECT_EQ(mx::argmin(xn, 0, false, kGpu).item<uint32_t>(), 150000u);
  // Several rows, and a strided (transposed) layout: row r's maximum at 1000 * (r + 1).
  const int rows = 3, m = 50000;
  std::vector<float> g(static_cast<size_t>(rows) * m, 0.0f);
  for (int r = 0; r < rows; ++r) g[static_cast<size_t>(r) * m + 1000 * (r + 1)] = 1.0f;
  array gr(g, {rows, m}, mx::float32);
  mxtest::expect_close(mx::astype(mx::argmax(gr, 1, false, kGpu), mx::int32, kGpu),
                       {1000, 2000, 3000}, {rows});
  array gt = mx::transpose(gr, kGpu);  // [m, rows], reduced along its strided axis 0
  mxtest::expect_close(mx::astype(mx::argmax(gt, 0, false, kGpu), mx::int32, kGpu),
                       {1000, 2000, 3000}, {rows});
}
