// Function transforms: grad / value_and_grad (argnums, parameter maps, aux
// outputs, higher order), vjp, jvp, vmap, checkpoint and custom_vjp. Expected
// values are derivatives worked by hand (evaluated with <cmath>) or, for the
// long chain, computed with NumPy (1.00001**100000 in float64).
#include <cmath>
#include <stdexcept>
#include <string>

#include "common/check.h"
#include "mlxcpp/mx/primitives/transforms.h"

namespace {

using mx::array;
using mx::Shape;
using mxtest::expect_close;
using mxtest::to_vector;
using Arrays = std::vector<array>;

// Expects `f` to throw std::invalid_argument whose message contains every
// one of `parts`.
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

// A two-output primitive written for these tests (sin and cos of a float64
// array), so that sibling handling does not depend on other op families. It
// has only a CPU kernel, so it runs on the CPU stream whatever the default
// device is (the suite also runs with the GPU as the default device).
class SinCos : public mx::Primitive {
 public:
  explicit SinCos(mx::Stream s) : Primitive(s) {}
  static Arrays apply(const array& x) {
    return array::make_arrays({x.shape(), x.shape()}, {mx::float64, mx::float64},
                              std::make_shared<SinCos>(mx::default_stream(mx::Device::cpu)), {x});
  }
  void eval_cpu(const Arrays& inputs, Arrays& outputs) override {
    array in = inputs[0];
    if (!in.flags().row_contiguous) throw std::runtime_error("SinCos wants row-contiguous input");
    const double* x = in.data<double>();
    for (int k = 0; k < 2; ++k) {
      outputs[k].set_data(mx::allocator::malloc(std::max<size_t>(outputs[k].nbytes(), 1)));
      double* y = outputs[k].data<double>();
      for (size_t i = 0; i < in.size(); ++i) y[i] = k == 0 ? std::sin(x[i]) : std::cos(x[i]);
    }
  }
  Arrays jvp(const Arrays& primals, const Arrays& tangents, const std::vector<int>&) override {
    auto sc = apply(primals[0]);
    return {tangents[0] * sc[1], -(tangents[0] * sc[0])};
  }
  Arrays vjp(const Arrays& primals, const Arrays& cotangents, const std::vector<int>&,
             const Arrays& outputs) override {
    return {cotangents[0] * outputs[1] - cotangents[1] * outputs[0]};
  }
  std::pair<Arrays, std::vector<int>> vmap(const Arrays& inputs,
                                           const std::vector<int>& axes) override {
    return {apply(inputs[0]), {axes[0], axes[0]}};
  }
  const char* name() const override { return "SinCos"; }
};

array vec(std::initializer_list<double> v) {
  return array(std::vector<double>(v), Shape{static_cast<int>(v.size())}, mx::float64);
}

// ---------------------------------------------------------------- grad

TEST(Grad, PolynomialScalar) {
  auto f = [](const array& x) { return x * x * x + 2.0 * x; };
  auto vg = mx::value_and_grad(f);
  for (double x0 : {2.0, -1.5}) {
    auto [v, g] = vg(array(x0, mx::float64));
    expect_close(v, {x0 * x0 * x0 + 2 * x0}, {}, 1e-12);
    expect_close(g, {3 * x0 * x0 + 2}, {}, 1e-12);
  }
  expect_close(mx::grad(f)(array(2.0f)), {14.0}, {});
}

TEST(Grad, SumOfSquares) {
  auto g = mx::grad([](const array& x) { return mx::sum(x * x); })(vec({1, -2, 3}));
  expect_close(g, {2, -4, 6}, {3});
  EXPECT_EQ(g.dtype(), mx::float64);
}

TEST(Grad, ArgnumsSelectAndOrder) {
  auto f = [](const Arrays& in) { return mx::sum(in[0] * in[1] + mx::sin(in[0])); };
  array x = vec({0.5, 1.0}), y = vec({2, 3});
  std::vector<double> dx = {2 + std::cos(0.5), 3 + std::cos(1.0)}, dy = {0.5, 1.0};

  auto [v, g] = mx::value_and_grad(f, {0, 1})({x, y});
  expect_close(v, {0.5 * 2 + 1.0 * 3 + std::sin(0.5) + std::sin(1.0)}, {}, 1e-12);
  ASSERT_EQ(g.size(), 2u);
  expect_close(g[0], dx, {2}, 1e-12);
  expect_close(g[1], dy, {2}, 1e-12);

  auto g1 = mx::grad(f, {1})({x, y});
  ASSERT_EQ(g1.size(), 1u);
  expect_close(g1[0], dy, {2}, 1e-12);
  expect_close(mx::grad(f, {-1})({x, y})[0], dy, {2}, 1e-12);

  // Gradients come back in the order argnums names them.
  auto g10 = mx::grad(f, {1, 0})({x, y});
  expect_close(g10[0], dy, {2}, 1e-12);
  expect_close(g10[1], dx, {2}, 1e-12);

  // Default argnums: the first argument only.
  auto g0 = mx::grad(f)({x, y});
  ASSERT_EQ(g0.size(), 1u);
  expect_close(g0[0], dx, {2}, 1e-12);
}

TEST(Grad, SameArrayPassedTwiceKeepsGradientsApart) {
  auto f = [](const Arrays& in) { return mx::sum(in[0] * in[1] * in[1]); };
  array a = vec({1, 2});
  auto g = mx::grad(f, {0, 1})({a, a});
  expect_close(g[0], {1, 4}, {2});  // y^2
  expect_close(g[1], {2, 8}, {2});  // 2xy
}

TEST(Grad, HasAux) {
  auto f = [](const Arrays& in) {
    return Arrays{mx::sum(in[0] * in[0]), in[0] * 3.0, mx::sin(in[0])};
  };
  auto [outs, g] = mx::value_and_grad(f)({vec({1, -2, 3})});
  ASSERT_EQ(outs.size(), 3u);
  expect_close(outs[0], {14}, {});
  expect_close(outs[1], {3, -6, 9}, {3});
  expect_close(outs[2], {std::sin(1.0), std::sin(-2.0), std::sin(3.0)}, {3}, 1e-12);
  // The aux outputs add nothing to the gradient.
  expect_close(g[0], {2, -4, 6}, {3});
}

TEST(Grad, ParamMap) {
  // loss = sum((w * x + b)^2) with b a broadcast scalar.
  mx::ParamFn loss = [](const mx::ParamMap& p, const Arrays& args) {
    array r = p.at("lin.weight") * args[0] + p.at("lin.bias");
    return Arrays{mx::sum(mx::square(r)), r};
  };
  mx::ParamMap params{{"lin.weight", vec({1, 2})}, {"lin.bias", array(0.5, mx::float64)}};
  auto [outs, grads] = mx::value_and_grad(loss)(params, {vec({3, -1})});
  // r = [3.5, -1.5]; loss = 12.25 + 2.25; dw = 2 r x; db = sum(2 r).
  expect_close(outs[0], {14.5}, {});
  expect_close(outs[1], {3.5, -1.5}, {2});
  ASSERT_EQ(grads.size(), 2u);
  expect_close(grads.at("lin.weight"), {21, 3}, {2});
  expect_close(grads.at("lin.bias"), {4}, {});
  auto only = mx::grad(loss)(params, {vec({3, -1})});
  expect_close(only.at("lin.bias"), {4}, {});
}

TEST(Grad, HigherOrder) {
  std::function<array(const array&)> f = [](const array& x) { return mx::sin(x); };
  auto d1 = mx::grad(f);
  auto d2 = mx::grad(d1);
  auto d3 = mx::grad(d2);
  double x0 = 0.7;
  array x(x0, mx::float64);
  expect_close(d1(x), {std::cos(x0)}, {}, 1e-12);
  expect_close(d2(x), {-std::sin(x0)}, {}, 1e-12);
  expect_close(d3(x), {-std::cos(x0)}, {}, 1e-12);
  // d2/dx2 x^3 = 6x
  auto c2 = mx::grad(mx::grad([](const array& x) { return x * x * x; }));
  expect_close(c2(array(1.5, mx::float64)), {9.0}, {}, 1e-12);
}

TEST(Grad, StopGradientAndUnusedInputs) {
  auto f = [](const Arrays& in) { return mx::sum(in[0] * mx::stop_gradient(in[0])); };
  auto g = mx::grad(f, {0, 1})({vec({1, -3}), vec({5, 6, 7})});
  expect_close(g[0], {1, -3}, {2});
  expect_close(g[1], {0, 0, 0}, {3});  // not used: zeros of its shape
  EXPECT_EQ(g[1].dtype(), mx::float64);
}

TEST(Grad, EvaluatingInsideTheFunctionKeepsTheGraph) {
  auto f = [](const array& x) {
    array z = mx::sin(x);
    z.eval();
    // Data-dependent control flow is fine: only the traced graph matters.
    if (mx::sum(z).item<double>() > 0) return mx::sum(z * z);
    return mx::sum(z);
  };
  auto g = mx::grad(f)(vec({0.3, 1.1}));
  expect_close(g, {2 * std::sin(0.3) * std::cos(0.3), 2 * std::sin(1.1) * std::cos(1.1)}, {2},
               1e-12);
}

TEST(Grad, IndicesComputedFromThePrimalCarryNoGradient) {
  // x = [3, 1, 2]: argsort = [1, 2, 0], so sorted[k] = x[argsort[k]] and the
  // gradient of sum(sorted * w) puts w[k] at argsort[k].
  array w = vec({10, 20, 30});
  auto f = [&](const array& x) {
    return mx::sum(mx::take_along_axis(x, mx::argsort(x, 0), 0) * w);
  };
  expect_close(mx::grad(f)(vec({3, 1, 2})), {30, 10, 20}, {3});
  auto [o, t] = mx::jvp(f, vec({3, 1, 2}), vec({1, 2, 3}));
  expect_close(t, {10 * 2 + 20 * 3 + 30 * 1}, {});
}

TEST(Grad, HalfPrecisionGradientsKeepTheirDtype) {
  for (auto dt : {mx::float16, mx::bfloat16, mx::float32}) {
    array x = mx::astype(vec({1, 2, -0.5}), dt);
    auto g = mx::grad([](const array& x) { return mx::sum(x * x); })(x);
    EXPECT_EQ(g.dtype(), dt);
    expect_close(g, {2, 4, -1}, {3});
  }
}

TEST(Grad, Errors) {
  auto not_scalar = [](const array& x) { return x * 2.0; };
  expect_invalid(
      [&] {
        mx::grad(not_scalar)(mx::zeros({2, 3}, mx::float64));
      },
      {"[value_and_grad]", "scalar", "(2, 3)"});
  auto f = [](const Arrays& in) { return mx::sum(in[0] * in[1]); };
  expect_invalid(
      [&] {
        mx::grad(f, {2})({vec({1}), vec({2})});
      },
      {"[value_and_grad]", "argnum 2", "2 arguments"});
  expect_invalid(
      [&] {
        mx::grad(f, {0, -2})({vec({1}), vec({2})});
      },
      {"[value_and_grad]", "repeated"});
  expect_invalid([&] { mx::value_and_grad(f, std::vector<int>{}); }, {"[value_and_grad]"});
}

// ---------------------------------------------------------------- vjp / jvp

TEST(Vjp, SeveralOutputs) {
  auto f = [](const Arrays& in) { return Arrays{in[0] * in[1], in[0] + in[1]}; };
  auto [outs, g] = mx::vjp(f, {vec({1, 2}), vec({3, 4})}, {vec({1, 1}), vec({2, -1})});
  expect_close(outs[0], {3, 8}, {2});
  expect_close(outs[1], {4, 6}, {2});
  expect_close(g[0], {5, 3}, {2});  // c0 * y + c1
  expect_close(g[1], {3, 1}, {2});  // c0 * x + c1
}

TEST(Vjp, IdentityAndStopGradientOutputs) {
  auto [o, g] = mx::vjp([](const array& x) { return x; }, vec({1, 2}), vec({7, 8}));
  expect_close(g, {7, 8}, {2});
  // An output under stop_gradient takes no cotangent when the rest are paired.
  auto f = [](const Arrays& in) { return Arrays{mx::stop_gradient(in[0]), in[0] * 2.0}; };
  auto r = mx::vjp(f, {vec({1, 2})}, {vec({1, 1})});
  expect_close(r.second[0], {2, 2}, {2});
  // ... or one per output, the stop_gradient one being ignored.
  auto r2 = mx::vjp(f, {vec({1, 2})}, {vec({5, 5}), vec({1, 1})});
  expect_close(r2.second[0], {2, 2}, {2});
}

TEST(Vjp, CotangentIsCastToTheOutputDtype) {
  array x = mx::astype(vec({1, 2}), mx::float32);
  auto [o, g] = mx::vjp([](const array& x) { return x * x; }, x, vec({1, 1}));
  EXPECT_EQ(g.dtype(), mx::float32);
  expect_close(g, {2, 4}, {2});
}

TEST(Vjp, Errors) {
  auto f = [](const Arrays& in) { return Arrays{in[0] * 2.0}; };
  expect_invalid([&] { mx::vjp(f, {vec({1, 2})}, {vec({1, 2, 3})}); }, {"[vjp]", "(2,)", "(3,)"});
  expect_invalid(
      [&] {
        mx::vjp(f, {vec({1, 2})}, {vec({1, 2}), vec({1, 2}), vec({3, 4})});
      },
      {"[vjp]", "1 outputs", "3 cotangents"});
}

TEST(Jvp, SeveralInputsAndOutputs) {
  auto f = [](const Arrays& in) { return Arrays{in[0] * in[1], mx::sin(in[0])}; };
  auto [outs, t] = mx::jvp(f, {vec({1, 2}), vec({3, 4})}, {vec({1, 0.5}), vec({0, 2})});
  expect_close(outs[0], {3, 8}, {2});
  expect_close(t[0], {3, 6}, {2});  // tx * y + x * ty
  expect_close(t[1], {std::cos(1.0), 0.5 * std::cos(2.0)}, {2}, 1e-12);
  auto [o1, t1] = mx::jvp([](const array& x) { return mx::exp(x); }, array(0.25, mx::float64),
                          array(2.0, mx::float64));
  expect_close(t1, {2 * std::exp(0.25)}, {}, 1e-12);
}

TEST(Jvp, OutputsThatDoNotDependOnThePrimals) {
  auto f = [](const Arrays& in) { return Arrays{vec({1, 2, 3}), mx::stop_gradient(in[0] * 3.0)}; };
  auto [outs, t] = mx::jvp(f, {vec({1})}, {vec({1})});
  expect_close(t[0], {0, 0, 0}, {3});
  expect_close(t[1], {0}, {1});
}

TEST(Jvp, Errors) {
  auto f = [](const Arrays& in) { return in; };
  expect_invalid([&] { mx::jvp(f, {vec({1, 2})}, {vec({1})}); }, {"[jvp]", "(2,)", "(1,)"});
  expect_invalid([&] { mx::jvp(f, {vec({1, 2})}, {}); }, {"[jvp]", "1 primals", "0 tangents"});
}

TEST(Transforms, JvpOfGradIsTheHessianVectorProduct) {
  // f = sum(x^3) / 3 -> grad = x^2 -> H v = 2 x v
  auto g = mx::grad([](const array& x) { return mx::sum(x * x * x) / 3.0; });
  auto [o, hv] = mx::jvp(g, vec({1, -2}), vec({3, 1}));
  expect_close(o, {1, 4}, {2});
  expect_close(hv, {6, -4}, {2});
}

// ---------------------------------------------------------------- multi-output primitives

TEST(MultiOutput, VjpWithAMissingSiblingCotangent) {
  array x = vec({0.2, -1.3});
  auto only_cos = mx::grad([](const array& x) { return mx::sum(SinCos::apply(x)[1]); })(x);
  expect_close(only_cos, {-std::sin(0.2), -std::sin(-1.3)}, {2}, 1e-12);
  auto both = mx::grad([](const array& x) {
    auto sc = SinCos::apply(x);
    return mx::sum(sc[0] * 2.0 + sc[1]);
  })(x);
  expect_close(both, {2 * std::cos(0.2) - std::sin(0.2), 2 * std::cos(-1.3) - std::sin(-1.3)}, {2},
               1e-12);
}

TEST(MultiOutput, JvpAndVmap) {
  auto [outs, t] =
      mx::jvp([](const Arrays& in) { return SinCos::apply(in[0]); }, {vec({0.4})}, {vec({2})});
  expect_close(t[0], {2 * std::cos(0.4)}, {1}, 1e-12);
  expect_close(t[1], {-2 * std::sin(0.4)}, {1}, 1e-12);
  array xs = array(std::vector<double>{0.1, 0.2, 0.3, 0.4}, Shape{2, 2}, mx::float64);
  auto v = mx::vmap([](const Arrays& in) { return SinCos::apply(in[0]); }, {1}, {1, 0})({xs});
  expect_close(v[0], {std::sin(0.1), std::sin(0.2), std::sin(0.3), std::sin(0.4)}, {2, 2}, 1e-12);
  expect_close(v[1], {std::cos(0.1), std::cos(0.3), std::cos(0.2), std::cos(0.4)}, {2, 2}, 1e-12);
}

TEST(MultiOutput, SecondOrderThroughARuleThatReadsTheOutputs) {
  // SinCos's vjp reads its own outputs; differentiating it again must go
  // through them: d/dx sum(d/dx sum(sin x)) = d/dx sum(cos x) = -sin x.
  auto g = mx::grad([](const array& x) { return mx::sum(SinCos::apply(x)[0]); });
  auto gg = mx::grad([&](const array& x) { return mx::sum(g(x)); })(vec({0.3, -2.0}));
  expect_close(gg, {-std::sin(0.3), -std::sin(-2.0)}, {2}, 1e-12);
}

// ---------------------------------------------------------------- vmap

TEST(Vmap, InAndOutAxes) {
  array x = array(std::vector<double>{1, 2, 3, 4, 5, 6}, Shape{2, 3}, mx::float64);
  // Sum of squares of each column (mapped over axis 1).
  auto col = mx::vmap([](const array& c) { return mx::sum(c * c); }, 1)(x);
  expect_close(col, {17, 29, 45}, {3});
  // Unmapped second argument.
  auto scaled =
      mx::vmap([](const array& a, const array& b) { return a * b; }, 0, -1)(x, vec({1, 10, 100}));
  expect_close(scaled, {1, 20, 300, 4, 50, 600}, {2, 3});
  // Each row times [1, 2, 3] stacked along axis 1 of the result.
  auto t = mx::vmap([](const array& r) { return r * vec({1, 2, 3}); }, 0, 1)(x);
  expect_close(t, {1, 4, 4, 10, 9, 18}, {3, 2});
}

TEST(Vmap, NestedIsAnOuterProduct) {
  std::function<array(const array&, const array&)> mul = [](const array& a, const array& b) {
    return a * b;
  };
  auto inner = mx::vmap(mul, -1, 0);       // scalar * each b
  auto outer = mx::vmap(inner, 0, -1, 0);  // each a
  auto r = outer(vec({1, 2}), vec({3, 4, 5}));
  expect_close(r, {3, 4, 5, 6, 8, 10}, {2, 3});
  auto r1 = mx::vmap(inner, 0, -1, 1)(vec({1, 2}), vec({3, 4, 5}));
  expect_close(r1, {3, 6, 4, 8, 5, 10}, {3, 2});
}

TEST(Vmap, UnbatchedOutputsAreBroadcastOrLeft) {
  auto f = [](const Arrays& in) { return Arrays{in[0] + 1.0, vec({7, 8})}; };
  auto r = mx::vmap(f, {0}, {0, 1})({vec({1, 2, 3})});
  expect_close(r[0], {2, 3, 4}, {3});
  expect_close(r[1], {7, 7, 7, 8, 8, 8}, {2, 3});
  auto r2 = mx::vmap(f, {0}, {0, -1})({vec({1, 2, 3})});
  expect_close(r2[1], {7, 8}, {2});
  // The identity function.
  auto id =
      mx::vmap([](const array& x) { return x; }, 1, 0)(mx::reshape(vec({1, 2, 3, 4}), {2, 2}));
  expect_close(id, {1, 3, 2, 4}, {2, 2});
}

TEST(Vmap, PerExampleGradients) {
  // g(w, x) = d/dw (w . x)^2 = 2 (w . x) x
  auto g = mx::grad([](const Arrays& in) { return mx::square(mx::sum(in[0] * in[1])); });
  auto per_example = mx::vmap([&](const Arrays& in) { return g(in); }, {-1, 0});
  array xs = array(std::vector<double>{1, 0, 1, 1, 2, -1}, Shape{3, 2}, mx::float64);
  auto r = per_example({vec({1, 2}), xs});
  expect_close(r[0], {2, 0, 6, 6, 0, 0}, {3, 2});
}

TEST(Vmap, GradOfVmap) {
  auto g = mx::grad([](const array& x) {
    return mx::sum(mx::vmap([](const array& r) { return mx::sin(r); })(x));
  })(vec({0.1, 0.9}));
  expect_close(g, {std::cos(0.1), std::cos(0.9)}, {2}, 1e-12);
}

TEST(Vmap, ComposesWithJvp) {
  // Row-wise jvp of x -> x^3 is 3 x^2 t, both as vmap(jvp) and jvp(vmap).
  array xs = mx::reshape(vec({1, 2, 3, 4}), {2, 2});
  array ts = mx::reshape(vec({1, 0, 2, 1}), {2, 2});
  auto cube = [](const array& x) { return x * x * x; };
  std::function<array(const array&, const array&)> row_jvp = [&](const array& x, const array& t) {
    return mx::jvp(cube, x, t).second;
  };
  expect_close(mx::vmap(row_jvp)(xs, ts), {3, 0, 54, 48}, {2, 2});
  auto [o, t] = mx::jvp(mx::vmap(std::function<array(const array&)>(cube)), xs, ts);
  expect_close(t, {3, 0, 54, 48}, {2, 2});
}

TEST(Vmap, Errors) {
  auto f = [](const Arrays& in) { return Arrays{in[0] + in[1]}; };
  expect_invalid(
      [&] {
        mx::vmap(f)({vec({1, 2}), vec({1, 2, 3})});
      },
      {"[vmap]", "input 0", "input 1", "(3,)"});
  expect_invalid(
      [&] {
        mx::vmap(f, {0, 1})({vec({1, 2}), vec({1, 2})});
      },
      {"[vmap]", "in_axes[1] = 1", "(2,)"});
  expect_invalid([&] { mx::vmap(f, {-1, -1})({vec({1}), vec({1})}); }, {"[vmap]", "mapped"});
  expect_invalid([&] { mx::vmap(f, {0})({vec({1}), vec({1})}); }, {"[vmap]", "in_axes"});
  expect_invalid(
      [&] {
        mx::vmap(f, {0, 0}, {2})({vec({1}), vec({1})});
      },
      {"[vmap]", "out_axes[0] = 2"});
  expect_invalid(
      [&] {
        mx::vmap(f, {0, 0}, {-1})({vec({1}), vec({1})});
      },
      {"[vmap]", "out_axes[0] cannot be -1"});
  // Reading the data of a batched value while tracing.
  auto reads = [](const array& x) {
    array y = x;
    return x * y.item<double>();
  };
  expect_invalid([&] { mx::vmap(reads)(vec({1})); }, {"[vmap]", "mapped input"});
}

// ---------------------------------------------------------------- checkpoint, custom_vjp

TEST(Checkpoint, SameGradientsAndRecomputes) {
  int traces = 0;
  std::function<Arrays(const Arrays&)> block = [&traces](const Arrays& in) {
    ++traces;
    return Arrays{mx::sin(in[0]) * in[1]};
  };
  auto ck = mx::checkpoint(block);
  auto loss_of = [](std::function<Arrays(const Arrays&)> b) {
    return [b](const Arrays& in) { return mx::sum(mx::square(b(in)[0])); };
  };
  array x = vec({0.3, -0.8}), y = vec({1.5, 2.0});
  auto plain = mx::value_and_grad(loss_of(block), {0, 1})({x, y});
  EXPECT_EQ(traces, 1);
  auto ckpt = mx::value_and_grad(loss_of(ck), {0, 1})({x, y});
  EXPECT_EQ(traces, 3);  // forward + recomputation in the backward pass
  std::vector<double> dx, dy;
  for (int i = 0; i < 2; ++i) {
    double xi = i ? -0.8 : 0.3, yi = i ? 2.0 : 1.5;
    dx.push_back(2 * std::sin(xi) * yi * yi * std::cos(xi));
    dy.push_back(2 * std::sin(xi) * std::sin(xi) * yi);
  }
  for (auto* r : {&plain, &ckpt}) {
    expect_close(r->first, {std::pow(std::sin(0.3) * 1.5, 2) + std::pow(std::sin(-0.8) * 2.0, 2)},
                 {}, 1e-12);
    expect_close(r->second[0], dx, {2}, 1e-12);
    expect_close(r->second[1], dy, {2}, 1e-12);
  }
  // Forward mode and vmap go through the block itself.
  auto [o, t] = mx::jvp(ck, {x, y}, {vec({1, 0}), vec({0, 0})});
  expect_close(t[0], {std::cos(0.3) * 1.5, 0}, {2}, 1e-12);
  auto v = mx::vmap(ck, {0, -1})({mx::reshape(vec({0.3, -0.8}), {2, 1}), vec({2.0})});
  expect_close(v[0], {std::sin(0.3) * 2.0, std::sin(-0.8) * 2.0}, {2, 1}, 1e-12);
}

TEST(CustomVjp, StraightThroughEstimator) {
  auto ste = mx::custom_vjp(
      [](const Arrays& in) { return Arrays{mx::floor(in[0])}; },
      [](const Arrays&, const Arrays& cotangents, const Arrays&) { return cotangents; });
  auto [v, g] = mx::value_and_grad([&](const array& x) { return mx::sum(ste({x})[0] * 3.0); })(
      vec({1.5, -0.5}));
  expect_close(v, {3 * 1 + 3 * -1.0}, {});
  expect_close(g, {3, 3}, {2});
  // The rule survives vmap: per-row sums of the batched estimator.
  auto gv = mx::grad([&](const array& x) {
    return mx::sum(mx::vmap([&](const array& r) { return ste({r})[0]; })(x));
  })(mx::reshape(vec({0.5, 1.5, 2.5, 3.5}), {2, 2}));
  expect_close(gv, {1, 1, 1, 1}, {2, 2});
  // Forward mode differentiates the function itself (floor: zero).
  auto [o, t] = mx::jvp(ste, {vec({1.5})}, {vec({1})});
  expect_close(t[0], {0}, {1});
}

TEST(CustomVjp, SeveralOutputsAndErrors) {
  auto f = mx::custom_vjp(
      [](const Arrays& in) {
        return Arrays{in[0] * 2.0, in[0] * in[1]};
      },
      [](const Arrays& p, const Arrays& c, const Arrays&) {
        return Arrays{c[0] * 2.0 + c[1] * p[1], c[1] * p[0]};
      });
  // Only the second output feeds the loss: the first output's cotangent is zero.
  auto g = mx::grad([&](const Arrays& in) { return mx::sum(f(in)[1]); },
                    {0, 1})({vec({1, 2}), vec({3, 4})});
  expect_close(g[0], {3, 4}, {2});
  expect_close(g[1], {1, 2}, {2});
  auto bad = mx::custom_vjp([](const Arrays& in) { return Arrays{in[0] * 2.0}; },
                            [](const Arrays&, const Arrays&, const Arrays&) { return Arrays{}; });
  expect_invalid([&] { mx::grad([&](const array& x) { return mx::sum(bad({x})[0]); })(vec({1})); },
                 {"[custom_vjp]", "0 cotangents", "1 primals"});
}

// ---------------------------------------------------------------- deep graphs

TEST(Transforms, ChainOf100kOpsDifferentiates) {
  // y = x * 1.00001^n; NumPy: 1.00001**100000 = 2.7182682371922975
  constexpr int n = 100000;
  auto f = [](const array& x) {
    array y = x;
    array k(1.00001, mx::float64);
    for (int i = 0; i < n; ++i) y = y * k;
    return y;
  };
  auto [v, g] = mx::value_and_grad(f)(array(1.0, mx::float64));
  mx::eval(v, g);
  expect_close(v, {2.7182682371922975}, {}, 0, 1e-9);
  expect_close(g, {2.7182682371922975}, {}, 0, 1e-9);
  auto [o, t] = mx::jvp(f, array(2.0, mx::float64), array(1.0, mx::float64));
  expect_close(t, {2.7182682371922975}, {}, 0, 1e-9);
  auto vm = mx::vmap(f)(vec({1, 2}));
  expect_close(vm, {2.7182682371922975, 2 * 2.7182682371922975}, {2}, 0, 1e-9);
}

}  // namespace
