// QuantizedLinear / QuantizedEmbedding and nn::quantize: MLX's parameter names and shapes,
// agreement with float layers holding the dequantized weights, the tree rewrite, and the
// bits-per-weight arithmetic (hand-worked: 4 bits + 2 x 16 bits per 64 = 4.5).
#include <gtest/gtest.h>

#include "common/check.h"
#include "mlxcpp/mx.h"
#include "mlxcpp/mx/quantized.h"
#include "mlxcpp/nn/layers.h"
#include "mlxcpp/nn/quantized.h"

namespace {

class Net : public mx::nn::Module {
 public:
  Net() {
    register_module("embed",
                    std::make_shared<mx::nn::Embedding>(10, 64, mx::float32, mx::random::key(1)));
    register_module(
        "proj", std::make_shared<mx::nn::Linear>(64, 32, true, mx::float32, mx::random::key(2)));
    register_module(
        "odd", std::make_shared<mx::nn::Linear>(48, 16, false, mx::float32, mx::random::key(3)));
  }
};

double max_abs_diff(const mx::array& a, const mx::array& b) {
  auto x = mxtest::to_vector(a), y = mxtest::to_vector(b);
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
  return m;
}

}  // namespace

TEST(QuantizedLayers, NamesShapesAndForward) {
  mx::nn::Linear lin(64, 32, true, mx::float32, mx::random::key(5));
  auto q = mx::nn::QuantizedLinear::from_linear(lin, {32, 4, "affine"});
  auto p = q->parameters();
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p.at("weight").shape(), (mx::Shape{32, 8}));
  EXPECT_EQ(p.at("weight").dtype(), mx::uint32);
  EXPECT_EQ(p.at("scales").shape(), (mx::Shape{32, 2}));
  EXPECT_EQ(p.at("biases").shape(), (mx::Shape{32, 2}));
  EXPECT_EQ(p.at("bias").shape(), (mx::Shape{32}));
  // The packed parameters are frozen (MLX), the float bias is not.
  EXPECT_EQ(q->trainable_parameters().size(), 1u);
  auto x = mx::random::normal({3, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(6));
  auto deq = q->to_linear();
  EXPECT_LT(max_abs_diff((*q)(x), (*deq)(x)), 1e-4);
  EXPECT_THROW((*q)(mx::zeros({3, 48})), std::invalid_argument);
  EXPECT_THROW(mx::nn::QuantizedLinear(48, 8, false, {64, 4, "affine"}), std::invalid_argument);
}

TEST(QuantizedLayers, EmbeddingLookupAndTiedHead) {
  mx::nn::Embedding emb(10, 64, mx::float32, mx::random::key(7));
  auto q = mx::nn::QuantizedEmbedding::from_embedding(emb, {64, 8, "affine"});
  auto w = mx::dequantize(q->param("weight"), q->param("scales"), q->param("biases"), 64, 8);
  auto ids = mx::array(std::vector<int32_t>{3, 0, 9, 3}, {2, 2}, mx::int32);
  auto rows = (*q)(ids);
  EXPECT_EQ(rows.shape(), (mx::Shape{2, 2, 64}));
  EXPECT_EQ(max_abs_diff(rows, mx::take(w, ids, 0)), 0.0);
  auto x = mx::random::normal({2, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(8));
  EXPECT_LT(max_abs_diff(q->as_linear(x), mx::matmul(x, mx::transpose(w))), 1e-4);
  EXPECT_LT(max_abs_diff(q->to_embedding()->as_linear(x), q->as_linear(x)), 1e-4);
}

TEST(QuantizedLayers, QuantizeTreeSkipsIndivisibleAndRoundTrips) {
  Net net;
  EXPECT_EQ(mx::nn::quantize(net, {64, 4, "affine"}), 2);  // "odd" (48 inputs) stays float
  EXPECT_NE(dynamic_cast<const mx::nn::QuantizedEmbedding*>(&net.child("embed")), nullptr);
  EXPECT_NE(dynamic_cast<const mx::nn::QuantizedLinear*>(&net.child("proj")), nullptr);
  EXPECT_NE(dynamic_cast<const mx::nn::Linear*>(&net.child("odd")), nullptr);
  EXPECT_EQ(mx::nn::quantize(net, {64, 4, "affine"}), 0);  // already quantized
  EXPECT_EQ(mx::nn::dequantize(net), 2);
  EXPECT_NE(dynamic_cast<const mx::nn::Linear*>(&net.child("proj")), nullptr);

  // A predicate chooses per path.
  Net net2;
  int n = mx::nn::quantize(net2, {}, [](const std::string& path, const mx::nn::Module&) {
    return path == "proj" ? std::optional<mx::nn::QuantizationSpec>({32, 8, "affine"})
                          : std::nullopt;
  });
  EXPECT_EQ(n, 1);
  EXPECT_EQ(static_cast<const mx::nn::QuantizedLinear&>(net2.child("proj")).spec().bits, 8);
}

TEST(QuantizedLayers, BitsPerWeight) {
  mx::nn::Linear lin(128, 64, false, mx::bfloat16, mx::random::key(9));
  class One : public mx::nn::Module {
   public:
    explicit One(std::shared_ptr<mx::nn::Module> m) { register_module("l", std::move(m)); }
  };
  One model(mx::nn::QuantizedLinear::from_linear(lin, {64, 4, "affine"}));
  EXPECT_DOUBLE_EQ(mx::nn::bits_per_weight(model), 4.5);
  One model8(mx::nn::QuantizedLinear::from_linear(lin, {32, 8, "affine"}));
  EXPECT_DOUBLE_EQ(mx::nn::bits_per_weight(model8), 9.0);
  EXPECT_EQ(mx::nn::quantization_defaults("mxfp4"), (mx::nn::QuantizationSpec{32, 4, "mxfp4"}));
  EXPECT_EQ(mx::nn::quantization_defaults("nvfp4"), (mx::nn::QuantizationSpec{16, 4, "nvfp4"}));
  EXPECT_EQ(mx::nn::quantization_defaults("mxfp8"), (mx::nn::QuantizationSpec{32, 8, "mxfp8"}));
  EXPECT_THROW(mx::nn::quantization_defaults("int4"), std::invalid_argument);
}
