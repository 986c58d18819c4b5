// Primitives of the quantized ops (mx/quantized.h). The layout rules (codes
// packed LSB first along the last axis, one scale per group) are in
// shared/spec/formats.md section 2; the CPU kernels are in
// backend/cpu/quantized*.cpp.
#pragma once

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
// decode step in one GPU launch (the CPU runs them one by one).
class GroupedQuantizedMatmul : public Primitive {
 public:
  GroupedQuantizedMatmul(Stream s, int group_size, int bits)
      : Primitive(s), group_size_(group_size), bits_(bits) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  const char* name() const override { return "GroupedQuantizedMatmul"; }
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override;
  int group_size() const { return group_size_; }
  int bits() const { return bits_; }

 private:
  int group_size_;
  int bits_;
};

}  // namespace mx
