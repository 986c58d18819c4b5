// Fused transformer ops with MLX's names and semantics (mlx::core::fast): each
// is one primitive with a fused kernel and a vjp, the hot path of every model.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/device.h"

namespace mx::fast {

// x @ w_i^T for each w_i (N_i, K) of `weights`, x (..., K): the projections
// of one input (a layer's queries, keys and values; an MLP's gate and up). On
// the CPU, a single row of x (decoding) is multiplied with every matrix in one
// parallel pass over their rows, with no join between them; on the GPU in one
// kernel launch (one warp per output element); anything else is one matmul per
// matrix. Differentiable in x and every weight.
std::vector<array> grouped_linear(const array& x, const std::vector<array>& weights,
                                  StreamOrDevice s = {});

// x * rsqrt(mean(x^2, -1) + eps) * weight over the last axis. The result has
// the promoted type of x and weight; 16-bit inputs accumulate in float32.
array rms_norm(const array& x, const std::optional<array>& weight, float eps,
               StreamOrDevice s = {});

// Gemma's RMSNorm: x * rsqrt(mean(x^2, -1) + eps) * weight with the whole row
// in float32 (the normalized value is not rounded before the weight) and one
// rounding to x's dtype at the end; weight must be float32 (Gemma passes
// 1 + w formed in float32). The same values as
// astype(rms_norm(astype(x, float32), weight, eps), x.dtype()), in one kernel.
array rms_norm_f32(const array& x, const array& weight, float eps, StreamOrDevice s = {});

// The junction of two sandwich-normed residual blocks (Gemma's post-norm, residual add and
// the next pre-norm): h = residual + rms_norm_f32(y, y_weight, eps) rounded to the dtype of
// residual, then rms_norm_f32(h, out_weight, eps). Returns {h, normed h}, in one kernel.
// residual and y share shape and floating-point dtype; both weights are float32 of the last
// axis. A float16 sum saturates at +-65504 instead of overflowing to inf (Gemma 3's float16
// guard, as mlx-lm clips it). Differentiable in every input.
std::pair<array, array> residual_rms_norm(const array& residual, const array& y,
                                          const array& y_weight, const array& out_weight, float eps,
                                          StreamOrDevice s = {});

// Per-row RMS norm then rotary embedding, for each x_i of `xs` with its float32 weight
// weights[i]: rope(rms_norm_f32(x_i, weights[i], eps), dims, traditional, base, scale, offset)
// (Gemma's QK-norm before RoPE), all of them in one kernel. Every x_i is (B, ..., L, D_i)
// with the same B, L and dtype; offset as fast::rope takes it. Differentiable in xs and weights.
std::vector<array> rms_norm_rope(const std::vector<array>& xs, const std::vector<array>& weights,
                                 float eps, int dims, bool traditional, float base, float scale,
                                 const array& offset, StreamOrDevice s = {});
std::vector<array> rms_norm_rope(const std::vector<array>& xs, const std::vector<array>& weights,
                                 float eps, int dims, bool traditional, float base, float scale,
                                 int offset, StreamOrDevice s = {});

// A decode step's attention inputs in one kernel: rms_norm_rope({q, k}, ...) as above, and the
// rotated k and v (one position each: q, k, v are (B, H, 1, D), B and D shared) written into
// rows [0, B) of k_cache and v_cache (B' >= B, H_kv, C, D, the dtype of q) at position `slot`
// (an integer scalar; negative counts from the end, clamped into [0, C) as slice_update places
// its window) of their third axis. Returns {rotated q, k_cache, v_cache}. With in_place, the
// caches' buffers are written, as slice_update_in_place writes them (the caller guarantees
// nothing else reads their old values; row-contiguous caches); otherwise as slice_update: in
// place only when nothing else holds the buffer then. Differentiable in q, k, v, the weights
// and the caches.
std::vector<array> rms_norm_rope_kv_write(const array& q, const array& k, const array& v,
                                          const array& q_weight, const array& k_weight, float eps,
                                          int dims, bool traditional, float base, float scale,
                                          const array& offset, const array& k_cache,
                                          const array& v_cache, const array& slot,
                                          bool in_place = true, StreamOrDevice s = {});

// The gated tanh-GELU of an MLP (Gemma's gelu_pytorch_tanh): g = float32(gate),
// a = round_T(0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3)))), result
// round_T(a * up), T the dtype of gate and up (same shape, floating point).
// The same values as multiply(astype(gelu_approx(astype(gate, float32)), T), up)
// in one kernel. Differentiable in both inputs.
array gelu_approx_mul(const array& gate, const array& up, StreamOrDevice s = {});

// (x - mean) * rsqrt(var + eps) * weight + bias over the last axis.
array layer_norm(const array& x, const std::optional<array>& weight,
                 const std::optional<array>& bias, float eps, StreamOrDevice s = {});

// Rotary position embedding of x (..., L, D), ndim >= 3, over the first `dims`
// features of the last axis (the rest pass through). traditional rotates the
// interleaved pairs (2i, 2i+1), otherwise the halves (i, i + dims/2). Position
// of row l is offset + l (offset: an integer scalar or one per x.shape(0)); the
// angle is scale * position * base^(-2i/dims), or scale * position / freqs[i]
// when freqs (dims/2 values) is given instead of base.
array rope(const array& x, int dims, bool traditional, std::optional<float> base, float scale,
           int offset, const std::optional<array>& freqs = std::nullopt, StreamOrDevice s = {});
array rope(const array& x, int dims, bool traditional, std::optional<float> base, float scale,
           const array& offset, const std::optional<array>& freqs = std::nullopt,
           StreamOrDevice s = {});

// softmax(scale * Q K^T + mask) V for queries (B, Hq, Lq, D), keys (B, Hkv, Lk, D)
// and values (B, Hkv, Lk, Dv) with Hq a multiple of Hkv (grouped-query heads).
// mask_mode: "" (no mask, or mask_arr when given), "array" (mask_arr) or
// "causal": query i sees keys j <= i + Lk - Lq (aligned to the end, as when
// the keys include a cache). mask_arr broadcasts to (B, Hq, Lq, Lk): a bool
// mask keeps the true entries, any other dtype is added to the scores.
// sinks (Hq,): one extra logit per head that joins the softmax denominator.
// sliding_window W (an mlxcpp extension for local-attention layers): query i
// also sees only keys j > i + Lk - Lq - W, i.e. the last W positions up to its
// own; combine it with "causal".
// A query row that sees no key at all gets the mean of all values (MLX masks
// with the lowest finite score rather than -inf).
array scaled_dot_product_attention(const array& queries, const array& keys, const array& values,
                                   float scale, const std::string& mask_mode = "",
                                   std::optional<array> mask_arr = {},
                                   const std::optional<array>& sinks = {},
                                   std::optional<int> sliding_window = std::nullopt,
                                   StreamOrDevice s = {});
// With an array mask (bool: keep, otherwise additive).
array scaled_dot_product_attention(const array& queries, const array& keys, const array& values,
                                   float scale, const array& mask, StreamOrDevice s = {});

}  // namespace mx::fast
