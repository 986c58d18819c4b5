// mx::nn layers, activations and losses against NumPy references
// (tools/reference/nn_refs.py), in float32 and bfloat16.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>

#include "common/check.h"
#include "mlxcpp/nn.h"
#include "nn/nn_test_util.h"

namespace nn = mx::nn;
using mx::array;
using nntest::expect_matches;
using nntest::input;
using nntest::refs;

namespace {

const std::vector<mx::Dtype> kDtypes{mx::float32, mx::bfloat16};

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no exception)";
}

}  // namespace

TEST(Layers, LinearMatchesNumpy) {
  const auto& r = refs().at("linear");
  for (auto dt : kDtypes) {
    nn::Linear lin(4, 5, true, dt);
    lin.load_weights({{"weight", input(r.at("w"), dt)}, {"bias", input(r.at("b"), dt)}});
    expect_matches(lin(input(r.at("x"), dt)), r.at("y"), dt, "linear");
    nn::Linear nob(4, 5, false, dt);
    EXPECT_FALSE(nob.has_bias());
    nob.load_weights({{"weight", input(r.at("w"), dt)}});
    expect_matches(nob(input(r.at("x"), dt)), r.at("y_nobias"), dt, "linear without bias");
  }
  nn::Linear lin(4, 5);
  EXPECT_EQ(lin.input_dims(), 4);
  EXPECT_EQ(lin.output_dims(), 5);
  EXPECT_EQ(message_of([&] {
              (void)lin(mx::zeros({2, 3}, mx::float32));
            }),
            "Linear: input of shape [2, 3] must end in the layer's dimension 4");
  EXPECT_THROW(nn::Linear(0, 3), std::invalid_argument);
}

TEST(Layers, LinearInitialisationIsUniformInPlusMinusOneOverSqrtIn) {
  // 64 inputs: bound 1/8. 256 x 64 samples: the extremes come within 1% of the
  // bound and the variance is bound^2 / 3 within a few percent.
  nn::Linear lin(64, 256, true, mx::float32, mx::random::key(7));
  auto w = mxtest::to_vector(lin.weight());
  double lo = 1, hi = -1, sq = 0, sum = 0;
  for (double v : w) lo = std::min(lo, v), hi = std::max(hi, v), sq += v * v, sum += v;
  EXPECT_GE(lo, -0.125);
  EXPECT_LT(hi, 0.125);
  EXPECT_LT(lo, -0.124);
  EXPECT_GT(hi, 0.124);
  EXPECT_NEAR(sq / w.size(), 0.125 * 0.125 / 3, 0.05 * 0.125 * 0.125 / 3);
  EXPECT_NEAR(sum / w.size(), 0.0, 0.003);
  for (double v : mxtest::to_vector(lin.param("bias"))) EXPECT_LE(std::abs(v), 0.125);
  // The same key gives the same weights; weight and bias draw from different streams.
  nn::Linear again(64, 256, true, mx::float32, mx::random::key(7));
  EXPECT_EQ(mxtest::to_vector(again.weight()), w);
  EXPECT_NE(mxtest::to_vector(lin.param("bias"))[0], w[0]);
}

TEST(Layers, EmbeddingLookupAndTiedHead) {
  const auto& r = refs().at("embedding");
  const auto& ir = r.at("indices");
  array idx(ir.at("data").get<std::vector<int>>(), nntest::shape_of(ir), mx::int32);
  for (auto dt : kDtypes) {
    nn::Embedding emb(6, 4, dt);
    emb.load_weights({{"weight", input(r.at("w"), dt)}});
    expect_matches(emb(idx), r.at("y"), dt, "embedding");
    expect_matches(emb.as_linear(input(r.at("x"), dt)), r.at("as_linear"), dt, "as_linear");
  }
  nn::Embedding emb(6, 4);
  EXPECT_EQ(emb.num_embeddings(), 6);
  EXPECT_EQ(emb.dims(), 4);
  EXPECT_EQ(message_of([&] { (void)emb(mx::zeros({2}, mx::float32)); }),
            "Embedding: indices must be integers, got float32");
}

TEST(Layers, EmbeddingInitialisationIsNormalWithStdOneOverSqrtDims) {
  nn::Embedding emb(512, 16, mx::float32, mx::random::key(3));
  auto w = mxtest::to_vector(emb.weight());
  double sum = 0, sq = 0;
  for (double v : w) sum += v, sq += v * v;
  const double n = static_cast<double>(w.size());
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(std::sqrt(sq / n), 0.25, 0.01);  // 1 / sqrt(16)
}

TEST(Layers, NormsMatchNumpy) {
  const auto& r = refs().at("norms");
  const float eps = r.at("eps").get<float>();
  for (auto dt : kDtypes) {
    nn::RMSNorm rms(8, eps, dt);
    mxtest::expect_close(rms.param("weight"), std::vector<double>(8, 1.0), {8});
    rms.load_weights({{"weight", input(r.at("w"), dt)}});
    expect_matches(rms(input(r.at("x"), dt)), r.at("rms"), dt, "rms_norm");

    nn::LayerNorm ln(8, eps, true, true, dt);
    mxtest::expect_close(ln.param("bias"), std::vector<double>(8, 0.0), {8});
    ln.load_weights({{"weight", input(r.at("w"), dt)}, {"bias", input(r.at("b"), dt)}});
    expect_matches(ln(input(r.at("x"), dt)), r.at("layer"), dt, "layer_norm");

    nn::LayerNorm plain(8, eps, false, false, dt);
    EXPECT_TRUE(plain.parameters().empty());
    expect_matches(plain(input(r.at("x"), dt)), r.at("layer_plain"), dt, "layer_norm, no affine");
  }
  nn::LayerNorm nobias(8, 1e-5f, true, false);
  EXPECT_EQ(nobias.parameters().size(), 1u);
  EXPECT_EQ(nn::RMSNorm(8).eps(), 1e-5f);
}

TEST(Activations, MatchNumpyInFloat32AndBfloat16) {
  const auto& r = refs().at("activations");
  const std::map<std::string, std::function<array(const array&)>> fns{
      {"gelu", [](const array& x) { return nn::gelu(x); }},
      {"gelu_approx", [](const array& x) { return nn::gelu_approx(x); }},
      {"gelu_fast_approx", [](const array& x) { return nn::gelu_fast_approx(x); }},
      {"silu", [](const array& x) { return nn::silu(x); }},
      {"relu", [](const array& x) { return nn::relu(x); }},
      {"relu6", [](const array& x) { return nn::relu6(x); }},
      {"relu_squared", [](const array& x) { return nn::relu_squared(x); }},
      {"leaky_relu", [](const array& x) { return nn::leaky_relu(x); }},
      {"elu", [](const array& x) { return nn::elu(x); }},
      {"celu", [](const array& x) { return nn::celu(x); }},
      {"selu", [](const array& x) { return nn::selu(x); }},
      {"softplus", [](const array& x) { return nn::softplus(x); }},
      {"softsign", [](const array& x) { return nn::softsign(x); }},
      {"mish", [](const array& x) { return nn::mish(x); }},
      {"sigmoid", [](const array& x) { return nn::sigmoid(x); }},
      {"tanh", [](const array& x) { return nn::tanh(x); }},
      {"log_sigmoid", [](const array& x) { return nn::log_sigmoid(x); }},
      {"hardswish", [](const array& x) { return nn::hardswish(x); }},
      {"hard_tanh", [](const array& x) { return nn::hard_tanh(x); }},
  };
  ASSERT_EQ(fns.size(), r.at("out").size());
  for (auto dt : kDtypes) {
    array x = input(r.at("x"), dt);
    for (const auto& [name, fn] : fns) expect_matches(fn(x), r.at("out").at(name), dt, name);
  }
}

TEST(Activations, GeluTanhIsTheApproximationAndBfloat16RoundsOnce) {
  const auto& r = refs().at("activations");
  array x = input(r.at("x"), mx::bfloat16);
  auto expected = r.at("out").at("gelu_approx").at("data").get<std::vector<double>>();
  // Computed in float32 and rounded once, each element is the bfloat16 nearest the
  // exact value (within half a unit in the last place: 2^-9 relative).
  auto got = mxtest::to_vector(nn::gelu_tanh(x));
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], expected[i], std::ldexp(std::abs(expected[i]), -8) + 1e-30) << i;
  }
  EXPECT_EQ(nn::gelu_tanh(x).dtype(), mx::bfloat16);
}

TEST(Activations, ByHuggingFaceName) {
  const auto& r = refs().at("activations");
  array x = input(r.at("x"), mx::float32);
  expect_matches(nn::activation_by_name("gelu_pytorch_tanh")(x), r.at("out").at("gelu_approx"),
                 mx::float32, "gelu_pytorch_tanh");
  expect_matches(nn::activation_by_name("gelu")(x), r.at("out").at("gelu"), mx::float32, "gelu");
  expect_matches(nn::activation_by_name("swish")(x), r.at("out").at("silu"), mx::float32, "swish");
  EXPECT_EQ(message_of([] { (void)nn::activation_by_name("gelu_magic"); }),
            "unknown activation 'gelu_magic'");
}

TEST(Activations, GluAndSoftmax) {
  for (auto dt : kDtypes) {
    expect_matches(nn::glu(input(refs().at("glu").at("x"), dt)), refs().at("glu").at("y"), dt,
                   "glu");
    const auto& s = refs().at("softmax");
    expect_matches(nn::softmax(input(s.at("x"), dt)), s.at("y"), dt, "softmax");
    expect_matches(nn::log_softmax(input(s.at("x"), dt)), s.at("log_y"), dt, "log_softmax");
  }
  EXPECT_THROW(nn::glu(mx::zeros({2, 3}, mx::float32)), std::invalid_argument);
}

TEST(Losses, CrossEntropyMatchesNumpy) {
  const auto& r = refs().at("cross_entropy");
  array t(r.at("targets").get<std::vector<int>>(), {4}, mx::int32);
  for (auto dt : kDtypes) {
    array z = input(r.at("logits"), dt);
    // The loss is float32 for 16-bit logits, and accurate to float32 from the exact inputs.
    array none = nn::cross_entropy(z, t);
    expect_matches(none, r.at("none"), mx::float32, "cross_entropy none");
    mxtest::expect_close(nn::cross_entropy(z, t, -1, "mean"), {r.at("mean").get<double>()}, {},
                         1e-5, 1e-5);
    mxtest::expect_close(nn::cross_entropy(z, t, -1, "sum"), {r.at("sum").get<double>()}, {}, 1e-5,
                         1e-5);
    expect_matches(nn::cross_entropy(z, t, -1, "none", std::nullopt, 0.1f), r.at("smoothed"),
                   mx::float32, "cross_entropy smoothed");
    array w(r.at("weights").get<std::vector<double>>(), {4}, mx::float32);
    mxtest::expect_close(nn::cross_entropy(z, t, -1, "sum", w),
                         {r.at("weighted_sum").get<double>()}, {}, 1e-5, 1e-5);
    array p = nntest::output(r.at("probs"), mx::float32);
    expect_matches(nn::cross_entropy(z, p), r.at("probs_loss"), mx::float32, "probability targets");
    array t0(r.at("axis0_targets").get<std::vector<int>>(), {6}, mx::int32);
    expect_matches(nn::cross_entropy(z, t0, 0), r.at("axis0"), mx::float32, "axis 0");
  }
  array z = mx::zeros({4, 6}, mx::float32);
  EXPECT_EQ(message_of([&] { (void)nn::cross_entropy(z, t, -1, "avg"); }),
            "loss: unknown reduction 'avg' (expected none, mean or sum)");
  EXPECT_EQ(message_of([&] { (void)nn::cross_entropy(z, mx::zeros({3}, mx::int32)); }),
            "cross_entropy: class-index targets of shape [3] do not match logits of shape [4, 6] "
            "without axis -1");
}

TEST(Losses, CrossEntropyGradientIsSoftmaxMinusOneHot) {
  // d/dz mean(lse(z) - z[t]) = (softmax(z) - onehot(t)) / rows: checked against the
  // NumPy softmax of the same logits.
  const auto& r = refs().at("cross_entropy");
  array z = input(r.at("logits"), mx::float32);
  auto tv = r.at("targets").get<std::vector<int>>();
  array t(tv, {4}, mx::int32);
  auto g = mx::grad([&](const array& zz) { return nn::cross_entropy(zz, t, -1, "mean"); })(z);
  auto zv = mxtest::to_vector(z);
  std::vector<double> expected(24);
  for (int i = 0; i < 4; ++i) {
    double m = -1e300, s = 0;
    for (int j = 0; j < 6; ++j) m = std::max(m, zv[i * 6 + j]);
    for (int j = 0; j < 6; ++j) s += std::exp(zv[i * 6 + j] - m);
    for (int j = 0; j < 6; ++j) {
      expected[i * 6 + j] = (std::exp(zv[i * 6 + j] - m) / s - (j == tv[i] ? 1.0 : 0.0)) / 4.0;
    }
  }
  mxtest::expect_close(g, expected, {4, 6}, 1e-6, 1e-5);
}
