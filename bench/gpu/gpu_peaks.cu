// The GPU's own ceilings, measured in the same run as the model benchmarks
// (bench/gemma3_gpu.sh): device-to-device copy bandwidth, the read bandwidth
// of a kernel over device memory and over managed memory in the placements
// the allocator can choose, and the cuBLASLt bf16 GEMM throughput on a large
// square product and on Gemma 3 4B's prefill shapes. One JSON object per line.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
  }
}
void check_lt(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw std::runtime_error(std::string(what) + ": cuBLASLt status " + std::to_string(s));
  }
}

// Sums 16-byte words; the sum goes to `out` so the loads cannot be dropped.
__global__ void read_kernel(const uint4* p, size_t n, unsigned* out) {
  unsigned s = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    uint4 v = p[i];
    s ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (s == 0x9e3779b9u) *out = s;
}

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    check(cudaEventCreate(&a), "event");
    check(cudaEventCreate(&b), "event");
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  void start() { check(cudaEventRecord(a), "record"); }
  float stop_ms() {
    check(cudaEventRecord(b), "record");
    check(cudaEventSynchronize(b), "sync");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, a, b), "elapsed");
    return ms;
  }
};

int sm_count() {
  int dev = 0, n = 0;
  check(cudaGetDevice(&dev), "device");
  check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev), "attr");
  return n;
}

// Read bandwidth (GB/s) of the kernel over `bytes` at p: first pass and best of `reps`.
std::pair<double, double> read_gbs(const void* p, size_t bytes, unsigned* sink, int reps) {
  Timer t;
  double first = 0, best = 0;
  const size_t n = bytes / 16;
  for (int r = 0; r <= reps; ++r) {
    t.start();
    read_kernel<<<sm_count() * 8, 512>>>(static_cast<const uint4*>(p), n, sink);
    check(cudaGetLastError(), "launch");
    double gbs = bytes / (t.stop_ms() * 1e-3) / 1e9;
    if (r == 0)
      first = gbs;
    else
      best = std::max(best, gbs);
  }
  return {first, best};
}

void memory_benchmarks(size_t bytes) {
  unsigned* sink = nullptr;
  check(cudaMalloc(&sink, 4), "sink");
  int dev = 0;
  check(cudaGetDevice(&dev), "device");
  cudaMemLocation loc{};
  loc.type = cudaMemLocationTypeDevice;
  loc.id = dev;

  // Device-to-device copy: bytes read + written per second.
  void *src = nullptr, *dst = nullptr;
  check(cudaMalloc(&src, bytes), "malloc");
  check(cudaMalloc(&dst, bytes), "malloc");
  check(cudaMemset(src, 1, bytes), "memset");
  Timer t;
  double copy = 0;
  for (int r = 0; r <= 10; ++r) {
    t.start();
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice), "copy");
    double gbs = 2.0 * bytes / (t.stop_ms() * 1e-3) / 1e9;
    if (r > 0) copy = std::max(copy, gbs);
  }
  std::printf("{\"bench\":\"d2d_copy\",\"bytes\":%zu,\"gbs\":%.1f}\n", bytes, copy);
  auto dev_read = read_gbs(src, bytes, sink, 10);
  std::printf(
      "{\"bench\":\"read\",\"memory\":\"device (cudaMalloc)\",\"first_gbs\":%.1f,\"gbs\":%.1f}\n",
      dev_read.first, dev_read.second);
  check(cudaFree(dst), "free");
  check(cudaFree(src), "free");

  // Managed memory as lm::load places weights: prefetched to the device,
  // read-mostly, preferring the device, filled by a DMA copy from the host.
  std::vector<char> host(bytes, 1);
  void* m = nullptr;
  check(cudaMallocManaged(&m, bytes), "managed");
  check(cudaMemPrefetchAsync(m, bytes, loc, 0, nullptr), "prefetch");
  cudaMemAdvise(m, bytes, cudaMemAdviseSetPreferredLocation, loc);
  cudaMemAdvise(m, bytes, cudaMemAdviseSetReadMostly, loc);
  check(cudaMemcpy(m, host.data(), bytes, cudaMemcpyDefault), "fill");
  auto managed = read_gbs(m, bytes, sink, 10);
  std::printf(
      "{\"bench\":\"read\",\"memory\":\"managed, prefetched + read-mostly + preferred device\","
      "\"first_gbs\":%.1f,\"gbs\":%.1f}\n",
      managed.first, managed.second);
  // A host read of a read-mostly page makes a copy; the device keeps its own.
  volatile char c = static_cast<char*>(m)[bytes / 2];
  (void)c;
  auto after_host = read_gbs(m, bytes, sink, 3);
  std::printf(
      "{\"bench\":\"read\",\"memory\":\"managed as above, after a host read\",\"first_gbs\":%.1f,"
      "\"gbs\":%.1f}\n",
      after_host.first, after_host.second);
  check(cudaFree(m), "free");

  // Managed memory written by the host and never prefetched: the first pass
  // migrates the pages on demand (GPU page faults).
  check(cudaMallocManaged(&m, bytes), "managed");
  std::memset(m, 1, bytes);
  auto faulted = read_gbs(m, bytes, sink, 10);
  std::printf(
      "{\"bench\":\"read\",\"memory\":\"managed, host-written, not prefetched\",\"first_gbs\":%.1f,"
      "\"gbs\":%.1f}\n",
      faulted.first, faulted.second);
  check(cudaFree(m), "free");
  check(cudaFree(sink), "free");
}

// Best bf16 GEMM throughput (TFLOP/s) of cuBLASLt on C[m,n] = A[m,k] B[k,n]
// (row-major, B given as [n,k] like a Linear weight), over the heuristic's
// first `algos` candidates.
double gemm_tflops(cublasLtHandle_t h, void* ws, size_t ws_size, int m, int n, int k) {
  __nv_bfloat16 *a, *b, *c;
  check(cudaMalloc(&a, size_t(m) * k * 2), "a");
  check(cudaMalloc(&b, size_t(n) * k * 2), "b");
  check(cudaMalloc(&c, size_t(m) * n * 2), "c");
  check(cudaMemset(a, 0x3c, size_t(m) * k * 2), "init");
  check(cudaMemset(b, 0x3c, size_t(n) * k * 2), "init");
  // Column-major view: C^T[n,m] = B[n,k] (as op(B^T)) x A^T[k,m].
  cublasLtMatmulDesc_t desc;
  check_lt(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
  cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
  cublasLtMatrixLayout_t la, lb, lc;
  check_lt(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, k, n, k), "layout");
  check_lt(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, k, m, k), "layout");
  check_lt(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, n, m, n), "layout");
  cublasLtMatmulPreference_t pref;
  check_lt(cublasLtMatmulPreferenceCreate(&pref), "pref");
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_size,
                                       sizeof(ws_size));
  cublasLtMatmulHeuristicResult_t res[8];
  int found = 0;
  check_lt(cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, lc, lc, pref, 8, res, &found),
           "heuristic");
  float alpha = 1, beta = 0;
  Timer t;
  double best = 0;
  for (int i = 0; i < found; ++i) {
    for (int r = 0; r < 6; ++r) {
      t.start();
      const int iters = 5;
      for (int it = 0; it < iters; ++it) {
        check_lt(cublasLtMatmul(h, desc, &alpha, b, la, a, lb, &beta, c, lc, c, lc, &res[i].algo,
                                ws, ws_size, nullptr),
                 "matmul");
      }
      double ms = t.stop_ms() / iters;
      if (r > 0) best = std::max(best, 2.0 * m * n * k / (ms * 1e-3) / 1e12);
    }
  }
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(desc);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  return best;
}

void gemm_benchmarks() {
  cublasLtHandle_t h;
  check_lt(cublasLtCreate(&h), "create");
  size_t ws_size = size_t{32} << 20;
  void* ws = nullptr;
  check(cudaMalloc(&ws, ws_size), "workspace");
  struct Shape {
    const char* name;
    int m, n, k;
  };
  // Gemma 3 4B (hidden 2560, 8 + 2x4 heads of 256, MLP 10240) at 2048 tokens.
  const Shape shapes[] = {{"square 8192", 8192, 8192, 8192},
                          {"gemma3-4b qkv T=2048", 2048, 4096, 2560},
                          {"gemma3-4b o_proj T=2048", 2048, 2560, 2048},
                          {"gemma3-4b gate/up T=2048", 2048, 10240, 2560},
                          {"gemma3-4b down T=2048", 2048, 2560, 10240}};
  for (const auto& s : shapes) {
    double tf = gemm_tflops(h, ws, ws_size, s.m, s.n, s.k);
    std::printf(
        "{\"bench\":\"gemm_bf16\",\"shape\":\"%s\",\"m\":%d,\"n\":%d,\"k\":%d,\"tflops\":%.1f}\n",
        s.name, s.m, s.n, s.k, tf);
  }
  cudaFree(ws);
  cublasLtDestroy(h);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    size_t gib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 2;
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "properties");
    std::printf("{\"bench\":\"device\",\"name\":\"%s\",\"sms\":%d,\"memory_gb\":%.1f}\n", prop.name,
                prop.multiProcessorCount, prop.totalGlobalMem / 1e9);
    memory_benchmarks(gib << 30);
    gemm_benchmarks();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_peaks: %s\n", e.what());
    return 1;
  }
  return 0;
}
