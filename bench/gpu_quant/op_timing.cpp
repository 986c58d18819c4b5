// See op_timing.h.
#include "op_timing.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <vector>

#include "mlxcpp/mx.h"

namespace {

const mx::Device kGpu(mx::Device::gpu);
constexpr int kOps = 50;

template <typename F>
double time_ops(F&& f) {
  mx::eval(f());
  double best = 1e30;
  for (int t = 0; t < 3; ++t) {
    std::vector<mx::array> outs;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kOps; ++i) outs.push_back(f());
    mx::eval(outs);
    auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::milli>(t1 - t0).count() / kOps);
  }
  return best;
}

}  // namespace

bool gpu_available() { return mx::is_available(kGpu); }

struct OpTimer::Impl {
  mx::array w, x;
};

OpTimer::OpTimer(int N, int K)
    : impl_(new Impl{
          mx::astype(mx::random::normal({N, K}, mx::float32, std::optional<mx::array>{}, kGpu),
                     mx::bfloat16, kGpu),
          mx::astype(mx::random::normal({1, K}, mx::float32, std::optional<mx::array>{}, kGpu),
                     mx::bfloat16, kGpu)}) {
  mx::eval({impl_->w, impl_->x});
}

OpTimer::~OpTimer() = default;

double OpTimer::dense_ms() {
  return time_ops([&] { return mx::matmul(impl_->x, mx::transpose(impl_->w, kGpu), kGpu); });
}

double OpTimer::quantized_ms(int bits, int g) {
  auto q = mx::quantize(impl_->w, g, bits, "affine", kGpu);
  mx::eval(q);
  return time_ops([&] {
    return mx::quantized_matmul(impl_->x, q[0], q[1], q[2], true, g, bits, "affine", kGpu);
  });
}
