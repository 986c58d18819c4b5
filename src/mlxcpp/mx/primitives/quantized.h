// Primitives of the quantized ops (mx/quantized.h). The layout rules (codes
// packed LSB first along the last axis, one scale per group) are in
// shared/spec/formats.md section 2; the CPU kernels are in
// backend/cpu/quantized*.cpp.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "mlxcpp/mx/primitive.h"

namespace mx {

enum class QuantizationMode { affine, mxfp4, mxfp8, nvfp4 };

// Parses "affine", "mxfp4", "mxfp8", "nvfp4"; throws naming `op` and the
// string otherwise.
QuantizationMode quantization_mode_from_string(const std::string& op, const std::string& mode);
const char* quantization_mode_name(QuantizationMode mode);

// inputs: w. outputs: wq, scales[, biases] (biases for affine only).
class Quantize : public Primitive {
 public:
  Quantize(Stream s, int group_size, int bits, QuantizationMode mode)
      : Primitive(s), group_size_(group_size), bits_(bits), mode_(mode) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  const char* name() const override { return "Quantize"; }
  bool is_equivalent(const Primitive& other) const override;
  int group_size() const { return group_size_; }
  int bits() const { return bits_; }
  QuantizationMode mode() const { return mode_; }

 private:
  int group_size_;
  int bits_;
  QuantizationMode mode_;
};

// inputs: wq, scales[, biases]. output: the dequantized weights.
class Dequantize : public UnaryPrimitive {
 public:
  Dequantize(Stream s, int group_size, int bits, QuantizationMode mode)
      : UnaryPrimitive(s), group_size_(group_size), bits_(bits), mode_(mode) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  const char* name() const override { return "Dequantize"; }
  bool is_equivalent(const Primitive& other) const override;
  int group_size() const { return group_size_; }
  int bits() const { return bits_; }
  QuantizationMode mode() const { return mode_; }

 private:
  int group_size_;
  int bits_;
  QuantizationMode mode_;
};

// inputs: x (..., M, K), w, scales[, biases]. When w is 2-D, x's leading dims
// are rows of one product; otherwise the op has broadcast x, w, scales and
// biases to common batch dims. Output (..., M, N) in x's dtype.
class QuantizedMatmul : public UnaryPrimitive {
 public:
  QuantizedMatmul(Stream s, int group_size, int bits, QuantizationMode mode, bool transpose)
      : UnaryPrimitive(s),
        group_size_(group_size),
        bits_(bits),
        mode_(mode),
        transpose_(transpose) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                       const std::vector<int>& axes) override;
  const char* name() const override { return "QuantizedMatmul"; }
  bool is_equivalent(const Primitive& other) const override;
  int group_size() const { return group_size_; }
  int bits() const { return bits_; }
  QuantizationMode mode() const { return mode_; }
  bool transpose() const { return transpose_; }

 private:
  int group_size_;
  int bits_;
  QuantizationMode mode_;
  bool transpose_;
};

// inputs: x (..., K) with few rows, then (w_i, scales_i, biases_i) for each
// of n affine matrices (N_i, K packed) that share K, bits and group size.
// outputs: x @ dequantize(w_i).T, the quantized q/k/v or gate/up of one
// decode step in one GPU launch (the CPU runs them one by one). With geglu:
// two matrices of the same rows (gate, up) and one output,
// fast::gelu_approx_mul of the two products (quantized_geglu).
class GroupedQuantizedMatmul : public Primitive {
 public:
  GroupedQuantizedMatmul(Stream s, int group_size, int bits, bool geglu = false)
      : Primitive(s), group_size_(group_size), bits_(bits), geglu_(geglu) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  const char* name() const override {
    return geglu_ ? "GroupedQuantizedMatmulGeglu" : "GroupedQuantizedMatmul";
  }
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override;
  int group_size() const { return group_size_; }
  int bits() const { return bits_; }
  bool geglu() const { return geglu_; }

 private:
  int group_size_;
  int bits_;
  bool geglu_;
};

// inputs: residual, y, y_weight, x_weight (fast::residual_rms_norm's), then the matrices of a
// GroupedQuantizedMatmul (with geglu: gate and up). outputs: h, then the products of the normed
// h (geglu: one). residual_norm_quantized_matmul of one row: on the GPU the product's launch
// computes the norms as it stages x.
class ResidualNormQuantizedMatmul : public Primitive {
 public:
  ResidualNormQuantizedMatmul(Stream s, float eps, int group_size, int bits, bool geglu)
      : Primitive(s), eps_(eps), group_size_(group_size), bits_(bits), geglu_(geglu) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  const char* name() const override { return "ResidualNormQuantizedMatmul"; }
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override;
  float eps() const { return eps_; }
  int group_size() const { return group_size_; }
  int bits() const { return bits_; }
  bool geglu() const { return geglu_; }

 private:
  // The graph this fuses as a function of the inputs at argnums (the others fixed).
  std::function<std::vector<array>(const std::vector<array>&)> unfused(
      const std::vector<array>& primals, const std::vector<int>& argnums) const;
  float eps_;
  int group_size_;
  int bits_;
  bool geglu_;
};

}  // namespace mx
