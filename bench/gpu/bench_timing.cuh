// Shared by the GPU kernel benchmarks (bench/gpu, bench/gpu_quant): a device buffer, the time of a
// kernel sequence replayed as a CUDA graph, and the device-to-device copy bandwidth each one
// reports its ratios against.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

#include "mlxcpp/mx/backend/cuda/device.h"

namespace mxbench {

struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t bytes) {
    mx::cuda::check(cudaMalloc(&p, std::max<size_t>(bytes, 16)), "cudaMalloc");
  }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// Milliseconds per call of launch(i) (i = call index), as a graph of per_graph calls replayed
// reps times; the best of 3 replays (one graph launch per call would time the launches).
template <typename F>
double time_graph(cudaStream_t s, int per_graph, int reps, F&& launch) {
  using mx::cuda::check;
  cudaGraph_t graph;
  check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "capture");
  for (int i = 0; i < per_graph; ++i) launch(i);
  check(cudaStreamEndCapture(s, &graph), "end capture");
  cudaGraphExec_t exec;
  check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  check(cudaGraphLaunch(exec, s), "warm-up");
  check(cudaStreamSynchronize(s), "warm-up");
  double best = 1e30;
  for (int t = 0; t < 3; ++t) {
    check(cudaEventRecord(e0, s), "record");
    for (int r = 0; r < reps; ++r) check(cudaGraphLaunch(exec, s), "graph launch");
    check(cudaEventRecord(e1, s), "record");
    check(cudaEventSynchronize(e1), "timing");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
    best = std::min(best, static_cast<double>(ms) / (per_graph * reps));
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return best;
}

// Device-to-device copy bandwidth in GB/s (bytes read + bytes written), `bytes` per copy.
inline double copy_gbs(cudaStream_t s, size_t bytes, int reps) {
  DeviceBuffer src(bytes), dst(bytes);
  mx::cuda::check(cudaMemset(src.p, 1, bytes), "memset");
  const double ms = time_graph(s, 4, std::max(reps, 1), [&](int) {
    mx::cuda::check(cudaMemcpyAsync(dst.p, src.p, bytes, cudaMemcpyDeviceToDevice, s), "copy");
  });
  return 2.0 * static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
}

}  // namespace mxbench
