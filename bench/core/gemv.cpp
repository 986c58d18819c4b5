// bfloat16 matrix-vector products (the decode step of a linear layer) against
// the memory-bandwidth floor: the time to stream the same weight bytes through
// a read-and-sum loop on all cores. ratio = weight bytes / our time over the
// floor's GB/s (goal >= 0.7).
#include <atomic>
#include <cstdint>
#include <vector>

#include "mlxcpp/mx.h"
#include "mlxcpp/mx/scheduler.h"
#include "pair_timer.h"

namespace {

uint64_t read_sum(const uint64_t* p, size_t n) {
  std::atomic<uint64_t> total{0};
  mx::scheduler::parallel_for(n, size_t{1} << 16, [&](size_t b, size_t e) {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = b;
    for (; i + 4 <= e; i += 4) {
      s0 += p[i];
      s1 += p[i + 1];
      s2 += p[i + 2];
      s3 += p[i + 3];
    }
    for (; i < e; ++i) s0 += p[i];
    total += s0 + s1 + s2 + s3;
  });
  return total.load();
}

// layout 0: y = x @ W^T with W (N, K) row-major (nn.Linear's weight);
// layout 1: y = x @ W with W (K, N) row-major.
void BM_GemvBfloat16(benchmark::State& state) {
  int n = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  bool linear = state.range(2) == 0;
  std::vector<float> wv(size_t(n) * k);
  for (size_t i = 0; i < wv.size(); ++i) wv[i] = float(int(i % 17) - 8) / 64.0f;
  mx::Shape wshape = linear ? mx::Shape{n, k} : mx::Shape{k, n};
  mx::array w = mx::astype(mx::array(wv, wshape), mx::bfloat16);
  mx::array x = mx::astype(mx::full({1, k}, 0.5f), mx::bfloat16);
  mx::eval(w, x);
  size_t bytes = w.nbytes();
  const uint64_t* words = w.data<uint64_t>();
  auto [t_ours, t_base] = mxbench::time_pair(
      state,
      [&] {
        mx::array y = linear ? mx::matmul(x, mx::transpose(w)) : mx::matmul(x, w);
        y.eval();
        auto* p = y.data<uint16_t>();
        benchmark::DoNotOptimize(p);
      },
      [&] {
        uint64_t s = read_sum(words, bytes / 8);
        benchmark::DoNotOptimize(s);
      });
  double ours = bytes / t_ours / 1e9, base = bytes / t_base / 1e9;
  state.counters["ours_GBps"] = mxbench::value(ours);
  state.counters["base_GBps"] = mxbench::value(base);
  state.counters["ratio"] = mxbench::value(ours / base);
}
BENCHMARK(BM_GemvBfloat16)
    ->ArgNames({"N", "K", "WxN_layout"})
    ->Args({4096, 4096, 0})
    ->Args({8192, 2048, 0})
    ->Args({4096, 4096, 1})
    ->Iterations(200)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
