// mlxcpp_bench_read_pattern: how fast the decode kernel's access pattern reads device memory
// against a streaming one, with no arithmetic, to tell the memory system's share of the
// quantized matrix-vector kernel's shortfall (qgemv_mma.cu) from the kernel's own.
//
// Every warp works through units of 4 KB, one unit in flight at a time (eight 16-byte loads a
// lane, then their use), over a buffer of `rows` rows of `row_bytes` (K = 2560 at 4 bits: 1280):
//   rows:       the kernel's layout: a unit is a chunk of a 16-row tile, 256 bytes of each row
//               (lane (g, t) loads 16 bytes at 64 * span + 16 * t of rows g and g + 8); a warp
//               takes a tile's chunks in turn, then the tile a grid stride on;
//   contiguous: the same units laid out as 4 KB blocks (as if the weights were repacked tile by
//               tile), each load instruction 512 contiguous bytes.
// Prints GB/s of each at 2 and 4 blocks of 256 threads an SM, and the device-to-device copy.
// Usage: mlxcpp_bench_read_pattern [reps]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "../gpu/bench_timing.cuh"

namespace {

using mx::cuda::check;

template <bool CONTIGUOUS>
__global__ void __launch_bounds__(256)
    read_units(const uint4* __restrict__ p, int tiles, int chunks, int row_bytes, uint32_t* out) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int warps = static_cast<int>(gridDim.x * blockDim.x) >> 5;
  uint32_t acc = 0;
  for (int tile = static_cast<int>(blockIdx.x) * 8 + warp; tile < tiles; tile += warps) {
    for (int c = 0; c < chunks; ++c) {
      uint4 v[8];
      if constexpr (CONTIGUOUS) {
        const uint4* u = p + (int64_t{tile} * chunks + c) * 256;
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = __ldg(u + j * 32 + lane);
      } else {
        const char* base =
            reinterpret_cast<const char*>(p) + int64_t{tile} * 16 * row_bytes + c * 256 + t * 16;
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          v[2 * s] = __ldg(reinterpret_cast<const uint4*>(base + int64_t{g} * row_bytes + s * 64));
          v[2 * s + 1] =
              __ldg(reinterpret_cast<const uint4*>(base + int64_t{g + 8} * row_bytes + s * 64));
        }
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
    }
  }
  if (acc == 0x9e3779b9u) out[0] = acc;  // keeps the loads
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  int dev_count = 0;
  if (cudaGetDeviceCount(&dev_count) != cudaSuccess || dev_count == 0) {
    std::printf("no GPU: nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "device properties");
  cudaStream_t s;
  check(cudaStreamCreate(&s), "stream");
  const int row_bytes = 1280, chunks = row_bytes / 256;
  const int tiles = 262144 / 16;  // the LM head's rows: 335 MB, far past L2
  const size_t bytes = size_t{16} * tiles * row_bytes;
  mxbench::DeviceBuffer buf(bytes), out(16);
  check(cudaMemset(buf.p, 1, bytes), "memset");
  std::printf("device: %s, %d SMs; %.0f MB read per pass\n", prop.name, prop.multiProcessorCount,
              bytes / 1e6);
  std::printf("device-to-device copy: %.0f GB/s (read + write)\n",
              mxbench::copy_gbs(s, size_t{256} << 20, reps));
  for (int per_sm : {2, 4}) {
    const int blocks = per_sm * prop.multiProcessorCount;
    for (int contiguous = 0; contiguous < 2; ++contiguous) {
      const double ms = mxbench::time_graph(s, 2, reps, [&](int) {
        if (contiguous) {
          read_units<true><<<blocks, 256, 0, s>>>(static_cast<const uint4*>(buf.p), tiles, chunks,
                                                  row_bytes, static_cast<uint32_t*>(out.p));
        } else {
          read_units<false><<<blocks, 256, 0, s>>>(static_cast<const uint4*>(buf.p), tiles, chunks,
                                                   row_bytes, static_cast<uint32_t*>(out.p));
        }
      });
      std::printf("%-10s %d blocks/SM: %7.1f us  %6.0f GB/s\n", contiguous ? "contiguous" : "rows",
                  per_sm, ms * 1e3, bytes / (ms * 1e-3) / 1e9);
    }
  }
  return 0;
}
