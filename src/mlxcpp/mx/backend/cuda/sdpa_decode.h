// The split-KV attention kernel for decode (sdpa_decode.cu), used by the GPU
// scaled_dot_product_attention when each key/value head serves a few query
// rows (one or a few queries times the grouped-query ratio): a CTA takes the
// query rows of one (batch, key/value head) and one slice of the keys, so K
// and V are read once for all the heads that share them, and the slices'
// partial softmax states are merged inside their thread-block cluster (a few
// slices) or by a second small kernel. float32,
// float16 and bfloat16, head dims up to 256 in 16-byte multiples; every mask
// of the primitive (causal, sliding window, bool or additive array, sinks).
// Other calls keep the one warp per row kernel of sdpa.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace mx::cuda {

// Queries per call up to which the decode kernel is used.
constexpr int kDecodeMaxQueries = 8;

struct DecodeParams {
  int B, Hq, Hkv, rep, Lq, Lk, D, Dv;
  float scale;
  bool causal;
  int window;                      // 0: none
  int64_t q_s[3], k_s[3], v_s[3];  // batch, head, row strides (elements); last dims unit-stride
  const void* mask;  // broadcast (B, Hq, Lq, Lk) bool or additive (same dtype), or null
  bool bool_mask;
  int64_t m_s[4];
  const void* sinks;  // (Hq,) with stride, or null
  int64_t sink_stride;
};

enum class DecodeDtype { f32, f16, bf16 };

// How the keys are divided: the CTAs of one (batch, key/value head, row
// group) each take keys_per_split keys from key_lo on.
struct DecodePlan {
  int rows_per_cta;  // 1, 2, 4 or 8 query rows of one key/value head
  int row_groups;    // CTAs needed to cover rep * Lq rows
  int splits;
  int64_t key_lo, key_hi;  // the keys any query can see (causal / window bounds)
  int64_t keys_per_split;
  // The splits (2..16) form one thread-block cluster per row group and merge
  // through distributed shared memory: no scratch, no combine kernel.
  bool cluster;
  // A cluster plan of short splits: each CTA asks L2 for its keys and values before waiting
  // for the previous kernel.
  bool prefetch;
};

// Whether the decode kernel covers this call; ptrs: q, k, v, out data.
bool sdpa_decode_supported(const DecodeParams& p, DecodeDtype t, const void* const (&ptrs)[4]);

// The division for `sms` multiprocessors (0: the current device's count).
// min_split_keys > 0 overrides the fewest keys a split takes (for the
// benchmark's sweep); 0 keeps the tuned default.
DecodePlan sdpa_decode_plan(const DecodeParams& p, DecodeDtype t, int sms = 0,
                            int64_t min_split_keys = 0);

// Float32 scratch the plan needs (0 when there is one split).
size_t sdpa_decode_scratch_floats(const DecodeParams& p, const DecodePlan& plan);

// out (B, Hq, Lq, Dv) row-contiguous; scratch as sized above.
void sdpa_decode(DecodeDtype t, const void* q, const void* k, const void* v, void* out,
                 const DecodeParams& p, const DecodePlan& plan, float* scratch,
                 cudaStream_t stream);

}  // namespace mx::cuda
