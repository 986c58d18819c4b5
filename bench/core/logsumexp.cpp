// A decode step's log-probabilities, x - logsumexp(x) over a vocabulary row
// (Gemma 3: 262208), through the fused LogSumExp against the formula it
// replaced (max, subtract, exp, sum, log, add, isinf, where: one kernel each)
// on the same device and input. GB/s counts the bytes of x read once by each
// (the subtraction's read and write are the same on both sides).
// ratio = ours GB/s / composed GB/s. The GPU cases skip where none exists.
#include "mlxcpp/mx.h"
#include "pair_timer.h"

namespace {

mx::array composed_logsumexp(const mx::array& x, mx::Device d) {
  mx::array m = mx::stop_gradient(mx::max(x, -1, true, d), d);
  mx::array out =
      mx::add(mx::log(mx::sum(mx::exp(mx::subtract(x, m, d), d), -1, true, d), d), m, d);
  return mx::where(mx::isinf(m, d), m, out, d);
}

// Args: device (0 cpu, 1 gpu), rows, dtype (0 float32, 1 bfloat16).
void BM_LogProbs(benchmark::State& state) {
  const mx::Device d(state.range(0) == 0 ? mx::Device::cpu : mx::Device::gpu);
  if (!mx::is_available(d)) {
    state.SkipWithError("no GPU in this build or on this machine");
    return;
  }
  const int rows = static_cast<int>(state.range(1));
  const mx::Dtype dt = state.range(2) == 0 ? mx::float32 : mx::bfloat16;
  const int n = 262208;
  mx::array x = mx::astype(
      mx::random::normal({rows, n}, mx::float32, 0.0f, 3.0f, mx::random::key(1), d), dt, d);
  mx::eval(x);
  auto run = [&](bool fused) {
    mx::array lse = fused ? mx::logsumexp(x, -1, true, d) : composed_logsumexp(x, d);
    mx::array y = mx::subtract(x, lse, d);
    y.eval();
    mx::synchronize();
  };
  auto [t_ours, t_base] = mxbench::time_pair(
      state, [&] { run(true); }, [&] { run(false); });
  const double bytes = static_cast<double>(rows) * n * mx::size_of(dt);
  state.counters["ours_GBps"] = mxbench::value(bytes / t_ours / 1e9);
  state.counters["base_GBps"] = mxbench::value(bytes / t_base / 1e9);
  state.counters["ours_us"] = mxbench::value(t_ours * 1e6);
  state.counters["composed_us"] = mxbench::value(t_base * 1e6);
  state.counters["ratio"] = mxbench::value(t_base / t_ours);
}
BENCHMARK(BM_LogProbs)
    ->ArgsProduct({{0, 1}, {1, 64}, {0, 1}})
    ->Iterations(30)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
