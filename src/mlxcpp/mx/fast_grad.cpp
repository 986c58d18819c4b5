// The unfused formulas of mx::fast and the rules that fall back on them: the
// derivatives of the backward primitives (second order), the jvp of attention
// and the batching of attention when the batch axis cannot be folded into the
// attention batch. Differentiating the plain formula with mx::vjp / mx::jvp
// keeps these rules correct by construction; they are off the training path,
// which stays on the fused primitives.
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>

#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/fast.h"
#include "mlxcpp/mx/transforms.h"

namespace mx::fast {

namespace {

using Fn = std::function<std::vector<array>(const std::vector<array>&)>;

// The working dtype of the formulas: 16-bit floats compute in float32.
Dtype compute_type(Dtype t) { return promote_types(t, float32); }

array lowest(Dtype t) {
  return t == float64 ? array(std::numeric_limits<double>::lowest(), float64)
                      : array(std::numeric_limits<float>::lowest(), float32);
}

// Substitutes the differentiated inputs (argnums) into the full input list.
Fn over_argnums(const Fn& composed, const std::vector<array>& primals,
                const std::vector<int>& argnums) {
  return [composed, primals, argnums](const std::vector<array>& xs) {
    std::vector<array> in = primals;
    for (size_t k = 0; k < argnums.size(); ++k) in[argnums[k]] = xs[k];
    return composed(in);
  };
}

std::vector<array> select(const std::vector<array>& primals, const std::vector<int>& argnums) {
  std::vector<array> out;
  out.reserve(argnums.size());
  for (int a : argnums) out.push_back(primals[a]);
  return out;
}

// A primitive's vjp rule computed by reverse-differentiating `composed`, a
// function of all its inputs returning all its outputs.
std::vector<array> vjp_via(const Fn& composed, const std::vector<array>& primals,
                           const std::vector<array>& cotangents, const std::vector<int>& argnums) {
  return vjp(over_argnums(composed, primals, argnums), select(primals, argnums), cotangents).second;
}

std::vector<array> jvp_via(const Fn& composed, const std::vector<array>& primals,
                           const std::vector<array>& tangents, const std::vector<int>& argnums) {
  return jvp(over_argnums(composed, primals, argnums), select(primals, argnums), tangents).second;
}

// The backward formulas: inputs are the forward inputs followed by the
// cotangent of the forward output, outputs the cotangents of the forward
// inputs that the matching backward primitive returns.
std::vector<array> rms_norm_backward(const std::vector<array>& in, float eps, bool has_weight,
                                     StreamOrDevice s) {
  std::vector<array> primals(in.begin(), in.end() - 1);
  Fn f = [&](const std::vector<array>& p) {
    return std::vector<array>{detail::rms_norm_composed(p, eps, has_weight, s)};
  };
  return vjp(f, primals, {in.back()}).second;
}

// LayerNormVJP takes no bias (its gradient does not depend on it), so the
// formula differentiates at a zero bias.
std::vector<array> layer_norm_backward(const std::vector<array>& in, float eps, bool has_weight,
                                       bool has_bias, StreamOrDevice s) {
  std::vector<array> primals(in.begin(), in.end() - 1);
  if (has_bias) primals.push_back(zeros({in[0].shape(-1)}, in[0].dtype(), s));
  Fn f = [&](const std::vector<array>& p) {
    return std::vector<array>{detail::layer_norm_composed(p, eps, has_weight, has_bias, s)};
  };
  return vjp(f, primals, {in.back()}).second;
}

// Cotangents of queries, keys and values only, as the fused backward gives.
std::vector<array> sdpa_backward(const std::vector<array>& in, float scale,
                                 const AttentionMask& mask, StreamOrDevice s) {
  std::vector<array> rest(in.begin(), in.end() - 1);
  Fn f = [&](const std::vector<array>& qkv) {
    std::vector<array> p = rest;
    for (size_t i = 0; i < 3; ++i) p[i] = qkv[i];
    return std::vector<array>{detail::sdpa_composed(p, scale, mask, s)};
  };
  return vjp(f, {in[0], in[1], in[2]}, {in.back()}).second;
}

}  // namespace

namespace detail {

array rms_norm_composed(const std::vector<array>& inputs, float eps, bool has_weight,
                        StreamOrDevice s) {
  Dtype t = inputs[0].dtype();
  Dtype c = compute_type(t);
  array x = astype(inputs[0], c, s);
  array ms = mean(square(x, s), -1, /*keepdims=*/true, s);
  array y = astype(multiply(x, rsqrt(add(ms, astype(array(eps), c, s), s), s), s), t, s);
  return has_weight ? multiply(y, inputs[1], s) : y;
}

array layer_norm_composed(const std::vector<array>& inputs, float eps, bool has_weight,
                          bool has_bias, StreamOrDevice s) {
  Dtype t = inputs[0].dtype();
  Dtype c = compute_type(t);
  array x = astype(inputs[0], c, s);
  array centered = subtract(x, mean(x, -1, /*keepdims=*/true, s), s);
  array variance = mean(square(centered, s), -1, /*keepdims=*/true, s);
  array y =
      astype(multiply(centered, rsqrt(add(variance, astype(array(eps), c, s), s), s), s), t, s);
  size_t i = 1;
  if (has_weight) y = multiply(y, inputs[i++], s);
  if (has_bias) y = add(y, inputs[i++], s);
  return y;
}

array sdpa_composed(const std::vector<array>& inputs, float scale, const AttentionMask& mask,
                    StreamOrDevice s) {
  Dtype t = inputs[0].dtype();
  Dtype c = compute_type(t);
  array q = astype(inputs[0], c, s);
  array k = astype(inputs[1], c, s);
  array v = astype(inputs[2], c, s);
  const int B = q.shape(0), Hq = q.shape(1), Lq = q.shape(2);
  const int Hkv = k.shape(1), Lk = k.shape(2);
  // Query head h reads key/value head h / rep (grouped-query attention).
  const int rep = Hq / std::max(Hkv, 1);
  if (rep > 1) {
    k = repeat(k, rep, 1, s);
    v = repeat(v, rep, 1, s);
  }
  array scores = multiply(matmul(q, swapaxes(k, -1, -2, s), s), astype(array(scale), c, s), s);

  size_t next = 3;
  std::optional<array> visible;
  if (mask.has_array) {
    const array& m = inputs[next++];
    if (m.dtype() == bool_) {
      visible = m;
    } else {
      scores = add(scores, astype(m, c, s), s);
    }
  }
  if (mask.causal || mask.window > 0) {
    // Queries sit at the end of the keys: query i has position i + Lk - Lq.
    array qpos = reshape(arange(Lk - Lq, Lk, s), {Lq, 1}, s);
    array kpos = reshape(arange(0, Lk, s), {1, Lk}, s);
    array keep = ones({Lq, Lk}, bool_, s);
    if (mask.causal) keep = less_equal(kpos, qpos, s);
    if (mask.window > 0) {
      keep = logical_and(keep, greater(kpos, subtract(qpos, array(mask.window), s), s), s);
    }
    visible = visible ? logical_and(*visible, keep, s) : keep;
  }
  // The lowest finite score rather than -inf: a row that sees no key averages
  // all values, as the fused kernel does.
  if (visible) scores = where(*visible, scores, lowest(c), s);

  array probs = [&] {
    if (!mask.has_sinks) return softmax(scores, -1, /*precise=*/true, s);
    array sink =
        broadcast_to(reshape(astype(inputs[next], c, s), {1, Hq, 1, 1}, s), {B, Hq, Lq, 1}, s);
    array p = softmax(concatenate({scores, sink}, -1, s), -1, /*precise=*/true, s);
    return slice(p, {0, 0, 0, 0}, {B, Hq, Lq, Lk}, s);
  }();
  return astype(matmul(probs, v, s), t, s);
}

}  // namespace detail

// ---------------------------------------------------------------- norms

std::vector<array> RMSNormVJP::vjp(const std::vector<array>& primals,
                                   const std::vector<array>& cotangents,
                                   const std::vector<int>& argnums, const std::vector<array>&) {
  Fn f = [this](const std::vector<array>& in) {
    return rms_norm_backward(in, eps_, has_weight_, stream());
  };
  return vjp_via(f, primals, cotangents, argnums);
}

std::vector<array> RMSNormVJP::jvp(const std::vector<array>& primals,
                                   const std::vector<array>& tangents,
                                   const std::vector<int>& argnums) {
  Fn f = [this](const std::vector<array>& in) {
    return rms_norm_backward(in, eps_, has_weight_, stream());
  };
  return jvp_via(f, primals, tangents, argnums);
}

std::vector<array> LayerNormVJP::vjp(const std::vector<array>& primals,
                                     const std::vector<array>& cotangents,
                                     const std::vector<int>& argnums, const std::vector<array>&) {
  Fn f = [this](const std::vector<array>& in) {
    return layer_norm_backward(in, eps_, has_weight_, has_bias_, stream());
  };
  return vjp_via(f, primals, cotangents, argnums);
}

std::vector<array> LayerNormVJP::jvp(const std::vector<array>& primals,
                                     const std::vector<array>& tangents,
                                     const std::vector<int>& argnums) {
  Fn f = [this](const std::vector<array>& in) {
    return layer_norm_backward(in, eps_, has_weight_, has_bias_, stream());
  };
  return jvp_via(f, primals, tangents, argnums);
}

// ---------------------------------------------------------------- attention

std::vector<array> ScaledDotProductAttentionVJP::vjp(const std::vector<array>& primals,
                                                     const std::vector<array>& cotangents,
                                                     const std::vector<int>& argnums,
                                                     const std::vector<array>&) {
  Fn f = [this](const std::vector<array>& in) {
    return sdpa_backward(in, scale_, mask_, stream());
  };
  return vjp_via(f, primals, cotangents, argnums);
}

std::vector<array> ScaledDotProductAttentionVJP::jvp(const std::vector<array>& primals,
                                                     const std::vector<array>& tangents,
                                                     const std::vector<int>& argnums) {
  Fn f = [this](const std::vector<array>& in) {
    return sdpa_backward(in, scale_, mask_, stream());
  };
  return jvp_via(f, primals, tangents, argnums);
}

std::vector<array> ScaledDotProductAttention::jvp(const std::vector<array>& primals,
                                                  const std::vector<array>& tangents,
                                                  const std::vector<int>& argnums) {
  Fn f = [this](const std::vector<array>& in) {
    return std::vector<array>{detail::sdpa_composed(in, scale_, mask_, stream())};
  };
  return jvp_via(f, primals, tangents, argnums);
}

// The batch axis folds into the attention batch (unmapped operands are
// broadcast along it), which keeps the fused kernel; only per-batch sinks,
// which index the heads, need the unfused formula mapped by vmap.
std::pair<std::vector<array>, std::vector<int>> ScaledDotProductAttention::vmap(
    const std::vector<array>& inputs, const std::vector<int>& axes) {
  if (mask_.has_sinks && axes.back() >= 0) {
    Fn f = [this](const std::vector<array>& in) {
      return std::vector<array>{detail::sdpa_composed(in, scale_, mask_, stream())};
    };
    return {mx::vmap(f, axes, {0})(inputs), {0}};
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (axes[i] >= 0 && (i < 3 || (mask_.has_array && i == 3)) && inputs[i].ndim() != 5) {
      throw std::invalid_argument(
          "[scaled_dot_product_attention] vmap needs rank-4 operands, got input " +
          std::to_string(i) + " with " + std::to_string(inputs[i].ndim() - 1) +
          " dimensions besides the mapped axis " + std::to_string(axes[i]));
    }
  }
  int n = 0;
  for (size_t i = 0; i < axes.size(); ++i) {
    if (axes[i] >= 0) {
      n = inputs[i].shape(axes[i]);
      break;
    }
  }
  const size_t folded = mask_.has_array ? 4 : 3;
  std::vector<array> in = inputs;
  for (size_t i = 0; i < folded; ++i) {
    array a = inputs[i];
    if (axes[i] >= 0) {
      a = moveaxis(a, axes[i], 0, stream());
    } else {
      Shape shape = a.shape();
      shape.insert(shape.begin(), n);
      a = broadcast_to(expand_dims(a, 0, stream()), shape, stream());
    }
    in[i] = reshape(a, {a.shape(0) * a.shape(1), a.shape(2), a.shape(3), a.shape(4)}, stream());
  }
  // The unmapped batch size of the queries (after the mapped axis moved out).
  const int batch = inputs[0].shape(axes[0] == 0 ? 1 : 0);
  const Shape& q = in[0].shape();
  Shape out_shape{q[0], q[1], q[2], in[2].shape(3)};
  Dtype t = in[0].dtype();
  array out(std::move(out_shape), t,
            std::make_shared<ScaledDotProductAttention>(stream(), scale_, mask_), std::move(in));
  return {{reshape(out, {n, batch, q[1], q[2], out.shape(3)}, stream())}, {0}};
}

}  // namespace mx::fast
