// quantize, dequantize and quantized_matmul: argument checks, output shapes
// and dtypes, and the derivative rules of QuantizedMatmul.
#include "mlxcpp/mx/quantized.h"

#include <functional>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/fast.h"
#include "mlxcpp/mx/primitives/quantized.h"
#include "mlxcpp/mx/transforms.h"

namespace mx {

namespace {

// Checks the (group_size, bits) pair a mode allows (formats.md 2.1).
void check_params(const char* op, QuantizationMode mode, int group_size, int bits) {
  std::string where = std::string("[") + op + "] ";
  if (mode == QuantizationMode::affine) {
    if (group_size != 32 && group_size != 64 && group_size != 128) {
      throw std::invalid_argument(where + "affine quantization supports group sizes 32, 64 and " +
                                  "128, got " + std::to_string(group_size));
    }
    if (bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 6 && bits != 8) {
      throw std::invalid_argument(where + "affine quantization supports 2, 3, 4, 5, 6 and 8 " +
                                  "bits, got " + std::to_string(bits));
    }
    return;
  }
  int want_g = mode == QuantizationMode::nvfp4 ? 16 : 32;
  int want_b = mode == QuantizationMode::mxfp8 ? 8 : 4;
  if (group_size != want_g || bits != want_b) {
    throw std::invalid_argument(where + quantization_mode_name(mode) + " quantization needs " +
                                "group_size " + std::to_string(want_g) + " and bits " +
                                std::to_string(want_b) + ", got group_size " +
                                std::to_string(group_size) + " and bits " + std::to_string(bits));
  }
}

// The unpacked length of a packed last dim of `packed` words.
int64_t unpacked_len(int64_t packed, int bits) { return packed * 32 / bits; }

// Checks scales (and biases) against the packed weights `w` and returns the
// number of values a packed row holds.
void check_scales(const char* op, const array& w, const array& scales,
                  const std::optional<array>& biases, int group_size, int bits,
                  QuantizationMode mode) {
  std::string where = std::string("[") + op + "] ";
  if (w.dtype() != uint32) {
    throw std::invalid_argument(where + "the quantized weights must be uint32, got " +
                                dtype_name(w.dtype()) + " (shape " + shape_str(w.shape()) + ")");
  }
  if (w.ndim() < 1) {
    throw std::invalid_argument(where + "the quantized weights must have at least one dimension");
  }
  int64_t len = unpacked_len(w.shape(-1), bits);
  Shape want = w.shape();
  if (len % group_size != 0) {
    throw std::invalid_argument(where + "the quantized weights of shape " + shape_str(w.shape()) +
                                " hold rows of " + std::to_string(len) + " values at " +
                                std::to_string(bits) + " bits, not a multiple of group_size " +
                                std::to_string(group_size));
  }
  want.back() = static_cast<ShapeElem>(len / group_size);
  if (scales.shape() != want) {
    throw std::invalid_argument(where + "scales of shape " + shape_str(scales.shape()) +
                                " do not match the quantized weights of shape " +
                                shape_str(w.shape()) + " (expected " + shape_str(want) +
                                " for group_size " + std::to_string(group_size) + " and bits " +
                                std::to_string(bits) + ")");
  }
  if (mode == QuantizationMode::affine) {
    if (!biases) {
      throw std::invalid_argument(where + "affine quantization needs biases");
    }
    if (!is_floating_point(scales.dtype())) {
      throw std::invalid_argument(where + "affine scales must be floating point, got " +
                                  dtype_name(scales.dtype()));
    }
    if (biases->shape() != scales.shape() || biases->dtype() != scales.dtype()) {
      throw std::invalid_argument(where + "biases of shape " + shape_str(biases->shape()) + " (" +
                                  dtype_name(biases->dtype()) + ") must match scales of shape " +
                                  shape_str(scales.shape()) + " (" + dtype_name(scales.dtype()) +
                                  ")");
    }
  } else {
    if (biases) {
      throw std::invalid_argument(where + quantization_mode_name(mode) +
                                  " quantization has no biases, but biases were given");
    }
    if (scales.dtype() != uint8) {
      throw std::invalid_argument(where + quantization_mode_name(mode) +
                                  " scales must be uint8, got " + dtype_name(scales.dtype()));
    }
  }
}

}  // namespace

QuantizationMode quantization_mode_from_string(const std::string& op, const std::string& mode) {
  if (mode == "affine") return QuantizationMode::affine;
  if (mode == "mxfp4") return QuantizationMode::mxfp4;
  if (mode == "mxfp8") return QuantizationMode::mxfp8;
  if (mode == "nvfp4") return QuantizationMode::nvfp4;
  throw std::invalid_argument("[" + op + "] unknown quantization mode '" + mode +
                              "' (expected affine, mxfp4, mxfp8 or nvfp4)");
}

const char* quantization_mode_name(QuantizationMode mode) {
  switch (mode) {
    case QuantizationMode::affine:
      return "affine";
    case QuantizationMode::mxfp4:
      return "mxfp4";
    case QuantizationMode::mxfp8:
      return "mxfp8";
    case QuantizationMode::nvfp4:
      return "nvfp4";
  }
  return "?";
}

std::vector<array> quantize(const array& w, int group_size, int bits, const std::string& mode,
                            StreamOrDevice s) {
  QuantizationMode m = quantization_mode_from_string("quantize", mode);
  check_params("quantize", m, group_size, bits);
  if (w.ndim() < 2) {
    throw std::invalid_argument("[quantize] needs an array of at least 2 dimensions, got shape " +
                                shape_str(w.shape()));
  }
  if (w.dtype() != float32 && w.dtype() != float16 && w.dtype() != bfloat16) {
    throw std::invalid_argument("[quantize] needs float32, float16 or bfloat16 weights, got " +
                                dtype_name(w.dtype()));
  }
  if (w.shape(-1) % group_size != 0) {
    throw std::invalid_argument("[quantize] the last dimension of shape " + shape_str(w.shape()) +
                                " must be a multiple of group_size " + std::to_string(group_size));
  }
  Shape wq_shape = w.shape(), s_shape = w.shape();
  wq_shape.back() = static_cast<ShapeElem>(int64_t{w.shape(-1)} * bits / 32);
  s_shape.back() = w.shape(-1) / group_size;
  auto prim = std::make_shared<Quantize>(to_stream(s), group_size, bits, m);
  if (m == QuantizationMode::affine) {
    return array::make_arrays({wq_shape, s_shape, s_shape}, {uint32, w.dtype(), w.dtype()}, prim,
                              {w});
  }
  return array::make_arrays({wq_shape, s_shape}, {uint32, uint8}, prim, {w});
}

array dequantize(const array& wq, const array& scales, const std::optional<array>& biases,
                 int group_size, int bits, const std::string& mode, std::optional<Dtype> dtype,
                 StreamOrDevice s) {
  QuantizationMode m = quantization_mode_from_string("dequantize", mode);
  check_params("dequantize", m, group_size, bits);
  check_scales("dequantize", wq, scales, biases, group_size, bits, m);
  Dtype out = dtype ? *dtype : (m == QuantizationMode::affine ? scales.dtype() : bfloat16);
  if (!is_floating_point(out)) {
    throw std::invalid_argument("[dequantize] the output dtype must be floating point, got " +
                                dtype_name(out));
  }
  Shape shape = wq.shape();
  shape.back() = static_cast<ShapeElem>(unpacked_len(wq.shape(-1), bits));
  std::vector<array> inputs{wq, scales};
  if (biases) inputs.push_back(*biases);
  return array(shape, out, std::make_shared<Dequantize>(to_stream(s), group_size, bits, m),
               std::move(inputs));
}

array quantized_matmul(const array& x_in, const array& w, const array& scales,
                       const std::optional<array>& biases, bool transpose, int group_size, int bits,
                       const std::string& mode, StreamOrDevice s) {
  QuantizationMode m = quantization_mode_from_string("quantized_matmul", mode);
  check_params("quantized_matmul", m, group_size, bits);
  check_scales("quantized_matmul", w, scales, biases, group_size, bits, m);
  if (!is_floating_point(x_in.dtype())) {
    throw std::invalid_argument("[quantized_matmul] x must be floating point, got " +
                                dtype_name(x_in.dtype()));
  }
  if (w.ndim() < 2) {
    throw std::invalid_argument(
        "[quantized_matmul] the quantized matrix must have at least 2 dimensions, got shape " +
        shape_str(w.shape()));
  }
  if (x_in.ndim() < 1) {
    throw std::invalid_argument("[quantized_matmul] x must have at least one dimension");
  }
  int64_t wlen = unpacked_len(w.shape(-1), bits);
  int64_t K = transpose ? wlen : w.shape(-2);
  int64_t N = transpose ? w.shape(-2) : wlen;
  if (x_in.shape(-1) != K) {
    throw std::invalid_argument("[quantized_matmul] the last dimension of x (shape " +
                                shape_str(x_in.shape()) + ") must equal " + std::to_string(K) +
                                ", the " + (transpose ? "unpacked last" : "second-to-last") +
                                " dimension of the quantized matrix (" + "shape " +
                                shape_str(w.shape()) + ", " + std::to_string(bits) + " bits" +
                                (transpose ? ", transposed" : "") + ")");
  }
  Dtype dtype =
      m == QuantizationMode::affine ? promote_types(x_in.dtype(), scales.dtype()) : x_in.dtype();
  array x = x_in.dtype() == dtype ? x_in : astype(x_in, dtype, s);
  bool vec = x.ndim() == 1;
  if (vec) x = reshape(x, {1, static_cast<ShapeElem>(K)}, s);
  array wb = w, sb = scales;
  std::optional<array> bb = biases;
  if (w.ndim() > 2) {
    Shape xbatch(x.shape().begin(), x.shape().end() - 2),
        wbatch(w.shape().begin(), w.shape().end() - 2), batch;
    try {
      batch = broadcast_shapes(xbatch, wbatch);
    } catch (const std::invalid_argument&) {
      throw std::invalid_argument("[quantized_matmul] the batch dimensions of x (shape " +
                                  shape_str(x_in.shape()) + ") and w (shape " +
                                  shape_str(w.shape()) + ") cannot be broadcast together");
    }
    auto bcast = [&](const array& a) {
      Shape sh = batch;
      sh.push_back(a.shape(-2));
      sh.push_back(a.shape(-1));
      return a.shape() == sh ? a : broadcast_to(a, sh, s);
    };
    x = bcast(x);
    wb = bcast(w);
    sb = bcast(scales);
    if (bb) bb = bcast(*bb);
  }
  Shape shape = x.shape();
  shape.back() = static_cast<ShapeElem>(N);
  std::vector<array> inputs{x, wb, sb};
  if (bb) inputs.push_back(*bb);
  array out(shape, dtype,
            std::make_shared<QuantizedMatmul>(to_stream(s), group_size, bits, m, transpose),
            std::move(inputs));
  return vec ? reshape(out, {static_cast<ShapeElem>(N)}, s) : out;
}

std::vector<array> grouped_quantized_matmul(const array& x, const std::vector<array>& w,
                                            const std::vector<array>& scales,
                                            const std::vector<array>& biases, int group_size,
                                            int bits, StreamOrDevice s) {
  const char* op = "grouped_quantized_matmul";
  if (w.empty() || scales.size() != w.size() || biases.size() != w.size()) {
    throw std::invalid_argument(std::string("[") + op +
                                "] needs one or more matrices with one scales and one biases "
                                "array each, got " +
                                std::to_string(w.size()) + " / " + std::to_string(scales.size()) +
                                " / " + std::to_string(biases.size()));
  }
  std::vector<array> out;
  const bool few_rows = x.ndim() >= 1 && x.shape(-1) > 0 && x.size() / x.shape(-1) <= 8;
  // Each matrix alone first: the same checks and output dtype as quantized_matmul.
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i].ndim() != 2) {
      throw std::invalid_argument(std::string("[") + op + "] matrix " + std::to_string(i) +
                                  " must be 2-D, got shape " + shape_str(w[i].shape()));
    }
    if (i > 0 && (w[i].shape(1) != w[0].shape(1) || scales[i].dtype() != scales[0].dtype() ||
                  biases[i].dtype() != scales[0].dtype())) {
      throw std::invalid_argument(
          std::string("[") + op + "] matrix " + std::to_string(i) + " (shape " +
          shape_str(w[i].shape()) + ", scales " + dtype_name(scales[i].dtype()) +
          ") does not match matrix 0 (shape " + shape_str(w[0].shape()) + ", scales " +
          dtype_name(scales[0].dtype()) + ") in packed width or scale dtype");
    }
    if (!few_rows || w.size() == 1) {
      out.push_back(
          quantized_matmul(x, w[i], scales[i], biases[i], true, group_size, bits, "affine", s));
    } else {
      check_scales(op, w[i], scales[i], biases[i], group_size, bits, QuantizationMode::affine);
    }
  }
  if (!out.empty()) return out;
  check_params(op, QuantizationMode::affine, group_size, bits);
  const int64_t K = unpacked_len(w[0].shape(-1), bits);
  if (!is_floating_point(x.dtype()) || x.shape(-1) != K) {
    throw std::invalid_argument(std::string("[") + op + "] x (shape " + shape_str(x.shape()) +
                                ", " + dtype_name(x.dtype()) +
                                ") must be floating point with last dimension " +
                                std::to_string(K) + " (matrix 0: shape " + shape_str(w[0].shape()) +
                                ", " + std::to_string(bits) + " bits)");
  }
  const Dtype dtype = promote_types(x.dtype(), scales[0].dtype());
  std::vector<array> inputs{x.dtype() == dtype ? x : astype(x, dtype, s)};
  std::vector<Shape> shapes;
  for (size_t i = 0; i < w.size(); ++i) {
    inputs.push_back(w[i]);
    inputs.push_back(scales[i]);
    inputs.push_back(biases[i]);
    Shape sh = x.shape();
    sh.back() = w[i].shape(0);
    shapes.push_back(sh);
  }
  return array::make_arrays(
      std::move(shapes), std::vector<Dtype>(w.size(), dtype),
      std::make_shared<GroupedQuantizedMatmul>(to_stream(s), group_size, bits), std::move(inputs));
}

array quantized_geglu(const array& x, const std::vector<array>& w, const std::vector<array>& scales,
                      const std::vector<array>& biases, int group_size, int bits,
                      StreamOrDevice s) {
  if (w.size() != 2) {
    throw std::invalid_argument("[quantized_geglu] needs two matrices (gate, up), got " +
                                std::to_string(w.size()));
  }
  if (w[0].ndim() >= 1 && w[1].ndim() >= 1 && w[0].shape(0) != w[1].shape(0)) {
    throw std::invalid_argument("[quantized_geglu] gate (shape " + shape_str(w[0].shape()) +
                                ") and up (shape " + shape_str(w[1].shape()) +
                                ") must have the same rows");
  }
  // Every check of the grouped product; its two outputs share one primitive when x has few
  // rows: the same inputs then take the fused primitive (the unfused nodes are never run).
  std::vector<array> gu = grouped_quantized_matmul(x, w, scales, biases, group_size, bits, s);
  if (gu[0].has_primitive() && gu[0].primitive_ptr() == gu[1].primitive_ptr() &&
      dynamic_cast<const GroupedQuantizedMatmul*>(gu[0].primitive_ptr().get()) &&
      gu[0].dtype() != float64) {
    return array(gu[0].shape(), gu[0].dtype(),
                 std::make_shared<GroupedQuantizedMatmul>(to_stream(s), group_size, bits, true),
                 gu[0].inputs());
  }
  return fast::gelu_approx_mul(gu[0], gu[1], s);
}

namespace {

// The unfused graph of a ResidualNormQuantizedMatmul as a function of all its inputs.
std::vector<array> residual_norm_products(const std::vector<array>& in, float eps, int group_size,
                                          int bits, bool geglu, const Stream& s) {
  auto [h, x] = fast::residual_rms_norm(in[0], in[1], in[2], in[3], eps, s);
  std::vector<array> w, sc, b;
  for (size_t i = 4; i + 2 < in.size(); i += 3) {
    w.push_back(in[i]);
    sc.push_back(in[i + 1]);
    b.push_back(in[i + 2]);
  }
  std::vector<array> out{h};
  if (geglu) {
    out.push_back(quantized_geglu(x, w, sc, b, group_size, bits, s));
  } else {
    for (array& p : grouped_quantized_matmul(x, w, sc, b, group_size, bits, s)) {
      out.push_back(std::move(p));
    }
  }
  return out;
}

}  // namespace

std::vector<array> residual_norm_quantized_matmul(const array& residual, const array& y,
                                                  const array& y_weight, const array& x_weight,
                                                  float eps, const std::vector<array>& w,
                                                  const std::vector<array>& scales,
                                                  const std::vector<array>& biases, int group_size,
                                                  int bits, bool geglu, StreamOrDevice s) {
  if (scales.size() != w.size() || biases.size() != w.size()) {
    throw std::invalid_argument(
        "[residual_norm_quantized_matmul] needs one scales and one biases "
        "array a matrix, got " +
        std::to_string(w.size()) + " / " + std::to_string(scales.size()) + " / " +
        std::to_string(biases.size()));
  }
  // The unfused graph first: every check of both ops, and the answer for many rows.
  std::vector<array> in{residual, y, y_weight, x_weight};
  for (size_t i = 0; i < w.size(); ++i) {
    in.push_back(w[i]);
    in.push_back(scales[i]);
    in.push_back(biases[i]);
  }
  std::vector<array> out = residual_norm_products(in, eps, group_size, bits, geglu, to_stream(s));
  // One row whose norms are one ResidualRMSNorm feeding one grouped product directly (its x,
  // the norm's other output, with no cast between): the same inputs take the fused primitive.
  const array& h = out[0];
  const array& p0 = out[1];
  auto* gq =
      p0.has_primitive() ? dynamic_cast<const GroupedQuantizedMatmul*>(&p0.primitive()) : nullptr;
  const bool one_row = h.ndim() >= 1 && h.shape(-1) > 0 && h.size() == size_t(h.shape(-1));
  if (!one_row || !gq || gq->geglu() != geglu || !h.has_primitive() ||
      !dynamic_cast<const fast::ResidualRMSNorm*>(&h.primitive()) ||
      !p0.inputs()[0].has_primitive() || p0.inputs()[0].primitive_ptr() != h.primitive_ptr()) {
    return out;
  }
  std::vector<array> inputs = h.inputs();
  inputs.insert(inputs.end(), p0.inputs().begin() + 1, p0.inputs().end());
  std::vector<Shape> shapes;
  std::vector<Dtype> dtypes;
  for (const array& a : out) {
    shapes.push_back(a.shape());
    dtypes.push_back(a.dtype());
  }
  return array::make_arrays(
      std::move(shapes), dtypes,
      std::make_shared<ResidualNormQuantizedMatmul>(to_stream(s), eps, group_size, bits, geglu),
      std::move(inputs));
}

array gather_qmm(const array& x, const array& w, const array& scales,
                 const std::optional<array>& biases, std::optional<array> lhs_indices,
                 std::optional<array> rhs_indices, bool transpose, int group_size, int bits,
                 const std::string& mode, bool sorted_indices, StreamOrDevice s) {
  if (x.ndim() < 2 || w.ndim() < 2) {
    throw std::invalid_argument("[gather_qmm] x (shape " + shape_str(x.shape()) +
                                ") and w (shape " + shape_str(w.shape()) +
                                ") need at least 2 dimensions");
  }
  if (scales.ndim() != w.ndim() || (biases && biases->ndim() != w.ndim())) {
    throw std::invalid_argument("[gather_qmm] scales (shape " + shape_str(scales.shape()) +
                                ") and biases must have the rank of w (shape " +
                                shape_str(w.shape()) + ")");
  }
  auto flat = [&](const array& a) { return reshape(a, {-1, a.shape(-2), a.shape(-1)}, s); };
  auto check = [&](const char* what, const array& idx) {
    if (!is_integral(idx.dtype())) {
      throw std::invalid_argument(std::string("[gather_qmm] ") + what + " must be integers, got " +
                                  dtype_name(idx.dtype()));
    }
  };
  array xf = flat(x), wf = flat(w), sf = flat(scales);
  std::optional<array> bf;
  if (biases) bf = flat(*biases);
  array li = lhs_indices ? *lhs_indices : arange(xf.shape(0), uint32, s);
  array ri = rhs_indices ? *rhs_indices : arange(wf.shape(0), uint32, s);
  check("lhs_indices", li);
  check("rhs_indices", ri);
  std::vector<array> idx;
  try {
    idx = broadcast_arrays({li, ri}, s);
  } catch (const std::invalid_argument&) {
    throw std::invalid_argument("[gather_qmm] lhs_indices (shape " + shape_str(li.shape()) +
                                ") and rhs_indices (shape " + shape_str(ri.shape()) +
                                ") cannot be broadcast together");
  }
  array xs = take(xf, idx[0], 0, s);
  array ws = take(wf, idx[1], 0, s);
  array ss = take(sf, idx[1], 0, s);
  std::optional<array> bs;
  if (bf) bs = take(*bf, idx[1], 0, s);
  (void)sorted_indices;  // the gathers above need no ordering
  return quantized_matmul(xs, ws, ss, bs, transpose, group_size, bits, mode, s);
}

// ---------------------------------------------------------------- primitives' rules

bool Quantize::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const Quantize*>(&other);
  return o && o->group_size_ == group_size_ && o->bits_ == bits_ && o->mode_ == mode_;
}

bool Dequantize::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const Dequantize*>(&other);
  return o && o->group_size_ == group_size_ && o->bits_ == bits_ && o->mode_ == mode_;
}

bool QuantizedMatmul::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const QuantizedMatmul*>(&other);
  return o && o->group_size_ == group_size_ && o->bits_ == bits_ && o->mode_ == mode_ &&
         o->transpose_ == transpose_;
}

// The product is linear in x and, jointly, in (scales, biases): the tangent is
// the product with the tangent of x plus the product with the tangents of the
// scales and biases (zeros where not differentiated).
std::vector<array> QuantizedMatmul::jvp(const std::vector<array>& primals,
                                        const std::vector<array>& tangents,
                                        const std::vector<int>& argnums) {
  const array& x = primals[0];
  const array& w = primals[1];
  std::optional<array> b;
  if (primals.size() > 3) b = primals[3];
  std::string mode = quantization_mode_name(mode_);
  std::optional<array> tx, ts, tb;
  for (size_t i = 0; i < argnums.size(); ++i) {
    switch (argnums[i]) {
      case 0:
        tx = tangents[i];
        break;
      case 1:
        throw std::invalid_argument("[QuantizedMatmul::jvp] the quantized weights w (shape " +
                                    shape_str(w.shape()) +
                                    ") have no derivative; only x, scales and biases do");
      case 2:
        ts = tangents[i];
        break;
      default:
        tb = tangents[i];
    }
  }
  if ((ts || tb) && mode_ != QuantizationMode::affine) {
    throw std::invalid_argument(
        "[QuantizedMatmul::jvp] the derivative with respect to the scales is defined for affine "
        "quantization only, not " +
        mode);
  }
  std::optional<array> out;
  if (tx) {
    out = quantized_matmul(*tx, w, primals[2], b, transpose_, group_size_, bits_, mode, stream());
  }
  if (ts || tb) {
    array s0 = ts ? *ts : zeros_like(primals[2], stream());
    array b0 = tb ? *tb : zeros_like(primals[2], stream());
    array t = quantized_matmul(x, w, s0, b0, transpose_, group_size_, bits_, mode, stream());
    out = out ? add(*out, t, stream()) : t;
  }
  return {*out};
}

// A batch axis of x becomes a leading dim of the product against the same
// matrix; batching the quantized matrix itself is not supported.
std::pair<std::vector<array>, std::vector<int>> QuantizedMatmul::vmap(
    const std::vector<array>& inputs, const std::vector<int>& axes) {
  for (size_t i = 1; i < axes.size(); ++i) {
    if (axes[i] >= 0) {
      throw std::invalid_argument(
          "[QuantizedMatmul::vmap] only x can be batched, not the quantized matrix, scales or "
          "biases");
    }
  }
  std::optional<array> b;
  if (inputs.size() > 3) b = inputs[3];
  array x = axes[0] >= 0 ? moveaxis(inputs[0], axes[0], 0, stream()) : inputs[0];
  return {{quantized_matmul(x, inputs[1], inputs[2], b, transpose_, group_size_, bits_,
                            quantization_mode_name(mode_), stream())},
          {axes[0] >= 0 ? 0 : -1}};
}

// As MLX: the gradient flows to x (a quantized matmul against the other
// orientation of the same weights) and, in affine mode, to the scales and
// biases through the gradient of the dequantized weights; the packed codes
// themselves have none.
std::vector<array> QuantizedMatmul::vjp(const std::vector<array>& primals,
                                        const std::vector<array>& cotangents,
                                        const std::vector<int>& argnums,
                                        const std::vector<array>&) {
  const array& x = primals[0];
  const array& w = primals[1];
  const array& scales = primals[2];
  std::optional<array> b;
  if (primals.size() > 3) b = primals[3];
  const array& g = cotangents[0];
  std::string mode = quantization_mode_name(mode_);
  std::vector<array> out;
  std::optional<array> dw;  // gradient of the dequantized matrix, shaped like it
  for (int a : argnums) {
    if (a == 0) {
      out.push_back(
          quantized_matmul(g, w, scales, b, !transpose_, group_size_, bits_, mode, stream()));
    } else if (a == 1) {
      throw std::invalid_argument(
          "[QuantizedMatmul::vjp] cannot compute the gradient with respect to the quantized "
          "weights w (shape " +
          shape_str(w.shape()) + "); only x, scales and biases have one");
    } else {
      if (mode_ != QuantizationMode::affine) {
        throw std::invalid_argument(
            "[QuantizedMatmul::vjp] the gradient with respect to the scales is defined for "
            "affine quantization only, not " +
            mode);
      }
      if (!dw) {
        // (..., M, N) cotangents and (..., M, K) inputs; the rows of a 2-D w
        // gather every leading dim of x.
        array g2 = g, x2 = x;
        if (w.ndim() == 2) {
          g2 = reshape(g, {-1, g.shape(-1)}, stream());
          x2 = reshape(x, {-1, x.shape(-1)}, stream());
        }
        array d = transpose_ ? matmul(swapaxes(g2, -1, -2, stream()), x2, stream())
                             : matmul(swapaxes(x2, -1, -2, stream()), g2, stream());
        Shape grouped = d.shape();
        grouped.back() /= group_size_;
        grouped.push_back(group_size_);
        dw = reshape(d, grouped, stream());
      }
      if (a == 2) {
        // The codes as values: dequantize with unit scales and zero biases.
        // (Constants, not ones_like(scales): higher derivatives must not
        // flow into them.) Products in float32, or float64 for float64.
        Dtype ct = dw->dtype() == float64 ? float64 : float32;
        array q = dequantize(w, ones(scales.shape(), scales.dtype(), stream()),
                             zeros(scales.shape(), scales.dtype(), stream()), group_size_, bits_,
                             mode, ct, stream());
        Shape grouped = q.shape();
        grouped.back() /= group_size_;
        grouped.push_back(group_size_);
        array ds = sum(multiply(astype(*dw, ct, stream()), reshape(q, grouped, stream()), stream()),
                       -1, false, stream());
        out.push_back(astype(ds, scales.dtype(), stream()));
      } else {
        out.push_back(astype(sum(*dw, -1, false, stream()), scales.dtype(), stream()));
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- grouped products

// Matrix i's QuantizedMatmul and its inputs (x, w_i, scales_i, biases_i).
namespace {
std::vector<array> group_inputs(const std::vector<array>& inputs, size_t i) {
  return {inputs[0], inputs[1 + 3 * i], inputs[2 + 3 * i], inputs[3 + 3 * i]};
}

// A geglu primitive's gate and up products, as the plain grouped primitive's outputs.
std::vector<array> unfused_products(const std::vector<array>& primals, int group_size, int bits,
                                    const Stream& s) {
  std::vector<Shape> shapes;
  for (size_t i = 1; i < primals.size(); i += 3) {
    Shape sh = primals[0].shape();
    sh.back() = primals[i].shape(0);
    shapes.push_back(sh);
  }
  const std::vector<Dtype> dtypes(shapes.size(), primals[0].dtype());
  return array::make_arrays(std::move(shapes), dtypes,
                            std::make_shared<GroupedQuantizedMatmul>(s, group_size, bits), primals);
}
}  // namespace

bool GroupedQuantizedMatmul::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const GroupedQuantizedMatmul*>(&other);
  return o && o->group_size_ == group_size_ && o->bits_ == bits_ && o->geglu_ == geglu_;
}

std::vector<Shape> GroupedQuantizedMatmul::output_shapes(const std::vector<array>& inputs) {
  if (geglu_) {
    Shape sh = inputs[0].shape();
    sh.back() = inputs[1].shape(0);
    return {sh};
  }
  std::vector<Shape> shapes;
  for (size_t i = 1; i < inputs.size(); i += 3) {
    Shape sh = inputs[0].shape();
    sh.back() = inputs[i].shape(0);
    shapes.push_back(sh);
  }
  return shapes;
}

// Each output is matrix i's QuantizedMatmul: its rules, per matrix, with
// argnums renumbered to that matrix's inputs (x is 0, w_i 1, scales_i 2,
// biases_i 3); x's cotangent sums over the matrices.
std::vector<array> GroupedQuantizedMatmul::vjp(const std::vector<array>& primals,
                                               const std::vector<array>& cotangents,
                                               const std::vector<int>& argnums,
                                               const std::vector<array>& outputs) {
  if (geglu_) {
    // The rules of the graph it fuses: the two products, then gelu_approx_mul's.
    GroupedQuantizedMatmul plain(stream(), group_size_, bits_);
    auto gu = unfused_products(primals, group_size_, bits_, stream());
    fast::GeluApproxMul act(stream());
    auto d = act.vjp(gu, cotangents, {0, 1}, {});
    return plain.vjp(primals, d, argnums, outputs);
  }
  std::vector<array> out;
  for (int a : argnums) {
    if (a == 0) {
      std::optional<array> dx;
      for (size_t i = 0; i < cotangents.size(); ++i) {
        QuantizedMatmul p(stream(), group_size_, bits_, QuantizationMode::affine, true);
        array d = p.vjp(group_inputs(primals, i), {cotangents[i]}, {0}, {})[0];
        dx = dx ? add(*dx, d, stream()) : d;
      }
      out.push_back(*dx);
    } else {
      const size_t i = static_cast<size_t>(a - 1) / 3;
      QuantizedMatmul p(stream(), group_size_, bits_, QuantizationMode::affine, true);
      out.push_back(p.vjp(group_inputs(primals, i), {cotangents[i]}, {1 + (a - 1) % 3}, {})[0]);
    }
  }
  return out;
}

std::vector<array> GroupedQuantizedMatmul::jvp(const std::vector<array>& primals,
                                               const std::vector<array>& tangents,
                                               const std::vector<int>& argnums) {
  if (geglu_) {
    GroupedQuantizedMatmul plain(stream(), group_size_, bits_);
    auto gu = unfused_products(primals, group_size_, bits_, stream());
    fast::GeluApproxMul act(stream());
    return act.jvp(gu, plain.jvp(primals, tangents, argnums), {0, 1});
  }
  std::vector<array> out;
  for (size_t i = 0; 1 + 3 * i < primals.size(); ++i) {
    std::vector<array> t;
    std::vector<int> local;
    for (size_t j = 0; j < argnums.size(); ++j) {
      const int a = argnums[j];
      if (a == 0 || static_cast<size_t>(a - 1) / 3 == i) {
        t.push_back(tangents[j]);
        local.push_back(a == 0 ? 0 : 1 + (a - 1) % 3);
      }
    }
    const auto in = group_inputs(primals, i);
    if (local.empty()) {
      Shape sh = in[0].shape();
      sh.back() = in[1].shape(0);
      out.push_back(zeros(sh, promote_types(in[0].dtype(), in[2].dtype()), stream()));
    } else {
      QuantizedMatmul p(stream(), group_size_, bits_, QuantizationMode::affine, true);
      out.push_back(p.jvp(in, t, local)[0]);
    }
  }
  return out;
}

// ---------------------------------------------------------- residual_norm_quantized_matmul

bool ResidualNormQuantizedMatmul::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const ResidualNormQuantizedMatmul*>(&other);
  return o && o->eps_ == eps_ && o->group_size_ == group_size_ && o->bits_ == bits_ &&
         o->geglu_ == geglu_;
}

std::vector<Shape> ResidualNormQuantizedMatmul::output_shapes(const std::vector<array>& inputs) {
  std::vector<Shape> shapes{inputs[0].shape()};
  for (size_t i = 4; i < inputs.size(); i += 3) {
    Shape sh = inputs[0].shape();
    sh.back() = inputs[i].shape(0);
    shapes.push_back(sh);
    if (geglu_) break;
  }
  return shapes;
}

// Derivatives: those of the graph it fuses (the norms' rules, then the products'), as functions
// of the inputs at argnums.
std::function<std::vector<array>(const std::vector<array>&)> ResidualNormQuantizedMatmul::unfused(
    const std::vector<array>& primals, const std::vector<int>& argnums) const {
  const float eps = eps_;
  const int gs = group_size_, bits = bits_;
  const bool geglu = geglu_;
  const Stream st = stream();
  return [=](const std::vector<array>& xs) {
    std::vector<array> in = primals;
    for (size_t k = 0; k < argnums.size(); ++k) in[argnums[k]] = xs[k];
    return residual_norm_products(in, eps, gs, bits, geglu, st);
  };
}

std::vector<array> ResidualNormQuantizedMatmul::vjp(const std::vector<array>& primals,
                                                    const std::vector<array>& cotangents,
                                                    const std::vector<int>& argnums,
                                                    const std::vector<array>&) {
  std::vector<array> sel;
  for (int a : argnums) sel.push_back(primals[a]);
  return mx::vjp(unfused(primals, argnums), sel, cotangents).second;
}

std::vector<array> ResidualNormQuantizedMatmul::jvp(const std::vector<array>& primals,
                                                    const std::vector<array>& tangents,
                                                    const std::vector<int>& argnums) {
  std::vector<array> sel;
  for (int a : argnums) sel.push_back(primals[a]);
  return mx::jvp(unfused(primals, argnums), sel, tangents).second;
}

}  // namespace mx
