// LD_PRELOAD library that counts and times the CUDA runtime calls a process
// makes (kernel launches included) and prints a table to stderr at exit: how
// many driver round trips a decode step costs, and where the host time goes.
//   LD_PRELOAD=build/bench/eval_overhead/libmlxcpp_cuda_call_count.so mlxcpp benchmark ...
// Only calls made through the shared libcudart are seen (libmlxcpp's are;
// those cuBLASLt makes inside itself are not).
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <cstdio>

extern "C" {
cudaError_t __cudaLaunchKernel(cudaKernel_t, dim3, dim3, void**, size_t, cudaStream_t);
unsigned __cudaPushCallConfiguration(dim3, dim3, size_t, struct CUstream_st*);
cudaError_t __cudaGetKernel(cudaKernel_t*, const void*);
}

namespace {

struct Stat {
  const char* name = nullptr;
  std::atomic<long> calls{0};
  std::atomic<long> ns{0};
};
constexpr int kMax = 32;
Stat g_stats[kMax];
std::atomic<int> g_used{0};

Stat& stat_for(const char* name) {
  const int i = g_used.fetch_add(1);
  g_stats[i].name = name;
  return g_stats[i];
}

long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

template <typename F>
F real(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

__attribute__((destructor)) void report() {
  std::fprintf(stderr, "%-32s %12s %12s %10s\n", "CUDA runtime call", "calls", "total ms",
               "mean ns");
  const int n = g_used.load();
  for (int i = 0; i < n && i < kMax; ++i) {
    const long c = g_stats[i].calls.load();
    if (c == 0) continue;
    std::fprintf(stderr, "%-32s %12ld %12.3f %10.0f\n", g_stats[i].name, c,
                 g_stats[i].ns.load() / 1e6, static_cast<double>(g_stats[i].ns.load()) / c);
  }
}

}  // namespace

// Defines `name` to forward to the next definition, counted and timed.
#define MX_COUNT(ret, name, params, args)                              \
  extern "C" ret name params {                                         \
    using Fn = ret(*) params;                                          \
    static Fn next = real<Fn>(#name);                                  \
    static Stat& mx_stat = stat_for(#name);                            \
    const long mx_t0 = now_ns();                                       \
    ret r = next args;                                                 \
    mx_stat.ns.fetch_add(now_ns() - mx_t0, std::memory_order_relaxed); \
    mx_stat.calls.fetch_add(1, std::memory_order_relaxed);             \
    return r;                                                          \
  }

MX_COUNT(cudaError_t, __cudaLaunchKernel,
         (cudaKernel_t k, dim3 g, dim3 b, void** a, size_t sm, cudaStream_t st),
         (k, g, b, a, sm, st))
MX_COUNT(unsigned, __cudaPushCallConfiguration, (dim3 g, dim3 b, size_t sm, struct CUstream_st* st),
         (g, b, sm, st))
MX_COUNT(cudaError_t, __cudaGetKernel, (cudaKernel_t * k, const void* f), (k, f))
MX_COUNT(cudaError_t, cudaGetLastError, (), ())
MX_COUNT(cudaError_t, cudaGetDevice, (int* d), (d))
MX_COUNT(cudaError_t, cudaDeviceGetAttribute, (int* v, cudaDeviceAttr a, int d), (v, a, d))
MX_COUNT(cudaError_t, cudaFuncSetAttribute, (const void* f, cudaFuncAttribute a, int v), (f, a, v))
MX_COUNT(cudaError_t, cudaEventCreateWithFlags, (cudaEvent_t * e, unsigned f), (e, f))
MX_COUNT(cudaError_t, cudaEventDestroy, (cudaEvent_t e), (e))
MX_COUNT(cudaError_t, cudaEventRecord, (cudaEvent_t e, cudaStream_t s), (e, s))
MX_COUNT(cudaError_t, cudaEventQuery, (cudaEvent_t e), (e))
MX_COUNT(cudaError_t, cudaEventSynchronize, (cudaEvent_t e), (e))
MX_COUNT(cudaError_t, cudaStreamSynchronize, (cudaStream_t s), (s))
MX_COUNT(cudaError_t, cudaMallocManaged, (void** p, size_t n, unsigned f), (p, n, f))
MX_COUNT(cudaError_t, cudaFree, (void* p), (p))
MX_COUNT(cudaError_t, cudaMemAdvise,
         (const void* p, size_t n, cudaMemoryAdvise a, cudaMemLocation l), (p, n, a, l))
MX_COUNT(cudaError_t, cudaMemPrefetchAsync,
         (const void* p, size_t n, cudaMemLocation l, unsigned f, cudaStream_t s), (p, n, l, f, s))
MX_COUNT(cudaError_t, cudaPointerGetAttributes, (cudaPointerAttributes * a, const void* p), (a, p))
MX_COUNT(cudaError_t, cudaMemcpyAsync,
         (void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t st), (d, s, n, k, st))
MX_COUNT(cudaError_t, cudaMemsetAsync, (void* d, int v, size_t n, cudaStream_t st), (d, v, n, st))
MX_COUNT(cudaError_t, cudaMemRangeGetAttribute,
         (void* d, size_t ds, cudaMemRangeAttribute a, const void* p, size_t n), (d, ds, a, p, n))
