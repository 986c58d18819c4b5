// The table of test_grad_checks.cpp: one case per differentiable primitive (and
// per interesting parameter choice), each with a domain where the op is smooth.
// Non-differentiable operands (indices, masks, shapes) are constants inside f.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "mlxcpp/mx.h"
#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/fft.h"
#include "mlxcpp/mx/linalg.h"

namespace gradcheck {

using mx::array;
using mx::Shape;
using Arrays = std::vector<array>;

struct Domain {
  double lo = -2, hi = 2;
  bool either_sign = false;  // |x| in [lo, hi] with a random sign
  int zero_at = -1;          // this element is exactly 0
};
inline const Domain kDefaultDomain{};

struct GradCase {
  std::string name;
  std::vector<Shape> shapes;
  std::function<array(const Arrays&)> f;
  std::vector<Domain> domains = {};  // per input; the last one repeats
  bool check_vmap = true;
  double eps = 1e-6;
  double tol = 1e-6;
  double eps2 = 1e-5;  // step of the second-order check
};

inline std::ostream& operator<<(std::ostream& os, const GradCase& c) { return os << c.name; }

inline array ints(std::vector<int> v, Shape s) { return array(v, std::move(s), mx::int32); }

inline GradCase un(std::string name, std::function<array(const array&)> fn, Domain d = {},
                   Shape s = {2, 3}) {
  return {std::move(name), {std::move(s)}, [fn](const Arrays& x) { return fn(x[0]); }, {d}};
}

inline GradCase bin(std::string name, std::function<array(const array&, const array&)> fn,
                    Domain d0 = {}, Domain d1 = {}, Shape s0 = {2, 3}, Shape s1 = {2, 3}) {
  return {std::move(name),
          {std::move(s0), std::move(s1)},
          [fn](const Arrays& x) { return fn(x[0], x[1]); },
          {d0, d1}};
}

inline std::vector<GradCase> elementwise_cases() {
  using namespace mx;  // NOLINT: a table of op names reads better unqualified
  Domain pos{0.3, 3}, unit{-0.8, 0.8}, nonzero{0.3, 2, true};
  auto cond = array({true, false, true, false, false, true}, Shape{2, 3});
  return {
      un(
          "abs", [](const array& x) { return abs(x); }, nonzero),
      un("negative", [](const array& x) { return negative(x); }),
      un("square", [](const array& x) { return square(x); }),
      un(
          "sqrt", [](const array& x) { return sqrt(x); }, pos),
      un(
          "rsqrt", [](const array& x) { return rsqrt(x); }, pos),
      un(
          "reciprocal", [](const array& x) { return reciprocal(x); }, nonzero),
      un("exp", [](const array& x) { return exp(x); }),
      un("expm1", [](const array& x) { return expm1(x); }, {-1, 1}),
      un(
          "log", [](const array& x) { return log(x); }, pos),
      un(
          "log2", [](const array& x) { return log2(x); }, pos),
      un(
          "log10", [](const array& x) { return log10(x); }, pos),
      un("log1p", [](const array& x) { return log1p(x); }, {-0.5, 2}),
      un("sin", [](const array& x) { return sin(x); }),
      un("cos", [](const array& x) { return cos(x); }),
      un("tan", [](const array& x) { return tan(x); }, {-1.2, 1.2}),
      un(
          "arcsin", [](const array& x) { return arcsin(x); }, unit),
      un(
          "arccos", [](const array& x) { return arccos(x); }, unit),
      un("arctan", [](const array& x) { return arctan(x); }),
      un("sinh", [](const array& x) { return sinh(x); }),
      un("cosh", [](const array& x) { return cosh(x); }),
      un("tanh", [](const array& x) { return tanh(x); }),
      un("arcsinh", [](const array& x) { return arcsinh(x); }),
      un("arccosh", [](const array& x) { return arccosh(x); }, {1.2, 3}),
      un(
          "arctanh", [](const array& x) { return arctanh(x); }, unit),
      un("degrees", [](const array& x) { return degrees(x); }),
      un("radians", [](const array& x) { return radians(x); }),
      un("sigmoid", [](const array& x) { return sigmoid(x); }),
      un("erf", [](const array& x) { return erf(x); }),
      un(
          "erfinv", [](const array& x) { return erfinv(x); }, unit),
      un("floor", [](const array& x) { return floor(x); }),
      un("ceil", [](const array& x) { return ceil(x); }),
      un("round", [](const array& x) { return round(x); }),
      un(
          "sign", [](const array& x) { return sign(x); }, nonzero),
      un("copy", [](const array& x) { return copy(x); }),
      un("clip", [](const array& x) { return clip(x, array(-0.5), array(0.5)); }),
      {"astype_roundtrip",
       {{2, 3}},
       [](const Arrays& x) { return astype(astype(x[0], float32) * 3.0f, float64); },
       {},
       true,
       1e-3,
       1e-3},
      un("scalar_input", [](const array& x) { return exp(x) * x; }, {}, {}),
      bin("add", [](const array& a, const array& b) { return add(a, b); }),
      bin("subtract", [](const array& a, const array& b) { return subtract(a, b); }),
      bin("multiply", [](const array& a, const array& b) { return multiply(a, b); }),
      bin(
          "divide", [](const array& a, const array& b) { return divide(a, b); }, {}, nonzero),
      bin("remainder", [](const array& a, const array& b) { return remainder(a, b); }, {2.2, 2.8},
          {1.0, 1.05}),
      bin("floor_divide", [](const array& a, const array& b) { return floor_divide(a, b); },
          {2.2, 2.8}, {1.0, 1.05}),
      bin("power", [](const array& a, const array& b) { return power(a, b); }, {0.5, 2},
          {-1.5, 1.5}),
      bin("maximum", [](const array& a, const array& b) { return maximum(a, b); }),
      bin("minimum", [](const array& a, const array& b) { return minimum(a, b); }),
      bin(
          "arctan2", [](const array& a, const array& b) { return arctan2(a, b); }, nonzero,
          nonzero),
      bin("logaddexp", [](const array& a, const array& b) { return logaddexp(a, b); }),
      bin("where", [cond](const array& a, const array& b) { return where(cond, a, b); }),
      bin("broadcast_add", [](const array& a, const array& b) { return a + b; }, {}, {}, {2, 3},
          {3}),
      bin("broadcast_multiply", [](const array& a, const array& b) { return a * b; }, {}, {},
          {2, 1}, {1, 3}),
      bin("broadcast_divide", [](const array& a, const array& b) { return a / b; }, {}, nonzero,
          {2, 3}, {}),
      bin("broadcast_power", [](const array& a, const array& b) { return power(a, b); }, {0.5, 2},
          {-1.5, 1.5}, {3}, {2, 1}),
  };
}

inline std::vector<GradCase> shape_cases() {
  using namespace mx;  // NOLINT
  return {
      un("reshape",
         [](const array& x) {
           return reshape(x, {3, 2});
         }),
      un("flatten", [](const array& x) { return flatten(x); }, {}, {2, 3, 2}),
      un("unflatten",
         [](const array& x) {
           return unflatten(x, 1, {3, 1});
         }),
      un("transpose",
         [](const array& x) {
           return transpose(x, {2, 0, 1});
         },
         {}, {2, 3, 4}),
      un("swapaxes", [](const array& x) { return swapaxes(x, 0, -1); }, {}, {2, 3, 4}),
      un("moveaxis", [](const array& x) { return moveaxis(x, 0, 2); }, {}, {2, 3, 4}),
      un("squeeze", [](const array& x) { return squeeze(x); }, {}, {1, 3, 1}),
      un("expand_dims",
         [](const array& x) {
           return expand_dims(x, {0, -1});
         }),
      un("broadcast_to",
         [](const array& x) {
           return broadcast_to(x, {2, 2, 3});
         },
         {}, {2, 1}),
      un("slice",
         [](const array& x) {
           return slice(x, Shape{1, 0}, Shape{4, 5}, Shape{2, 2});
         },
         {}, {4, 5}),
      un("slice_negative_stride",
         [](const array& x) {
           return slice(x, Shape{3, 4}, Shape{0, 0}, Shape{-1, -2});
         },
         {}, {4, 5}),
      bin("slice_update",
          [](const array& a, const array& u) {
            return slice_update(a, u, Shape{1, 0}, Shape{4, 5}, Shape{2, 2});
          },
          {}, {}, {4, 5}, {2, 3}),
      un("slice_dynamic",
         [](const array& x) {
           return slice(x, ints({1, 2}, {2}), {0, 1}, Shape{2, 2});
         },
         {}, {4, 5}),
      bin("slice_update_dynamic",
          [](const array& a, const array& u) { return slice_update(a, u, ints({2}, {1}), {1}); },
          {}, {}, {4, 5}, {4, 2}),
      un("as_strided_overlapping",
         [](const array& x) {
           return as_strided(x, {3, 2}, {1, 1}, 1);
         },
         {}, {6}),
      un("full",
         [](const array& x) {
           return full({2, 3}, x);
         },
         {}, {3}),
      un("atleast_3d", [](const array& x) { return atleast_3d(x); }, {}, {3}),
      bin("concatenate",
          [](const array& a, const array& b) {
            return concatenate({a, b, a}, 1);
          },
          {}, {}, {2, 3}, {2, 2}),
      bin("stack",
          [](const array& a, const array& b) {
            return stack({a, b}, 1);
          }),
      un("split",
         [](const array& x) {
           auto parts = split(x, Shape{1, 3}, 1);
           return parts[0] * parts[2] + parts[1] * 2.0;
         },
         {}, {2, 4}),
      un("pad_constant",
         [](const array& x) {
           return pad(x, {{1, 0}, {2, 1}}, array(0.5));
         }),
      un("pad_edge",
         [](const array& x) {
           return pad(x, {{1, 2}, {0, 1}}, array(0), "edge");
         }),
      un("repeat", [](const array& x) { return repeat(x, 2, 1); }),
      un("tile",
         [](const array& x) {
           return tile(x, {2, 1, 2});
         }),
      un("diag_vector", [](const array& x) { return diag(x, 1); }, {}, {3}),
      un("diag_matrix", [](const array& x) { return diag(x, -1); }, {}, {3, 3}),
      un("diagonal", [](const array& x) { return diagonal(x, 0, 0, 2); }, {}, {3, 2, 3}),
      un("roll",
         [](const array& x) {
           return roll(x, Shape{1, -2}, {0, 1});
         }),
      un("tril", [](const array& x) { return tril(x, 0); }, {}, {3, 3}),
      un("triu", [](const array& x) { return triu(x, 1); }, {}, {3, 4}),
  };
}

inline std::vector<GradCase> reduce_cases() {
  using namespace mx;  // NOLINT
  Domain pos{0.5, 1.5};
  return {
      un("sum_all", [](const array& x) { return sum(x); }),
      un("sum_axis_keepdims",
         [](const array& x) {
           return sum(x, {0, 2}, true);
         },
         {}, {2, 3, 2}),
      un("mean", [](const array& x) { return mean(x, -1); }),
      un(
          "prod", [](const array& x) { return prod(x, 1); }, pos),
      un("prod_with_zero", [](const array& x) { return prod(x, 1); }, {0.5, 1.5, false, 4}),
      un("max", [](const array& x) { return max(x, 0); }),
      un("min", [](const array& x) { return min(x); }),
      un("var", [](const array& x) { return var(x, 1, false, 1); }),
      un("std", [](const array& x) { return mx::std(x, {0}, true); }),
      un("logsumexp", [](const array& x) { return logsumexp(x, 1); }),
      un("softmax", [](const array& x) { return softmax(x, -1); }),
      un("softmax_axis0", [](const array& x) { return softmax(x, 0, true); }),
      un("cumsum", [](const array& x) { return cumsum(x, 1); }),
      un("cumsum_reverse_exclusive", [](const array& x) { return cumsum(x, 1, true, false); }),
      un(
          "cumprod", [](const array& x) { return cumprod(x, 1); }, pos),
      un(
          "cumprod_reverse", [](const array& x) { return cumprod(x, 0, true); }, pos),
      un("cummax", [](const array& x) { return cummax(x, 1); }),
      un("cummin", [](const array& x) { return cummin(x, 0, true); }),
      un("sort", [](const array& x) { return sort(x, 1); }),
      un("sort_flat", [](const array& x) { return sort(x); }),
      un("partition", [](const array& x) { return sort(partition(x, 1, 1), 1); }, {}, {2, 4}),
      un("topk", [](const array& x) { return sort(topk(x, 2, -1), -1); }, {}, {2, 4}),
  };
}

// Packed 4-bit codes of a fixed 3 x 64 matrix, for the quantized_matmul cases.
inline array quantized_codes() {
  std::vector<float> v(3 * 64);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 7) % 13) - 6.0f;
  return mx::quantize(array(v, {3, 64}), 32, 4)[0];
}

inline std::vector<GradCase> product_cases() {
  using namespace mx;  // NOLINT
  return {
      bin("matmul", [](const array& a, const array& b) { return matmul(a, b); }, {}, {}, {2, 3},
          {3, 4}),
      bin("matmul_batched_broadcast", [](const array& a, const array& b) { return matmul(a, b); },
          {}, {}, {2, 2, 3}, {3, 2}),
      bin("matmul_vector_matrix", [](const array& a, const array& b) { return matmul(a, b); }, {},
          {}, {3}, {3, 2}),
      bin("matmul_matrix_vector", [](const array& a, const array& b) { return matmul(a, b); }, {},
          {}, {2, 3}, {3}),
      {"addmm",
       {{2, 2}, {2, 3}, {3, 2}},
       [](const Arrays& x) { return addmm(x[0], x[1], x[2], 0.5f, 2.0f); }},
      bin("matmul_transposed_operand",
          [](const array& a, const array& b) { return matmul(transpose(a), b); }, {}, {}, {3, 2},
          {3, 4}),
      bin("outer", [](const array& a, const array& b) { return outer(a, b); }, {}, {}, {3}, {2}),
      bin("inner", [](const array& a, const array& b) { return inner(a, b); }, {}, {}, {2, 3},
          {4, 3}),
      bin("tensordot",
          [](const array& a, const array& b) {
            return tensordot(a, b, {1, 2}, {0, 1});
          },
          {}, {}, {2, 3, 2}, {3, 2, 2}),
      bin("einsum",
          [](const array& a, const array& b) {
            return einsum("ij,kj->ik", {a, b});
          },
          {}, {}, {2, 3}, {4, 3}),
      bin("einsum_batched",
          [](const array& a, const array& b) {
            return einsum("bij,bjk->bki", {a, b});
          },
          {}, {}, {2, 2, 3}, {2, 3, 2}),
      // x, scales and biases of a fixed 4-bit code matrix (3 x 64, groups of
      // 32); the codes themselves have no derivative. No vmap rule.
      {"quantized_matmul",
       {{2, 64}, {3, 2}, {3, 2}},
       [](const Arrays& x) {
         return quantized_matmul(x[0], quantized_codes(), x[1], x[2], true, 32, 4);
       },
       {},
       false},
      {"quantized_matmul_not_transposed",
       {{2, 3}, {3, 2}, {3, 2}},
       [](const Arrays& x) {
         return quantized_matmul(x[0], quantized_codes(), x[1], x[2], false, 32, 4);
       },
       {},
       false},
  };
}

inline std::vector<GradCase> indexing_cases() {
  using namespace mx;  // NOLINT
  auto idx = ints({2, 0, 2, 1}, {4});
  auto along = ints({1, 0, 2, 2, 2, 0}, {2, 3});
  auto rows = ints({0, 2}, {2});
  return {
      un("take_axis", [idx](const array& x) { return take(x, idx, 1); }),
      un("take_flat", [idx](const array& x) { return take(x, idx); }),
      un("take_2d_indices",
         [](const array& x) {
           return take(x, ints({0, 2, 1, 1}, {2, 2}), 1);
         }),
      un("take_negative_index", [](const array& x) { return take(x, -1, 0); }),
      un("take_along_axis", [along](const array& x) { return take_along_axis(x, along, 1); }),
      bin("put_along_axis",
          [](const array& a, const array& v) {
            return put_along_axis(a, ints({2, 0}, {2, 1}), v, 1);
          },
          {}, {}, {2, 3}, {2, 1}),
      un("gather",
         [rows](const array& x) {
           return gather(x, {rows}, {0}, {1, 3});
         },
         {}, {3, 3}),
      bin("scatter", [rows](const array& a, const array& u) { return scatter(a, {rows}, u, {0}); },
          {}, {}, {3, 3}, {2, 1, 3}),
      bin("scatter_add",
          [](const array& a, const array& u) {
            return scatter_add(a, {ints({0, 2, 0}, {3})}, u, {0});
          },
          {}, {}, {3, 3}, {3, 1, 3}),
      bin("scatter_max",
          [](const array& a, const array& u) {
            return scatter_max(a, {ints({0, 2}, {2})}, u, {0});
          },
          {}, {}, {3, 3}, {2, 1, 3}),
      bin("scatter_min",
          [](const array& a, const array& u) {
            return scatter_min(a, {ints({1, 2}, {2})}, u, {0});
          },
          {}, {}, {3, 3}, {2, 1, 3}),
  };
}

inline std::vector<GradCase> fast_cases() {
  using namespace mx;  // NOLINT
  return {
      bin("rms_norm", [](const array& x, const array& w) { return fast::rms_norm(x, w, 1e-5f); },
          {}, {}, {2, 4}, {4}),
      {"grouped_linear",
       {{1, 1, 4}, {3, 4}, {2, 4}},
       [](const Arrays& x) {
         auto ys = fast::grouped_linear(x[0], {x[1], x[2]});
         return concatenate({ys[0], ys[1]}, -1);
       }},
      {"layer_norm",
       {{2, 4}, {4}, {4}},
       [](const Arrays& x) { return fast::layer_norm(x[0], x[1], x[2], 1e-5f); }},
      un("rms_norm_no_weight",
         [](const array& x) { return fast::rms_norm(x, std::nullopt, 1e-5f); }, {}, {3, 4}),
      un("layer_norm_no_affine",
         [](const array& x) { return fast::layer_norm(x, std::nullopt, std::nullopt, 1e-5f); }, {},
         {3, 4}),
      un("rope_array_offset",
         [](const array& x) { return fast::rope(x, 4, false, 10000.0f, 1.0f, ints({3}, {})); }, {},
         {1, 2, 4}),
      un("rope", [](const array& x) { return fast::rope(x, 4, false, 10000.0f, 1.0f, 2); }, {},
         {1, 3, 4}),
      un("rope_traditional",
         [](const array& x) { return fast::rope(x, 4, true, 10000.0f, 0.5f, 1); }, {}, {1, 3, 6}),
      {"sdpa_causal",
       {{1, 2, 3, 2}, {1, 1, 3, 2}, {1, 1, 3, 2}},
       [](const Arrays& x) {
         return fast::scaled_dot_product_attention(x[0], x[1], x[2], 0.7f, "causal");
       }},
      {"sdpa_additive_mask",
       {{1, 1, 2, 3}, {1, 1, 3, 3}, {1, 1, 3, 2}},
       [](const Arrays& x) {
         array mask(std::vector<double>{0, -1, 0.5, -2, 0, 0}, Shape{2, 3}, float64);
         return fast::scaled_dot_product_attention(x[0], x[1], x[2], 0.5f, mask);
       }},
  };
}

// Matrices are kept well conditioned (a small random part plus a multiple of
// the identity); factors with a sign freedom (eigenvectors, singular vectors)
// enter squared, so the checked function is smooth.
inline std::vector<GradCase> linalg_cases() {
  using namespace mx;  // NOLINT
  Domain small{-0.5, 0.5};
  auto spd = [](const array& x) {
    return matmul(x, transpose(x)) + 2.0 * eye(static_cast<int>(x.shape(0)), float64);
  };
  auto shifted = [](const array& x) {
    return x + 3.0 * eye(static_cast<int>(x.shape(0)), float64);
  };
  auto sym = [](const array& x) { return x + transpose(x) + diag(array({0.0, 2.0, 4.0})); };
  return {
      un("inv", [=](const array& x) { return linalg::inv(shifted(x)); }, small, {3, 3}),
      un("inv_batched", [=](const array& x) { return linalg::inv(x + 3.0 * eye(2, float64)); },
         small, {2, 2, 2}),
      bin("solve", [=](const array& a, const array& b) { return linalg::solve(shifted(a), b); },
          small, {}, {3, 3}, {3, 2}),
      bin("solve_vector",
          [=](const array& a, const array& b) { return linalg::solve(shifted(a), b); }, small, {},
          {3, 3}, {3}),
      un("cholesky", [=](const array& x) { return linalg::cholesky(spd(x)); }, small, {3, 3}),
      un("cholesky_upper", [=](const array& x) { return linalg::cholesky(spd(x), true); }, small,
         {3, 3}),
      un("qr_q", [=](const array& x) { return linalg::qr(shifted(x)).first; }, small, {3, 3}),
      un("qr_r", [](const array& x) { return linalg::qr(x).second; }, {0.5, 2}, {4, 3}),
      un("svd_values", [](const array& x) { return linalg::svd(x, false)[0]; }, {}, {3, 2}),
      un("svd_vectors_squared",
         [=](const array& x) {
           auto usv = linalg::svd(shifted(x) + diag(array({0.0, 1.0, 2.0})), true);
           return concatenate({square(usv[0]), square(usv[2])}, 0);
         },
         small, {3, 3}),
      un("eigvalsh", [=](const array& x) { return linalg::eigvalsh(sym(x)); }, small, {3, 3}),
      un("eigh_vectors_squared",
         [=](const array& x) { return square(linalg::eigh(sym(x)).second); }, small, {3, 3}),
      un("norm_fro", [](const array& x) { return linalg::norm(x); }),
      un("norm_vector_p3", [](const array& x) { return linalg::norm(x, 3.0, 1); }, {0.5, 2, true}),
      un("norm_nuclear", [](const array& x) { return linalg::norm(x, "nuc"); }, {}, {3, 2}),
      bin("cross", [](const array& a, const array& b) { return linalg::cross(a, b); }, {}, {},
          {2, 3}, {2, 3}),
      un("pinv", [](const array& x) { return linalg::pinv(x); }, {0.5, 2}, {3, 2}),
      bin("solve_triangular",
          [=](const array& a, const array& b) {
            return linalg::solve_triangular(tril(shifted(a)), b);
          },
          small, {}, {3, 3}, {3, 2}),
      un("tri_inv", [=](const array& x) { return linalg::tri_inv(triu(shifted(x)), true); }, small,
         {3, 3}),
  };
}

// Complex primitives and transforms compute in complex64, so these run at
// float32 precision; the functions are linear or quadratic, so a large step
// costs no truncation error and keeps rounding small. Cotangents of complex
// values follow MLX/JAX: dL/dRe - i dL/dIm (so multiply's rule is c * y).
inline std::vector<GradCase> fft_cases() {
  using namespace mx;  // NOLINT
  // A real function of a complex array that sees both parts.
  auto re_im = [](const array& c) { return astype(real(c) + 2.0f * imag(c), float64); };
  auto cplx = [](const array& re, const array& im) {
    return astype(re, complex64) + astype(im, complex64) * array(complex64_t(0.0f, 1.0f));
  };
  auto make = [](std::string name, std::vector<Shape> shapes,
                 std::function<array(const Arrays&)> f) {
    return GradCase{std::move(name), std::move(shapes), std::move(f), {}, true, 1e-2, 1e-3, 1e-2};
  };
  return {
      // Complex elementwise primitives first (z = x + iy, z^2 = x^2 - y^2 + 2ixy).
      make("complex_real", {{3}, {3}},
           [=](const Arrays& x) { return astype(real(square(cplx(x[0], x[1]))), float64); }),
      make("complex_imag", {{3}, {3}},
           [=](const Arrays& x) { return astype(imag(square(cplx(x[0], x[1]))), float64); }),
      make("complex_conjugate", {{3}, {3}},
           [=](const Arrays& x) {
             array z = cplx(x[0], x[1]);
             return re_im(conjugate(z) * z * z);
           }),
      make("fft_real_part", {{2, 4}},
           [=](const Arrays& x) { return astype(real(fft::fft(x[0])), float64); }),
      make("fft", {{2, 4}}, [=](const Arrays& x) { return re_im(fft::fft(x[0])); }),
      make("fft_complex_input", {{2, 4}, {2, 4}},
           [=](const Arrays& x) { return re_im(fft::fft(cplx(x[0], x[1]), 0)); }),
      make("fft_padded", {{3}}, [=](const Arrays& x) { return re_im(fft::fft(x[0], 5, 0)); }),
      make("ifft", {{2, 4}, {2, 4}},
           [=](const Arrays& x) { return re_im(fft::ifft(cplx(x[0], x[1]))); }),
      make("fft2", {{2, 3, 4}}, [=](const Arrays& x) { return re_im(fft::fft2(x[0])); }),
      make("rfft", {{2, 6}}, [=](const Arrays& x) { return re_im(fft::rfft(x[0])); }),
      make("rfft_odd", {{5}}, [=](const Arrays& x) { return re_im(fft::rfft(x[0])); }),
      make("irfft", {{2, 4}, {2, 4}},
           [=](const Arrays& x) { return astype(fft::irfft(cplx(x[0], x[1])), float64); }),
      make("irfftn", {{2, 3}, {2, 3}},
           [=](const Arrays& x) { return astype(fft::irfftn(cplx(x[0], x[1])), float64); }),
  };
}

}  // namespace gradcheck
