// Shared by the GPU kernel benchmarks (bench/gpu, bench/gpu_quant): a device buffer, the time of a
// kernel sequence replayed as a CUDA graph, the device-to-device copy bandwidth each one reports
// its ratios against, and cuBLASLt's bf16 product as mx::matmul configures it (the baseline).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

#include <stdexcept>

#include "mlxcpp/mx/backend/cuda/cublaslt.h"
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

// y (M x N) = x (M x K) @ W^T with W (N, K) bfloat16 row-major, configured
// as mx::matmul configures cuBLASLt (column-major: C^T = W x^T).
struct LtBf16Product {
  cublasLtHandle_t h;
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulHeuristicResult_t heur{};
  void* ws;
  size_t ws_size;
  LtBf16Product(int M, int N, int K, void* workspace, size_t workspace_size)
      : ws(workspace), ws_size(workspace_size) {
    const auto& lt = mx::cuda::cublaslt();
    mx::cuda::check_cublas(lt.create(&h), "cublasLtCreate");
    mx::cuda::check_cublas(lt.desc_create(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    lt.desc_set_attribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
    lt.desc_set_attribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
    mx::cuda::check_cublas(lt.layout_create(&la, CUDA_R_16BF, K, N, K), "layout");
    mx::cuda::check_cublas(lt.layout_create(&lb, CUDA_R_16BF, K, M, K), "layout");
    mx::cuda::check_cublas(lt.layout_create(&lc, CUDA_R_16BF, N, M, N), "layout");
    cublasLtMatmulPreference_t pref;
    mx::cuda::check_cublas(lt.preference_create(&pref), "preference");
    lt.preference_set_attribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_size,
                                sizeof(ws_size));
    int found = 0;
    mx::cuda::check_cublas(lt.algo_get_heuristic(h, desc, la, lb, lc, lc, pref, 1, &heur, &found),
                           "heuristic");
    lt.preference_destroy(pref);
    if (found == 0) throw std::runtime_error("cuBLASLt found no bf16 algorithm");
  }
  ~LtBf16Product() {
    const auto& lt = mx::cuda::cublaslt();
    lt.layout_destroy(la);
    lt.layout_destroy(lb);
    lt.layout_destroy(lc);
    lt.desc_destroy(desc);
  }
  void run(const void* w, const void* x, void* y, cudaStream_t s) const {
    const float alpha = 1.0f, beta = 0.0f;
    mx::cuda::check_cublas(mx::cuda::cublaslt().matmul(h, desc, &alpha, w, la, x, lb, &beta, y, lc,
                                                       y, lc, &heur.algo, ws, ws_size, s),
                           "cublasLtMatmul");
  }
};

}  // namespace mxbench
