// The decode path on the GPU: weights loaded into device memory, greedy tokens
// equal to the CPU's for the tiny Gemma 3 reference models, and sampling on
// the device drawing from the distribution the logits define (probabilities
// computed here with std::exp) with argmax equal to the CPU's.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "lm/tokenizer_test_util.h"
#include "mlxcpp/lm/generate.h"
#include "mlxcpp/lm/load.h"
#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/lm/sample.h"
#include "mlxcpp/mx/device_memory.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/mx/transforms.h"

namespace {

const mx::Device kGpu{mx::Device::gpu};
const mx::Device kCpu{mx::Device::cpu};

// Runs the test body with `d` as the default device, restoring the previous one.
class DefaultDevice {
 public:
  explicit DefaultDevice(mx::Device d) : previous_(mx::default_device()) {
    mx::set_default_device(d);
  }
  ~DefaultDevice() { mx::set_default_device(previous_); }

 private:
  mx::Device previous_;
};

class GpuGenerate : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  }
};

std::vector<int32_t> greedy(const std::string& model, mx::Device d,
                            const std::vector<int32_t>& prompt, int n) {
  DefaultDevice scope(d);
  auto bundle = lm::load(lm::testing::model_dir(model).string());
  lm::GenerateOptions opts;
  opts.max_tokens = n;
  std::vector<int32_t> out;
  lm::generate_step(*bundle.model, prompt, opts, [&](int32_t t, const mx::array&) {
    out.push_back(t);
    return true;
  });
  return out;
}

TEST_F(GpuGenerate, WeightsAreDeviceResident) {
  DefaultDevice scope(kGpu);
  auto bundle = lm::load(lm::testing::model_dir("gemma3/sparse_f32").string());
  int checked = 0;
  for (auto& [name, p] : bundle.model->parameters()) {
    EXPECT_TRUE(mx::in_device_memory(p)) << name;
    ++checked;
  }
  EXPECT_GT(checked, 0);
  // Host reads still work, without copies in user code (the embedding row
  // read here on the host equals the same row gathered on the device).
  auto params = bundle.model->parameters();
  auto it = params.begin();
  mx::array w = it->second;
  mx::array row = mx::astype(mx::reshape(w, {-1}), mx::float32);
  mx::eval(row);
  const float* host = row.data<float>();
  auto dev_sum = mx::sum(row).item<float>();
  double host_sum = 0;
  for (size_t i = 0; i < row.size(); ++i) host_sum += host[i];
  EXPECT_NEAR(dev_sum, host_sum, 1e-3 * (1 + std::abs(host_sum))) << it->first;
}

TEST_F(GpuGenerate, GreedyTokensMatchTheCpu) {
  const std::vector<int32_t> prompt = {2, 17, 301, 45, 9, 77, 5, 123};
  for (const char* model : {"gemma3/sparse_f32", "gemma3/layer_types_f32"}) {
    auto cpu = greedy(model, kCpu, prompt, 24);
    auto gpu = greedy(model, kGpu, prompt, 24);
    ASSERT_EQ(cpu.size(), 24u) << model;
    EXPECT_EQ(gpu, cpu) << model;
  }
}

// Logits of a small vocabulary with a known softmax.
std::vector<float> test_logits() { return {2.0f, 1.5f, 0.5f, 0.0f, -1.0f, 1.0f, -3.0f, 0.25f}; }

std::vector<double> softmax(const std::vector<float>& l, int keep_top = 0) {
  std::vector<double> p(l.size());
  std::vector<float> sorted = l;
  std::sort(sorted.rbegin(), sorted.rend());
  float cut = keep_top > 0 ? sorted[keep_top - 1] : -INFINITY;
  double z = 0;
  for (size_t i = 0; i < l.size(); ++i) z += l[i] >= cut ? std::exp(double(l[i])) : 0;
  for (size_t i = 0; i < l.size(); ++i) p[i] = l[i] >= cut ? std::exp(double(l[i])) / z : 0;
  return p;
}

// Draws `n` tokens with the sampler in one batch of identical rows on the
// default device and returns the frequency of each token.
std::vector<double> frequencies(const lm::Sampler& sampler, const std::vector<float>& logits,
                                int n) {
  const int V = static_cast<int>(logits.size());
  mx::array row(logits, {1, V}, mx::float32);
  mx::array lp = mx::subtract(row, mx::logsumexp(row, -1, true));
  mx::array batch = mx::broadcast_to(lp, {n, V});
  mx::array toks = mx::astype(sampler(mx::copy(batch)), mx::int32);
  mx::eval(toks);
  std::vector<double> f(V, 0);
  const int32_t* t = toks.data<int32_t>();
  for (int i = 0; i < n; ++i) f.at(t[i]) += 1.0 / n;
  return f;
}

void expect_distribution(const std::vector<double>& got, const std::vector<double>& want, int n,
                         const std::string& what) {
  for (size_t i = 0; i < want.size(); ++i) {
    // Five standard deviations of a binomial frequency (plus a floor for p = 0).
    double sd = std::sqrt(want[i] * (1 - want[i]) / n);
    EXPECT_NEAR(got[i], want[i], 5 * sd + 1e-9) << what << " token " << i;
  }
}

TEST_F(GpuGenerate, DeviceSamplingDrawsFromTheLogitsDistribution) {
  DefaultDevice scope(kGpu);
  mx::random::seed(7);
  const int n = 40000;
  auto logits = test_logits();
  lm::SamplerOptions plain;
  plain.temp = 1.0f;
  expect_distribution(frequencies(lm::make_sampler(plain), logits, n), softmax(logits), n,
                      "temp 1");
  lm::SamplerOptions topk = plain;
  topk.top_k = 3;
  expect_distribution(frequencies(lm::make_sampler(topk), logits, n), softmax(logits, 3), n,
                      "top_k 3");
  // top_p 0.6 keeps the smallest set of most likely tokens reaching 0.6 of
  // the mass: here the two largest (0.40 + 0.24 >= 0.6).
  lm::SamplerOptions topp = plain;
  topp.top_p = 0.6f;
  auto p = softmax(logits);
  ASSERT_LT(p[0], 0.6);
  ASSERT_GE(p[0] + p[1], 0.6);
  expect_distribution(frequencies(lm::make_sampler(topp), logits, n), softmax(logits, 2), n,
                      "top_p 0.6");
}

TEST_F(GpuGenerate, DeviceArgmaxEqualsTheCpus) {
  mx::random::seed(3);
  mx::array logits = mx::random::normal({4, 262144});
  mx::eval(logits);
  std::vector<int32_t> want;
  {
    DefaultDevice scope(kCpu);
    auto a = mx::astype(mx::argmax(logits, -1), mx::int32);
    mx::eval(a);
    want.assign(a.data<int32_t>(), a.data<int32_t>() + 4);
  }
  DefaultDevice scope(kGpu);
  auto a = mx::astype(lm::make_sampler({})(logits), mx::int32);
  mx::eval(a);
  EXPECT_EQ(std::vector<int32_t>(a.data<int32_t>(), a.data<int32_t>() + 4), want);
}

}  // namespace
