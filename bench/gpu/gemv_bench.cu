// mlxcpp_bench_gpu_gemv: the few-row product kernel (gemv.h: GroupedLinear
// and the one-row matmul) on Gemma 3 4B bfloat16's decode shapes against two
// baselines measured in the same run: the device-to-device copy bandwidth and
// cuBLASLt's product of the same shape (heuristic's first algorithm, as
// mx::matmul calls it for so few rows). Kernels are timed as CUDA graphs of
// back-to-back launches cycling through enough copies of the weights to
// exceed the L2 cache, so every launch reads its weights from HBM. Effective
// bandwidth = weight bytes / kernel time. Two sequences: products back to back,
// and each product after a one-block kernel that writes x (as a decode step's
// norm does; its time measured alone and subtracted). Our kernel is timed at
// every threads-per-output with its L2 prefetch and its dependent launch
// (PDL) off and on; `*` marks the configuration the library picks.
//
// Usage: mlxcpp_bench_gpu_gemv [replays]   (prints a table, then JSON lines)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bench_timing.cuh"
#include "mlxcpp/mx/backend/cuda/cublaslt.h"
#include "mlxcpp/mx/backend/cuda/device.h"
#include "mlxcpp/mx/backend/cuda/gemv.h"

namespace {

using mx::cuda::check;
using mxbench::DeviceBuffer;
using mxbench::time_graph;

__global__ void fill_bf16(__nv_bfloat16* p, size_t n, float scale) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    p[i] = __float2bfloat16(scale * static_cast<float>((i * 7919) % 97) / 97.0f - scale / 2);
  }
}

// x[i] = x[i] * 1 in one block: a small kernel the product depends on.
__global__ void touch_x(__nv_bfloat16* x, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) x[i] = __hmul(x[i], __float2bfloat16(1.0f));
}

// A decode product: one launch over the matrices `ns` (rows of W each) of K.
struct Case {
  const char* what;
  std::vector<int> ns;
  int K;
};

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 10;
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    std::printf("no GPU: nothing to measure\n");
    return 0;
  }
  try {
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "device properties");
    std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount,
                prop.l2CacheSize >> 20);
    cudaStream_t s;
    check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
    const double copy_gbs = mxbench::copy_gbs(s, size_t{1} << 30, std::max(1, reps / 2));
    std::printf("device-to-device copy: %.0f GB/s (read + write)\n", copy_gbs);
    std::printf("{\"bench\":\"d2d_copy\",\"gbs\":%.1f,\"device\":\"%s\"}\n", copy_gbs, prop.name);
    const size_t ws_size = size_t{32} << 20;
    DeviceBuffer workspace(ws_size);

    const std::vector<Case> cases = {{"qkv 4096x2560", {2048, 1024, 1024}, 2560},
                                     {"o_proj 2560x2048", {2560}, 2048},
                                     {"gate/up 20480x2560", {10240, 10240}, 2560},
                                     {"down 2560x10240", {2560}, 10240},
                                     {"lm_head 262208x2560", {262208}, 2560}};
    std::printf("\n%-20s %4s %-12s %8s %8s %6s %6s | %8s %6s | %9s %9s\n", "shape (N x K)", "rows",
                "config", "MB", "b2b us", "TB/s", "/copy", "after us", "TB/s", "lt b2b us",
                "lt aft us");
    for (const Case& c : cases) {
      int N = 0;
      for (int n : c.ns) N += n;
      const size_t bytes = size_t{2} * N * c.K;  // one copy of all the case's weights
      const int copies =
          static_cast<int>(std::clamp<size_t>((size_t{768} << 20) / bytes + 1, 1, 64));
      std::vector<DeviceBuffer*> w;
      for (int i = 0; i < copies; ++i) {
        w.push_back(new DeviceBuffer(bytes));
        fill_bf16<<<1024, 256, 0, s>>>(static_cast<__nv_bfloat16*>(w.back()->p), bytes / 2, 0.1f);
      }
      DeviceBuffer x(size_t{2} * mx::cuda::kGemvMaxRows * c.K);
      DeviceBuffer y(size_t{2} * mx::cuda::kGemvMaxRows * N);
      auto* xb = static_cast<__nv_bfloat16*>(x.p);
      fill_bf16<<<64, 256, 0, s>>>(xb, size_t{mx::cuda::kGemvMaxRows} * c.K, 2.0f);
      check(cudaStreamSynchronize(s), "fill");
      const int per_graph = std::max(2 * copies, 8);
      const double touch_ms =
          time_graph(s, per_graph, reps, [&](int) { touch_x<<<1, 256, 0, s>>>(xb, c.K); });
      // Per product: back to back, and after the touch (its own time subtracted).
      auto time_both = [&](auto&& product) {
        const double b2b = time_graph(s, per_graph, reps, product);
        const double after = time_graph(s, per_graph, reps,
                                        [&](int i) {
                                          touch_x<<<1, 256, 0, s>>>(xb, c.K);
                                          product(i);
                                        }) -
                             touch_ms;
        return std::pair<double, double>(b2b, after);
      };
      for (int rows = 1; rows <= mx::cuda::kGemvMaxRows; ++rows) {
        const int auto_g = mx::cuda::gemv_threads_per_row(mx::bfloat16, N, c.K);
        mxbench::LtBf16Product lt(rows, N, c.K, workspace.p, ws_size);
        const auto [lt_b2b, lt_after] =
            time_both([&](int i) { lt.run(w[i % copies]->p, x.p, y.p, s); });
        std::vector<mx::cuda::GemvOptions> configs;
        for (int g : {32, 64, 128, 256}) {
          for (int pf : {0, 1}) {
            for (int ov : {0, 1}) configs.push_back({g, pf, ov});
          }
        }
        for (const auto& o : configs) {
          const bool is_auto = o.threads_per_row == auto_g && o.prefetch == 1 && o.overlap == 1;
          if (rows > 1 && !is_auto) continue;
          const auto [b2b, after] = time_both([&](int i) {
            mx::cuda::GemvMatrix mats[mx::cuda::kGemvMaxMatrices];
            int64_t off = 0, yoff = 0;
            for (size_t m = 0; m < c.ns.size(); ++m) {
              mats[m] = {static_cast<char*>(w[i % copies]->p) + 2 * off, c.ns[m], c.K,
                         static_cast<char*>(y.p) + 2 * yoff, N};
              off += int64_t{c.ns[m]} * c.K;
              yoff += c.ns[m];
            }
            mx::cuda::gemv(mx::bfloat16, x.p, rows, c.K, mats, static_cast<int>(c.ns.size()), s, o);
          });
          char cfg[32];
          std::snprintf(cfg, sizeof(cfg), "G%d%s%s%s", o.threads_per_row, o.prefetch ? "+pf" : "",
                        o.overlap ? "+pdl" : "", is_auto ? "*" : "");
          const double tbs = bytes / (b2b * 1e-3) / 1e12;
          const double tbs_after = bytes / (after * 1e-3) / 1e12;
          std::printf("%-20s %4d %-12s %8.1f %8.2f %6.2f %6.2f | %8.2f %6.2f | %9.2f %9.2f\n",
                      c.what, rows, cfg, bytes / 1e6, b2b * 1e3, tbs, tbs * 1e3 / copy_gbs,
                      after * 1e3, tbs_after, lt_b2b * 1e3, lt_after * 1e3);
          std::printf(
              "{\"bench\":\"gemv\",\"shape\":\"%s\",\"rows\":%d,\"config\":\"%s\","
              "\"us\":%.2f,\"tbs\":%.3f,\"ratio_copy\":%.3f,\"after_us\":%.2f,"
              "\"cublaslt_us\":%.2f,\"cublaslt_after_us\":%.2f}\n",
              c.what, rows, cfg, b2b * 1e3, tbs, tbs * 1e3 / copy_gbs, after * 1e3, lt_b2b * 1e3,
              lt_after * 1e3);
        }
      }
      for (auto* b : w) delete b;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gemv_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
