// Graph overhead: build and evaluate a chain of N adds on a one-element array;
// the time per op is what the lazy graph costs beyond the arithmetic (goal
// <= 1000 ns per op).
#include <vector>

#include "mlxcpp/mx.h"
#include "pair_timer.h"

namespace {

void BM_GraphOverhead(benchmark::State& state) {
  int n = static_cast<int>(state.range(0));
  mx::array one(1.0f);
  std::vector<double> build, run;
  for (auto _ : state) {
    mx::array x(0.0f);
    build.push_back(mxbench::seconds([&] {
      for (int i = 0; i < n; ++i) x = mx::add(x, one);
    }));
    run.push_back(mxbench::seconds([&] { x.eval(); }));
    auto* p = x.data<float>();
    benchmark::DoNotOptimize(p);
  }
  double b = mxbench::median(build) / n * 1e9, e = mxbench::median(run) / n * 1e9;
  state.counters["build_ns_per_op"] = mxbench::value(b);
  state.counters["eval_ns_per_op"] = mxbench::value(e);
  state.counters["ns_per_op"] = mxbench::value(b + e);
}
// One tiny op per eval: the fixed cost of handing a graph to the stream's
// worker thread and waiting for it (reported, no goal).
void BM_EvalRoundTrip(benchmark::State& state) {
  mx::array one(1.0f);
  std::vector<double> times;
  for (auto _ : state) {
    times.push_back(mxbench::seconds([&] {
      mx::array x = mx::add(one, one);
      x.eval();
      auto* p = x.data<float>();
      benchmark::DoNotOptimize(p);
    }));
  }
  state.counters["ns_per_eval"] = mxbench::value(mxbench::median(times) * 1e9);
}
BENCHMARK(BM_EvalRoundTrip)->Iterations(2000)->Unit(benchmark::kMicrosecond)->UseRealTime();

BENCHMARK(BM_GraphOverhead)
    ->Arg(10000)
    ->Iterations(30)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
