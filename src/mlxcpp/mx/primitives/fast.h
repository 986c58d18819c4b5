// Primitives of the fused ops in mx::fast. Each forward primitive has a fused
// backward primitive (its vjp), so training never falls back to the unfused
// graph. Rules off the hot path (higher-order derivatives, attention's jvp and
// some vmaps) differentiate or batch the unfused formulas in detail:: instead.
#pragma once

#include <optional>
#include <vector>

#include "mlxcpp/mx/primitive.h"

namespace mx::fast {

// inputs: x[, weight]. Normalizes the last axis.
// inputs: x (..., K) with one row, w_1 .. w_n (N_i, K). outputs: x @ w_i^T.
class GroupedLinear : public Primitive {
 public:
  explicit GroupedLinear(Stream s) : Primitive(s) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                       const std::vector<int>& axes) override;
  const char* name() const override { return "GroupedLinear"; }
  bool is_equivalent(const Primitive& other) const override {
    return dynamic_cast<const GroupedLinear*>(&other) != nullptr;
  }
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override;
};

class RMSNorm : public UnaryPrimitive {
 public:
  RMSNorm(Stream s, float eps, bool has_weight)
      : UnaryPrimitive(s), eps_(eps), has_weight_(has_weight) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                       const std::vector<int>& axes) override;
  const char* name() const override { return "RMSNorm"; }
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape()};
  }
  float eps() const { return eps_; }
  bool has_weight() const { return has_weight_; }

 private:
  float eps_;
  bool has_weight_;
};

// inputs: x[, weight], cotangent. outputs: dx[, dweight].
class RMSNormVJP : public Primitive {
 public:
  RMSNormVJP(Stream s, float eps, bool has_weight)
      : Primitive(s), eps_(eps), has_weight_(has_weight) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  const char* name() const override { return "RMSNormVJP"; }
  bool is_equivalent(const Primitive& other) const override;
  float eps() const { return eps_; }
  bool has_weight() const { return has_weight_; }

 private:
  float eps_;
  bool has_weight_;
};

// inputs: x[, weight][, bias].
class LayerNorm : public UnaryPrimitive {
 public:
  LayerNorm(Stream s, float eps, bool has_weight, bool has_bias)
      : UnaryPrimitive(s), eps_(eps), has_weight_(has_weight), has_bias_(has_bias) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                       const std::vector<int>& axes) override;
  const char* name() const override { return "LayerNorm"; }
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape()};
  }
  float eps() const { return eps_; }
  bool has_weight() const { return has_weight_; }
  bool has_bias() const { return has_bias_; }

 private:
  float eps_;
  bool has_weight_;
  bool has_bias_;
};

// inputs: x[, weight], cotangent. outputs: dx[, dweight][, dbias].
class LayerNormVJP : public Primitive {
 public:
  LayerNormVJP(Stream s, float eps, bool has_weight, bool has_bias)
      : Primitive(s), eps_(eps), has_weight_(has_weight), has_bias_(has_bias) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  const char* name() const override { return "LayerNormVJP"; }
  bool is_equivalent(const Primitive& other) const override;
  float eps() const { return eps_; }
  bool has_weight() const { return has_weight_; }
  bool has_bias() const { return has_bias_; }

 private:
  float eps_;
  bool has_weight_;
  bool has_bias_;
};

// inputs: x, offset (int32 scalar or (x.shape(0),))[, freqs (float32, dims/2)].
// forward = false applies the inverse rotation (the vjp).
class RoPE : public UnaryPrimitive {
 public:
  RoPE(Stream s, int dims, bool traditional, float base, float scale, bool forward)
      : UnaryPrimitive(s),
        dims_(dims),
        traditional_(traditional),
        base_(base),
        scale_(scale),
        forward_(forward) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                       const std::vector<int>& axes) override;
  const char* name() const override { return "RoPE"; }
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape()};
  }
  int dims() const { return dims_; }
  bool traditional() const { return traditional_; }
  float base() const { return base_; }
  float scale() const { return scale_; }
  bool forward() const { return forward_; }

 private:
  int dims_;
  bool traditional_;
  float base_;
  float scale_;
  bool forward_;
};

// What masks an attention primitive applies besides its array inputs.
struct AttentionMask {
  bool causal = false;
  int window = 0;  // 0: no sliding window
  bool has_array = false;
  bool has_sinks = false;
  bool operator==(const AttentionMask&) const = default;
};

// inputs: q, k, v[, mask (broadcast to (B, Hq, Lq, Lk))][, sinks (Hq,)].
class ScaledDotProductAttention : public UnaryPrimitive {
 public:
  ScaledDotProductAttention(Stream s, float scale, AttentionMask mask)
      : UnaryPrimitive(s), scale_(scale), mask_(mask) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                       const std::vector<int>& axes) override;
  const char* name() const override { return "ScaledDotProductAttention"; }
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override;
  float scale() const { return scale_; }
  const AttentionMask& mask() const { return mask_; }

 private:
  float scale_;
  AttentionMask mask_;
};

// inputs: the forward inputs, then the cotangent of the output.
// outputs: dq, dk, dv.
class ScaledDotProductAttentionVJP : public Primitive {
 public:
  ScaledDotProductAttentionVJP(Stream s, float scale, AttentionMask mask)
      : Primitive(s), scale_(scale), mask_(mask) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  const char* name() const override { return "ScaledDotProductAttentionVJP"; }
  bool is_equivalent(const Primitive& other) const override;
  float scale() const { return scale_; }
  const AttentionMask& mask() const { return mask_; }

 private:
  float scale_;
  AttentionMask mask_;
};

// inputs: x, weight (float32). fast::rms_norm_f32: the whole row in float32,
// one rounding to x's dtype at the end.
class RMSNormF32 : public UnaryPrimitive {
 public:
  RMSNormF32(Stream s, float eps) : UnaryPrimitive(s), eps_(eps) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                       const std::vector<int>& axes) override;
  const char* name() const override { return "RMSNormF32"; }
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape()};
  }
  float eps() const { return eps_; }

 private:
  float eps_;
};

// inputs: gate, up (same shape and dtype). fast::gelu_approx_mul.
class GeluApproxMul : public UnaryPrimitive {
 public:
  explicit GeluApproxMul(Stream s) : UnaryPrimitive(s) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                       const std::vector<int>& axes) override;
  const char* name() const override { return "GeluApproxMul"; }
  bool is_equivalent(const Primitive& other) const override {
    return dynamic_cast<const GeluApproxMul*>(&other) != nullptr;
  }
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape()};
  }
};

// inputs: residual, y, y_weight, out_weight (float32). outputs: h, normed h.
// fast::residual_rms_norm.
class ResidualRMSNorm : public Primitive {
 public:
  ResidualRMSNorm(Stream s, float eps) : Primitive(s), eps_(eps) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  const char* name() const override { return "ResidualRMSNorm"; }
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape(), inputs[0].shape()};
  }
  float eps() const { return eps_; }

 private:
  float eps_;
};

// inputs: x_1 .. x_n, w_1 .. w_n (float32), offset (int32 scalar or (B,)). outputs: the n
// normalized, rotated x_i. fast::rms_norm_rope.
class RMSNormRoPE : public Primitive {
 public:
  RMSNormRoPE(Stream s, float eps, int dims, bool traditional, float base, float scale)
      : Primitive(s),
        eps_(eps),
        dims_(dims),
        traditional_(traditional),
        base_(base),
        scale_(scale) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  const char* name() const override { return "RMSNormRoPE"; }
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override;
  float eps() const { return eps_; }
  int dims() const { return dims_; }
  bool traditional() const { return traditional_; }
  float base() const { return base_; }
  float scale() const { return scale_; }

 private:
  float eps_;
  int dims_;
  bool traditional_;
  float base_;
  float scale_;
};

// inputs: q, k, v, q_weight, k_weight, offset, k_cache, v_cache, slot. outputs: rotated q,
// k_cache and v_cache with this position written at slot (into their buffers when in_place,
// or when donated). fast::rms_norm_rope_kv_write.
class RMSNormRoPEKVWrite : public RMSNormRoPE {
 public:
  RMSNormRoPEKVWrite(Stream s, float eps, int dims, bool traditional, float base, float scale,
                     bool in_place)
      : RMSNormRoPE(s, eps, dims, traditional, base, scale), in_place_(in_place) {}
  bool in_place() const { return in_place_; }
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  const char* name() const override { return "RMSNormRoPEKVWrite"; }
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override {
    return {inputs[0].shape(), inputs[6].shape(), inputs[7].shape()};
  }

 private:
  bool in_place_;
};

namespace detail {

// The unfused formulas of the fused ops, built from ordinary ops over the
// inputs of the matching primitive (same order, same masks). 16-bit inputs
// compute in float32; results have the dtype of the first input.
array rms_norm_composed(const std::vector<array>& inputs, float eps, bool has_weight,
                        StreamOrDevice s = {});
array layer_norm_composed(const std::vector<array>& inputs, float eps, bool has_weight,
                          bool has_bias, StreamOrDevice s = {});
array sdpa_composed(const std::vector<array>& inputs, float scale, const AttentionMask& mask,
                    StreamOrDevice s = {});
// fast::rms_norm_f32 and fast::gelu_approx_mul from ordinary ops (inputs: x,
// weight and gate, up).
array rms_norm_f32_composed(const std::vector<array>& inputs, float eps, StreamOrDevice s = {});
array gelu_approx_mul_composed(const std::vector<array>& inputs, StreamOrDevice s = {});
// fast::residual_rms_norm ({h, normed h}) and fast::rms_norm_rope from ordinary ops and the
// unfused fast ops, over the inputs of the matching primitive.
std::vector<array> residual_rms_norm_composed(const std::vector<array>& inputs, float eps,
                                              StreamOrDevice s = {});
std::vector<array> rms_norm_rope_composed(const std::vector<array>& inputs, float eps, int dims,
                                          bool traditional, float base, float scale,
                                          StreamOrDevice s = {});
// fast::rms_norm_rope_kv_write from rms_norm_rope and slice updates (not in place).
// The start of rms_norm_rope_kv_write's window in its caches' axes 0 and 2: [0, slot].
array kv_write_start(const array& slot, StreamOrDevice s = {});
std::vector<array> rms_norm_rope_kv_write_composed(const std::vector<array>& inputs, float eps,
                                                   int dims, bool traditional, float base,
                                                   float scale, StreamOrDevice s = {});

}  // namespace detail

}  // namespace mx::fast
