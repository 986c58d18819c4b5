// float32 GEMM through mx::matmul against calling OpenBLAS's cblas_sgemm on the
// same buffers. ratio = our GFLOP/s / OpenBLAS GFLOP/s (goal >= 0.95).
#include <cblas.h>

#include <vector>

#include "mlxcpp/mx.h"
#include "pair_timer.h"

namespace {

mx::array filled(int rows, int cols, int seed) {
  std::vector<float> v(size_t(rows) * cols);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float((i * 7 + seed) % 13) / 13.0f - 0.5f;
  mx::array a(v, {rows, cols});
  a.eval();
  return a;
}

void BM_GemmFloat32(benchmark::State& state) {
  int n = static_cast<int>(state.range(0));
  mx::array a = filled(n, n, 1), b = filled(n, n, 2);
  std::vector<float> c(size_t(n) * n);
  auto [t_ours, t_base] = mxbench::time_pair(
      state,
      [&] {
        mx::array out = mx::matmul(a, b);
        out.eval();
        auto* p = out.data<float>();
        benchmark::DoNotOptimize(p);
      },
      [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data<float>(), n,
                    b.data<float>(), n, 0.0f, c.data(), n);
        benchmark::ClobberMemory();
      });
  double flops = 2.0 * n * n * double(n);
  state.counters["ours_GFLOPS"] = mxbench::value(flops / t_ours / 1e9);
  state.counters["base_GFLOPS"] = mxbench::value(flops / t_base / 1e9);
  state.counters["ratio"] = mxbench::value(t_base / t_ours);
}
BENCHMARK(BM_GemmFloat32)->Arg(1024)->Iterations(20)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GemmFloat32)->Arg(2048)->Iterations(10)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
