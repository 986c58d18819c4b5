// Elementwise add of two float32 arrays against memcpy of the same bytes.
// Bytes moved: add reads two arrays and writes one; memcpy reads one and
// writes one. The add uses every core, so the memcpy is split over the same
// thread pool in chunks. ratio = add GB/s / memcpy GB/s (goal >= 0.8).
#include <cstring>
#include <vector>

#include "mlxcpp/mx.h"
#include "mlxcpp/mx/scheduler.h"
#include "pair_timer.h"

namespace {

void BM_AddFloat32(benchmark::State& state) {
  int n = static_cast<int>(state.range(0));
  size_t bytes = size_t(n) * sizeof(float);
  mx::array a = mx::full({n}, 1.5f), b = mx::full({n}, 2.25f);
  mx::eval(a, b);
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  auto [t_ours, t_base] = mxbench::time_pair(
      state,
      [&] {
        mx::array c = mx::add(a, b);
        c.eval();
        auto* p = c.data<float>();
        benchmark::DoNotOptimize(p);
      },
      [&] {
        mx::scheduler::parallel_for(bytes, size_t{1} << 20, [&](size_t b, size_t e) {
          std::memcpy(dst.data() + b, src.data() + b, e - b);
        });
        benchmark::ClobberMemory();
      });
  double ours = 3.0 * bytes / t_ours / 1e9, base = 2.0 * bytes / t_base / 1e9;
  state.counters["ours_GBps"] = mxbench::value(ours);
  state.counters["base_GBps"] = mxbench::value(base);
  state.counters["ratio"] = mxbench::value(ours / base);
}
BENCHMARK(BM_AddFloat32)
    ->Arg(1 << 24)
    ->Iterations(30)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
