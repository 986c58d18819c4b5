// The baseline for eval_overhead.cpp: the host cost of launching an empty
// kernel on a stream, the floor under any per-node launch path.
#include <cuda_runtime_api.h>

#include <chrono>
#include <stdexcept>
#include <string>

namespace {
__global__ void empty_kernel() {}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(e));
}
}  // namespace

namespace mxbench {

// Host nanoseconds per launch of an empty kernel, the best of `repeats` runs
// of `n` launches (the device wait at the end of each run is not counted).
double empty_launch_ns(int n, int repeats) {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "creating a stream");
  double best = 1e30;
  for (int r = 0; r <= repeats; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) empty_kernel<<<1, 32, 0, s>>>();
    auto t1 = std::chrono::steady_clock::now();
    check(cudaGetLastError(), "launching the empty kernel");
    check(cudaStreamSynchronize(s), "waiting for the empty kernels");
    const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count() / n;
    if (r > 0 && ns < best) best = ns;  // the first run warms up
  }
  check(cudaStreamDestroy(s), "destroying the stream");
  return best;
}

}  // namespace mxbench
