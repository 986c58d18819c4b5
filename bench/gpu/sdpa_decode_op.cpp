// The public op (mx::fast::scaled_dot_product_attention on the GPU, evaluated
// each call) at Gemma 3 4B's decode shape: what one layer's attention costs an
// eager decode step, host work included. Part of mlxcpp_bench_sdpa_decode.
#include <chrono>
#include <cstdio>
#include <optional>

#include "mlxcpp/mx/device.h"
#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/mx/transforms.h"

namespace {
constexpr int kHq = 8, kHkv = 4, kD = 256;
}  // namespace

void time_sdpa_op(int Lk, int reps) {
  const mx::Device gpu(mx::Device::gpu);
  auto r = [&](const mx::Shape& shape, uint64_t seed) {
    return mx::astype(
        mx::random::uniform(-1.0f, 1.0f, shape, mx::float32, mx::random::key(seed), gpu),
        mx::bfloat16, gpu);
  };
  mx::array q = r({1, kHq, 1, kD}, 1), k = r({1, kHkv, Lk, kD}, 2), v = r({1, kHkv, Lk, kD}, 3);
  mx::eval({q, k, v});
  auto once = [&] {
    mx::array o = mx::fast::scaled_dot_product_attention(
        q, k, v, 0.0625f, "", std::optional<mx::array>{}, std::optional<mx::array>{},
        std::optional<int>{}, gpu);
    mx::eval({o});
  };
  for (int i = 0; i < 10; ++i) once();
  mx::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) once();
  mx::synchronize();
  const double us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
      reps;
  std::printf("{\"bench\":\"sdpa_op_eager\",\"B\":1,\"keys\":%d,\"us_per_call\":%.2f}\n", Lk, us);
}
