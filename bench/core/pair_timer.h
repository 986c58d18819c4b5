// Timing ours against a baseline in the same process: each benchmark iteration
// runs both, back to back, and the medians are compared, so that both sides
// see the same machine load (the benchmark machine is shared).
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <utility>
#include <vector>

namespace mxbench {

template <typename F>
double seconds(F&& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

// Runs `ours` in the timed region and `base` with the timer paused; returns
// the median seconds of (ours, base). One warm-up call of each comes first.
template <typename Ours, typename Base>
std::pair<double, double> time_pair(benchmark::State& state, Ours&& ours, Base&& base) {
  ours();
  base();
  std::vector<double> t_ours, t_base;
  for (auto _ : state) {
    t_ours.push_back(seconds(ours));
    state.PauseTiming();
    t_base.push_back(seconds(base));
    state.ResumeTiming();
  }
  return {median(t_ours), median(t_base)};
}

// Runs fns[0] in the timed region and the others with the timer paused, all
// back to back in each iteration; returns the median seconds of each.
inline std::vector<double> time_all(benchmark::State& state,
                                    const std::vector<std::function<void()>>& fns) {
  for (auto& f : fns) f();
  std::vector<std::vector<double>> t(fns.size());
  for (auto _ : state) {
    t[0].push_back(seconds(fns[0]));
    state.PauseTiming();
    for (size_t i = 1; i < fns.size(); ++i) t[i].push_back(seconds(fns[i]));
    state.ResumeTiming();
  }
  std::vector<double> out;
  for (auto& v : t) out.push_back(median(v));
  return out;
}

inline benchmark::Counter value(double v) { return benchmark::Counter(v); }

}  // namespace mxbench
