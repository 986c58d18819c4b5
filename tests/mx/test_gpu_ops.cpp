// GPU kernels against the CPU kernels of the same ops on the same inputs (the
// CPU kernels are tested against NumPy elsewhere). Every test skips where no
// GPU exists (ctest label `gpu`).
#include <functional>
#include <string>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/primitive.h"
#include "mlxcpp/mx/random.h"

using mx::array;

namespace {

const mx::Device kGpu(mx::Device::gpu);
const mx::Device kCpu(mx::Device::cpu);

class Gpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  }
};

array rand(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed, float lo = -2, float hi = 2) {
  array x = mx::random::uniform(lo, hi, shape, mx::float32, mx::random::key(seed), kCpu);
  return mx::astype(x, dtype, kCpu);
}

// Runs `f` on the CPU and on the GPU and expects the same values.
void expect_same(const std::function<array(mx::StreamOrDevice)>& f, double atol, double rtol,
                 const std::string& what) {
  SCOPED_TRACE(what);
  array want = f(kCpu);
  array got = f(kGpu);
  mx::eval({want, got});
  ASSERT_EQ(got.dtype(), want.dtype());
  mxtest::expect_close(got, mxtest::to_vector(want), want.shape(), atol, rtol);
}

double tol(mx::Dtype d) {
  if (d == mx::bfloat16) return 2e-2;
  if (d == mx::float16) return 2e-3;
  return 1e-5;
}

const std::vector<mx::Dtype> kFloats = {mx::float32, mx::float16, mx::bfloat16};

}  // namespace

TEST_F(Gpu, EvalWaitsForTheDeviceAndHostReadsNeedNoCopy) {
  array x = rand({1000}, mx::float32, 1);
  array y = mx::exp(x, kGpu);
  EXPECT_EQ(y.primitive().stream().device, kGpu);
  mx::eval(y);
  EXPECT_EQ(y.status(), array::Status::available);
  // The host reads the GPU's result in place (unified memory).
  const float* p = y.data<float>();
  auto xs = mxtest::to_vector(x);
  for (size_t i = 0; i < xs.size(); ++i) EXPECT_NEAR(p[i], std::exp(xs[i]), 1e-5 * std::exp(xs[i]));
}

TEST_F(Gpu, AsyncEvalThenItemAndCrossDeviceChains) {
  array a = rand({64, 64}, mx::float32, 2);
  // cpu -> gpu -> cpu -> gpu, evaluated lazily as one graph and with async_eval.
  array b = mx::multiply(a, a, kGpu);
  array c = mx::add(b, array(1.0f), kCpu);
  array d = mx::sum(mx::sqrt(c, kGpu), kGpu);
  array e = mx::sum(mx::sqrt(mx::add(mx::multiply(a, a, kCpu), array(1.0f), kCpu), kCpu), kCpu);
  mx::async_eval({d});
  EXPECT_NEAR(d.item<float>(), e.item<float>(), 1e-3);
  // A long chain with no host read in between.
  array x = rand({1 << 16}, mx::float32, 3);
  array yg = x, yc = x;
  for (int i = 0; i < 50; ++i) {
    yg = mx::tanh(mx::add(yg, array(0.01f), kGpu), kGpu);
    yc = mx::tanh(mx::add(yc, array(0.01f), kCpu), kCpu);
  }
  mxtest::expect_close(yg, mxtest::to_vector(yc), yc.shape(), 1e-5, 1e-5);
}

TEST_F(Gpu, MemoryFunctionsCountGpuBuffers) {
  mx::eval(rand({4}, mx::float32, 4));
  size_t before = mx::get_active_memory();
  array x = mx::add(rand({1 << 20}, mx::float32, 5), array(1.0f), kGpu);
  mx::eval(x);
  EXPECT_GE(mx::get_active_memory(), before + (size_t{4} << 20));
  EXPECT_GE(mx::get_peak_memory(), mx::get_active_memory());
}

namespace {

// A primitive of the test's own, for which no backend registers a GPU kernel.
class NoGpuKernel : public mx::UnaryPrimitive {
 public:
  using UnaryPrimitive::UnaryPrimitive;
  void eval_cpu(const std::vector<array>& inputs, array& out) override {
    out.copy_shared_buffer(inputs[0]);
  }
  const char* name() const override { return "NoGpuKernel"; }
};

}  // namespace

TEST_F(Gpu, PrimitiveWithoutKernelThrowsNamingIt) {
  array x = rand({8}, mx::float32, 6);
  try {
    mx::eval(
        array(x.shape(), x.dtype(), std::make_shared<NoGpuKernel>(mx::default_stream(kGpu)), {x}));
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("NoGpuKernel"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("GPU"), std::string::npos) << e.what();
  }
}

TEST_F(Gpu, UnaryOpsOverDtypesAndLayouts) {
  using F = array (*)(const array&, mx::StreamOrDevice);
  std::vector<std::pair<std::string, F>> ops = {
      {"exp", [](const array& a, mx::StreamOrDevice s) { return mx::exp(a, s); }},
      {"log", [](const array& a, mx::StreamOrDevice s) { return mx::log(mx::abs(a, s), s); }},
      {"sqrt", [](const array& a, mx::StreamOrDevice s) { return mx::sqrt(mx::abs(a, s), s); }},
      {"rsqrt",
       [](const array& a, mx::StreamOrDevice s) {
         return mx::rsqrt(mx::add(mx::abs(a, s), array(0.5f), s), s);
       }},
      {"tanh", [](const array& a, mx::StreamOrDevice s) { return mx::tanh(a, s); }},
      {"erf", [](const array& a, mx::StreamOrDevice s) { return mx::erf(a, s); }},
      {"negative", [](const array& a, mx::StreamOrDevice s) { return mx::negative(a, s); }},
      {"square", [](const array& a, mx::StreamOrDevice s) { return mx::square(a, s); }},
      {"sigmoid", [](const array& a, mx::StreamOrDevice s) { return mx::sigmoid(a, s); }},
      {"sin", [](const array& a, mx::StreamOrDevice s) { return mx::sin(a, s); }},
      {"floor", [](const array& a, mx::StreamOrDevice s) { return mx::floor(a, s); }},
      {"round", [](const array& a, mx::StreamOrDevice s) { return mx::round(a, 0, s); }},
  };
  for (auto dt : kFloats) {
    array x = rand({7, 33}, dt, 10);
    array xt = mx::transpose(rand({33, 7}, dt, 11), kCpu);  // strided input
    for (auto& [name, op] : ops) {
      expect_same([&](mx::StreamOrDevice s) { return op(x, s); }, tol(dt), tol(dt),
                  name + " " + mx::dtype_name(dt));
      expect_same([&](mx::StreamOrDevice s) { return op(xt, s); }, tol(dt), tol(dt),
                  name + " transposed " + mx::dtype_name(dt));
    }
  }
  array xi = mx::astype(rand({5, 9}, mx::float32, 12, -50, 50), mx::int32, kCpu);
  expect_same([&](mx::StreamOrDevice s) { return mx::abs(xi, s); }, 0, 0, "abs int32");
  expect_same([&](mx::StreamOrDevice s) { return mx::negative(xi, s); }, 0, 0, "negative int32");
  expect_same([&](mx::StreamOrDevice s) { return mx::square(xi, s); }, 0, 0, "square int32");
  array xb = mx::greater(xi, array(0), kCpu);
  expect_same([&](mx::StreamOrDevice s) { return mx::logical_not(xb, s); }, 0, 0, "not bool");
}

TEST_F(Gpu, BinaryOpsBroadcastAndStrided) {
  using F = array (*)(const array&, const array&, mx::StreamOrDevice);
  std::vector<std::pair<std::string, F>> ops = {
      {"add",
       [](const array& a, const array& b, mx::StreamOrDevice s) { return mx::add(a, b, s); }},
      {"subtract",
       [](const array& a, const array& b, mx::StreamOrDevice s) { return mx::subtract(a, b, s); }},
      {"multiply",
       [](const array& a, const array& b, mx::StreamOrDevice s) { return mx::multiply(a, b, s); }},
      {"maximum",
       [](const array& a, const array& b, mx::StreamOrDevice s) { return mx::maximum(a, b, s); }},
      {"minimum",
       [](const array& a, const array& b, mx::StreamOrDevice s) { return mx::minimum(a, b, s); }},
      {"greater",
       [](const array& a, const array& b, mx::StreamOrDevice s) { return mx::greater(a, b, s); }},
      {"less_equal", [](const array& a, const array& b,
                        mx::StreamOrDevice s) { return mx::less_equal(a, b, s); }},
      {"equal",
       [](const array& a, const array& b, mx::StreamOrDevice s) { return mx::equal(a, b, s); }},
  };
  std::vector<mx::Dtype> dtypes = {mx::float32, mx::float16, mx::bfloat16, mx::int32};
  for (auto dt : dtypes) {
    array a = rand({3, 1, 5}, dt, 20, -9, 9);
    array b = rand({4, 5}, dt, 21, -9, 9);                           // broadcasts against a
    array at = mx::transpose(rand({5, 4, 3}, dt, 22, -9, 9), kCpu);  // (3, 4, 5) strided
    array bs = mx::slice(rand({8, 10}, dt, 23, -9, 9), {0, 0}, {8, 10}, {2, 2}, kCpu);  // (4, 5)
    for (auto& [name, op] : ops) {
      double t = dt == mx::int32 ? 0 : tol(dt);
      expect_same([&](mx::StreamOrDevice s) { return op(a, b, s); }, t, t,
                  name + " broadcast " + mx::dtype_name(dt));
      expect_same([&](mx::StreamOrDevice s) { return op(at, bs, s); }, t, t,
                  name + " strided " + mx::dtype_name(dt));
      expect_same([&](mx::StreamOrDevice s) { return op(a, array(1.5f), s); }, t, t,
                  name + " scalar " + mx::dtype_name(dt));
    }
  }
  for (auto dt : kFloats) {
    array a = rand({6, 7}, dt, 24);
    array b = mx::add(mx::abs(rand({7}, dt, 25), kCpu), array(0.5f), kCpu);
    expect_same([&](mx::StreamOrDevice s) { return mx::divide(a, b, s); }, tol(dt), tol(dt),
                "divide " + mx::dtype_name(dt));
    expect_same([&](mx::StreamOrDevice s) { return mx::power(mx::abs(a, s), b, s); }, tol(dt),
                tol(dt), "power " + mx::dtype_name(dt));
    array c = mx::greater(rand({6, 1}, mx::float32, 26), array(0.0f), kCpu);
    expect_same([&](mx::StreamOrDevice s) { return mx::where(c, a, b, s); }, 0, 0,
                "where " + mx::dtype_name(dt));
  }
  array i1 = mx::astype(rand({4, 6}, mx::float32, 27, -20, 20), mx::int32, kCpu);
  array i2 = mx::astype(rand({6}, mx::float32, 28, 1, 7), mx::int32, kCpu);
  expect_same([&](mx::StreamOrDevice s) { return mx::floor_divide(i1, i2, s); }, 0, 0, "floordiv");
  expect_same([&](mx::StreamOrDevice s) { return mx::remainder(i1, i2, s); }, 0, 0, "remainder");
}

TEST_F(Gpu, AstypeAndContiguousCopies) {
  std::vector<mx::Dtype> dtypes = {mx::float32, mx::float16, mx::bfloat16, mx::int32,
                                   mx::bool_,   mx::int64,   mx::uint8};
  array x = rand({4, 6, 5}, mx::float32, 30, -100, 100);
  array views[] = {x, mx::transpose(x, {2, 0, 1}, kCpu),
                   mx::slice(x, {1, 0, 1}, {4, 6, 5}, {2, 3, 2}, kCpu),
                   mx::broadcast_to(mx::slice(x, {0, 0, 0}, {1, 6, 5}, kCpu), {3, 6, 5}, kCpu)};
  for (auto from : dtypes) {
    for (auto to : dtypes) {
      for (auto& v : views) {
        array src = mx::astype(v, from, kCpu);
        mx::eval(src);
        array view = from == mx::float32 ? v : src;
        expect_same([&](mx::StreamOrDevice s) { return mx::astype(view, to, s); }, 0, 0,
                    mx::dtype_name(from) + " -> " + mx::dtype_name(to));
      }
    }
  }
  // A reshape of a non-contiguous view copies.
  expect_same(
      [&](mx::StreamOrDevice s) {
        return mx::reshape(views[1], {30, 4}, s);
      },
      0, 0, "reshape of a transpose");
}

TEST_F(Gpu, CreationAndSliceUpdate) {
  expect_same([](mx::StreamOrDevice s) { return mx::arange(3.0, 50.0, 1.5, mx::float32, s); }, 0, 0,
              "arange float32");
  expect_same([](mx::StreamOrDevice s) { return mx::arange(-7, 40, 3, s); }, 0, 0, "arange int32");
  expect_same(
      [](mx::StreamOrDevice s) {
        return mx::full({3, 4}, array(2.5f), mx::bfloat16, s);
      },
      0, 0, "full");
  for (auto dt : kFloats) {
    array src = rand({6, 8, 5}, dt, 35);
    array upd = rand({2, 8, 3}, dt, 36);
    expect_same(
        [&](mx::StreamOrDevice s) {
          return mx::slice_update(src, upd, {1, 0, 1}, {5, 8, 4}, {2, 1, 1}, s);
        },
        0, 0, "slice_update strided " + mx::dtype_name(dt));
    array upd_t = mx::transpose(rand({3, 8, 2}, dt, 37), {2, 1, 0}, kCpu);
    // A KV-cache style update of a fresh buffer computed on the GPU (donated).
    expect_same(
        [&](mx::StreamOrDevice s) {
          return mx::slice_update(mx::multiply(src, array(2.0f), s), upd_t, {2, 0, 0}, {4, 8, 3},
                                  s);
        },
        0, 0, "slice_update donated " + mx::dtype_name(dt));
  }
}

TEST_F(Gpu, Reductions) {
  for (auto dt : kFloats) {
    array x = rand({5, 6, 70}, dt, 40);
    double t = tol(dt) * 4;
    for (std::vector<int> axes : {std::vector<int>{2}, {0}, {1}, {0, 2}, {0, 1, 2}}) {
      std::string ax;
      for (int a : axes) ax += std::to_string(a);
      expect_same([&](mx::StreamOrDevice s) { return mx::sum(x, axes, false, s); }, t, t,
                  "sum " + ax + " " + mx::dtype_name(dt));
      expect_same([&](mx::StreamOrDevice s) { return mx::max(x, axes, false, s); }, 0, 0,
                  "max " + ax + " " + mx::dtype_name(dt));
      expect_same([&](mx::StreamOrDevice s) { return mx::min(x, axes, true, s); }, 0, 0,
                  "min " + ax + " " + mx::dtype_name(dt));
      expect_same([&](mx::StreamOrDevice s) { return mx::mean(x, axes, false, s); }, t, t,
                  "mean " + ax + " " + mx::dtype_name(dt));
    }
    array xt = mx::transpose(x, {2, 0, 1}, kCpu);
    expect_same([&](mx::StreamOrDevice s) { return mx::sum(xt, -1, false, s); }, t, t,
                "sum of a transpose " + mx::dtype_name(dt));
    for (int axis : {0, 1, 2}) {
      expect_same([&](mx::StreamOrDevice s) { return mx::argmax(x, axis, false, s); }, 0, 0,
                  "argmax " + std::to_string(axis) + " " + mx::dtype_name(dt));
      expect_same([&](mx::StreamOrDevice s) { return mx::argmin(x, axis, false, s); }, 0, 0,
                  "argmin " + std::to_string(axis) + " " + mx::dtype_name(dt));
    }
    expect_same([&](mx::StreamOrDevice s) { return mx::softmax(x, -1, false, s); }, tol(dt),
                tol(dt), "softmax " + mx::dtype_name(dt));
    expect_same([&](mx::StreamOrDevice s) { return mx::softmax(xt, -1, true, s); }, tol(dt),
                tol(dt), "softmax of a transpose " + mx::dtype_name(dt));
    expect_same([&](mx::StreamOrDevice s) { return mx::logsumexp(x, -1, false, s); }, t, t,
                "logsumexp " + mx::dtype_name(dt));
  }
  array xi = mx::astype(rand({3, 1000}, mx::float32, 41, -50, 50), mx::int32, kCpu);
  expect_same([&](mx::StreamOrDevice s) { return mx::sum(xi, -1, false, s); }, 0, 0, "sum int32");
  expect_same([&](mx::StreamOrDevice s) { return mx::max(xi, 0, false, s); }, 0, 0, "max int32");
  array xb = mx::greater(xi, array(40), kCpu);
  expect_same([&](mx::StreamOrDevice s) { return mx::any(xb, -1, false, s); }, 0, 0, "any");
  expect_same([&](mx::StreamOrDevice s) { return mx::all(xb, 0, false, s); }, 0, 0, "all");
  expect_same([&](mx::StreamOrDevice s) { return mx::sum(xb, -1, false, s); }, 0, 0, "sum bool");
}

TEST_F(Gpu, MatmulThroughCublasLt) {
  struct Case {
    mx::Shape a, b;
    bool ta, tb;
  };
  std::vector<Case> cases = {
      {{17, 33}, {33, 9}, false, false},       {{1, 64}, {64, 128}, false, false},
      {{3, 16, 24}, {3, 24, 8}, false, false}, {{2, 3, 5, 12}, {12, 7}, false, false},
      {{4, 10, 6}, {1, 6, 11}, false, false},  {{8, 20}, {20, 12}, true, false},
      {{8, 20}, {20, 12}, false, true},        {{2, 8, 20}, {2, 20, 12}, true, true},
  };
  for (auto dt : kFloats) {
    int seed = 50;
    for (auto& c : cases) {
      // A transposed operand is made as the transpose of a row-major array, so
      // cuBLASLt gets it as a view without a copy.
      auto make = [&](mx::Shape shape, bool t) {
        if (!t) return rand(shape, dt, seed++);
        std::swap(shape[shape.size() - 1], shape[shape.size() - 2]);
        return mx::swapaxes(rand(shape, dt, seed++), -1, -2, kCpu);
      };
      array a = make(c.a, c.ta), b = make(c.b, c.tb);
      double t = dt == mx::float32 ? 1e-4 : tol(dt) * 2;
      expect_same([&](mx::StreamOrDevice s) { return mx::matmul(a, b, s); }, t, t,
                  "matmul " + mx::dtype_name(dt));
    }
    array a = rand({6, 10}, dt, 90), b = rand({10, 4}, dt, 91), cc = rand({4}, dt, 92);
    expect_same([&](mx::StreamOrDevice s) { return mx::addmm(cc, a, b, 0.5f, 2.0f, s); },
                tol(dt) * 2, tol(dt) * 2, "addmm " + mx::dtype_name(dt));
  }
}

TEST_F(Gpu, TakeAlongAxisZeroIsAnEmbeddingLookup) {
  array ids = array({3, 0, 7, 7, 1, -1}, {2, 3}, mx::int32);
  for (auto dt : kFloats) {
    array table = rand({8, 16}, dt, 100);
    expect_same([&](mx::StreamOrDevice s) { return mx::take(table, ids, 0, s); }, 0, 0,
                "take " + mx::dtype_name(dt));
    expect_same([&](mx::StreamOrDevice s) { return mx::take(table, ids, 1, s); }, 0, 0,
                "take axis 1 " + mx::dtype_name(dt));
  }
  array idx = mx::astype(rand({4, 5}, mx::float32, 101, 0, 6), mx::uint32, kCpu);
  array x = rand({4, 6}, mx::float32, 102);
  expect_same([&](mx::StreamOrDevice s) { return mx::take_along_axis(x, idx, 1, s); }, 0, 0,
              "take_along_axis");
}

TEST_F(Gpu, RmsNormAndRope) {
  for (auto dt : kFloats) {
    array x = rand({3, 5, 96}, dt, 110);
    array w = rand({96}, dt, 111);
    expect_same([&](mx::StreamOrDevice s) { return mx::fast::rms_norm(x, w, 1e-5f, s); }, tol(dt),
                tol(dt), "rms_norm " + mx::dtype_name(dt));
    expect_same([&](mx::StreamOrDevice s) { return mx::fast::rms_norm(x, std::nullopt, 1e-6f, s); },
                tol(dt), tol(dt), "rms_norm no weight " + mx::dtype_name(dt));
    array q = rand({2, 4, 7, 64}, dt, 112);
    array qt =
        mx::swapaxes(rand({2, 7, 4, 64}, dt, 113), 1, 2, kCpu);  // (B, L, H, D) -> (B, H, L, D)
    for (bool trad : {false, true}) {
      std::string name = std::string(trad ? "traditional " : "") + mx::dtype_name(dt);
      expect_same(
          [&](mx::StreamOrDevice s) {
            return mx::fast::rope(q, 64, trad, 10000.0f, 1.0f, 5, std::nullopt, s);
          },
          tol(dt), tol(dt), "rope " + name);
      expect_same(
          [&](mx::StreamOrDevice s) {
            return mx::fast::rope(qt, 32, trad, 10000.0f, 0.5f, 1000, std::nullopt, s);
          },
          tol(dt), tol(dt), "rope partial strided " + name);
    }
    array offs = array({3, 11}, mx::int32);
    expect_same(
        [&](mx::StreamOrDevice s) {
          return mx::fast::rope(q, 64, false, 500000.0f, 1.0f, offs, std::nullopt, s);
        },
        tol(dt), tol(dt), "rope per-batch offsets " + mx::dtype_name(dt));
    array freqs = mx::add(mx::abs(rand({32}, mx::float32, 114), kCpu), array(1.0f), kCpu);
    expect_same(
        [&](mx::StreamOrDevice s) {
          return mx::fast::rope(q, 64, false, std::nullopt, 1.0f, 2, freqs, s);
        },
        tol(dt), tol(dt), "rope freqs " + mx::dtype_name(dt));
  }
}

TEST_F(Gpu, ConcatenatePadAndDynamicSlices) {
  for (auto dt : kFloats) {
    array a = rand({2, 3, 5}, dt, 120), b = rand({2, 4, 5}, dt, 121);
    array bt = mx::swapaxes(rand({2, 5, 4}, dt, 122), 1, 2, kCpu);
    expect_same(
        [&](mx::StreamOrDevice s) {
          return mx::concatenate({a, b, bt}, 1, s);
        },
        0, 0, "concatenate axis 1 " + mx::dtype_name(dt));
    expect_same(
        [&](mx::StreamOrDevice s) {
          return mx::concatenate({a, a}, -1, s);
        },
        0, 0, "concatenate last axis " + mx::dtype_name(dt));
    expect_same(
        [&](mx::StreamOrDevice s) {
          return mx::pad(bt, {1, 2}, mx::Shape{2, 0}, mx::Shape{1, 3},
                         mx::astype(array(-1.5f), dt, kCpu), "constant", s);
        },
        0, 0, "pad " + mx::dtype_name(dt));
  }
  array big = rand({2, 4, 16, 8}, mx::bfloat16, 123);
  array upd = rand({2, 4, 3, 8}, mx::bfloat16, 124);
  for (int start : {0, 5, 13, 20, -4}) {
    array st = array({start}, mx::int32);
    expect_same(
        [&](mx::StreamOrDevice s) {
          return mx::slice(big, st, {2}, {2, 4, 3, 8}, s);
        },
        0, 0, "dynamic slice at " + std::to_string(start));
    expect_same([&](mx::StreamOrDevice s) { return mx::slice_update(big, upd, st, {2}, s); }, 0, 0,
                "dynamic slice_update at " + std::to_string(start));
  }
  array st2 = array({1, 6}, mx::int32);
  expect_same(
      [&](mx::StreamOrDevice s) {
        return mx::slice_update(big, mx::slice(upd, {0, 0, 0, 0}, {2, 3, 3, 8}, kCpu), st2, {1, 2},
                                s);
      },
      0, 0, "dynamic slice_update on two axes");
  array x = rand({4, 6}, mx::float32, 125);
  expect_same([&](mx::StreamOrDevice s) { return mx::diagonal(x, 1, 0, 1, s); }, 0, 0, "diagonal");
  expect_same(
      [&](mx::StreamOrDevice s) {
        return mx::as_strided(mx::transpose(x, kCpu), {3, 4}, {1, 2}, 1, s);
      },
      0, 0, "as_strided of a transposed view");
  expect_same([&](mx::StreamOrDevice s) { return mx::view(x, mx::int32, s); }, 0, 0, "view");
}

TEST_F(Gpu, ScatterAndPutAlongAxis) {
  array idx = array({0, 2, 2, 5, 1, 2, 0, 5}, {8}, mx::int32);
  for (auto dt : {mx::float32, mx::bfloat16, mx::float16}) {
    array a = rand({6, 5}, dt, 130);
    array u = rand({8, 1, 5}, dt, 131);
    // Duplicate indices accumulate (the sum of up to three updates).
    expect_same([&](mx::StreamOrDevice s) { return mx::scatter_add(a, {idx}, u, {0}, s); },
                tol(dt) * 4, tol(dt) * 4, "scatter_add " + mx::dtype_name(dt));
    expect_same([&](mx::StreamOrDevice s) { return mx::scatter_max(a, {idx}, u, {0}, s); }, 0, 0,
                "scatter_max " + mx::dtype_name(dt));
    expect_same([&](mx::StreamOrDevice s) { return mx::scatter_min(a, {idx}, u, {0}, s); }, 0, 0,
                "scatter_min " + mx::dtype_name(dt));
    expect_same([&](mx::StreamOrDevice s) { return mx::scatter_prod(a, {idx}, u, {0}, s); },
                tol(dt) * 4, tol(dt) * 4, "scatter_prod " + mx::dtype_name(dt));
  }
  array uniq = array({4, 0, 3}, {3}, mx::int32);
  array ai = mx::astype(rand({5, 3}, mx::float32, 132, -50, 50), mx::int32, kCpu);
  array ui = mx::astype(rand({3, 1, 3}, mx::float32, 133, -50, 50), mx::int32, kCpu);
  expect_same([&](mx::StreamOrDevice s) { return mx::scatter(ai, {uniq}, ui, {0}, s); }, 0, 0,
              "scatter int32 (unique indices)");
  array idx5 = array({0, 2, 2, 4, 1, 2, 0, 4}, {8}, mx::int32);
  array ui8 = mx::astype(rand({8, 1, 3}, mx::float32, 134, -9, 9), mx::int32, kCpu);
  expect_same([&](mx::StreamOrDevice s) { return mx::scatter_add(ai, {idx5}, ui8, {0}, s); }, 0, 0,
              "scatter_add int32");
  // put_along_axis with distinct indices per row (the Gemma repetition
  // penalty's pattern), on a bfloat16 vocabulary row.
  array logits = rand({2, 300}, mx::bfloat16, 135);
  array pos = array({3, 299, 0, 150, 7, 8}, {2, 3}, mx::int32);
  array vals = rand({2, 3}, mx::bfloat16, 136);
  expect_same([&](mx::StreamOrDevice s) { return mx::put_along_axis(logits, pos, vals, 1, s); }, 0,
              0, "put_along_axis");
}

TEST_F(Gpu, Scans) {
  for (auto dt : {mx::float32, mx::bfloat16}) {
    array x = rand({3, 700}, dt, 140, 0.5f, 1.5f);
    array xt = mx::transpose(rand({700, 3}, dt, 141, 0.5f, 1.5f), kCpu);
    const double t = dt == mx::float32 ? 1e-4 : 3e-2;
    for (bool rev : {false, true}) {
      for (bool inc : {true, false}) {
        std::string name = mx::dtype_name(dt) + (rev ? " reverse" : "") + (inc ? "" : " exclusive");
        expect_same([&](mx::StreamOrDevice s) { return mx::cumsum(x, 1, rev, inc, s); }, t, t,
                    "cumsum " + name);
        expect_same([&](mx::StreamOrDevice s) { return mx::cummax(xt, 1, rev, inc, s); }, 0, 0,
                    "cummax transposed " + name);
      }
    }
    expect_same([&](mx::StreamOrDevice s) { return mx::cumsum(x, 0, false, true, s); }, t, t,
                "cumsum axis 0 " + mx::dtype_name(dt));
    array small = rand({2, 20}, dt, 142, 0.9f, 1.1f);
    expect_same([&](mx::StreamOrDevice s) { return mx::cumprod(small, 1, false, true, s); }, t, t,
                "cumprod " + mx::dtype_name(dt));
  }
  array xi = mx::astype(rand({4, 1000}, mx::float32, 143, -100, 100), mx::int32, kCpu);
  expect_same([&](mx::StreamOrDevice s) { return mx::cumsum(xi, 1, false, true, s); }, 0, 0,
              "cumsum int32");
  array xb = mx::greater(rand({3, 300}, mx::float32, 144), array(0.0f), kCpu);
  expect_same([&](mx::StreamOrDevice s) { return mx::cumsum(xb, 1, false, true, s); }, 0, 0,
              "cumsum bool");
}

TEST_F(Gpu, SortArgsortAndPartitions) {
  // Rows from tiny to longer than one shared-memory chunk (2048) to a
  // vocabulary (262144, top-p sampling), with ties (rounded values) and NaN.
  for (int n : {1, 7, 64, 2048, 5000, 262144}) {
    for (auto dt : {mx::float32, mx::bfloat16}) {
      array x = mx::astype(
          mx::round(mx::multiply(rand({2, n}, mx::float32, 150 + n), array(20.0f), kCpu), 0, kCpu),
          dt, kCpu);
      std::string name = std::to_string(n) + " " + mx::dtype_name(dt);
      expect_same([&](mx::StreamOrDevice s) { return mx::sort(x, 1, s); }, 0, 0, "sort " + name);
      expect_same([&](mx::StreamOrDevice s) { return mx::argsort(x, 1, s); }, 0, 0,
                  "argsort (stable) " + name);
    }
  }
  array x = rand({5, 33}, mx::float32, 160);
  array xt = mx::transpose(rand({33, 5}, mx::float32, 161), kCpu);
  expect_same([&](mx::StreamOrDevice s) { return mx::sort(x, 0, s); }, 0, 0, "sort axis 0");
  expect_same([&](mx::StreamOrDevice s) { return mx::argsort(xt, 1, s); }, 0, 0,
              "argsort of a transposed view");
  array withnan = array({3.0f, NAN, -1.0f, 2.0f, NAN, 0.5f}, {6});
  expect_same([&](mx::StreamOrDevice s) { return mx::sort(withnan, 0, s); }, 0, 0,
              "NaN sorts last");
  array xi = mx::astype(rand({3, 100}, mx::float32, 162, -1000, 1000), mx::int32, kCpu);
  expect_same([&](mx::StreamOrDevice s) { return mx::sort(xi, 1, s); }, 0, 0, "sort int32");
  // A partition's kth element is the sorted one; smaller come before it.
  array v = rand({4, 3000}, mx::float32, 163);
  const int kth = 2990;
  array got = mx::partition(v, kth, 1, kGpu);
  array want = mx::sort(v, 1, kCpu);
  mx::eval({got, want});
  auto g = mxtest::to_vector(got), w = mxtest::to_vector(want);
  for (int r = 0; r < 4; ++r) {
    const double pivot = g[r * 3000 + kth];
    EXPECT_EQ(pivot, w[r * 3000 + kth]) << "row " << r;
    for (int j = 0; j < 3000; ++j) {
      if (j < kth) {
        EXPECT_LE(g[r * 3000 + j], pivot);
      } else if (j > kth) {
        EXPECT_GE(g[r * 3000 + j], pivot);
      }
    }
  }
  // top-k through argpartition: the k largest indices, as a set.
  array ap = mx::argpartition(v, -8, 1, kGpu);
  array top = mx::sort(mx::slice(ap, {0, 3000 - 8}, {4, 3000}, kGpu), 1, kGpu);
  array top_cpu =
      mx::sort(mx::slice(mx::argsort(v, 1, kCpu), {0, 3000 - 8}, {4, 3000}, kCpu), 1, kCpu);
  mx::eval({top, top_cpu});
  EXPECT_EQ(mxtest::to_vector(top), mxtest::to_vector(top_cpu));
}

TEST_F(Gpu, RandomBitsMatchTheCpu) {
  for (auto shape : {mx::Shape{1}, mx::Shape{3}, mx::Shape{1000}, mx::Shape{7, 13}}) {
    for (int width : {1, 2, 4}) {
      array key = mx::random::key(77 + width);
      expect_same([&](mx::StreamOrDevice s) { return mx::random::bits(shape, width, key, s); }, 0,
                  0, "bits width " + std::to_string(width) + " of " + std::to_string(shape[0]));
    }
  }
  expect_same(
      [&](mx::StreamOrDevice s) {
        return mx::random::normal({500}, mx::float32, 0.0f, 1.0f, mx::random::key(9), s);
      },
      1e-5, 1e-5, "normal");
}

TEST_F(Gpu, LayerNorm) {
  for (auto dt : kFloats) {
    array x = rand({3, 5, 200}, dt, 170);
    array w = rand({200}, dt, 171), b = rand({200}, dt, 172);
    expect_same([&](mx::StreamOrDevice s) { return mx::fast::layer_norm(x, w, b, 1e-5f, s); },
                tol(dt) * 2, tol(dt) * 2, "layer_norm " + mx::dtype_name(dt));
    expect_same(
        [&](mx::StreamOrDevice s) { return mx::fast::layer_norm(x, std::nullopt, b, 1e-5f, s); },
        tol(dt) * 2, tol(dt) * 2, "layer_norm bias only " + mx::dtype_name(dt));
    expect_same(
        [&](mx::StreamOrDevice s) {
          return mx::fast::layer_norm(x, std::nullopt, std::nullopt, 1e-6f, s);
        },
        tol(dt) * 2, tol(dt) * 2, "layer_norm plain " + mx::dtype_name(dt));
  }
}

TEST_F(Gpu, ScaledDotProductAttention) {
  struct Case {
    int B, Hq, Hkv, Lq, Lk, D;
    std::string mode;
    int window;
  };
  // Prefill (Lq == Lk), decode (Lq == 1: split-KV from 64 keys), chunked prefill
  // (Lq < Lk), grouped-query heads, Gemma 3's head dim 256, sliding windows.
  std::vector<Case> cases = {
      {1, 4, 4, 9, 9, 64, "", 0},         {2, 8, 2, 17, 17, 64, "causal", 0},
      {1, 8, 1, 1, 1500, 256, "", 0},     {1, 4, 2, 1, 3000, 128, "causal", 512},
      {1, 4, 4, 5, 40, 96, "causal", 0},  {1, 8, 4, 33, 33, 256, "causal", 8},
      {2, 2, 1, 1, 700, 64, "causal", 0}, {1, 8, 4, 1, 300, 256, "causal", 0},
      {1, 8, 4, 1, 96, 256, "", 5},
  };
  for (auto dt : kFloats) {
    int seed = 180;
    for (auto& c : cases) {
      array q = rand({c.B, c.Hq, c.Lq, c.D}, dt, seed++);
      array k = rand({c.B, c.Hkv, c.Lk, c.D}, dt, seed++);
      array v = rand({c.B, c.Hkv, c.Lk, c.D}, dt, seed++);
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
      std::optional<int> win = c.window > 0 ? std::optional<int>(c.window) : std::nullopt;
      std::string name = mx::dtype_name(dt) + " Lq " + std::to_string(c.Lq) + " Lk " +
                         std::to_string(c.Lk) + " " + c.mode + " window " +
                         std::to_string(c.window);
      expect_same(
          [&](mx::StreamOrDevice s) {
            return mx::fast::scaled_dot_product_attention(q, k, v, scale, c.mode, {}, {}, win, s);
          },
          tol(dt) * 2, tol(dt) * 2, "sdpa " + name);
    }
  }
  // A bool mask, an additive mask, sinks, a strided (B, L, H, D) -> (B, H, L, D) view.
  array q = mx::swapaxes(rand({1, 6, 4, 64}, mx::float32, 200), 1, 2, kCpu);
  array k = rand({1, 2, 6, 64}, mx::float32, 201), v = rand({1, 2, 6, 64}, mx::float32, 202);
  array bmask = mx::greater(rand({6, 6}, mx::float32, 203), array(-0.5f), kCpu);
  array amask = rand({1, 4, 6, 6}, mx::float32, 204);
  array sinks = rand({4}, mx::float32, 205);
  expect_same(
      [&](mx::StreamOrDevice s) {
        return mx::fast::scaled_dot_product_attention(q, k, v, 0.125f, bmask, s);
      },
      1e-5, 1e-5, "sdpa bool mask, strided q");
  expect_same(
      [&](mx::StreamOrDevice s) {
        return mx::fast::scaled_dot_product_attention(q, k, v, 0.125f, amask, s);
      },
      1e-5, 1e-5, "sdpa additive mask");
  expect_same(
      [&](mx::StreamOrDevice s) {
        return mx::fast::scaled_dot_product_attention(q, k, v, 0.125f, "causal", {}, sinks, 2, s);
      },
      1e-5, 1e-5, "sdpa sinks and window");
  array none = mx::zeros({6, 6}, mx::bool_, kCpu);
  expect_same(
      [&](mx::StreamOrDevice s) {
        return mx::fast::scaled_dot_product_attention(q, k, v, 0.125f, none, s);
      },
      1e-5, 1e-5, "sdpa rows that see no key");
}
