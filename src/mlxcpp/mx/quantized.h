// Quantized weights in MLX's formats (see shared/spec/formats.md, section 2):
// affine groups (bits 2, 3, 4, 5, 6, 8; group size 32, 64, 128) with a scale
// and a bias per group, and the microscaling fp formats mxfp4, mxfp8 (group 32)
// and nvfp4 (group 16) with one uint8 scale per group. Groups run along the
// last axis; the codes are packed LSB first into uint32 words.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/device.h"

namespace mx {

// Quantizes `w` (>= 2 dims, floating point, last dim a multiple of group_size)
// along its last axis. Returns {wq, scales, biases} for "affine" (wq uint32
// [..., K * bits / 32], scales and biases [..., K / group_size] in w's dtype)
// and {wq, scales} for "mxfp4", "mxfp8" and "nvfp4" (scales uint8).
std::vector<array> quantize(const array& w, int group_size = 64, int bits = 4,
                            const std::string& mode = "affine", StreamOrDevice s = {});

// The inverse of quantize: scale * q + bias per group for "affine" (biases
// required), the fp codes times their group's scale otherwise (biases must be
// absent). The result has dtype `dtype`, by default the scales' dtype for
// affine and bfloat16 for the fp modes.
array dequantize(const array& wq, const array& scales, const std::optional<array>& biases,
                 int group_size = 64, int bits = 4, const std::string& mode = "affine",
                 std::optional<Dtype> dtype = std::nullopt, StreamOrDevice s = {});

// x @ dequantize(w).T when `transpose` (w holds [N, K] quantized along K, the
// nn.Linear layout), x @ dequantize(w) otherwise (w holds [K, N] quantized
// along N). x is [..., M, K]; w, scales and biases may carry batch dims that
// broadcast against x's. The result has x's dtype (promoted with the scales'
// for affine). Differentiable with respect to x.
array quantized_matmul(const array& x, const array& w, const array& scales,
                       const std::optional<array>& biases, bool transpose = true,
                       int group_size = 64, int bits = 4, const std::string& mode = "affine",
                       StreamOrDevice s = {});

// quantized_matmul(x, w[i], scales[i], biases[i]) (transposed, affine) for
// several matrices that share K, bits and group size. With at most 8 rows of
// x this is one primitive (on the GPU one launch for all the matrices: the
// q/k/v and gate/up products of a decode step); otherwise separate products.
std::vector<array> grouped_quantized_matmul(const array& x, const std::vector<array>& w,
                                            const std::vector<array>& scales,
                                            const std::vector<array>& biases, int group_size = 64,
                                            int bits = 4, StreamOrDevice s = {});

// A gated MLP's first half with the tanh GELU: fast::gelu_approx_mul(gate, up) of
// grouped_quantized_matmul(x, {w_gate, w_up}, ...), the same values. With at most 8 rows of
// x (16- or 32-bit) one primitive: on the GPU one launch that applies the activation as it
// stores, neither product written out.
array quantized_geglu(const array& x, const std::vector<array>& w, const std::vector<array>& scales,
                      const std::vector<array>& biases, int group_size = 64, int bits = 4,
                      StreamOrDevice s = {});

// fast::residual_rms_norm(residual, y, y_weight, x_weight, eps), then the grouped product of its
// normed output (quantized_geglu with `geglu`): {h, the products...}, the same values. With one
// row of x one primitive: on the GPU the product's launch computes both norms as it stages x
// (the sandwich norms between Gemma's attention and MLP cost no launch of their own).
std::vector<array> residual_norm_quantized_matmul(
    const array& residual, const array& y, const array& y_weight, const array& x_weight, float eps,
    const std::vector<array>& w, const std::vector<array>& scales, const std::vector<array>& biases,
    int group_size = 64, int bits = 4, bool geglu = false, StreamOrDevice s = {});

// quantized_matmul of x's and w's batch entries chosen by index (MLX's
// gather_qmm, the product of mixture-of-experts layers): x is [..., M, K] and
// w [..., N, K * bits / 32] (transposed) with scales and biases alike;
// lhs_indices pick entries of x's flattened batch dims (all, in order, when
// absent), rhs_indices those of w's. The index arrays broadcast together and
// their shape leads the output's, [..., M, N]. Written as gathers and one
// batched quantized_matmul; sorted_indices is accepted for MLX's signature.
array gather_qmm(const array& x, const array& w, const array& scales,
                 const std::optional<array>& biases,
                 std::optional<array> lhs_indices = std::nullopt,
                 std::optional<array> rhs_indices = std::nullopt, bool transpose = true,
                 int group_size = 64, int bits = 4, const std::string& mode = "affine",
                 bool sorted_indices = false, StreamOrDevice s = {});

}  // namespace mx
