// The tensor-core prefill attention kernel (sdpa_flash.cu), used by the GPU
// scaled_dot_product_attention for bf16/f16 inputs with head dim 64, 128 or
// 256 and at least kFlashMinQueries queries; other calls keep the one warp per
// row kernels of sdpa.cu. Array masks keep the old path too. As in the row
// kernels, a key masked out by causal/window never contributes, even when its
// value row holds inf or NaN: a tile crossing a mask edge whose values are not
// all finite adds its visible keys one by one instead of on the tensor cores
// (where a zero probability times NaN would be NaN); keys past the end are
// zero-filled.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace mx::cuda {

constexpr int kFlashMinQueries = 16;

struct FlashParams {
  int B, Hq, Hkv, rep, Lq, Lk, D;
  float scale;
  bool causal;
  int window;                      // 0: none
  int64_t q_s[3], k_s[3], v_s[3];  // batch, head, row strides (elements)
  int64_t sink_stride;
};

// Whether flash_sdpa can run these shapes; ptrs: q, k, v, out data.
bool flash_sdpa_supported(const FlashParams& p, bool half_dtype, bool array_mask,
                          const void* const (&ptrs)[4]);

// out (B, Hq, Lq, D) row-contiguous; sinks (Hq,) with stride, or null.
void flash_sdpa(bool bf16, const void* q, const void* k, const void* v, void* out,
                const void* sinks, const FlashParams& p, cudaStream_t stream);

}  // namespace mx::cuda
