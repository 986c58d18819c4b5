// Linear-algebra primitives. Inputs arrive as float32/float64 arrays of shape
// (..., M, N); the kernels factor each matrix of the batch through LAPACK.
#pragma once

#include "mlxcpp/mx/primitive.h"

namespace mx {

// Every linalg primitive has a jvp, a vjp and a vmap; restrictions on the
// derivatives are noted at each class.
#define MX_LINALG_JVP                                                                           \
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents, \
                         const std::vector<int>& argnums) override;

#define MX_LINALG_PRIMITIVE_DECLS(NAME)                                                           \
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents, \
                         const std::vector<int>& argnums, const std::vector<array>& outputs)      \
      override;                                                                                   \
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,          \
                                                       const std::vector<int>& axes) override;    \
  const char* name() const override { return #NAME; }                                             \
  bool is_equivalent(const Primitive& other) const override;

// Matrix inverse; with `tri`, of the triangle selected by `upper`.
class Inverse : public UnaryPrimitive {
 public:
  Inverse(Stream s, bool tri, bool upper) : UnaryPrimitive(s), tri_(tri), upper_(upper) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  MX_LINALG_PRIMITIVE_DECLS(Inverse)
  MX_LINALG_JVP
  bool triangular() const { return tri_; }
  bool upper() const { return upper_; }

 private:
  bool tri_, upper_;
};

// Cholesky factor of the triangle selected by `upper` (the other is zeroed).
class Cholesky : public UnaryPrimitive {
 public:
  Cholesky(Stream s, bool upper) : UnaryPrimitive(s), upper_(upper) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  MX_LINALG_PRIMITIVE_DECLS(Cholesky)
  MX_LINALG_JVP
  bool upper() const { return upper_; }

 private:
  bool upper_;
};

// inputs: a (..., N, N), b (..., N, K) with equal batch shapes; output x.
class Solve : public UnaryPrimitive {
 public:
  explicit Solve(Stream s) : UnaryPrimitive(s) {}
  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  MX_LINALG_PRIMITIVE_DECLS(Solve)
  MX_LINALG_JVP
};

// Outputs: Q (..., M, K), R (..., K, N). The jvp and vjp need M >= N.
class QRF : public Primitive {
 public:
  explicit QRF(Stream s) : Primitive(s) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  MX_LINALG_PRIMITIVE_DECLS(QRF)
  MX_LINALG_JVP
};

// Outputs: {U (..., M, M), S (..., K), Vt (..., N, N)} with compute_uv, else
// {S}. Derivatives of U and Vt need distinct nonzero singular values; the
// columns of U (rows of Vt) past K follow the gauge described in linalg_grad.cpp.
class SVD : public Primitive {
 public:
  SVD(Stream s, bool compute_uv) : Primitive(s), compute_uv_(compute_uv) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  MX_LINALG_PRIMITIVE_DECLS(SVD)
  MX_LINALG_JVP
  bool compute_uv() const { return compute_uv_; }

 private:
  bool compute_uv_;
};

// Outputs: {eigenvalues} or {eigenvalues, eigenvectors} of the symmetric
// matrix stored in triangle `uplo` ('L' or 'U').
class Eigh : public Primitive {
 public:
  Eigh(Stream s, char uplo, bool compute_eigenvectors)
      : Primitive(s), uplo_(uplo), compute_eigenvectors_(compute_eigenvectors) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override;
  MX_LINALG_PRIMITIVE_DECLS(Eigh)
  // Eigenvector derivatives need distinct eigenvalues.
  MX_LINALG_JVP
  char uplo() const { return uplo_; }
  bool compute_eigenvectors() const { return compute_eigenvectors_; }

 private:
  char uplo_;
  bool compute_eigenvectors_;
};

#undef MX_LINALG_PRIMITIVE_DECLS
#undef MX_LINALG_JVP

}  // namespace mx
