// Matrix-vector products (the decode step of a linear layer) against the
// memory-bandwidth floor: the time to stream the same weight bytes through a
// read-and-sum loop on all cores. ratio = weight GB/s of ours / the floor's.
//
// A decode step evaluates one graph holding every layer's products, each
// reading its own weights; so each iteration builds the products of x with L
// distinct copies of the weight (L chosen so the copies total >= 64 MB, far
// past L2, as a model's layers are) and evaluates them together, and the floor
// reads the same L copies, one parallel pass each.
#include <cblas.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "mlxcpp/mx.h"
#include "mlxcpp/mx/backend/cpu/isa.h"
#include "mlxcpp/mx/scheduler.h"
#include "pair_timer.h"

namespace {

uint64_t read_sum(const uint64_t* p, size_t n) {
  std::atomic<uint64_t> total{0};
  mx::scheduler::parallel_for(n, size_t{1} << 13, [&](size_t b, size_t e) {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = b;
    for (; i + 4 <= e; i += 4) {
      s0 += p[i];
      s1 += p[i + 1];
      s2 += p[i + 2];
      s3 += p[i + 3];
    }
    for (; i < e; ++i) s0 += p[i];
    total += s0 + s1 + s2 + s3;
  });
  return total.load();
}

struct Weights {
  std::vector<mx::array> w;
  size_t bytes = 0;  // of one copy
};

// L copies of an (rows, cols) matrix of `dtype`, together >= 64 MB.
Weights make_weights(int rows, int cols, mx::Dtype dtype) {
  std::vector<float> v(size_t(rows) * cols);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(int(i % 17) - 8) / 64.0f;
  mx::array base = mx::astype(mx::array(v, {rows, cols}), dtype);
  base.eval();
  Weights out;
  out.bytes = base.nbytes();
  size_t copies = std::max<size_t>(1, (size_t{64} << 20) / out.bytes);
  for (size_t i = 0; i < copies; ++i) out.w.push_back(mx::copy(base));
  mx::eval(out.w);
  return out;
}

void report(benchmark::State& state, const Weights& ws, double t_ours, double t_base) {
  double bytes = double(ws.bytes) * ws.w.size();
  double ours = bytes / t_ours / 1e9, base = bytes / t_base / 1e9;
  state.counters["ours_GBps"] = mxbench::value(ours);
  state.counters["base_GBps"] = mxbench::value(base);
  state.counters["ratio"] = mxbench::value(ours / base);
  state.counters["us_per_matmul"] = mxbench::value(t_ours / ws.w.size() * 1e6);
}

// Args: N, K, layout (0: x @ W.T with W (N, K), nn.Linear's weight; 1: x @ W
// with W (K, N)), M (rows of x), isa (0: best of this CPU, 1: AVX2 forced).
void gemv_case(benchmark::State& state, mx::Dtype dtype) {
  int n = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  bool linear = state.range(2) == 0;
  int m = static_cast<int>(state.range(3));
  mx::cpu::Isa saved = mx::cpu::isa();
  mx::cpu::set_isa(state.range(4) == 1 ? mx::cpu::Isa::avx2 : saved);
  Weights ws = linear ? make_weights(n, k, dtype) : make_weights(k, n, dtype);
  mx::array x = mx::astype(mx::full({m, k}, 0.5f), dtype);
  x.eval();
  auto ours = [&] {
    std::vector<mx::array> ys;
    for (auto& w : ws.w) ys.push_back(linear ? mx::matmul(x, mx::transpose(w)) : mx::matmul(x, w));
    mx::eval(ys);
  };
  auto base = [&] {
    for (auto& w : ws.w) {
      uint64_t s = read_sum(w.data<uint64_t>(), ws.bytes / 8);
      benchmark::DoNotOptimize(s);
    }
  };
  auto [t_ours, t_base] = mxbench::time_pair(state, ours, base);
  report(state, ws, t_ours, t_base);
  mx::cpu::set_isa(saved);
}

void BM_GemvBfloat16(benchmark::State& state) { gemv_case(state, mx::bfloat16); }

// The Gemma 3 270M shapes (hidden 640, 4 query heads x 256, 1 kv head x 256,
// MLP 2048, tied 262144-row lm_head) and a 4096 x 4096 layer.
BENCHMARK(BM_GemvBfloat16)
    ->ArgNames({"N", "K", "layout", "M", "avx2"})
    ->Args({262144, 640, 0, 1, 0})
    ->Args({1024, 640, 0, 1, 0})
    ->Args({256, 640, 0, 1, 0})
    ->Args({2048, 640, 0, 1, 0})
    ->Args({640, 2048, 0, 1, 0})
    ->Args({4096, 4096, 0, 1, 0})
    ->Args({262144, 640, 0, 4, 0})
    ->Args({1024, 640, 0, 4, 0})
    ->Args({2048, 640, 0, 4, 0})
    ->Args({640, 2048, 0, 4, 0})
    ->Args({4096, 4096, 0, 4, 0})
    ->Args({1024, 640, 1, 1, 0})
    ->Args({640, 2048, 1, 1, 0})
    ->Args({4096, 4096, 1, 1, 0})
    ->Args({4096, 4096, 1, 4, 0})
    ->Args({2048, 640, 0, 1, 1})
    ->Args({4096, 4096, 0, 1, 1})
    ->Args({4096, 4096, 0, 4, 1})
    ->Args({4096, 4096, 1, 1, 1})
    ->Iterations(30)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// float32 GEMV through mx::matmul (our kernels for M <= 8) against the floor;
// OpenBLAS on the same copies for comparison: cblas_sgemv, and cblas_sgemm
// with M = 1, the call mx::matmul made before.
void BM_GemvFloat32(benchmark::State& state) {
  int n = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  Weights ws = make_weights(n, k, mx::float32);
  mx::array x = mx::full({1, k}, 0.5f);
  x.eval();
  std::vector<float> y(n);
  auto t = mxbench::time_all(
      state, {[&] {
                std::vector<mx::array> ys;
                for (auto& w : ws.w) ys.push_back(mx::matmul(x, mx::transpose(w)));
                mx::eval(ys);
              },
              [&] {
                for (auto& w : ws.w) {
                  uint64_t s = read_sum(w.data<uint64_t>(), ws.bytes / 8);
                  benchmark::DoNotOptimize(s);
                }
              },
              [&] {
                for (auto& w : ws.w) {
                  cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, w.data<float>(), k,
                              x.data<float>(), 1, 0.0f, y.data(), 1);
                }
              },
              [&] {
                for (auto& w : ws.w) {
                  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 1, n, k, 1.0f,
                              x.data<float>(), k, w.data<float>(), k, 0.0f, y.data(), n);
                }
              }});
  report(state, ws, t[0], t[1]);
  double bytes = double(ws.bytes) * ws.w.size();
  state.counters["sgemv_GBps"] = mxbench::value(bytes / t[2] / 1e9);
  state.counters["sgemm_m1_GBps"] = mxbench::value(bytes / t[3] / 1e9);
}
BENCHMARK(BM_GemvFloat32)
    ->ArgNames({"N", "K"})
    ->Args({4096, 4096})
    ->Args({1024, 640})
    ->Iterations(30)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
