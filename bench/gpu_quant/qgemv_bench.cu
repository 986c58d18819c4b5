// mlxcpp_bench_gpu_quant: the quantized matrix-vector kernels (decode, M = 1
// and 8; the tensor-core kernel and the SIMT one, and the grouped q/k/v and
// gate/up launches) on Gemma 3 4B's weight shapes at 4 and 8 bits against two baselines
// measured in the same run: the dense bfloat16 product of the same shape
// through cuBLASLt (configured as mx::matmul configures it) and the
// device-to-device copy bandwidth. Kernels are timed as CUDA graphs of
// back-to-back launches (no host launch gaps) that cycle through enough
// copies of the weights to exceed the L2 cache, so every launch reads its
// bytes from HBM. Also timed: both products through the public ops
// (mx::quantized_matmul, mx::matmul), whose per-op host work is included.
//
// Usage: mlxcpp_bench_gpu_quant [iterations]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "../gpu/bench_timing.cuh"
#include "mlxcpp/mx/backend/cuda/cublaslt.h"
#include "mlxcpp/mx/backend/cuda/quantized.cuh"
#include "op_timing.h"

namespace {

using mx::cuda::check;
namespace quant = mx::cuda::quant;
using mxbench::DeviceBuffer;
using mxbench::time_graph;

// Deterministic filler: random bits for the packed codes, small positive
// values for scales, biases and x (the values do not change the timing).
__global__ void fill_words(uint32_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    p[i] = h ^ (h >> 15);
  }
}

__global__ void fill_bf16(__nv_bfloat16* p, size_t n, float scale) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    p[i] = __float2bfloat16(scale * static_cast<float>((i * 7919) % 97) / 97.0f - scale / 2);
  }
}

struct Shape2 {
  const char* what;
  int N, K;
};

struct DecodeShape {
  const char* what;
  std::vector<int> Ns;  // one matrix, or several in one grouped launch
  int K;
  bool geglu = false;  // gate and up with the activation in the epilogue (one output)
};

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  if (!gpu_available()) {
    std::printf("no GPU: nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "device properties");
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  cudaStream_t s;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");

  // Copy bandwidth: 1 GiB device to device (bytes read + bytes written).
  const double copy_gbs = mxbench::copy_gbs(s, size_t{1} << 30, std::max(1, reps / 4));
  std::printf("device-to-device copy: %.0f GB/s (read + write)\n\n", copy_gbs);
  const size_t ws_size = size_t{32} << 20;
  DeviceBuffer workspace(ws_size);

  // Decode: each weight shape of a Gemma 3 4B step (q/k/v and gate/up also
  // as the one grouped launch the model makes), M = 1 and 8 rows of x.
  // "one tile": 16 rows, a launch's fixed cost (the chain's launch, wait, x staging and drain).
  const DecodeShape decode[] = {{"one tile 16x2560", {16}, 2560},
                                {"q_proj 2048x2560", {2048}, 2560},
                                {"k/v_proj 1024x2560", {1024}, 2560},
                                {"o_proj 2560x2048", {2560}, 2048},
                                {"gate/up 10240x2560", {10240}, 2560},
                                {"down 2560x10240", {2560}, 10240},
                                {"qkv grouped 3x2560", {2048, 1024, 1024}, 2560},
                                {"gate+up grouped 2x2560", {10240, 10240}, 2560},
                                {"gelu(gate)*up 2x2560", {10240, 10240}, 2560, true},
                                {"lm head 262208x2560", {262208}, 2560}};
  std::printf("%-24s %2s %-9s %10s %9s %9s %7s %9s %9s %7s %9s %9s\n", "shape (N x K)", "M", "bits",
              "packed MB", "q us", "q GB/s", "q/copy", "bf16 us", "bf16GB/s", "speedup", "op q us",
              "op bf16us");
  // MLXCPP_BENCH_ONLY=TEXT: only the shapes whose name contains TEXT (a profiler's window).
  const char* only = std::getenv("MLXCPP_BENCH_ONLY");
  for (const DecodeShape& sh : decode) {
    if (only && !std::strstr(sh.what, only)) continue;
    int n_total = 0;
    for (int n : sh.Ns) n_total += n;
    for (int M : {1, 8}) {
      const size_t dense_bytes = size_t{2} * n_total * sh.K;
      // Enough copies of the dense weights to exceed L2 several times over.
      const int dense_copies =
          static_cast<int>(std::clamp<size_t>((size_t{512} << 20) / dense_bytes + 1, 1, 64));
      std::vector<DeviceBuffer*> dense;
      for (int c = 0; c < dense_copies; ++c) {
        dense.push_back(new DeviceBuffer(dense_bytes));
        fill_bf16<<<1024, 256, 0, s>>>(static_cast<__nv_bfloat16*>(dense.back()->p),
                                       dense_bytes / 2, 0.1f);
      }
      DeviceBuffer x(size_t{2} * M * sh.K), y(size_t{4} * M * n_total);
      fill_bf16<<<64, 256, 0, s>>>(static_cast<__nv_bfloat16*>(x.p), size_t{1} * M * sh.K, 2.0f);
      mxbench::LtBf16Product dg(M, n_total, sh.K, workspace.p, ws_size);
      const double dense_ms = time_graph(s, 2 * dense_copies, reps, [&](int i) {
        dg.run(dense[i % dense_copies]->p, x.p, y.p, s);
      });
      for (auto* d : dense) delete d;
      const double dense_gbs = dense_bytes / (dense_ms * 1e-3) / 1e9;
      // The same products through the public ops (host work per op included).
      const bool ops_too = M == 1 && sh.Ns.size() == 1;
      std::optional<OpTimer> ops;
      double op_dense_ms = 0;
      if (ops_too) {
        ops.emplace(n_total, sh.K);
        op_dense_ms = ops->dense_ms();
      }
      for (int bits : {4, 8}) {
        const int g = 64;
        // One buffer per copy: each matrix's codes, scales, biases in turn.
        std::vector<size_t> wbytes, sbytes;
        size_t packed = 0;
        for (int n : sh.Ns) {
          wbytes.push_back(size_t{4} * n * (int64_t{sh.K} * bits / 32));
          sbytes.push_back(size_t{2} * n * (sh.K / g));
          packed += wbytes.back() + 2 * sbytes.back();
        }
        const int copies =
            static_cast<int>(std::clamp<size_t>((size_t{512} << 20) / packed + 1, 1, 64));
        std::vector<DeviceBuffer*> bufs;
        for (int c = 0; c < copies; ++c) {
          bufs.push_back(new DeviceBuffer(packed));
          fill_words<<<1024, 256, 0, s>>>(static_cast<uint32_t*>(bufs.back()->p), packed / 4,
                                          17u + c);
        }
        // Scales and biases: small values (random bits would be NaNs and infinities).
        for (int c = 0; c < copies; ++c) {
          char* p = static_cast<char*>(bufs[c]->p);
          for (size_t i = 0; i < sh.Ns.size(); ++i) {
            fill_bf16<<<1024, 256, 0, s>>>(reinterpret_cast<__nv_bfloat16*>(p + wbytes[i]),
                                           sbytes[i], 0.01f);
            p += wbytes[i] + 2 * sbytes[i];
          }
        }
        check(cudaStreamSynchronize(s), "fill");
        quant::QmmArgs a;
        a.x = x.p;
        a.stype = quant::ScaleType::bf16;
        a.bits = bits;
        a.group_size = g;
        a.M = M;
        a.K = sh.K;
        a.transpose = true;
        auto groups_of = [&](int c) {
          std::vector<quant::QmmGroup> gs;
          char* p = static_cast<char*>(bufs[c]->p);
          char* out = static_cast<char*>(y.p);
          for (size_t i = 0; i < sh.Ns.size(); ++i) {
            gs.push_back({reinterpret_cast<const uint32_t*>(p), p + wbytes[i],
                          p + wbytes[i] + sbytes[i], out, sh.Ns[i]});
            p += wbytes[i] + 2 * sbytes[i];
            out += size_t{2} * M * sh.Ns[i];
          }
          return gs;
        };
        a.N = sh.Ns[0];
        a.biases = bufs[0]->p;
        const bool tc = quant::qgemv_mma_supported(a, mx::bfloat16);
        // The tensor-core kernel the op picks, and the SIMT one for single matrices.
        for (int variant = 0; variant < (sh.Ns.size() == 1 ? 2 : 1); ++variant) {
          const bool use_tc = tc && variant == 0;
          const double q_ms = time_graph(s, 2 * copies, reps, [&](int i) {
            auto gs = groups_of(i % copies);
            if (use_tc) {
              quant::qgemv_mma_grouped(a, gs.data(), static_cast<int>(gs.size()), mx::bfloat16, s,
                                       sh.geglu);
            } else {
              quant::QmmArgs ai = a;
              ai.w = gs[0].w;
              ai.scales = gs[0].scales;
              ai.biases = gs[0].biases;
              ai.out = gs[0].out;
              quant::qgemv(ai, mx::bfloat16, s);
            }
          });
          const double q_gbs = packed / (q_ms * 1e-3) / 1e9;
          const double op_q_ms = ops_too && variant == 0 ? ops->quantized_ms(bits, g) : 0.0;
          std::printf("%-24s %2d %d%-8s %10.1f %9.2f %9.0f %7.2f %9.2f %9.0f %7.2f %9.2f %9.2f\n",
                      sh.what, M, bits, use_tc ? " tc" : " simt", packed / 1e6, q_ms * 1e3, q_gbs,
                      q_gbs / copy_gbs, dense_ms * 1e3, dense_gbs, dense_ms / q_ms, op_q_ms * 1e3,
                      op_dense_ms * 1e3);
        }
        for (auto* b : bufs) delete b;
      }
    }
  }
  if (only) return 0;
  const Shape2 shapes[] = {{"attn q/o 2560x2560", 2560, 2560},
                           {"mlp down 2560x10240", 2560, 10240},
                           {"mlp gate/up 10240x2560", 10240, 2560}};

  // Prefill: M = 2048 rows of x through the dequantize-into-tiles GEMM
  // against cuBLASLt's dense bfloat16 GEMM (both TFLOP/s of 2 M N K).
  std::printf("\nprefill M = 2048 (bf16 x): %-24s %4s %9s %9s %9s %9s\n", "shape (N x K)", "bits",
              "q us", "q TFLOP/s", "bf16 us", "bf16 TF/s");
  for (const Shape2& sh : shapes) {
    if (sh.N > 65536) continue;
    const int M = 2048;
    DeviceBuffer w(size_t{2} * sh.N * sh.K), x(size_t{2} * M * sh.K), y(size_t{2} * M * sh.N);
    fill_bf16<<<1024, 256, 0, s>>>(static_cast<__nv_bfloat16*>(w.p),
                                   static_cast<size_t>(sh.N) * sh.K, 0.1f);
    fill_bf16<<<1024, 256, 0, s>>>(static_cast<__nv_bfloat16*>(x.p), static_cast<size_t>(M) * sh.K,
                                   2.0f);
    mxbench::LtBf16Product dg(M, sh.N, sh.K, workspace.p, ws_size);
    const double dense_ms =
        time_graph(s, 4, std::max(1, reps / 4), [&](int) { dg.run(w.p, x.p, y.p, s); });
    const double flop = 2.0 * M * sh.N * sh.K;
    for (int bits : {4, 8}) {
      const int g = 64;
      const size_t wbytes = size_t{4} * sh.N * (int64_t{sh.K} * bits / 32);
      const size_t sbytes = size_t{2} * sh.N * (sh.K / g);
      DeviceBuffer qb(wbytes + 2 * sbytes);
      auto* base = static_cast<char*>(qb.p);
      fill_words<<<1024, 256, 0, s>>>(reinterpret_cast<uint32_t*>(base), wbytes / 4, 5u);
      fill_bf16<<<1024, 256, 0, s>>>(reinterpret_cast<__nv_bfloat16*>(base + wbytes), sbytes,
                                     0.01f);
      quant::QmmArgs a;
      a.x = x.p;
      a.out = y.p;
      a.w = reinterpret_cast<const uint32_t*>(base);
      a.scales = base + wbytes;
      a.biases = base + wbytes + sbytes;
      a.stype = quant::ScaleType::bf16;
      a.bits = bits;
      a.group_size = g;
      a.M = M;
      a.N = sh.N;
      a.K = sh.K;
      a.transpose = true;
      const double q_ms =
          time_graph(s, 4, std::max(1, reps / 4), [&](int) { quant::qgemm(a, mx::bfloat16, s); });
      std::printf("%-51s %4d %9.1f %9.1f %9.1f %9.1f\n", sh.what, bits, q_ms * 1e3,
                  flop / (q_ms * 1e-3) / 1e12, dense_ms * 1e3, flop / (dense_ms * 1e-3) / 1e12);
    }
  }
  std::printf(
      "\nq GB/s: packed bytes (codes + scales + biases) per second; q/copy: that over the copy "
      "bandwidth (read + write);\nspeedup: dense bf16 time / quantized time; op columns: "
      "microseconds per op through mx::quantized_matmul / mx::matmul (eval of %d ops).\n",
      50);
  cudaStreamDestroy(s);
  return 0;
}
