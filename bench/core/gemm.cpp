// float32 GEMM through mx::matmul against calling OpenBLAS's cblas_sgemm on the
// same buffers. ratio = our GFLOP/s / OpenBLAS GFLOP/s (goal >= 0.95).
// bfloat16 prefill GEMM (x @ W.T, bfloat16 in and out, float32 accumulation)
// against OpenBLAS's float32 sgemm of the same shape on float32 copies: the
// peak a convert-to-float32 fallback could reach, before paying the conversion.
#include <cblas.h>

#include <vector>

#include "mlxcpp/mx/backend/cpu/isa.h"

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

// Args: M (tokens), N, K (the Gemma 3 270M projections).
void BM_GemmBfloat16(benchmark::State& state) {
  int m = static_cast<int>(state.range(0)), n = static_cast<int>(state.range(1)),
      k = static_cast<int>(state.range(2));
  mx::array xf = filled(m, k, 1), wf = filled(n, k, 2);
  mx::array x = mx::astype(xf, mx::bfloat16), w = mx::astype(wf, mx::bfloat16);
  mx::eval(x, w);
  std::vector<float> c(size_t(m) * n);
  mx::cpu::Isa best = mx::cpu::isa();
  auto t = mxbench::time_all(
      state, {[&] {
                mx::array y = mx::matmul(x, mx::transpose(w));
                y.eval();
              },
              [&] {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f,
                            xf.data<float>(), k, wf.data<float>(), k, 0.0f, c.data(), n);
                benchmark::ClobberMemory();
              },
              [&] {  // the portable AVX2 kernel (bfloat16 widened panel by panel)
                mx::cpu::set_isa(mx::cpu::Isa::avx2);
                mx::array y = mx::matmul(x, mx::transpose(w));
                y.eval();
                mx::cpu::set_isa(best);
              },
              [&] {  // the fallback: convert both operands, then sgemm
                mx::array x32 = mx::astype(x, mx::float32), w32 = mx::astype(w, mx::float32);
                mx::eval(x32, w32);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f,
                            x32.data<float>(), k, w32.data<float>(), k, 0.0f, c.data(), n);
                benchmark::ClobberMemory();
              }});
  double flops = 2.0 * m * n * double(k);
  state.counters["ours_GFLOPS"] = mxbench::value(flops / t[0] / 1e9);
  state.counters["base_GFLOPS"] = mxbench::value(flops / t[1] / 1e9);
  state.counters["ratio"] = mxbench::value(t[1] / t[0]);
  state.counters["avx2_GFLOPS"] = mxbench::value(flops / t[2] / 1e9);
  state.counters["cvt_sgemm_GFLOPS"] = mxbench::value(flops / t[3] / 1e9);
}
BENCHMARK(BM_GemmBfloat16)
    ->ArgNames({"M", "N", "K"})
    ->Args({128, 1024, 640})
    ->Args({128, 256, 640})
    ->Args({128, 2048, 640})
    ->Args({128, 640, 2048})
    ->Args({512, 1024, 640})
    ->Args({512, 2048, 640})
    ->Args({512, 640, 2048})
    ->Iterations(15)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
