// mlxcpp_bench_sdpa_decode: the split-KV decode attention kernel
// (backend/cuda/sdpa_decode.cu) at Gemma 3 4B's shapes (8 query heads, 4
// key/value heads, head dim 256, bf16) for 128 to 32768 keys, at batch 1 and
// 64 (the server's batched decode, with its per-row bool mask), against the
// device-to-device copy bandwidth measured in the same run: ratio = (K and V
// bytes read / time) / copy bandwidth (bytes read + written per second, as
// bench/gpu/gpu_peaks.cu reports it). Kernels are timed as CUDA graphs of
// back-to-back calls that cycle through enough copies of K and V to exceed
// the L2 cache, as a decode step reads them (the layer's weights evict them).
// At batch 1 it also sweeps the fewest keys per split (the plan's tuning
// knob), and times the public op (mx::fast::scaled_dot_product_attention,
// evaluated each call) to show the host's share.
//
// Usage: mlxcpp_bench_sdpa_decode [reps]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_timing.cuh"
#include "mlxcpp/mx/backend/cuda/device.h"
#include "mlxcpp/mx/backend/cuda/sdpa_decode.h"

namespace {

using mx::cuda::check;
using mxbench::DeviceBuffer;
using mxbench::time_graph;

__global__ void fill_bf16(__nv_bfloat16* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    p[i] = __float2bfloat16(static_cast<float>(h % 2001) / 1000.0f - 1.0f);
  }
}

struct Shape {
  int B, Lk, window;
  bool batch_mask;  // the server's (B, 1, 1, Lk) bool mask, broadcast over heads
};

constexpr int kHq = 8, kHkv = 4, kD = 256;

void run_shape(const Shape& sh, double copy, int reps, cudaStream_t s, bool sweep) {
  mx::cuda::DecodeParams p{};
  p.B = sh.B;
  p.Hq = kHq;
  p.Hkv = kHkv;
  p.rep = kHq / kHkv;
  p.Lq = 1;
  p.Lk = sh.Lk;
  p.D = p.Dv = kD;
  p.scale = 1.0f / 16.0f;
  p.window = sh.window;
  p.q_s[0] = int64_t{kHq} * kD;
  p.q_s[1] = kD;
  p.q_s[2] = 0;
  p.k_s[0] = p.v_s[0] = int64_t{kHkv} * sh.Lk * kD;
  p.k_s[1] = p.v_s[1] = int64_t{sh.Lk} * kD;
  p.k_s[2] = p.v_s[2] = kD;
  const size_t kv_elems = static_cast<size_t>(sh.B) * kHkv * sh.Lk * kD;
  const size_t kv_bytes = 2 * kv_elems * sizeof(__nv_bfloat16);
  // Copies enough to exceed the 50 MB L2 several times over.
  const int copies =
      static_cast<int>(std::clamp<size_t>((size_t{256} << 20) / kv_bytes + 1, 1, 64));
  std::vector<std::unique_ptr<DeviceBuffer>> ks, vs;
  for (int c = 0; c < copies; ++c) {
    ks.push_back(std::make_unique<DeviceBuffer>(kv_elems * 2));
    vs.push_back(std::make_unique<DeviceBuffer>(kv_elems * 2));
    fill_bf16<<<1024, 256, 0, s>>>(static_cast<__nv_bfloat16*>(ks.back()->p), kv_elems, 2 * c + 1);
    fill_bf16<<<1024, 256, 0, s>>>(static_cast<__nv_bfloat16*>(vs.back()->p), kv_elems, 2 * c + 2);
  }
  DeviceBuffer q(static_cast<size_t>(sh.B) * kHq * kD * 2),
      out(static_cast<size_t>(sh.B) * kHq * kD * 2);
  fill_bf16<<<64, 256, 0, s>>>(static_cast<__nv_bfloat16*>(q.p),
                               static_cast<size_t>(sh.B) * kHq * kD, 99);
  std::unique_ptr<DeviceBuffer> mask;
  if (sh.batch_mask) {
    // Row b is left-padded by (b * 37) % Lk keys, as the server pads shorter prompts.
    std::vector<uint8_t> m(static_cast<size_t>(sh.B) * sh.Lk, 0);
    for (int b = 0; b < sh.B; ++b) {
      for (int j = (b * 37) % sh.Lk; j < sh.Lk; ++j) m[static_cast<size_t>(b) * sh.Lk + j] = 1;
    }
    mask = std::make_unique<DeviceBuffer>(m.size());
    check(cudaMemcpy(mask->p, m.data(), m.size(), cudaMemcpyHostToDevice), "mask");
    p.mask = mask->p;
    p.bool_mask = true;
    p.m_s[0] = sh.Lk;
    p.m_s[3] = 1;
  }
  check(cudaStreamSynchronize(s), "fill");
  const int64_t lo = sh.window > 0 ? std::max(0, sh.Lk - sh.window) : 0;
  const double read = static_cast<double>(kv_bytes) * static_cast<double>(sh.Lk - lo) / sh.Lk;

  std::vector<int64_t> knobs{0};
  if (sweep) knobs.insert(knobs.end(), {8, 16, 32, 64, 128, 256});
  for (int64_t knob : knobs) {
    const mx::cuda::DecodePlan plan =
        mx::cuda::sdpa_decode_plan(p, mx::cuda::DecodeDtype::bf16, 0, knob);
    DeviceBuffer scratch(mx::cuda::sdpa_decode_scratch_floats(p, plan) * sizeof(float));
    const double ms = time_graph(s, 64, reps, [&](int i) {
      const int c = i % copies;
      mx::cuda::sdpa_decode(mx::cuda::DecodeDtype::bf16, q.p, ks[c]->p, vs[c]->p, out.p, p, plan,
                            static_cast<float*>(scratch.p), s);
    });
    const double gbs = read / (ms * 1e-3) / 1e9;
    std::printf(
        "{\"bench\":\"sdpa_decode\",\"B\":%d,\"keys\":%d,\"window\":%d,\"mask\":%s,"
        "\"min_split_keys\":%s,\"splits\":%d,\"cluster\":%s,\"ctas\":%d,\"us\":%.2f,\"kv_mb\":%.2f,"
        "\"gbs\":%.0f,\"copy_gbs\":%.0f,\"ratio\":%.3f}\n",
        sh.B, sh.Lk, sh.window, sh.batch_mask ? "true" : "false",
        knob ? std::to_string(knob).c_str() : "\"default\"", plan.splits,
        plan.cluster ? "true" : "false", sh.B * kHkv * plan.row_groups * plan.splits, ms * 1e3,
        read / 1e6, gbs, copy, gbs / copy);
  }
}

}  // namespace

// sdpa_decode_op.cpp (host compiler: the mx op headers are not for nvcc).
void time_sdpa_op(int keys, int reps);

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  try {
    cudaDeviceProp prop{};
    int dev = 0;
    check(cudaGetDevice(&dev), "device");
    check(cudaGetDeviceProperties(&prop, dev), "properties");
    cudaStream_t s;
    check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
    const double copy = mxbench::copy_gbs(s, size_t{512} << 20, 5);
    std::printf("{\"bench\":\"device\",\"name\":\"%s\",\"sms\":%d,\"copy_gbs\":%.0f}\n", prop.name,
                prop.multiProcessorCount, copy);
    for (int Lk : {128, 384, 600, 4096, 32768}) run_shape({1, Lk, 0, false}, copy, reps, s, true);
    for (int Lk : {4096, 32768}) run_shape({1, Lk, 1024, false}, copy, reps, s, false);
    for (int Lk : {128, 600, 4096}) run_shape({64, Lk, 0, true}, copy, reps, s, false);
    for (int Lk : {600, 4096}) time_sdpa_op(Lk, 200);
    cudaStreamDestroy(s);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mlxcpp_bench_sdpa_decode: %s\n", e.what());
    return 1;
  }
  return 0;
}
