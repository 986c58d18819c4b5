// The fused ops of mx::fast: argument checks, dtype promotion and the graph
// node; and the derivative / batching rules of their primitives.
#include "mlxcpp/mx/fast.h"

#include <sstream>
#include <typeinfo>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/fast.h"

namespace mx::fast {

namespace {

[[noreturn]] void fail(const char* op, const std::string& msg) {
  throw std::invalid_argument(std::string("[") + op + "] " + msg);
}

void check_param(const char* op, const char* what, const array& x, const std::optional<array>& p) {
  if (!p) return;
  if (p->ndim() != 1 || p->shape(0) != x.shape(-1)) {
    fail(op, std::string(what) + " must have shape (" + std::to_string(x.shape(-1)) +
                 ",) to match the last axis of x with shape " + shape_str(x.shape()) + ", got " +
                 shape_str(p->shape()));
  }
}

array cast(const array& a, Dtype d, StreamOrDevice s) {
  return a.dtype() == d ? a : astype(a, d, s);
}

// Returns the i-th tangent/cotangent selected by argnums, if input i is among them.
const array* pick(const std::vector<array>& values, const std::vector<int>& argnums, int i) {
  for (size_t k = 0; k < argnums.size(); ++k) {
    if (argnums[k] == i) return &values[k];
  }
  return nullptr;
}

array sum_all(const std::vector<array>& terms, StreamOrDevice s) {
  array acc = terms[0];
  for (size_t i = 1; i < terms.size(); ++i) acc = add(acc, terms[i], s);
  return acc;
}

// A batched 1-D parameter (batch axis `ax`) shaped to broadcast against an
// array of rank `rank` whose batch axis is 0.
array batched_param(const array& p, int ax, int rank, StreamOrDevice s) {
  array q = moveaxis(p, ax, 0, s);
  Shape shape(rank, 1);
  shape[0] = q.shape(0);
  shape.back() = q.shape(1);
  return reshape(q, shape, s);
}

}  // namespace

// ---------------------------------------------------------------- rms_norm

// ---- grouped_linear ----

namespace {

Shape with_last(Shape s, int n) {
  s.back() = n;
  return s;
}

}  // namespace

std::vector<array> grouped_linear(const array& x, const std::vector<array>& weights,
                                  StreamOrDevice s) {
  if (weights.empty()) fail("grouped_linear", "needs at least one weight matrix");
  if (x.ndim() == 0) fail("grouped_linear", "x must have at least one dimension, got a scalar");
  const int K = x.shape(-1);
  Dtype t = x.dtype();
  for (size_t i = 0; i < weights.size(); ++i) {
    const array& w = weights[i];
    if (w.ndim() != 2 || w.shape(1) != K) {
      fail("grouped_linear", "weight " + std::to_string(i) + " has shape " + shape_str(w.shape()) +
                                 "; expected (N, " + std::to_string(K) + ") for x of shape " +
                                 shape_str(x.shape()));
    }
    t = promote_types(t, w.dtype());
  }
  if (!is_floating_point(t)) {
    fail("grouped_linear", "needs a floating-point dtype, got " + dtype_name(t));
  }
  Stream st = to_stream(s);
  std::vector<array> out;
  // One row (decoding) is one fused pass on either device (on the GPU one launch for all the
  // matrices instead of a GEMM call each: decode steps are bound by launches); more rows are
  // GEMMs.
  if (x.size() != static_cast<size_t>(K) || K == 0) {
    for (const auto& w : weights) out.push_back(matmul(x, transpose(w, s), s));
    return out;
  }
  std::vector<array> inputs{cast(x, t, s)};
  std::vector<Shape> shapes;
  for (const auto& w : weights) {
    inputs.push_back(cast(w, t, s));
    shapes.push_back(with_last(x.shape(), w.shape(0)));
  }
  return array::make_arrays(std::move(shapes), std::vector<Dtype>(weights.size(), t),
                            std::make_shared<GroupedLinear>(st), std::move(inputs));
}

std::vector<Shape> GroupedLinear::output_shapes(const std::vector<array>& inputs) {
  std::vector<Shape> shapes;
  for (size_t i = 1; i < inputs.size(); ++i) {
    shapes.push_back(with_last(inputs[0].shape(), inputs[i].shape(0)));
  }
  return shapes;
}

std::vector<array> GroupedLinear::vjp(const std::vector<array>& primals,
                                      const std::vector<array>& cotangents,
                                      const std::vector<int>& argnums, const std::vector<array>&) {
  const array& x = primals[0];
  const int K = x.shape(-1);
  std::vector<array> grads;
  for (int a : argnums) {
    if (a == 0) {
      // dx = sum_i g_i @ w_i
      std::optional<array> dx;
      for (size_t i = 1; i < primals.size(); ++i) {
        array term = matmul(cotangents[i - 1], primals[i], stream());
        dx = dx ? add(*dx, term, stream()) : term;
      }
      grads.push_back(*dx);
    } else {
      // dw_i = g_i^T @ x over the flattened leading dims.
      const array& g = cotangents[a - 1];
      array g2 = reshape(g, {-1, g.shape(-1)}, stream());
      array x2 = reshape(x, {-1, K}, stream());
      grads.push_back(matmul(transpose(g2, stream()), x2, stream()));
    }
  }
  return grads;
}

std::vector<array> GroupedLinear::jvp(const std::vector<array>& primals,
                                      const std::vector<array>& tangents,
                                      const std::vector<int>& argnums) {
  // d(x @ w_i^T) = dx @ w_i^T + x @ dw_i^T
  std::vector<array> out;
  for (size_t i = 1; i < primals.size(); ++i) {
    std::optional<array> d;
    for (size_t j = 0; j < argnums.size(); ++j) {
      int a = argnums[j];
      if (a != 0 && a != static_cast<int>(i)) continue;
      array term = a == 0 ? matmul(tangents[j], transpose(primals[i], stream()), stream())
                          : matmul(primals[0], transpose(tangents[j], stream()), stream());
      d = d ? add(*d, term, stream()) : term;
    }
    out.push_back(d ? *d
                    : zeros(with_last(primals[0].shape(), primals[i].shape(0)), primals[0].dtype(),
                            stream()));
  }
  return out;
}

std::pair<std::vector<array>, std::vector<int>> GroupedLinear::vmap(
    const std::vector<array>& inputs, const std::vector<int>& axes) {
  // Batched: B copies of x (B, ..., K) against w_i (N_i, K) or (B, N_i, K);
  // an unbatched x is broadcast along the new axis.
  int B = 1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (axes[i] >= 0) B = inputs[i].shape(axes[i]);
  }
  array x = axes[0] >= 0 ? moveaxis(inputs[0], axes[0], 0, stream()) : inputs[0];
  if (axes[0] < 0) {
    Shape bs = x.shape();
    bs.insert(bs.begin(), B);
    x = broadcast_to(expand_dims(x, 0, stream()), bs, stream());
  }
  const int K = x.shape(-1);
  Shape mid(x.shape().begin() + 1, x.shape().end() - 1);
  std::vector<array> out;
  for (size_t i = 1; i < inputs.size(); ++i) {
    if (axes[i] < 0) {
      out.push_back(matmul(x, transpose(inputs[i], stream()), stream()));
      continue;
    }
    array w = moveaxis(inputs[i], axes[i], 0, stream());  // (B, N, K)
    array x3 = reshape(x, {B, -1, K}, stream());
    array y = matmul(x3, swapaxes(w, 1, 2, stream()), stream());  // (B, R, N)
    Shape os{B};
    os.insert(os.end(), mid.begin(), mid.end());
    os.push_back(w.shape(1));
    out.push_back(reshape(y, os, stream()));
  }
  return {out, std::vector<int>(out.size(), 0)};
}

array rms_norm(const array& x, const std::optional<array>& weight, float eps, StreamOrDevice s) {
  if (x.ndim() == 0) fail("rms_norm", "x must have at least one dimension, got a scalar");
  check_param("rms_norm", "weight", x, weight);
  Dtype t = weight ? promote_types(x.dtype(), weight->dtype()) : x.dtype();
  if (!is_floating_point(t)) {
    fail("rms_norm", "needs a floating-point dtype, got " + dtype_name(t));
  }
  std::vector<array> inputs{cast(x, t, s)};
  if (weight) inputs.push_back(cast(*weight, t, s));
  return array(x.shape(), t, std::make_shared<RMSNorm>(to_stream(s), eps, weight.has_value()),
               std::move(inputs));
}

bool RMSNorm::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const RMSNorm*>(&other);
  return o && o->eps_ == eps_ && o->has_weight_ == has_weight_;
}

bool RMSNormVJP::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const RMSNormVJP*>(&other);
  return o && o->eps_ == eps_ && o->has_weight_ == has_weight_;
}

std::vector<array> RMSNorm::vjp(const std::vector<array>& primals,
                                const std::vector<array>& cotangents,
                                const std::vector<int>& argnums, const std::vector<array>&) {
  std::vector<Shape> shapes{primals[0].shape()};
  std::vector<Dtype> dtypes{primals[0].dtype()};
  if (has_weight_) {
    shapes.push_back(primals[1].shape());
    dtypes.push_back(primals[1].dtype());
  }
  std::vector<array> inputs = primals;
  inputs.push_back(cast(cotangents[0], primals[0].dtype(), stream()));
  auto grads = array::make_arrays(
      shapes, dtypes, std::make_shared<RMSNormVJP>(stream(), eps_, has_weight_), inputs);
  std::vector<array> out;
  for (int a : argnums) out.push_back(grads.at(a));
  return out;
}

// The Jacobian with respect to x is diag(w) S with S symmetric, so its
// product with a tangent is w times the vjp (without weight) of that tangent.
std::vector<array> RMSNorm::jvp(const std::vector<array>& primals,
                                const std::vector<array>& tangents,
                                const std::vector<int>& argnums) {
  const array& x = primals[0];
  std::vector<array> terms;
  if (const array* tx = pick(tangents, argnums, 0)) {
    auto st = array::make_arrays({x.shape()}, {x.dtype()},
                                 std::make_shared<RMSNormVJP>(stream(), eps_, false),
                                 {x, cast(*tx, x.dtype(), stream())})[0];
    terms.push_back(has_weight_ ? multiply(st, primals[1], stream()) : st);
  }
  if (const array* tw = pick(tangents, argnums, 1)) {
    array normed(x.shape(), x.dtype(), std::make_shared<RMSNorm>(stream(), eps_, false), {x});
    terms.push_back(multiply(normed, *tw, stream()));
  }
  return {sum_all(terms, stream())};
}

std::pair<std::vector<array>, std::vector<int>> RMSNorm::vmap(const std::vector<array>& inputs,
                                                              const std::vector<int>& axes) {
  array x = axes[0] >= 0 ? moveaxis(inputs[0], axes[0], 0, stream()) : inputs[0];
  bool w_batched = has_weight_ && axes[1] >= 0;
  if (!w_batched) {
    std::vector<array> in{x};
    if (has_weight_) in.push_back(inputs[1]);
    return {{array(x.shape(), x.dtype(), std::make_shared<RMSNorm>(stream(), eps_, has_weight_),
                   std::move(in))},
            {0}};
  }
  array normed(x.shape(), x.dtype(), std::make_shared<RMSNorm>(stream(), eps_, false), {x});
  int rank = static_cast<int>(x.ndim()) + (axes[0] >= 0 ? 0 : 1);
  return {{multiply(normed, batched_param(inputs[1], axes[1], rank, stream()), stream())}, {0}};
}

// ---------------------------------------------------------------- layer_norm

array layer_norm(const array& x, const std::optional<array>& weight,
                 const std::optional<array>& bias, float eps, StreamOrDevice s) {
  if (x.ndim() == 0) fail("layer_norm", "x must have at least one dimension, got a scalar");
  check_param("layer_norm", "weight", x, weight);
  check_param("layer_norm", "bias", x, bias);
  Dtype t = x.dtype();
  if (weight) t = promote_types(t, weight->dtype());
  if (bias) t = promote_types(t, bias->dtype());
  if (!is_floating_point(t)) {
    fail("layer_norm", "needs a floating-point dtype, got " + dtype_name(t));
  }
  std::vector<array> inputs{cast(x, t, s)};
  if (weight) inputs.push_back(cast(*weight, t, s));
  if (bias) inputs.push_back(cast(*bias, t, s));
  return array(x.shape(), t,
               std::make_shared<LayerNorm>(to_stream(s), eps, weight.has_value(), bias.has_value()),
               std::move(inputs));
}

bool LayerNorm::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const LayerNorm*>(&other);
  return o && o->eps_ == eps_ && o->has_weight_ == has_weight_ && o->has_bias_ == has_bias_;
}

bool LayerNormVJP::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const LayerNormVJP*>(&other);
  return o && o->eps_ == eps_ && o->has_weight_ == has_weight_ && o->has_bias_ == has_bias_;
}

std::vector<array> LayerNorm::vjp(const std::vector<array>& primals,
                                  const std::vector<array>& cotangents,
                                  const std::vector<int>& argnums, const std::vector<array>&) {
  // Outputs follow the inputs: dx[, dweight][, dbias].
  std::vector<Shape> shapes;
  std::vector<Dtype> dtypes;
  for (auto& p : primals) {
    shapes.push_back(p.shape());
    dtypes.push_back(p.dtype());
  }
  std::vector<array> inputs{primals[0]};
  if (has_weight_) inputs.push_back(primals[1]);
  inputs.push_back(cast(cotangents[0], primals[0].dtype(), stream()));
  auto grads = array::make_arrays(
      shapes, dtypes, std::make_shared<LayerNormVJP>(stream(), eps_, has_weight_, has_bias_),
      inputs);
  std::vector<array> out;
  for (int a : argnums) out.push_back(grads.at(a));
  return out;
}

std::vector<array> LayerNorm::jvp(const std::vector<array>& primals,
                                  const std::vector<array>& tangents,
                                  const std::vector<int>& argnums) {
  const array& x = primals[0];
  std::vector<array> terms;
  if (const array* tx = pick(tangents, argnums, 0)) {
    auto st = array::make_arrays({x.shape()}, {x.dtype()},
                                 std::make_shared<LayerNormVJP>(stream(), eps_, false, false),
                                 {x, cast(*tx, x.dtype(), stream())})[0];
    terms.push_back(has_weight_ ? multiply(st, primals[1], stream()) : st);
  }
  if (has_weight_) {
    if (const array* tw = pick(tangents, argnums, 1)) {
      array normed(x.shape(), x.dtype(), std::make_shared<LayerNorm>(stream(), eps_, false, false),
                   {x});
      terms.push_back(multiply(normed, *tw, stream()));
    }
  }
  if (has_bias_) {
    if (const array* tb = pick(tangents, argnums, has_weight_ ? 2 : 1)) {
      terms.push_back(broadcast_to(*tb, x.shape(), stream()));
    }
  }
  return {sum_all(terms, stream())};
}

std::pair<std::vector<array>, std::vector<int>> LayerNorm::vmap(const std::vector<array>& inputs,
                                                                const std::vector<int>& axes) {
  array x = axes[0] >= 0 ? moveaxis(inputs[0], axes[0], 0, stream()) : inputs[0];
  bool params_batched = false;
  for (size_t i = 1; i < inputs.size(); ++i) params_batched |= axes[i] >= 0;
  if (!params_batched) {
    std::vector<array> in{x};
    in.insert(in.end(), inputs.begin() + 1, inputs.end());
    return {
        {array(x.shape(), x.dtype(),
               std::make_shared<LayerNorm>(stream(), eps_, has_weight_, has_bias_), std::move(in))},
        {0}};
  }
  int rank = static_cast<int>(x.ndim()) + (axes[0] >= 0 ? 0 : 1);
  auto param = [&](size_t i) {
    return axes[i] >= 0 ? batched_param(inputs[i], axes[i], rank, stream()) : inputs[i];
  };
  array y(x.shape(), x.dtype(), std::make_shared<LayerNorm>(stream(), eps_, false, false), {x});
  size_t i = 1;
  if (has_weight_) y = multiply(y, param(i++), stream());
  if (has_bias_) y = add(y, param(i++), stream());
  return {{y}, {0}};
}

// ---------------------------------------------------------------- rope

namespace {

array rope_impl(std::vector<array> inputs, int dims, bool traditional, float base, float scale,
                StreamOrDevice s) {
  const array& x = inputs[0];
  const array& offset = inputs[1];
  if (x.ndim() < 3) {
    fail("rope",
         "x must have at least 3 dimensions (..., L, D), got shape " + shape_str(x.shape()));
  }
  if (!is_floating_point(x.dtype())) {
    fail("rope", "x must have a floating-point dtype, got " + dtype_name(x.dtype()));
  }
  if (dims <= 0 || dims % 2 != 0 || dims > x.shape(-1)) {
    fail("rope", "dims must be even, positive and at most the last axis of x (" +
                     std::to_string(x.shape(-1)) + "), got " + std::to_string(dims));
  }
  if (!is_integral(offset.dtype())) {
    fail("rope", "offset must be an integer, got dtype " + dtype_name(offset.dtype()));
  }
  if (offset.ndim() > 1 ||
      (offset.size() != 1 && offset.size() != static_cast<size_t>(x.shape(0)))) {
    fail("rope", "offset must be a scalar or have one entry per x.shape(0) = " +
                     std::to_string(x.shape(0)) + ", got shape " + shape_str(offset.shape()));
  }
  inputs[1] = cast(offset, int32, s);
  if (inputs.size() > 2 && (inputs[2].ndim() != 1 || inputs[2].shape(0) != dims / 2)) {
    fail("rope", "freqs must have shape (" + std::to_string(dims / 2) + ",), got " +
                     shape_str(inputs[2].shape()));
  }
  Shape shape = x.shape();
  Dtype t = x.dtype();
  return array(std::move(shape), t,
               std::make_shared<RoPE>(to_stream(s), dims, traditional, base, scale, true),
               std::move(inputs));
}

}  // namespace

array rope(const array& x, int dims, bool traditional, std::optional<float> base, float scale,
           const array& offset, const std::optional<array>& freqs, StreamOrDevice s) {
  std::vector<array> inputs{x, offset};
  if (freqs) {
    if (base) fail("rope", "give either base or freqs, not both");
    inputs.push_back(cast(*freqs, float32, s));
  } else if (!base) {
    fail("rope", "needs base or freqs");
  }
  return rope_impl(std::move(inputs), dims, traditional, base.value_or(1.0f), scale, s);
}

array rope(const array& x, int dims, bool traditional, std::optional<float> base, float scale,
           int offset, const std::optional<array>& freqs, StreamOrDevice s) {
  return rope(x, dims, traditional, base, scale, array(offset, int32), freqs, s);
}

bool RoPE::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const RoPE*>(&other);
  return o && o->dims_ == dims_ && o->traditional_ == traditional_ && o->base_ == base_ &&
         o->scale_ == scale_ && o->forward_ == forward_;
}

// A rotation is orthogonal: its transpose is the inverse rotation.
std::vector<array> RoPE::vjp(const std::vector<array>& primals,
                             const std::vector<array>& cotangents, const std::vector<int>& argnums,
                             const std::vector<array>&) {
  if (argnums.size() != 1 || argnums[0] != 0) {
    throw std::invalid_argument("[rope] has a vjp with respect to x only, not offset or freqs");
  }
  std::vector<array> inputs = primals;
  inputs[0] = cotangents[0];
  return {array(cotangents[0].shape(), cotangents[0].dtype(),
                std::make_shared<RoPE>(stream(), dims_, traditional_, base_, scale_, !forward_),
                std::move(inputs))};
}

std::vector<array> RoPE::jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                             const std::vector<int>& argnums) {
  if (argnums.size() != 1 || argnums[0] != 0) {
    throw std::invalid_argument("[rope] has a jvp with respect to x only, not offset or freqs");
  }
  std::vector<array> inputs = primals;
  inputs[0] = tangents[0];
  return {array(tangents[0].shape(), tangents[0].dtype(),
                std::make_shared<RoPE>(stream(), dims_, traditional_, base_, scale_, forward_),
                std::move(inputs))};
}

// The batch axis goes in front of the positions; right after axis 0 when the
// offsets index axis 0 of x.
std::pair<std::vector<array>, std::vector<int>> RoPE::vmap(const std::vector<array>& inputs,
                                                           const std::vector<int>& axes) {
  for (size_t i = 1; i < axes.size(); ++i) {
    if (axes[i] >= 0) {
      throw std::invalid_argument("[rope] vmap over offset or freqs is not supported");
    }
  }
  int to = inputs[1].size() == 1 ? 0 : 1;
  std::vector<array> in = inputs;
  in[0] = moveaxis(inputs[0], axes[0], to, stream());
  Shape shape = in[0].shape();
  Dtype t = in[0].dtype();
  return {{array(std::move(shape), t,
                 std::make_shared<RoPE>(stream(), dims_, traditional_, base_, scale_, forward_),
                 std::move(in))},
          {to}};
}

// ---------------------------------------------------------------- attention

namespace {
constexpr const char* kSdpa = "scaled_dot_product_attention";
}

array scaled_dot_product_attention(const array& queries, const array& keys, const array& values,
                                   float scale, const std::string& mask_mode,
                                   std::optional<array> mask_arr, const std::optional<array>& sinks,
                                   std::optional<int> sliding_window, StreamOrDevice s) {
  for (const array* a : {&queries, &keys, &values}) {
    if (a->ndim() != 4) {
      fail(kSdpa, "queries, keys and values must have rank 4 (B, H, L, D), got shapes " +
                      shape_str(queries.shape()) + ", " + shape_str(keys.shape()) + ", " +
                      shape_str(values.shape()));
    }
  }
  if (mask_mode != "" && mask_mode != "causal" && mask_mode != "array") {
    fail(kSdpa, "mask_mode must be '', 'causal' or 'array', got '" + mask_mode + "'");
  }
  if (mask_mode == "causal" && mask_arr) {
    fail(kSdpa, "mask_mode 'causal' takes no mask array");
  }
  if (mask_mode == "array" && !mask_arr) fail(kSdpa, "mask_mode 'array' needs a mask array");
  const Shape &qs = queries.shape(), &ks = keys.shape(), &vs = values.shape();
  auto shapes = [&] {
    return "queries " + shape_str(qs) + ", keys " + shape_str(ks) + ", values " + shape_str(vs);
  };
  if (ks[0] != qs[0] || vs[0] != qs[0]) fail(kSdpa, "batch sizes differ: " + shapes());
  if (ks[3] != qs[3]) fail(kSdpa, "queries and keys must have the same head dim: " + shapes());
  if (ks[1] != vs[1] || ks[2] != vs[2]) {
    fail(kSdpa, "keys and values must have the same heads and length: " + shapes());
  }
  if (ks[1] == 0 ? qs[1] != 0 : qs[1] % ks[1] != 0) {
    fail(kSdpa, "the query heads must be a multiple of the key/value heads: " + shapes());
  }
  if (sliding_window && *sliding_window <= 0) {
    fail(kSdpa, "sliding_window must be positive, got " + std::to_string(*sliding_window));
  }
  Dtype t = promote_types(promote_types(queries.dtype(), keys.dtype()), values.dtype());
  if (!is_floating_point(t)) fail(kSdpa, "needs floating-point inputs, got " + dtype_name(t));

  AttentionMask mode;
  mode.causal = mask_mode == "causal";
  mode.window = sliding_window.value_or(0);
  std::vector<array> inputs{cast(queries, t, s), cast(keys, t, s), cast(values, t, s)};
  Shape out_shape{qs[0], qs[1], qs[2], vs[3]};
  if (mask_arr) {
    const array& m = *mask_arr;
    Shape target{qs[0], qs[1], qs[2], ks[2]};
    bool ok = m.ndim() <= 4;
    for (size_t i = 0; ok && i < m.ndim(); ++i) {
      int d = m.shape(static_cast<int>(i) - static_cast<int>(m.ndim()));
      int want = target[4 - m.ndim() + i];
      ok = d == want || d == 1;
    }
    if (!ok) {
      fail(kSdpa, "mask of shape " + shape_str(m.shape()) + " does not broadcast to the scores " +
                      shape_str(target) + " of " + shapes());
    }
    if (m.dtype() != bool_ && promote_types(m.dtype(), t) != t) {
      fail(kSdpa,
           "an additive mask must promote to " + dtype_name(t) + ", got " + dtype_name(m.dtype()));
    }
    inputs.push_back(broadcast_to(m.dtype() == bool_ ? m : cast(m, t, s), target, s));
    mode.has_array = true;
  }
  if (sinks) {
    if (sinks->ndim() != 1 || sinks->shape(0) != qs[1]) {
      fail(kSdpa, "sinks must have shape (" + std::to_string(qs[1]) +
                      ",), one per query head, got " + shape_str(sinks->shape()));
    }
    if (promote_types(sinks->dtype(), t) != t) {
      fail(kSdpa, "sinks must promote to " + dtype_name(t) + ", got " + dtype_name(sinks->dtype()));
    }
    inputs.push_back(cast(*sinks, t, s));
    mode.has_sinks = true;
  }
  return array(std::move(out_shape), t,
               std::make_shared<ScaledDotProductAttention>(to_stream(s), scale, mode),
               std::move(inputs));
}

array scaled_dot_product_attention(const array& queries, const array& keys, const array& values,
                                   float scale, const array& mask, StreamOrDevice s) {
  return scaled_dot_product_attention(queries, keys, values, scale, "array", mask, std::nullopt,
                                      std::nullopt, s);
}

bool ScaledDotProductAttention::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const ScaledDotProductAttention*>(&other);
  return o && o->scale_ == scale_ && o->mask_ == mask_;
}

bool ScaledDotProductAttentionVJP::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const ScaledDotProductAttentionVJP*>(&other);
  return o && o->scale_ == scale_ && o->mask_ == mask_;
}

std::vector<Shape> ScaledDotProductAttention::output_shapes(const std::vector<array>& inputs) {
  const Shape& q = inputs[0].shape();
  return {{q[0], q[1], q[2], inputs[2].shape(3)}};
}

std::vector<array> ScaledDotProductAttention::vjp(const std::vector<array>& primals,
                                                  const std::vector<array>& cotangents,
                                                  const std::vector<int>& argnums,
                                                  const std::vector<array>&) {
  for (int a : argnums) {
    if (a > 2) {
      throw std::invalid_argument(
          "[scaled_dot_product_attention] has a vjp with respect to queries, keys and values "
          "only, not the mask or the sinks");
    }
  }
  std::vector<array> inputs = primals;
  inputs.push_back(cast(cotangents[0], primals[0].dtype(), stream()));
  auto grads = array::make_arrays(
      {primals[0].shape(), primals[1].shape(), primals[2].shape()},
      {primals[0].dtype(), primals[1].dtype(), primals[2].dtype()},
      std::make_shared<ScaledDotProductAttentionVJP>(stream(), scale_, mask_), inputs);
  std::vector<array> out;
  for (int a : argnums) out.push_back(grads[a]);
  return out;
}

}  // namespace mx::fast
