// Host cost per graph node: building N small nodes and evaluating them, on the
// CPU and (when present) the GPU, against an empty-kernel launch measured in
// the same run (issue 5: eager decode was host-bound at ~8 us per GPU node).
//
// Counters (ns per node): build (the ops' calls), eval (eval() until the
// result is ready, device wait included), total, and on the GPU
// `empty_launch_ns` and `ratio` = total / empty_launch_ns.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <unordered_set>
#include <vector>

#include "mlxcpp/mx.h"

#ifdef MLXCPP_BENCH_CUDA
namespace mxbench {
double empty_launch_ns(int n, int repeats);
}
#endif

namespace {

double seconds_of(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Unevaluated nodes reachable from `out`: what eval() will run.
size_t count_nodes(const mx::array& out) {
  std::unordered_set<uintptr_t> seen;
  std::vector<mx::array> stack{out};
  while (!stack.empty()) {
    mx::array a = stack.back();
    stack.pop_back();
    if (!a.has_primitive() || a.is_available() || !seen.insert(a.id()).second) continue;
    for (auto& in : a.inputs()) stack.push_back(in);
  }
  return seen.size();
}

bool use_device(benchmark::State& state) {
  const bool gpu = state.range(0) == 1;
  if (gpu && !mx::is_available(mx::Device::gpu)) {
    state.SkipWithError("no GPU");
    return false;
  }
  mx::set_default_device(gpu ? mx::Device(mx::Device::gpu) : mx::Device(mx::Device::cpu));
  return true;
}

// Times build(), then eval of its result, per node; sets the counters.
template <typename Build>
void time_graph(benchmark::State& state, Build&& build) {
  std::vector<double> tb, te;
  size_t nodes = 0;
  for (int warm = 0; warm < 3; ++warm) mx::eval({build()});
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    mx::array out = build();
    tb.push_back(seconds_of(t0));
    state.PauseTiming();
    nodes = count_nodes(out);
    state.ResumeTiming();
    t0 = std::chrono::steady_clock::now();
    mx::eval({out});
    te.push_back(seconds_of(t0));
  }
  const double n = static_cast<double>(nodes);
  const double b = median(tb) / n * 1e9, e = median(te) / n * 1e9;
  state.counters["nodes"] = n;
  state.counters["build_ns"] = b;
  state.counters["eval_ns"] = e;
  state.counters["total_ns"] = b + e;
#ifdef MLXCPP_BENCH_CUDA
  if (state.range(0) == 1) {
    const double empty = mxbench::empty_launch_ns(1000, 5);
    state.counters["empty_launch_ns"] = empty;
    state.counters["ratio"] = (b + e) / empty;
  }
#endif
  mx::set_default_device(mx::Device(mx::Device::cpu));
}

// A chain of 640 adds of two (1, 2560) bf16 vectors: the smallest node a
// decode step launches, about as many as one Gemma 3 4B token.
void BM_AddChain(benchmark::State& state) {
  if (!use_device(state)) return;
  mx::array one = mx::ones({1, 2560}, mx::bfloat16);
  mx::array x0 = mx::zeros({1, 2560}, mx::bfloat16);
  mx::eval({one, x0});
  time_graph(state, [&] {
    mx::array x = x0;
    for (int i = 0; i < 640; ++i) x = mx::add(x, one);
    return x;
  });
}

// The same chain on one-element float32 arrays: on the CPU nearly all of it
// is the graph's own bookkeeping (build, sort, run, release).
void BM_ScalarChain(benchmark::State& state) {
  if (!use_device(state)) return;
  mx::array one(1.0f);
  mx::array x0(0.0f);
  mx::eval({one, x0});
  time_graph(state, [&] {
    mx::array x = x0;
    for (int i = 0; i < 640; ++i) x = mx::add(x, one);
    return x;
  });
}

// A decode-like layer stack at batch 1: rms_norm, a projection, a view
// (reshape + transpose), softmax, an elementwise gate and a residual add,
// 40 times (bf16, small widths so that the device time stays small).
void BM_DecodeLike(benchmark::State& state) {
  if (!use_device(state)) return;
  const int d = 512, h = 8;
  mx::array w = mx::astype(mx::random::uniform({d, d}), mx::bfloat16);
  mx::array g = mx::ones({d}, mx::bfloat16);
  mx::array x0 = mx::astype(mx::random::uniform({1, 1, d}), mx::bfloat16);
  mx::eval({w, g, x0});
  time_graph(state, [&] {
    mx::array x = x0;
    for (int l = 0; l < 40; ++l) {
      mx::array n = mx::fast::rms_norm(x, g, 1e-6f);
      mx::array y = mx::matmul(n, w);
      mx::array heads = mx::transpose(mx::reshape(y, {1, 1, h, d / h}), {0, 2, 1, 3});
      mx::array p = mx::softmax(heads, -1, true);
      p = mx::reshape(mx::transpose(p, {0, 2, 1, 3}), {1, 1, d});
      x = mx::add(x, mx::multiply(mx::tanh(p), y));
    }
    return x;
  });
}

BENCHMARK(BM_AddChain)
    ->Arg(0)
    ->Arg(1)
    ->Iterations(50)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_ScalarChain)
    ->Arg(0)
    ->Arg(1)
    ->Iterations(50)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_DecodeLike)
    ->Arg(0)
    ->Arg(1)
    ->Iterations(50)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
