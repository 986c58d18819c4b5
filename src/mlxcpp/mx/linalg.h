// Linear algebra (MLX's mx::linalg API) on float32 and float64 matrices,
// batched over leading dimensions; factorizations run through LAPACK.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/device.h"

namespace mx::linalg {

// Vector or matrix norms, as numpy.linalg.norm:
// - no ord and no axis: the 2-norm of the flattened array;
// - ord without axis: `a` must be 1-D or 2-D;
// - axis with one entry: a vector norm (ord: inf, -inf, 0, any p);
// - axis with two entries: a matrix norm (ord: 1, -1, 2, -2, inf, -inf,
//   "fro", "nuc").
array norm(const array& a, double ord, const std::optional<std::vector<int>>& axis = std::nullopt,
           bool keepdims = false, StreamOrDevice s = {});
inline array norm(const array& a, double ord, int axis, bool keepdims = false,
                  StreamOrDevice s = {}) {
  return norm(a, ord, std::vector<int>{axis}, keepdims, s);
}
array norm(const array& a, const std::string& ord,
           const std::optional<std::vector<int>>& axis = std::nullopt, bool keepdims = false,
           StreamOrDevice s = {});
inline array norm(const array& a, const std::string& ord, int axis, bool keepdims = false,
                  StreamOrDevice s = {}) {
  return norm(a, ord, std::vector<int>{axis}, keepdims, s);
}
array norm(const array& a, const std::optional<std::vector<int>>& axis = std::nullopt,
           bool keepdims = false, StreamOrDevice s = {});
inline array norm(const array& a, int axis, bool keepdims = false, StreamOrDevice s = {}) {
  return norm(a, std::vector<int>{axis}, keepdims, s);
}

// Reduced QR of (..., M, N): Q (..., M, K) with orthonormal columns and upper
// triangular R (..., K, N), K = min(M, N).
std::pair<array, array> qr(const array& a, StreamOrDevice s = {});

// Thin SVD of (..., M, N): {U (..., M, M), S (..., K), Vt (..., N, N)} when
// compute_uv, else {S}; singular values in descending order.
std::vector<array> svd(const array& a, bool compute_uv, StreamOrDevice s = {});
inline std::vector<array> svd(const array& a, StreamOrDevice s = {}) { return svd(a, true, s); }

// Inverse of square matrices; throws naming the batch entry when singular.
array inv(const array& a, StreamOrDevice s = {});
// Inverse of triangular matrices (only the `upper` or lower triangle is read).
array tri_inv(const array& a, bool upper = false, StreamOrDevice s = {});
// Cholesky factor L (A = L L^T) or, with upper, U (A = U^T U) of symmetric
// positive-definite matrices; only the matching triangle of `a` is read.
array cholesky(const array& a, bool upper = false, StreamOrDevice s = {});
// A^{-1} from its Cholesky factor.
array cholesky_inv(const array& a, bool upper = false, StreamOrDevice s = {});
// Moore–Penrose pseudo-inverse through the SVD.
array pinv(const array& a, StreamOrDevice s = {});

// x with a @ x = b; b is (..., N) or (..., N, K) and batch dims broadcast.
array solve(const array& a, const array& b, StreamOrDevice s = {});
// Like solve for triangular `a` (reads the `upper` or lower triangle).
array solve_triangular(const array& a, const array& b, bool upper = false, StreamOrDevice s = {});

// Cross product of 3-vectors along `axis` (broadcasting the others).
array cross(const array& a, const array& b, int axis = -1, StreamOrDevice s = {});

// Eigenvalues (ascending) of symmetric matrices, reading triangle UPLO ("L"/"U").
array eigvalsh(const array& a, std::string UPLO = "L", StreamOrDevice s = {});
// Eigenvalues (ascending) and eigenvectors (columns) of symmetric matrices.
std::pair<array, array> eigh(const array& a, std::string UPLO = "L", StreamOrDevice s = {});

}  // namespace mx::linalg
