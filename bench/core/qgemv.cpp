// Quantized matrix-vector products (decode through a quantized linear layer)
// against the dense bfloat16 GEMV of the same shape and against the
// bandwidth floor of the quantized bytes (packed codes + scales + biases,
// streamed by a read-and-sum loop on all cores). As in gemv.cpp, each
// iteration runs L distinct copies (together >= 64 MB) so that the weights
// come from memory, not cache.
//   q_GBps      quantized bytes / time of quantized_matmul
//   floor_GBps  the same bytes / time of the read-and-sum pass
//   ratio       q_GBps / floor_GBps
//   bf16_GBps   dense bfloat16 bytes / time of matmul(x, W.T)
//   speedup     dense bf16 time per product / quantized time per product
#include <atomic>
#include <cstdint>
#include <vector>

#include "mlxcpp/mx.h"
#include "mlxcpp/mx/backend/cpu/isa.h"
#include "mlxcpp/mx/scheduler.h"
#include "pair_timer.h"

namespace {

uint64_t read_words(const uint64_t* p, size_t n) {
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

constexpr size_t kCopiesBytes = size_t{64} << 20;

// Args: N, K, bits, M (rows of x), isa (0: best of this CPU, 1: AVX2 forced).
void BM_QuantizedGemv(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  const int bits = static_cast<int>(state.range(2)), m = static_cast<int>(state.range(3));
  const int g = 64;
  mx::cpu::Isa saved = mx::cpu::isa();
  mx::cpu::set_isa(state.range(4) == 1 ? mx::cpu::Isa::avx2 : saved);

  mx::random::seed(3);
  mx::array w = mx::astype(mx::random::normal({n, k}), mx::bfloat16);
  auto q = mx::quantize(w, g, bits);
  mx::eval(q);
  const size_t qbytes = q[0].nbytes() + q[1].nbytes() + q[2].nbytes();
  std::vector<std::vector<mx::array>> qs;
  for (size_t i = 0; i < std::max<size_t>(1, kCopiesBytes / qbytes); ++i) {
    qs.push_back({mx::copy(q[0]), mx::copy(q[1]), mx::copy(q[2])});
    mx::eval(qs.back());
  }
  std::vector<mx::array> dense;
  for (size_t i = 0; i < std::max<size_t>(1, kCopiesBytes / w.nbytes()); ++i) {
    dense.push_back(mx::copy(w));
  }
  mx::eval(dense);
  w = mx::array(0.0f);

  mx::array x = mx::astype(mx::random::normal({m, k}), mx::bfloat16);
  x.eval();
  auto t = mxbench::time_all(
      state, {[&] {
                std::vector<mx::array> ys;
                for (auto& c : qs)
                  ys.push_back(mx::quantized_matmul(x, c[0], c[1], c[2], true, g, bits));
                mx::eval(ys);
              },
              [&] {
                for (auto& c : qs) {
                  for (auto& a : c) {
                    uint64_t s = read_words(a.data<uint64_t>(), a.nbytes() / 8);
                    benchmark::DoNotOptimize(s);
                  }
                }
              },
              [&] {
                std::vector<mx::array> ys;
                for (auto& d : dense) ys.push_back(mx::matmul(x, mx::transpose(d)));
                mx::eval(ys);
              }});
  const double qtotal = double(qbytes) * qs.size();
  const double dtotal = double(dense[0].nbytes()) * dense.size();
  const double q_gbps = qtotal / t[0] / 1e9, floor_gbps = qtotal / t[1] / 1e9;
  state.counters["q_GBps"] = mxbench::value(q_gbps);
  state.counters["floor_GBps"] = mxbench::value(floor_gbps);
  state.counters["ratio"] = mxbench::value(q_gbps / floor_gbps);
  state.counters["bf16_GBps"] = mxbench::value(dtotal / t[2] / 1e9);
  state.counters["speedup"] = mxbench::value((t[2] / dense.size()) / (t[0] / qs.size()));
  state.counters["us_per_matmul"] = mxbench::value(t[0] / qs.size() * 1e6);
  mx::cpu::set_isa(saved);
}

// Gemma 3 1B's MLP (1152 x 6912 and back) and the 270M tied lm_head
// (262144 x 640), at 4 and 8 bits; M = 4 for a few rows of speculative or
// batched decoding; AVX2 forced on the MLP.
BENCHMARK(BM_QuantizedGemv)
    ->ArgNames({"N", "K", "bits", "M", "avx2"})
    ->Args({6912, 1152, 4, 1, 0})
    ->Args({1152, 6912, 4, 1, 0})
    ->Args({262144, 640, 4, 1, 0})
    ->Args({6912, 1152, 8, 1, 0})
    ->Args({1152, 6912, 8, 1, 0})
    ->Args({262144, 640, 8, 1, 0})
    ->Args({6912, 1152, 4, 4, 0})
    ->Args({6912, 1152, 3, 1, 0})
    ->Args({6912, 1152, 6, 1, 0})
    ->Args({6912, 1152, 4, 1, 1})
    ->Args({6912, 1152, 8, 1, 1})
    ->Iterations(20)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
