// Fused ops that remove the casts and elementwise chains around a 16-bit
// model's norms and MLP activation (fast::rms_norm_f32, fast::gelu_approx_mul):
// argument checks, the graph node, and derivative / batching rules composed
// from ordinary ops (off the inference hot path).
#include <algorithm>
#include <cmath>
#include <functional>
#include <numbers>
#include <stdexcept>
#include <string>

#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/fast.h"
#include "mlxcpp/mx/transforms.h"

namespace mx::fast {

namespace {

using Fn = std::function<std::vector<array>(const std::vector<array>&)>;

[[noreturn]] void fail(const char* op, const std::string& msg) {
  throw std::invalid_argument(std::string("[") + op + "] " + msg);
}

// `composed` as a function of the inputs at argnums only, the others fixed.
Fn over_argnums(Fn composed, const std::vector<array>& primals, const std::vector<int>& argnums) {
  return [composed, primals, argnums](const std::vector<array>& xs) {
    std::vector<array> in = primals;
    for (size_t k = 0; k < argnums.size(); ++k) in[argnums[k]] = xs[k];
    return composed(in);
  };
}

std::vector<array> select(const std::vector<array>& primals, const std::vector<int>& argnums) {
  std::vector<array> out;
  for (int a : argnums) out.push_back(primals[a]);
  return out;
}

}  // namespace

namespace detail {

array rms_norm_f32_composed(const std::vector<array>& inputs, float eps, StreamOrDevice s) {
  const Dtype t = inputs[0].dtype();
  array x = t == float32 ? inputs[0] : astype(inputs[0], float32, s);
  array y = rms_norm_composed({x, inputs[1]}, eps, /*has_weight=*/true, s);
  return t == float32 ? y : astype(y, t, s);
}

array gelu_approx_mul_composed(const std::vector<array>& inputs, StreamOrDevice s) {
  const Dtype t = inputs[0].dtype();
  // float64 stays float64; everything else computes in float32.
  const Dtype c = t == float64 ? float64 : float32;
  array g = t == c ? inputs[0] : astype(inputs[0], c, s);
  auto k = [&](double v) { return array(static_cast<float>(v), c); };
  array inner = multiply(k(std::sqrt(2.0 / std::numbers::pi)),
                         add(g, multiply(k(0.044715), multiply(g, multiply(g, g, s), s), s), s), s);
  array a = multiply(multiply(k(0.5), g, s), add(k(1.0), tanh(inner, s), s), s);
  if (t != c) a = astype(a, t, s);
  return multiply(a, inputs[1], s);
}

std::vector<array> residual_rms_norm_composed(const std::vector<array>& inputs, float eps,
                                              StreamOrDevice s) {
  const array& residual = inputs[0];
  array a = rms_norm_f32(inputs[1], inputs[2], eps, s);
  array h = [&] {
    if (residual.dtype() != float16) return add(residual, a, s);
    // float16 saturates instead of overflowing (Gemma 3's guard, as mlx-lm clips it).
    array sum = add(astype(residual, float32, s), astype(a, float32, s), s);
    return astype(clip(sum, array(-65504.0f), array(65504.0f), s), float16, s);
  }();
  return {h, rms_norm_f32(h, inputs[3], eps, s)};
}

std::vector<array> rms_norm_rope_composed(const std::vector<array>& inputs, float eps, int dims,
                                          bool traditional, float base, float scale,
                                          StreamOrDevice s) {
  const size_t n = (inputs.size() - 1) / 2;
  const array& offset = inputs.back();
  std::vector<array> out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(rope(rms_norm_f32(inputs[i], inputs[n + i], eps, s), dims, traditional, base,
                       scale, offset, std::nullopt, s));
  }
  return out;
}

array kv_write_start(const array& slot, StreamOrDevice s) {
  return concatenate({zeros({1}, int32, s), reshape(astype(slot, int32, s), {1}, s)}, 0, s);
}

std::vector<array> rms_norm_rope_kv_write_composed(const std::vector<array>& inputs, float eps,
                                                   int dims, bool traditional, float base,
                                                   float scale, StreamOrDevice s) {
  auto qk = rms_norm_rope_composed({inputs[0], inputs[1], inputs[3], inputs[4], inputs[5]}, eps,
                                   dims, traditional, base, scale, s);
  const array at = kv_write_start(inputs[8], s);
  return {qk[0], slice_update(inputs[6], qk[1], at, {0, 2}, s),
          slice_update(inputs[7], inputs[2], at, {0, 2}, s)};
}

}  // namespace detail

// ---------------------------------------------------------------- rms_norm_f32

array rms_norm_f32(const array& x, const array& weight, float eps, StreamOrDevice s) {
  if (x.ndim() == 0) fail("rms_norm_f32", "x must have at least one dimension, got a scalar");
  if (!is_floating_point(x.dtype())) {
    fail("rms_norm_f32", "x needs a floating-point dtype, got " + dtype_name(x.dtype()));
  }
  if (weight.dtype() != float32) {
    fail("rms_norm_f32", "weight must be float32, got " + dtype_name(weight.dtype()));
  }
  if (weight.ndim() != 1 || weight.shape(0) != x.shape(-1)) {
    fail("rms_norm_f32", "weight must have shape (" + std::to_string(x.shape(-1)) +
                             ",) to match the last axis of x with shape " + shape_str(x.shape()) +
                             ", got " + shape_str(weight.shape()));
  }
  // float64 x keeps its precision through the ordinary path.
  if (x.dtype() == float64) {
    return detail::rms_norm_f32_composed({x, weight}, eps, s);
  }
  return array(x.shape(), x.dtype(), std::make_shared<RMSNormF32>(to_stream(s), eps), {x, weight});
}

bool RMSNormF32::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const RMSNormF32*>(&other);
  return o && o->eps_ == eps_;
}

std::vector<array> RMSNormF32::vjp(const std::vector<array>& primals,
                                   const std::vector<array>& cotangents,
                                   const std::vector<int>& argnums, const std::vector<array>&) {
  float eps = eps_;
  Stream st = stream();
  Fn f = [eps, st](const std::vector<array>& in) {
    return std::vector<array>{detail::rms_norm_f32_composed(in, eps, st)};
  };
  return mx::vjp(over_argnums(f, primals, argnums), select(primals, argnums), cotangents).second;
}

std::vector<array> RMSNormF32::jvp(const std::vector<array>& primals,
                                   const std::vector<array>& tangents,
                                   const std::vector<int>& argnums) {
  float eps = eps_;
  Stream st = stream();
  Fn f = [eps, st](const std::vector<array>& in) {
    return std::vector<array>{detail::rms_norm_f32_composed(in, eps, st)};
  };
  return mx::jvp(over_argnums(f, primals, argnums), select(primals, argnums), tangents).second;
}

std::pair<std::vector<array>, std::vector<int>> RMSNormF32::vmap(const std::vector<array>& inputs,
                                                                 const std::vector<int>& axes) {
  array x = axes[0] >= 0 ? moveaxis(inputs[0], axes[0], 0, stream()) : inputs[0];
  if (axes[1] < 0) return {{rms_norm_f32(x, inputs[1], eps_, stream())}, {0}};
  // A batched weight: normalize unweighted in float32, scale by the weight row
  // of each batch element, round once.
  array w = moveaxis(inputs[1], axes[1], 0, stream());
  if (axes[0] < 0)
    x = broadcast_to(
        expand_dims(x, 0, stream()),
        [&] {
          Shape sh = x.shape();
          sh.insert(sh.begin(), w.shape(0));
          return sh;
        }(),
        stream());
  Shape ws(x.ndim(), 1);
  ws[0] = w.shape(0);
  ws.back() = w.shape(1);
  array xf = x.dtype() == float32 ? x : astype(x, float32, stream());
  array y = multiply(fast::rms_norm(xf, std::nullopt, eps_, stream()), reshape(w, ws, stream()),
                     stream());
  return {{x.dtype() == float32 ? y : astype(y, x.dtype(), stream())}, {0}};
}

// ---------------------------------------------------------------- gelu_approx_mul

array gelu_approx_mul(const array& gate, const array& up, StreamOrDevice s) {
  if (gate.shape() != up.shape()) {
    fail("gelu_approx_mul", "gate and up must have the same shape, got " + shape_str(gate.shape()) +
                                " and " + shape_str(up.shape()));
  }
  if (gate.dtype() != up.dtype()) {
    fail("gelu_approx_mul", "gate and up must have the same dtype, got " +
                                dtype_name(gate.dtype()) + " and " + dtype_name(up.dtype()));
  }
  if (!is_floating_point(gate.dtype())) {
    fail("gelu_approx_mul", "needs a floating-point dtype, got " + dtype_name(gate.dtype()));
  }
  if (gate.dtype() == float64) return detail::gelu_approx_mul_composed({gate, up}, s);
  return array(gate.shape(), gate.dtype(), std::make_shared<GeluApproxMul>(to_stream(s)),
               {gate, up});
}

std::vector<array> GeluApproxMul::vjp(const std::vector<array>& primals,
                                      const std::vector<array>& cotangents,
                                      const std::vector<int>& argnums, const std::vector<array>&) {
  Stream st = stream();
  Fn f = [st](const std::vector<array>& in) {
    return std::vector<array>{detail::gelu_approx_mul_composed(in, st)};
  };
  return mx::vjp(over_argnums(f, primals, argnums), select(primals, argnums), cotangents).second;
}

std::vector<array> GeluApproxMul::jvp(const std::vector<array>& primals,
                                      const std::vector<array>& tangents,
                                      const std::vector<int>& argnums) {
  Stream st = stream();
  Fn f = [st](const std::vector<array>& in) {
    return std::vector<array>{detail::gelu_approx_mul_composed(in, st)};
  };
  return mx::jvp(over_argnums(f, primals, argnums), select(primals, argnums), tangents).second;
}

std::pair<std::vector<array>, std::vector<int>> GeluApproxMul::vmap(
    const std::vector<array>& inputs, const std::vector<int>& axes) {
  // Elementwise: bring both batch axes to the front (broadcasting an unbatched
  // input along it).
  int n = 0;
  for (int i = 0; i < 2; ++i) {
    if (axes[i] >= 0) n = inputs[i].shape(axes[i]);
  }
  std::vector<array> in;
  for (int i = 0; i < 2; ++i) {
    if (axes[i] >= 0) {
      in.push_back(moveaxis(inputs[i], axes[i], 0, stream()));
    } else {
      Shape sh = inputs[i].shape();
      sh.insert(sh.begin(), n);
      in.push_back(broadcast_to(expand_dims(inputs[i], 0, stream()), sh, stream()));
    }
  }
  return {{gelu_approx_mul(in[0], in[1], stream())}, {0}};
}

}  // namespace mx::fast

namespace mx::fast {

// ---------------------------------------------------------------- residual_rms_norm

namespace {

void check_norm_weight(const char* op, const char* what, const array& w, const array& x) {
  if (w.dtype() != float32) {
    fail(op, std::string(what) + " must be float32, got " + dtype_name(w.dtype()));
  }
  if (w.ndim() != 1 || w.shape(0) != x.shape(-1)) {
    fail(op, std::string(what) + " must have shape (" + std::to_string(x.shape(-1)) +
                 ",) to match the last axis of x with shape " + shape_str(x.shape()) + ", got " +
                 shape_str(w.shape()));
  }
}

}  // namespace

std::pair<array, array> residual_rms_norm(const array& residual, const array& y,
                                          const array& y_weight, const array& out_weight, float eps,
                                          StreamOrDevice s) {
  constexpr const char* kOp = "residual_rms_norm";
  if (residual.shape() != y.shape()) {
    fail(kOp, "residual and y must have the same shape, got " + shape_str(residual.shape()) +
                  " and " + shape_str(y.shape()));
  }
  if (residual.dtype() != y.dtype()) {
    fail(kOp, "residual and y must have the same dtype, got " + dtype_name(residual.dtype()) +
                  " and " + dtype_name(y.dtype()));
  }
  if (residual.ndim() == 0) fail(kOp, "x must have at least one dimension, got a scalar");
  if (!is_floating_point(residual.dtype())) {
    fail(kOp, "x needs a floating-point dtype, got " + dtype_name(residual.dtype()));
  }
  check_norm_weight(kOp, "y_weight", y_weight, y);
  check_norm_weight(kOp, "out_weight", out_weight, y);
  std::vector<array> inputs{residual, y, y_weight, out_weight};
  // float64 keeps its precision through the ordinary ops.
  if (residual.dtype() == float64) {
    auto out = detail::residual_rms_norm_composed(inputs, eps, s);
    return {out[0], out[1]};
  }
  auto out =
      array::make_arrays({residual.shape(), residual.shape()}, {residual.dtype(), residual.dtype()},
                         std::make_shared<ResidualRMSNorm>(to_stream(s), eps), inputs);
  return {out[0], out[1]};
}

bool ResidualRMSNorm::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const ResidualRMSNorm*>(&other);
  return o && o->eps_ == eps_;
}

std::vector<array> ResidualRMSNorm::vjp(const std::vector<array>& primals,
                                        const std::vector<array>& cotangents,
                                        const std::vector<int>& argnums,
                                        const std::vector<array>&) {
  float eps = eps_;
  Stream st = stream();
  Fn f = [eps, st](const std::vector<array>& in) {
    return detail::residual_rms_norm_composed(in, eps, st);
  };
  return mx::vjp(over_argnums(f, primals, argnums), select(primals, argnums), cotangents).second;
}

std::vector<array> ResidualRMSNorm::jvp(const std::vector<array>& primals,
                                        const std::vector<array>& tangents,
                                        const std::vector<int>& argnums) {
  float eps = eps_;
  Stream st = stream();
  Fn f = [eps, st](const std::vector<array>& in) {
    return detail::residual_rms_norm_composed(in, eps, st);
  };
  return mx::jvp(over_argnums(f, primals, argnums), select(primals, argnums), tangents).second;
}

// ---------------------------------------------------------------- rms_norm_rope

namespace {

// rms_norm_rope's argument checks (also fast::rms_norm_rope_kv_write's, under its name).
void check_norm_rope(const char* kOp, const std::vector<array>& xs,
                     const std::vector<array>& weights, int dims, const array& offset) {
  if (xs.empty()) fail(kOp, "needs at least one input");
  if (xs.size() != weights.size()) {
    fail(kOp, "needs one weight per input, got " + std::to_string(xs.size()) + " inputs and " +
                  std::to_string(weights.size()) + " weights");
  }
  const array& x0 = xs[0];
  for (size_t i = 0; i < xs.size(); ++i) {
    const array& x = xs[i];
    const std::string which = "xs[" + std::to_string(i) + "]";
    if (x.ndim() < 3) {
      fail(kOp, which + " must have at least 3 dimensions (..., L, D), got shape " +
                    shape_str(x.shape()));
    }
    if (!is_floating_point(x.dtype()) || x.dtype() != x0.dtype()) {
      fail(kOp, which + " has dtype " + dtype_name(x.dtype()) +
                    "; every input needs the same floating-point dtype (xs[0]: " +
                    dtype_name(x0.dtype()) + ")");
    }
    if (x.shape(0) != x0.shape(0) || x.shape(-2) != x0.shape(-2)) {
      fail(kOp, which + " has shape " + shape_str(x.shape()) + ", xs[0] " + shape_str(x0.shape()) +
                    ": the batch (first) and position (second last) "
                    "axes must agree");
    }
    if (dims <= 0 || dims % 2 != 0 || dims > x.shape(-1)) {
      fail(kOp, "dims must be even, positive and at most the last axis of " + which + " (" +
                    std::to_string(x.shape(-1)) + "), got " + std::to_string(dims));
    }
    check_norm_weight(kOp, ("weights[" + std::to_string(i) + "]").c_str(), weights[i], x);
  }
  if (!is_integral(offset.dtype())) {
    fail(kOp, "offset must be an integer, got dtype " + dtype_name(offset.dtype()));
  }
  if (offset.ndim() > 1 ||
      (offset.size() != 1 && offset.size() != static_cast<size_t>(x0.shape(0)))) {
    fail(kOp, "offset must be a scalar or have one entry per x.shape(0) = " +
                  std::to_string(x0.shape(0)) + ", got shape " + shape_str(offset.shape()));
  }
}

}  // namespace

std::vector<array> rms_norm_rope(const std::vector<array>& xs, const std::vector<array>& weights,
                                 float eps, int dims, bool traditional, float base, float scale,
                                 const array& offset, StreamOrDevice s) {
  check_norm_rope("rms_norm_rope", xs, weights, dims, offset);
  const array& x0 = xs[0];
  std::vector<array> inputs(xs.begin(), xs.end());
  inputs.insert(inputs.end(), weights.begin(), weights.end());
  inputs.push_back(astype(offset, int32, s));
  if (x0.dtype() == float64) {
    return detail::rms_norm_rope_composed(inputs, eps, dims, traditional, base, scale, s);
  }
  std::vector<Shape> shapes;
  for (const auto& x : xs) shapes.push_back(x.shape());
  return array::make_arrays(
      std::move(shapes), std::vector<Dtype>(xs.size(), x0.dtype()),
      std::make_shared<RMSNormRoPE>(to_stream(s), eps, dims, traditional, base, scale), inputs);
}

std::vector<array> rms_norm_rope(const std::vector<array>& xs, const std::vector<array>& weights,
                                 float eps, int dims, bool traditional, float base, float scale,
                                 int offset, StreamOrDevice s) {
  return rms_norm_rope(xs, weights, eps, dims, traditional, base, scale, array(offset, int32), s);
}

bool RMSNormRoPE::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const RMSNormRoPE*>(&other);
  return o && o->eps_ == eps_ && o->dims_ == dims_ && o->traditional_ == traditional_ &&
         o->base_ == base_ && o->scale_ == scale_;
}

std::vector<Shape> RMSNormRoPE::output_shapes(const std::vector<array>& inputs) {
  std::vector<Shape> shapes;
  for (size_t i = 0; i < (inputs.size() - 1) / 2; ++i) shapes.push_back(inputs[i].shape());
  return shapes;
}

namespace {

// The unfused function a derivative of RMSNormRoPE (or RMSNormRoPEKVWrite) goes through:
// `composed` with the primitive's parameters (rms_norm_f32, rope and slice_update have their
// own rules). Inputs `integer` (offset, slot) have no derivative: asking for one throws `error`.
using Composed = std::vector<array> (*)(const std::vector<array>&, float, int, bool, float, float,
                                        StreamOrDevice);
Fn rms_norm_rope_unfused(const RMSNormRoPE& p, const std::vector<int>& argnums,
                         std::initializer_list<int> integer, const char* error, Composed composed) {
  for (int a : argnums) {
    if (std::find(integer.begin(), integer.end(), a) != integer.end()) {
      throw std::invalid_argument(error);
    }
  }
  const float eps = p.eps(), base = p.base(), scale = p.scale();
  const int dims = p.dims();
  const bool trad = p.traditional();
  const Stream st = p.stream();
  return
      [=](const std::vector<array>& in) { return composed(in, eps, dims, trad, base, scale, st); };
}

Fn norm_rope_unfused(const RMSNormRoPE& p, size_t num_primals, const std::vector<int>& argnums) {
  return rms_norm_rope_unfused(p, argnums, {static_cast<int>(num_primals) - 1},
                               "[rms_norm_rope] has no derivative with respect to the offset",
                               &detail::rms_norm_rope_composed);
}

Fn kv_write_unfused(const RMSNormRoPE& p, const std::vector<int>& argnums) {
  return rms_norm_rope_unfused(p, argnums, {5, 8},
                               "[rms_norm_rope_kv_write] has no derivative with respect to the "
                               "offset or the slot",
                               &detail::rms_norm_rope_kv_write_composed);
}

}  // namespace

// ---------------------------------------------------------------- rms_norm_rope_kv_write

std::vector<array> rms_norm_rope_kv_write(const array& q, const array& k, const array& v,
                                          const array& q_weight, const array& k_weight, float eps,
                                          int dims, bool traditional, float base, float scale,
                                          const array& offset, const array& k_cache,
                                          const array& v_cache, const array& slot, bool in_place,
                                          StreamOrDevice s) {
  constexpr const char* kOp = "rms_norm_rope_kv_write";
  if (q.ndim() != 4 || q.shape(2) != 1) {
    fail(kOp, "q must be (B, H, 1, D), got shape " + shape_str(q.shape()));
  }
  const int B = q.shape(0), D = q.shape(3);
  if (k.ndim() != 4 || k.shape(0) != B || k.shape(2) != 1 || k.shape(3) != D ||
      v.shape() != k.shape()) {
    fail(kOp, "k and v must be (B, H_kv, 1, D) with q's B and D (q " + shape_str(q.shape()) +
                  "), got k " + shape_str(k.shape()) + ", v " + shape_str(v.shape()));
  }
  if (k_cache.ndim() != 4 || k_cache.shape(0) < B || k_cache.shape(1) != k.shape(1) ||
      k_cache.shape(3) != D || v_cache.shape() != k_cache.shape()) {
    fail(kOp, "k_cache and v_cache must be (B' >= B, H_kv, C, D) with k's B, H_kv and D (k " +
                  shape_str(k.shape()) + "), got " + shape_str(k_cache.shape()) + " and " +
                  shape_str(v_cache.shape()));
  }
  if (k.dtype() != q.dtype() || v.dtype() != q.dtype() || k_cache.dtype() != q.dtype() ||
      v_cache.dtype() != q.dtype()) {
    fail(kOp, "q, k, v and the caches need one dtype, got " + dtype_name(q.dtype()) + ", " +
                  dtype_name(k.dtype()) + ", " + dtype_name(v.dtype()) + ", " +
                  dtype_name(k_cache.dtype()) + ", " + dtype_name(v_cache.dtype()));
  }
  if (slot.size() != 1 || !is_integral(slot.dtype())) {
    fail(kOp, "slot must be an integer scalar, got shape " + shape_str(slot.shape()) +
                  " of dtype " + dtype_name(slot.dtype()));
  }
  check_norm_rope(kOp, {q, k}, {q_weight, k_weight}, dims, offset);
  if (q.dtype() == float64) {
    auto qk =
        rms_norm_rope({q, k}, {q_weight, k_weight}, eps, dims, traditional, base, scale, offset, s);
    const array at = detail::kv_write_start(slot, s);
    auto put = [&](const array& c, const array& x) {
      return in_place ? slice_update_in_place(c, x, at, {0, 2}, s)
                      : slice_update(c, x, at, {0, 2}, s);
    };
    return {qk[0], put(k_cache, qk[1]), put(v_cache, v)};
  }
  std::vector<array> inputs{q,        k,        v,
                            q_weight, k_weight, astype(offset, int32, s),
                            k_cache,  v_cache,  astype(reshape(slot, {}, s), int32, s)};
  return array::make_arrays({q.shape(), k_cache.shape(), v_cache.shape()},
                            {q.dtype(), q.dtype(), q.dtype()},
                            std::make_shared<RMSNormRoPEKVWrite>(
                                to_stream(s), eps, dims, traditional, base, scale, in_place),
                            inputs);
}

bool RMSNormRoPEKVWrite::is_equivalent(const Primitive& other) const {
  return typeid(other) == typeid(RMSNormRoPEKVWrite) && RMSNormRoPE::is_equivalent(other) &&
         static_cast<const RMSNormRoPEKVWrite&>(other).in_place_ == in_place_;
}

std::vector<array> RMSNormRoPEKVWrite::vjp(const std::vector<array>& primals,
                                           const std::vector<array>& cotangents,
                                           const std::vector<int>& argnums,
                                           const std::vector<array>&) {
  Fn f = kv_write_unfused(*this, argnums);
  return mx::vjp(over_argnums(f, primals, argnums), select(primals, argnums), cotangents).second;
}

std::vector<array> RMSNormRoPEKVWrite::jvp(const std::vector<array>& primals,
                                           const std::vector<array>& tangents,
                                           const std::vector<int>& argnums) {
  Fn f = kv_write_unfused(*this, argnums);
  return mx::jvp(over_argnums(f, primals, argnums), select(primals, argnums), tangents).second;
}

std::vector<array> RMSNormRoPE::vjp(const std::vector<array>& primals,
                                    const std::vector<array>& cotangents,
                                    const std::vector<int>& argnums, const std::vector<array>&) {
  Fn f = norm_rope_unfused(*this, primals.size(), argnums);
  return mx::vjp(over_argnums(f, primals, argnums), select(primals, argnums), cotangents).second;
}

std::vector<array> RMSNormRoPE::jvp(const std::vector<array>& primals,
                                    const std::vector<array>& tangents,
                                    const std::vector<int>& argnums) {
  Fn f = norm_rope_unfused(*this, primals.size(), argnums);
  return mx::jvp(over_argnums(f, primals, argnums), select(primals, argnums), tangents).second;
}

}  // namespace mx::fast
