// MLXCPP_GPU_PROFILE=1 (gpu.h): device time per node from CUDA event pairs,
// summed per key and printed at exit. Finished pairs are folded into the sums
// as the run goes (cudaEventQuery never blocks), so a long run keeps few
// events alive and the host never waits for the device because of profiling.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "mlxcpp/mx/backend/cuda/device.h"
#include "mlxcpp/mx/backend/gpu.h"

namespace mx::cuda {

namespace {

struct Pending {
  std::string key;
  double flops;
  cudaEvent_t start, stop;
};

struct Total {
  long calls = 0;
  double ms = 0, flops = 0;
  double min_ms = 0;  // the fastest call: a first call's one-time costs do not show in it
};

class DeviceProfile {
 public:
  static DeviceProfile& get() {
    // Leaked on purpose: reported from gpu::shutdown(), before static destructors.
    static auto* p = new DeviceProfile();
    return *p;
  }

  cudaEvent_t take_event() {
    std::lock_guard<std::mutex> lk(mu_);
    if (!free_.empty()) {
      cudaEvent_t e = free_.back();
      free_.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    check(cudaEventCreate(&e), "creating a profiling event");
    return e;
  }

  void add(std::string key, double flops, cudaEvent_t start, cudaEvent_t stop) {
    std::lock_guard<std::mutex> lk(mu_);
    pending_.push_back({std::move(key), flops, start, stop});
    fold(false);
  }

  void report() {
    std::lock_guard<std::mutex> lk(mu_);
    fold(true);
    // gpu::shutdown() can run more than once at exit (its handler is registered again when a
    // library loads later): print the sums once.
    if (totals_.empty() || reported_) return;
    reported_ = true;
    std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
    std::sort(rows.begin(), rows.end(),
              [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
    // Per primitive (the key's first word), then per key.
    std::map<std::string, Total> by_name;
    double all_ms = 0;
    for (auto& [k, t] : rows) {
      auto& n = by_name[k.substr(0, k.find(' '))];
      n.calls += t.calls;
      n.ms += t.ms;
      n.flops += t.flops;
      n.min_ms = n.calls == t.calls ? t.min_ms : std::min(n.min_ms, t.min_ms);
      all_ms += t.ms;
    }
    std::vector<std::pair<std::string, Total>> names(by_name.begin(), by_name.end());
    std::sort(names.begin(), names.end(),
              [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
    // `one_shape`: the fastest call's FLOP rate means something only within one shape.
    auto line = [](const std::string& k, const Total& t, double all, bool one_shape) {
      char tf[32] = "";
      if (t.flops > 0 && t.ms > 0) std::snprintf(tf, sizeof(tf), "%9.1f", t.flops / t.ms / 1e9);
      char best[32] = "";
      if (one_shape && t.flops > 0 && t.min_ms > 0) {
        std::snprintf(best, sizeof(best), "%9.1f",
                      t.flops / static_cast<double>(t.calls) / t.min_ms / 1e9);
      }
      std::fprintf(stderr, "%-100s %8ld %11.3f %6.1f%% %10.2f %10.2f %9s %9s\n", k.c_str(), t.calls,
                   t.ms, 100.0 * t.ms / all, 1e3 * t.ms / static_cast<double>(t.calls),
                   1e3 * t.min_ms, tf, best);
    };
    std::fprintf(stderr, "\nGPU device time per primitive (MLXCPP_GPU_PROFILE), all %.3f ms\n",
                 all_ms);
    std::fprintf(stderr, "%-100s %8s %11s %7s %10s %10s %9s %9s\n", "primitive", "calls",
                 "total ms", "share", "mean us", "min us", "TFLOP/s", "best");
    for (auto& [k, t] : names) line(k, t, all_ms, false);
    std::fprintf(stderr, "\n%-100s %8s %11s %7s %10s %10s %9s %9s\n",
                 "primitive [inputs -> output]", "calls", "total ms", "share", "mean us", "min us",
                 "TFLOP/s", "best");
    for (auto& [k, t] : rows) line(k, t, all_ms, true);
  }

 private:
  // Folds the finished pairs, in launch order, into the sums (all of them when
  // `wait`: the device has finished at exit).
  void fold(bool wait) {
    while (!pending_.empty()) {
      auto& p = pending_.front();
      if (wait) {
        cudaEventSynchronize(p.stop);
      } else if (cudaEventQuery(p.stop) != cudaSuccess) {
        cudaGetLastError();  // cudaErrorNotReady is not an error of later launches
        break;
      }
      float ms = 0;
      if (cudaEventElapsedTime(&ms, p.start, p.stop) == cudaSuccess) {
        auto& t = totals_[p.key];
        t.min_ms = t.calls == 0 ? ms : std::min(t.min_ms, static_cast<double>(ms));
        t.calls += 1;
        t.ms += ms;
        t.flops += p.flops;
      } else {
        cudaGetLastError();
      }
      free_.push_back(p.start);
      free_.push_back(p.stop);
      pending_.pop_front();
    }
  }

  std::mutex mu_;
  std::deque<Pending> pending_;
  std::vector<cudaEvent_t> free_;
  std::map<std::string, Total> totals_;
  bool reported_ = false;
};

}  // namespace

void report_device_profile() {
  if (gpu::device_profiling()) DeviceProfile::get().report();
}

}  // namespace mx::cuda

namespace mx::gpu {

bool device_profiling() {
  static const bool on = [] {
    const char* v = std::getenv("MLXCPP_GPU_PROFILE");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}

DeviceTimer::DeviceTimer(const Stream& s, std::string key, double flops)
    : stream_(cuda::resources(s).stream), key_(std::move(key)), flops_(flops) {
  cudaEvent_t e = cuda::DeviceProfile::get().take_event();
  cuda::check(cudaEventRecord(e, static_cast<cudaStream_t>(stream_)),
              "recording a profiling event");
  start_ = e;
}

DeviceTimer::~DeviceTimer() {
  auto& prof = cuda::DeviceProfile::get();
  cudaEvent_t stop = prof.take_event();
  if (cudaEventRecord(stop, static_cast<cudaStream_t>(stream_)) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  prof.add(std::move(key_), flops_, static_cast<cudaEvent_t>(start_), stop);
}

}  // namespace mx::gpu
