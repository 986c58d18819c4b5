// `mlxcpp demo`: a short tour of the core — lazy arrays, a fused attention
// layer, a gradient step and the memory counters.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <iostream>

#include "command.h"
#include "mlxcpp/mx.h"
#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/random.h"

namespace {

int run_demo(int argc, char** argv) {
  CLI::App app{"A short demonstration of the mx core", "mlxcpp demo"};
  int steps = 50;
  uint64_t seed = 0;
  app.add_option("--steps", steps, "gradient steps of the regression")->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "random seed");
  app.parse(argc, argv);

  mx::random::seed(seed);
  std::cout << "mx core demo (device: " << mx::default_device() << ")\n\n";

  // 1. Lazy arrays and views.
  mx::array a = mx::reshape(mx::arange(6.0f), {2, 3});
  std::cout << "a =\n" << a << "\n";
  std::cout << "a.T @ a =\n" << mx::matmul(mx::transpose(a), a) << "\n";
  std::cout << "softmax(a, -1) =\n" << mx::softmax(a, -1) << "\n\n";

  // 2. One attention layer in bfloat16 with a causal mask and grouped-query heads.
  int B = 1, Hq = 4, Hkv = 2, L = 8, D = 16;
  auto q = mx::astype(mx::random::normal({B, Hq, L, D}), mx::bfloat16);
  auto k = mx::astype(mx::random::normal({B, Hkv, L, D}), mx::bfloat16);
  auto v = mx::astype(mx::random::normal({B, Hkv, L, D}), mx::bfloat16);
  q = mx::fast::rope(q, D, false, 10000.0f, 1.0f, 0);
  k = mx::fast::rope(k, D, false, 10000.0f, 1.0f, 0);
  auto o = mx::fast::scaled_dot_product_attention(q, k, v, 1.0f / std::sqrt(float(D)), "causal");
  o = mx::fast::rms_norm(o, std::nullopt, 1e-6f);
  std::cout << "attention output " << o.ndim() << "-d, dtype " << o.dtype()
            << ", mean |o| = " << mx::mean(mx::abs(o)).item<float>() << "\n\n";

  // 3. Least squares by gradient descent: recover w from y = X w.
  auto X = mx::random::normal({256, 4});
  mx::array w_true({1.0f, -2.0f, 0.5f, 3.0f});
  auto y = mx::matmul(X, w_true);
  auto loss = [&](const std::vector<mx::array>& p) {
    return mx::mean(mx::square(mx::subtract(mx::matmul(X, p[0]), y)));
  };
  auto step = mx::value_and_grad(loss);
  mx::array w = mx::zeros({4});
  auto t0 = std::chrono::steady_clock::now();
  float last = 0;
  for (int i = 0; i < steps; ++i) {
    auto [value, grads] = step({w});
    w = mx::subtract(w, mx::multiply(mx::array(0.1f), grads[0]));
    mx::eval(w, value);
    last = value.item<float>();
  }
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "regression: loss " << last << " after " << steps << " steps (" << ms << " ms)\n";
  std::cout << "w = " << w << "\n\n";

  std::cout << "memory: active " << mx::get_active_memory() << " B, peak " << mx::get_peak_memory()
            << " B, cache " << mx::get_cache_memory() << " B\n";
  return 0;
}

mlxcpp::cli::Command reg("demo", "a short demonstration of the mx core", run_demo);

}  // namespace
