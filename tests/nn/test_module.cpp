// mx::nn::Module: the parameter tree, update, strict load_weights, freezing,
// dtype changes, and training through value_and_grad on trainable_parameters().
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>

#include "common/check.h"
#include "mlxcpp/nn.h"
#include "nn/nn_test_util.h"

namespace nn = mx::nn;
using mx::array;

namespace {

struct Mlp : nn::Module {
  std::shared_ptr<nn::Linear> up, down;
  Mlp() {
    up = register_module("up_proj", std::make_shared<nn::Linear>(4, 8, false));
    down = register_module("down_proj", std::make_shared<nn::Linear>(8, 4));
  }
};

struct Inner : nn::Module {
  std::shared_ptr<nn::Embedding> embed;
  std::shared_ptr<nn::ModuleList<Mlp>> layers;
  std::shared_ptr<nn::RMSNorm> norm;
  Inner() {
    embed = register_module("embed_tokens", std::make_shared<nn::Embedding>(12, 4));
    layers = register_module("layers", std::make_shared<nn::ModuleList<Mlp>>());
    layers->push_back(std::make_shared<Mlp>());
    layers->push_back(std::make_shared<Mlp>());
    norm = register_module("norm", std::make_shared<nn::RMSNorm>(4));
    register_parameter("steps", mx::zeros({1}, mx::int32));
  }
};

struct Top : nn::Module {
  std::shared_ptr<Inner> model;
  std::shared_ptr<nn::Linear> head;
  Top() {
    model = register_module("model", std::make_shared<Inner>());
    head = register_module("lm_head", std::make_shared<nn::Linear>(4, 12, false));
  }
};

std::set<std::string> names(const mx::ParamMap& m) {
  std::set<std::string> s;
  for (const auto& [k, v] : m) s.insert(k);
  return s;
}

// The checkpoint the Top model expects: every parameter with its shape and dtype.
std::map<std::string, array> checkpoint_for(const Top& t, float fill) {
  std::map<std::string, array> w;
  for (const auto& [k, v] : t.parameters())
    w.insert_or_assign(k, mx::full(v.shape(), fill, v.dtype()));
  return w;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no exception)";
}

}  // namespace

TEST(Module, NestedNamesMatchCheckpointNames) {
  Top t;
  const std::set<std::string> expected{
      "lm_head.weight",
      "model.embed_tokens.weight",
      "model.layers.0.down_proj.bias",
      "model.layers.0.down_proj.weight",
      "model.layers.0.up_proj.weight",
      "model.layers.1.down_proj.bias",
      "model.layers.1.down_proj.weight",
      "model.layers.1.up_proj.weight",
      "model.norm.weight",
      "model.steps",
  };
  EXPECT_EQ(names(t.parameters()), expected);
  EXPECT_EQ(t.parameters().at("model.layers.1.up_proj.weight").shape(), (mx::Shape{8, 4}));
  EXPECT_EQ(t.model->layers->size(), 2u);
  EXPECT_EQ(&(*t.model->layers)[1], &t.child("model").child("layers").child("1"));
  int n = 0;
  for (const auto& l : *t.model->layers) n += l->down->has_bias();
  EXPECT_EQ(n, 2);
  // 48 + 2 * (32 + 32 + 4) + 4 + 1 + 48
  EXPECT_EQ(t.num_parameters(), 48u + 2 * 68 + 4 + 1 + 48);
}

TEST(Module, RegistrationErrors) {
  struct Bad : nn::Module {
    void add(const std::string& n) { register_parameter(n, mx::zeros({1}, mx::float32)); }
    void add_child(const std::string& n) { register_module(n, std::make_shared<nn::RMSNorm>(2)); }
  } b;
  EXPECT_THROW(b.add("a.b"), std::invalid_argument);
  EXPECT_THROW(b.add(""), std::invalid_argument);
  b.add("w");
  EXPECT_THROW(b.add_child("w"), std::invalid_argument);
  b.add_child("norm");
  EXPECT_THROW(b.add("norm"), std::invalid_argument);
  EXPECT_EQ(message_of([&] { (void)b.param("nope"); }), "Module: no parameter 'nope'");
  EXPECT_EQ(message_of([&] { (void)b.child("nope"); }), "Module: no child module 'nope'");
  EXPECT_TRUE(b.has_param("w"));
  EXPECT_FALSE(b.has_param("norm"));
}

TEST(Module, UpdateReplacesByNameAndChecksShapes) {
  Top t;
  array w = mx::full({12, 4}, 2.0f, mx::float32);
  t.update({{"lm_head.weight", w}});
  mxtest::expect_close(t.head->weight(), std::vector<double>(48, 2.0), {12, 4});
  EXPECT_EQ(message_of([&] {
              t.update({{"lm_head.bias", w}});
            }),
            "update: unknown parameter 'lm_head.bias'");
  EXPECT_NO_THROW(t.update({{"lm_head.bias", w}}, /*strict=*/false));
  // A wrong shape fails the whole update: the valid entry is not applied either.
  EXPECT_EQ(message_of([&] {
              t.update({{"model.norm.weight", mx::zeros({4}, mx::float32)},
                        {"model.embed_tokens.weight", mx::zeros({10, 4}, mx::float32)}});
            }),
            "update: 'model.embed_tokens.weight' has shape [10, 4], expected [12, 4]");
  mxtest::expect_close(t.model->norm->param("weight"), {1, 1, 1, 1}, {4});
}

TEST(Module, LoadWeightsAcceptsAMatchingCheckpoint) {
  Top t;
  auto w = checkpoint_for(t, 0.25f);
  t.load_weights(w);
  mxtest::expect_close(t.model->layers->operator[](1).down->param("bias"), {0.25, 0.25, 0.25, 0.25},
                       {4});
  EXPECT_EQ(t.parameters().at("model.steps").dtype(), mx::int32);
}

TEST(Module, LoadWeightsNamesEachProblem) {
  Top t;
  auto good = checkpoint_for(t, 0.5f);

  auto missing = good;
  missing.erase("model.norm.weight");
  EXPECT_EQ(message_of([&] { t.load_weights(missing); }),
            "load_weights: missing parameter 'model.norm.weight'");

  auto extra = good;
  extra.insert_or_assign("lm_head.bias", mx::zeros({12}, mx::float32));
  EXPECT_EQ(message_of([&] { t.load_weights(extra); }),
            "load_weights: unexpected tensor 'lm_head.bias'");

  auto shape = good;
  shape.insert_or_assign("model.embed_tokens.weight", mx::zeros({10, 4}, mx::float32));
  EXPECT_EQ(message_of([&] { t.load_weights(shape); }),
            "load_weights: 'model.embed_tokens.weight' has shape [10, 4], expected [12, 4]");

  auto dtype = good;
  dtype.insert_or_assign("model.norm.weight", mx::ones({4}, mx::float16));
  EXPECT_EQ(message_of([&] { t.load_weights(dtype); }),
            "load_weights: 'model.norm.weight' has dtype float16, expected float32");

  // Several problems: the count and each of them.
  auto many = good;
  many.erase("model.norm.weight");
  many.erase("lm_head.weight");
  many.insert_or_assign("extra.weight", mx::zeros({1}, mx::float32));
  many.insert_or_assign("model.layers.0.down_proj.bias", mx::zeros({5}, mx::float32));
  std::string msg = message_of([&] { t.load_weights(many); });
  EXPECT_EQ(msg.rfind("load_weights: 4 problems: ", 0), 0u) << msg;
  for (const char* part : {"missing parameter 'model.norm.weight'",
                           "missing parameter 'lm_head.weight'", "unexpected tensor 'extra.weight'",
                           "'model.layers.0.down_proj.bias' has shape [5], expected [4]"}) {
    EXPECT_NE(msg.find(part), std::string::npos) << part << " not in: " << msg;
  }

  // Long lists are cut after the first few, with the number left.
  std::map<std::string, array> junk;
  for (int i = 0; i < 20; ++i)
    junk.insert_or_assign("junk." + std::to_string(i), mx::zeros({1}, mx::float32));
  msg = message_of([&] { t.load_weights(junk); });
  EXPECT_EQ(msg.rfind("load_weights: 30 problems: ", 0), 0u) << msg;
  EXPECT_NE(msg.find("; and 22 more"), std::string::npos) << msg;

  // Nothing was loaded by any failed call.
  mxtest::expect_close(t.model->norm->param("weight"), {1, 1, 1, 1}, {4});
}

TEST(Module, LoadWeightsNonStrictAndCasting) {
  Top t;
  auto w = checkpoint_for(t, 0.5f);
  w.erase("model.norm.weight");
  w.insert_or_assign("vision_tower.weight", mx::zeros({3}, mx::float32));
  w.insert_or_assign("lm_head.weight", mx::full({12, 4}, 0.75f, mx::bfloat16));
  t.load_weights(w, /*strict=*/false);
  mxtest::expect_close(t.model->norm->param("weight"), {1, 1, 1, 1}, {4});
  EXPECT_EQ(t.head->weight().dtype(), mx::bfloat16);  // taken as it is
  // A wrong shape is an error even when not strict.
  w.insert_or_assign("lm_head.weight", mx::zeros({4, 12}, mx::float32));
  EXPECT_THROW(t.load_weights(w, false), std::invalid_argument);

  Top c;
  auto half = checkpoint_for(c, 0.5f);
  half.insert_or_assign("model.norm.weight", mx::full({4}, 3.0f, mx::bfloat16));
  c.load_weights(half, /*strict=*/true, /*cast_floating=*/true);
  EXPECT_EQ(c.model->norm->param("weight").dtype(), mx::float32);
  mxtest::expect_close(c.model->norm->param("weight"), {3, 3, 3, 3}, {4});
  // Casting covers floating tensors only: an integer tensor for a float parameter still fails.
  half.insert_or_assign("model.norm.weight", mx::ones({4}, mx::int32));
  EXPECT_EQ(message_of([&] { c.load_weights(half, true, true); }),
            "load_weights: 'model.norm.weight' has dtype int32, expected float32");
}

TEST(Module, FreezeAndUnfreeze) {
  Top t;
  EXPECT_EQ(t.trainable_parameters().size(), t.parameters().size());
  t.freeze();
  EXPECT_TRUE(t.trainable_parameters().empty());
  EXPECT_EQ(t.num_parameters(true), 0u);
  t.unfreeze({"bias"});
  EXPECT_EQ(
      names(t.trainable_parameters()),
      (std::set<std::string>{"model.layers.0.down_proj.bias", "model.layers.1.down_proj.bias"}));
  t.unfreeze({"model.layers.1.up_proj.weight", "lm_head.weight"});
  EXPECT_EQ(t.trainable_parameters().size(), 4u);
  EXPECT_TRUE(t.is_frozen("model.norm.weight"));
  EXPECT_FALSE(t.is_frozen("lm_head.weight"));
  // "weight" matches every dotted name ending in ".weight", never a partial component.
  t.unfreeze();
  t.freeze({"weight"});
  EXPECT_EQ(names(t.trainable_parameters()),
            (std::set<std::string>{"model.layers.0.down_proj.bias", "model.layers.1.down_proj.bias",
                                   "model.steps"}));
  EXPECT_EQ(message_of([&] { t.freeze({"eight"}); }), "freeze: no parameter matches 'eight'");
  EXPECT_EQ(message_of([&] { (void)t.is_frozen("model.nope"); }),
            "Module: no parameter 'model.nope'");
  // Freezing a child from itself shows in the parent's view.
  t.unfreeze();
  t.model->layers->freeze();
  EXPECT_EQ(names(t.trainable_parameters()),
            (std::set<std::string>{"lm_head.weight", "model.embed_tokens.weight",
                                   "model.norm.weight", "model.steps"}));
  EXPECT_EQ(t.num_parameters(true), 48u + 48 + 4 + 1);
}

TEST(Module, SetDtypeCastsFloatingParametersOnly) {
  Top t;
  t.set_dtype(mx::bfloat16);
  for (const auto& [k, v] : t.parameters()) {
    EXPECT_EQ(v.dtype(), k == "model.steps" ? mx::int32 : mx::bfloat16) << k;
  }
  // The layers run in the new dtype.
  array y = (*t.head)(mx::ones({2, 4}, mx::bfloat16));
  EXPECT_EQ(y.dtype(), mx::bfloat16);
}

TEST(Module, TrainModePropagates) {
  Top t;
  EXPECT_TRUE(t.training());
  t.train(false);
  EXPECT_FALSE(t.model->layers->operator[](0).up->training());
  t.train();
  EXPECT_TRUE(t.model->norm->training());
}

// ---- training a Linear through value_and_grad over trainable_parameters()

namespace {

mx::ParamFn mse_of(nn::Linear& lin) {
  return [&lin](const mx::ParamMap& p, const std::vector<array>& args) {
    lin.update(p);
    return std::vector<array>{nn::mse_loss(lin(args[0]), args[1])};
  };
}

}  // namespace

TEST(Module, SgdOnALinearMatchesTheHandDerivedGradient) {
  const auto& r = nntest::refs().at("sgd");
  nn::Linear lin(3, 2);
  lin.load_weights({{"weight", nntest::input(r.at("w0"), mx::float32)},
                    {"bias", nntest::input(r.at("b0"), mx::float32)}});
  array x = nntest::input(r.at("x"), mx::float32);
  array y = nntest::output(r.at("y"), mx::float32);
  const float lr = r.at("lr").get<float>();
  auto losses = r.at("losses").get<std::vector<double>>();

  auto step = mx::value_and_grad(mse_of(lin));
  for (size_t i = 0; i + 1 < losses.size(); ++i) {
    auto [outs, grads] = step(lin.trainable_parameters(), {x, y});
    mxtest::expect_close(outs[0], {losses[i]}, {}, 1e-5, 1e-5);
    ASSERT_EQ(names(grads), (std::set<std::string>{"bias", "weight"}));
    if (i == 0) {
      nntest::expect_matches(grads.at("weight"), r.at("grad_w"), mx::float32, "dL/dW");
      nntest::expect_matches(grads.at("bias"), r.at("grad_b"), mx::float32, "dL/db");
    }
    mx::ParamMap next;
    for (const auto& [k, p] : lin.trainable_parameters())
      next.insert_or_assign(k, p - lr * grads.at(k));
    lin.update(next);
    mx::eval(lin.param("weight"), lin.param("bias"));
  }
  mxtest::expect_close(nn::mse_loss(lin(x), y), {losses.back()}, {}, 1e-5, 1e-5);
  EXPECT_LT(losses.back(), 0.5 * losses.front());
  nntest::expect_matches(lin.weight(), r.at("w_final"), mx::float32, "W after 5 steps");
  nntest::expect_matches(lin.param("bias"), r.at("b_final"), mx::float32, "b after 5 steps");
}

TEST(Module, FrozenParametersGetNoGradientAndStayPut) {
  const auto& r = nntest::refs().at("sgd");
  nn::Linear lin(3, 2);
  lin.load_weights({{"weight", nntest::input(r.at("w0"), mx::float32)},
                    {"bias", nntest::input(r.at("b0"), mx::float32)}});
  lin.freeze({"bias"});
  array x = nntest::input(r.at("x"), mx::float32);
  array y = nntest::output(r.at("y"), mx::float32);
  auto [outs, grads] = mx::value_and_grad(mse_of(lin))(lin.trainable_parameters(), {x, y});
  ASSERT_EQ(names(grads), (std::set<std::string>{"weight"}));
  // The bias is zero at the start, so the first gradient does not depend on freezing it.
  nntest::expect_matches(grads.at("weight"), r.at("grad_w"), mx::float32, "dL/dW, bias frozen");
  mxtest::expect_close(lin.param("bias"), {0, 0}, {2});
}
