// RandomBits: Threefry-2x32-20 on the device, laid out word for word as the
// CPU kernel lays it out (see backend/cpu/random.cpp), so that a key gives
// the same bits on either device.
#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/random.h"

namespace mx::cuda {
namespace {

__device__ __forceinline__ uint2 threefry(uint32_t k0, uint32_t k1, uint32_t c0, uint32_t c1) {
  const uint32_t rot[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  const uint32_t ks[3] = {k0, k1, k0 ^ k1 ^ 0x1BD11BDAu};
  uint32_t x0 = c0 + ks[0], x1 = c1 + ks[1];
#pragma unroll
  for (uint32_t i = 0; i < 5; ++i) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      x0 += x1;
      x1 = (x1 << rot[i % 2][r]) | (x1 >> (32 - rot[i % 2][r]));
      x1 ^= x0;
    }
    x0 += ks[(i + 1) % 3];
    x1 += ks[(i + 2) % 3] + i + 1;
  }
  return make_uint2(x0, x1);
}

// The first min(4, bytes - 4w) bytes of v at word w of a key's block.
__device__ __forceinline__ void put_word(unsigned char* dst, int64_t bytes, int64_t w, uint32_t v) {
  const int64_t n = bytes - 4 * w < 4 ? bytes - 4 * w : 4;
  unsigned char* d = dst + 4 * w;
  if (n == 4 && (reinterpret_cast<uintptr_t>(d) & 3) == 0) {
    *reinterpret_cast<uint32_t*>(d) = v;
  } else {
    for (int64_t b = 0; b < n; ++b) d[b] = static_cast<unsigned char>(v >> (8 * b));
  }
}

// One thread per (key, counter): counter j < half fills words j and
// j + second; an odd middle word uses the counter (half, 0).
__global__ void random_bits_kernel(const uint32_t* keys, unsigned char* out, int64_t num_keys,
                                   int64_t bytes_per_key, int64_t half, bool odd) {
  const int64_t per_key = half + (odd ? 1 : 0);
  const int64_t second = per_key;
  const int64_t total = num_keys * per_key;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += step) {
    const int64_t i = t / per_key, j = t - i * per_key;
    const uint32_t k0 = keys[2 * i], k1 = keys[2 * i + 1];
    unsigned char* dst = out + i * bytes_per_key;
    if (j < half) {
      uint2 v = threefry(k0, k1, static_cast<uint32_t>(j), static_cast<uint32_t>(j + second));
      put_word(dst, bytes_per_key, j, v.x);
      put_word(dst, bytes_per_key, j + second, v.y);
    } else {
      put_word(dst, bytes_per_key, half, threefry(k0, k1, static_cast<uint32_t>(half), 0).x);
    }
  }
}

void random_bits_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  const array& k = inputs[0];
  if (k.dtype() != uint32) {
    throw std::invalid_argument("[RandomBits] keys must be uint32, got " + dtype_name(k.dtype()));
  }
  array& out = outputs[0];
  allocate_row_contiguous(out);
  const int64_t num_keys = static_cast<int64_t>(k.size() / 2);
  if (num_keys == 0 || out.size() == 0) return;
  array keys = ensure_row_contiguous(k, p.stream());
  const int64_t bytes_per_key = static_cast<int64_t>(out.nbytes()) / num_keys;
  const int64_t words = (bytes_per_key + 3) / 4;
  const int64_t half = words / 2;
  const bool odd = words % 2 == 1;
  const int64_t total = num_keys * (half + (odd ? 1 : 0));
  random_bits_kernel<<<grid_for(total), 256, 0, stream_of(p)>>>(
      keys.data<uint32_t>(), out.data<unsigned char>(), num_keys, bytes_per_key, half, odd);
  check_launch("RandomBits");
}

const Register<RandomBits> r_random_bits(&random_bits_gpu);

}  // namespace
}  // namespace mx::cuda
