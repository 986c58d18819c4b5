// Derivatives and batching rules of the linear-algebra primitives. The
// factorizations read one triangle of symmetric inputs (cholesky, eigh) or of
// triangular ones (tri_inv); their derivatives are those of exactly that
// function, so entries outside the triangle get zero gradient.
#include <typeinfo>

#include "mlxcpp/mx/linalg.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/linalg.h"

namespace mx {

namespace {

array mT(const array& x, const Stream& s) { return swapaxes(x, -1, -2, s); }

// 1 where column - row <= k (numpy's tril mask), in x's dtype.
array tril_mask(int n, int k, Dtype d, const Stream& s) {
  array rows = reshape(arange(0.0, static_cast<double>(n), 1.0, int32, s), {n, 1}, s);
  array cols = arange(0.0, static_cast<double>(n), 1.0, int32, s);
  return astype(less_equal(subtract(cols, rows, s), array(k), s), d, s);
}
array tril_k(const array& x, int k, const Stream& s) {
  return multiply(x, tril_mask(x.shape(-1), k, x.dtype(), s), s);
}
array triu_k(const array& x, int k, const Stream& s) { return subtract(x, tril_k(x, k - 1, s), s); }
array diag_part(const array& x, const Stream& s) {
  return subtract(tril_k(x, 0, s), tril_k(x, -1, s), s);
}
// The strictly lower triangle plus half the diagonal (Murray's Phi).
array phi(const array& x, const Stream& s) {
  return add(tril_k(x, -1, s), multiply(array(0.5, x.dtype()), diag_part(x, s), s), s);
}
// Gradient of a function that reads only one triangle of a symmetric input,
// from the gradient g that treats the input as a full symmetric matrix.
array to_triangle(const array& g, bool upper, const Stream& s) {
  array both = add(g, mT(g, s), s);
  return add(upper ? triu_k(both, 1, s) : tril_k(both, -1, s), diag_part(g, s), s);
}
// The symmetric matrix a function reading one triangle of `t` sees.
array from_triangle(const array& t, bool upper, const Stream& s) {
  array off = upper ? triu_k(t, 1, s) : tril_k(t, -1, s);
  return add(add(off, mT(off, s), s), diag_part(t, s), s);
}
// a[..., :rows, :cols]
array leading_block(const array& a, int rows, int cols, const Stream& s) {
  Shape start(a.ndim(), 0), stop = a.shape();
  stop[a.ndim() - 2] = rows;
  stop[a.ndim() - 1] = cols;
  return slice(a, start, stop, s);
}

// F with F[..., i, j] = 1 / (e_j - e_i) off the diagonal and 0 on it. The
// diagonal gap is replaced by 1 before the reciprocal (and then masked), so
// the expression stays finite and differentiable again.
array inv_gaps(const array& e, const Stream& s) {
  int n = e.shape(-1);
  array idx = arange(0.0, static_cast<double>(n), 1.0, int32, s);
  array off = not_equal(reshape(idx, {n, 1}, s), idx, s);
  array diff = subtract(expand_dims(e, -2, s), expand_dims(e, -1, s), s);
  array one(1.0, e.dtype());
  return where(off, reciprocal(where(off, diff, one, s), s), array(0.0, e.dtype()), s);
}
// x diag(d) and diag(d) x: scale the columns or the rows of x by the vector d.
array scale_cols(const array& x, const array& d, const Stream& s) {
  return multiply(x, expand_dims(d, -2, s), s);
}
array scale_rows(const array& x, const array& d, const Stream& s) {
  return multiply(x, expand_dims(d, -1, s), s);
}
// a[..., :, c0:c1]
array column_block(const array& a, int c0, int c1, const Stream& s) {
  Shape start(a.ndim(), 0), stop = a.shape();
  start[a.ndim() - 1] = c0;
  stop[a.ndim() - 1] = c1;
  return slice(a, start, stop, s);
}

// Batches a primitive whose kernel already loops over leading dimensions.
std::pair<std::vector<array>, std::vector<int>> vmap_leading(
    const std::vector<array>& inputs, const std::vector<int>& axes,
    const std::function<std::vector<array>(const std::vector<array>&)>& op, const Stream& s) {
  int batch = -1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (axes[i] >= 0) batch = inputs[i].shape(axes[i]);
  }
  std::vector<array> moved;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (axes[i] >= 0) {
      moved.push_back(moveaxis(inputs[i], axes[i], 0, s));
    } else {
      Shape shape = inputs[i].shape();
      shape.insert(shape.begin(), batch);
      moved.push_back(broadcast_to(expand_dims(inputs[i], 0, s), shape, s));
    }
  }
  auto outs = op(moved);
  return {outs, std::vector<int>(outs.size(), 0)};
}

}  // namespace

// ---------------------------------------------------------------- Inverse

std::vector<array> Inverse::jvp(const std::vector<array>& primals,
                                const std::vector<array>& tangents, const std::vector<int>&) {
  const Stream& s = stream();
  array y = tri_ ? linalg::tri_inv(primals[0], upper_, s) : linalg::inv(primals[0], s);
  array t = tangents[0];
  if (tri_) t = upper_ ? triu_k(t, 0, s) : tril_k(t, 0, s);
  return {negative(matmul(matmul(y, t, s), y, s), s)};
}

std::vector<array> Inverse::vjp(const std::vector<array>&, const std::vector<array>& cotangents,
                                const std::vector<int>&, const std::vector<array>& outputs) {
  const Stream& s = stream();
  array yt = mT(outputs[0], s);
  array g = negative(matmul(matmul(yt, cotangents[0], s), yt, s), s);
  if (tri_) g = upper_ ? triu_k(g, 0, s) : tril_k(g, 0, s);
  return {g};
}

std::pair<std::vector<array>, std::vector<int>> Inverse::vmap(const std::vector<array>& inputs,
                                                              const std::vector<int>& axes) {
  return vmap_leading(
      inputs, axes,
      [&](const std::vector<array>& x) {
        return std::vector<array>{tri_ ? linalg::tri_inv(x[0], upper_, stream())
                                       : linalg::inv(x[0], stream())};
      },
      stream());
}

bool Inverse::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const Inverse*>(&other);
  return o && o->tri_ == tri_ && o->upper_ == upper_;
}

// ---------------------------------------------------------------- Cholesky
// With A = L L^T: L^-1 dA L^-T = X + X^T for the lower-triangular X = L^-1 dL,
// so dL = L Phi(L^-1 dA L^-T) and, by transposition, the symmetric gradient is
// L^-T Phi(L^T gL) L^-1 (Murray, "Differentiation of the Cholesky decomposition").

std::vector<array> Cholesky::jvp(const std::vector<array>& primals,
                                 const std::vector<array>& tangents, const std::vector<int>&) {
  const Stream& s = stream();
  array c = linalg::cholesky(primals[0], upper_, s);
  array l = upper_ ? mT(c, s) : c;
  array linv = linalg::tri_inv(l, false, s);
  array da = from_triangle(tangents[0], upper_, s);
  array dl = matmul(l, phi(matmul(matmul(linv, da, s), mT(linv, s), s), s), s);
  return {upper_ ? mT(dl, s) : dl};
}

std::vector<array> Cholesky::vjp(const std::vector<array>&, const std::vector<array>& cotangents,
                                 const std::vector<int>&, const std::vector<array>& outputs) {
  const Stream& s = stream();
  array l = upper_ ? mT(outputs[0], s) : outputs[0];
  array gl = upper_ ? mT(cotangents[0], s) : cotangents[0];
  array linv = linalg::tri_inv(l, false, s);
  array p = phi(matmul(mT(l, s), gl, s), s);
  array sym = matmul(matmul(mT(linv, s), p, s), linv, s);
  return {to_triangle(sym, upper_, s)};
}

std::pair<std::vector<array>, std::vector<int>> Cholesky::vmap(const std::vector<array>& inputs,
                                                               const std::vector<int>& axes) {
  return vmap_leading(
      inputs, axes,
      [&](const std::vector<array>& x) {
        return std::vector<array>{linalg::cholesky(x[0], upper_, stream())};
      },
      stream());
}

bool Cholesky::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const Cholesky*>(&other);
  return o && o->upper_ == upper_;
}

// ---------------------------------------------------------------- Solve

std::vector<array> Solve::jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                              const std::vector<int>& argnums) {
  const Stream& s = stream();
  array x = linalg::solve(primals[0], primals[1], s);
  std::optional<array> rhs;
  for (size_t i = 0; i < argnums.size(); ++i) {
    array term = argnums[i] == 0 ? negative(matmul(tangents[i], x, s), s) : tangents[i];
    rhs = rhs ? add(*rhs, term, s) : term;
  }
  return {linalg::solve(primals[0], *rhs, s)};
}

std::vector<array> Solve::vjp(const std::vector<array>& primals,
                              const std::vector<array>& cotangents, const std::vector<int>& argnums,
                              const std::vector<array>& outputs) {
  const Stream& s = stream();
  array gb = linalg::solve(mT(primals[0], s), cotangents[0], s);
  std::vector<array> out;
  for (int a : argnums) {
    out.push_back(a == 0 ? negative(matmul(gb, mT(outputs[0], s), s), s) : gb);
  }
  return out;
}

std::pair<std::vector<array>, std::vector<int>> Solve::vmap(const std::vector<array>& inputs,
                                                            const std::vector<int>& axes) {
  return vmap_leading(
      inputs, axes,
      [&](const std::vector<array>& x) {
        return std::vector<array>{linalg::solve(x[0], x[1], stream())};
      },
      stream());
}

bool Solve::is_equivalent(const Primitive& other) const { return typeid(other) == typeid(*this); }

// ---------------------------------------------------------------- QR
// For M >= N (square R): with M = R gR^T - gQ^T Q and copyltu(M) its lower
// triangle mirrored upwards, gA = (gQ + Q copyltu(M)) R^-T (Liao et al. 2019).

// Forward mode, M >= N: with C = Q^T dA R^-1, Q^T dQ = Omega is antisymmetric
// and dR R^-1 upper triangular, so Omega = tril(C, -1) - tril(C, -1)^T,
// dR = (C - Omega) R and dQ = dA R^-1 - Q (C - Omega).
std::vector<array> QRF::jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                            const std::vector<int>&) {
  const Stream& s = stream();
  const array& a = primals[0];
  if (a.shape(-2) < a.shape(-1)) {
    throw std::invalid_argument(
        "[linalg::qr] the jvp needs at least as many rows as columns; got shape (" +
        std::to_string(a.shape(-2)) + ", " + std::to_string(a.shape(-1)) + ") matrices");
  }
  auto [q, r] = linalg::qr(a, s);
  array da_rinv = matmul(tangents[0], linalg::tri_inv(r, true, s), s);
  array c = matmul(mT(q, s), da_rinv, s);
  array low = tril_k(c, -1, s);
  array c_upper = subtract(c, subtract(low, mT(low, s), s), s);  // C - Omega = dR R^-1
  return {subtract(da_rinv, matmul(q, c_upper, s), s), matmul(c_upper, r, s)};
}

std::vector<array> QRF::vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                            const std::vector<int>&, const std::vector<array>& outputs) {
  const Stream& s = stream();
  const array& a = primals[0];
  if (a.shape(-2) < a.shape(-1)) {
    throw std::invalid_argument(
        "[linalg::qr] the vjp needs at least as many rows as columns; got shape (" +
        std::to_string(a.shape(-2)) + ", " + std::to_string(a.shape(-1)) + ") matrices");
  }
  const array& q = outputs[0];
  const array& r = outputs[1];
  array m = subtract(matmul(r, mT(cotangents[1], s), s), matmul(mT(cotangents[0], s), q, s), s);
  array copyltu = add(tril_k(m, 0, s), mT(tril_k(m, -1, s), s), s);
  array b = add(cotangents[0], matmul(q, copyltu, s), s);
  return {matmul(b, mT(linalg::tri_inv(r, true, s), s), s)};
}

std::pair<std::vector<array>, std::vector<int>> QRF::vmap(const std::vector<array>& inputs,
                                                          const std::vector<int>& axes) {
  return vmap_leading(
      inputs, axes,
      [&](const std::vector<array>& x) {
        auto [q, r] = linalg::qr(x[0], stream());
        return std::vector<array>{q, r};
      },
      stream());
}

bool QRF::is_equivalent(const Primitive& other) const { return typeid(other) == typeid(*this); }

// ---------------------------------------------------------------- SVD
// A = U S V^T with full U (M x M) and V (N x N). The rules are written for
// M >= N (K = N); wide inputs go through A^T = V S U^T. With U = [U1 U2],
// dP = U1^T dA V and F_ij = 1 / (s_j^2 - s_i^2) (0 on the diagonal):
//   dS = diag(dP),  dV = V (F o (S dP + dP^T S)),
//   dU1 = U1 (F o (dP S + S dP^T)) + (I - U1 U1^T) dA V S^-1,
//   dU2 = -U1 S^-1 V^T dA^T U2.
// U2 is unique only up to a rotation within the complement of U1; dU2 fixes
// the gauge U2^T dU2 = 0, so derivatives of U2 are right for functions that do
// not depend on that choice (e.g. through U2 U2^T). All of this needs distinct,
// nonzero singular values. The vjp is the transpose (Townsend, "Differentiating
// the singular value decomposition"):
//   gA = U1 ((F o (U1^T gU1 - gU1^T U1)) S + diag(gS) + S (F o (V^T gV - gV^T V))) V^T
//        + ((I - U1 U1^T) gU1 - U2 gU2^T U1) S^-1 V^T.

namespace {

// Tangents {dU, dS, dV} of the SVD of a tall matrix with factors u, sv, v.
std::vector<array> svd_jvp_tall(const array& da, const array& u, const array& sv, const array& v,
                                const Stream& s) {
  int m = u.shape(-1), n = v.shape(-1);
  array u1 = column_block(u, 0, n, s);
  array da_v = matmul(da, v, s);
  array dp = matmul(mT(u1, s), da_v, s);
  array ds = sum(multiply(u1, da_v, s), -2, false, s);
  array f = inv_gaps(square(sv, s), s);
  array dpt = mT(dp, s);
  array du = matmul(u1, multiply(f, add(scale_cols(dp, sv, s), scale_rows(dpt, sv, s), s), s), s);
  array dv = matmul(v, multiply(f, add(scale_rows(dp, sv, s), scale_cols(dpt, sv, s), s), s), s);
  if (m > n) {
    array sinv = reciprocal(sv, s);
    array u2 = column_block(u, n, m, s);
    du = add(du, scale_cols(subtract(da_v, matmul(u1, dp, s), s), sinv, s), s);
    array du2 = negative(matmul(u1, scale_rows(matmul(mT(da_v, s), u2, s), sinv, s), s), s);
    du = concatenate({du, du2}, -1, s);
  }
  return {du, ds, dv};
}

// Cotangent of a tall matrix from those of its SVD factors (gv is that of V).
array svd_vjp_tall(const array& u, const array& sv, const array& v, const array& gu,
                   const array& gs, const array& gv, const Stream& s) {
  int m = u.shape(-1), n = v.shape(-1);
  array u1 = column_block(u, 0, n, s);
  array gu1 = column_block(gu, 0, n, s);
  array f = inv_gaps(square(sv, s), s);
  array ut_gu = matmul(mT(u1, s), gu1, s);
  array vt_gv = matmul(mT(v, s), gv, s);
  array j = multiply(f, subtract(ut_gu, mT(ut_gu, s), s), s);
  array k = multiply(f, subtract(vt_gv, mT(vt_gv, s), s), s);
  array inner = add(add(scale_cols(j, sv, s), scale_rows(k, sv, s), s),
                    diag_part(expand_dims(gs, -2, s), s), s);
  array g = matmul(u1, inner, s);
  if (m > n) {
    array u2 = column_block(u, n, m, s);
    array gu2 = column_block(gu, n, m, s);
    array rest = subtract(subtract(gu1, matmul(u1, ut_gu, s), s),
                          matmul(u2, matmul(mT(gu2, s), u1, s), s), s);
    g = add(g, scale_cols(rest, reciprocal(sv, s), s), s);
  }
  return matmul(g, mT(v, s), s);
}

}  // namespace

std::vector<array> SVD::jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                            const std::vector<int>&) {
  const Stream& s = stream();
  const array& a = primals[0];
  int m = a.shape(-2), n = a.shape(-1), k = std::min(m, n);
  auto usv = linalg::svd(a, true, s);
  if (!compute_uv_) {
    array u = leading_block(usv[0], m, k, s);
    array v = mT(leading_block(usv[2], k, n, s), s);
    return {sum(multiply(u, matmul(tangents[0], v, s), s), -2, false, s)};
  }
  if (m >= n) {
    auto t = svd_jvp_tall(tangents[0], usv[0], usv[1], mT(usv[2], s), s);
    return {t[0], t[1], mT(t[2], s)};
  }
  // A^T = V S U^T: the tall rule's U factor is our V and its V factor our U.
  auto t = svd_jvp_tall(mT(tangents[0], s), mT(usv[2], s), usv[1], usv[0], s);
  return {t[2], t[1], mT(t[0], s)};
}

std::vector<array> SVD::vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                            const std::vector<int>&, const std::vector<array>& outputs) {
  const Stream& s = stream();
  const array& a = primals[0];
  int m = a.shape(-2), n = a.shape(-1), k = std::min(m, n);
  if (!compute_uv_) {
    // d s_i = u_i^T dA v_i. U and Vt come from an SVD of the primal, so this
    // rule is differentiable again.
    auto usv = linalg::svd(a, true, s);
    array u = leading_block(usv[0], m, k, s);
    array vt = leading_block(usv[2], k, n, s);
    return {matmul(scale_cols(u, cotangents[0], s), vt, s)};
  }
  if (m >= n) {
    return {svd_vjp_tall(outputs[0], outputs[1], mT(outputs[2], s), cotangents[0], cotangents[1],
                         mT(cotangents[2], s), s)};
  }
  return {mT(svd_vjp_tall(mT(outputs[2], s), outputs[1], outputs[0], mT(cotangents[2], s),
                          cotangents[1], cotangents[0], s),
             s)};
}

std::pair<std::vector<array>, std::vector<int>> SVD::vmap(const std::vector<array>& inputs,
                                                          const std::vector<int>& axes) {
  return vmap_leading(
      inputs, axes,
      [&](const std::vector<array>& x) { return linalg::svd(x[0], compute_uv_, stream()); },
      stream());
}

bool SVD::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const SVD*>(&other);
  return o && o->compute_uv_ == compute_uv_;
}

// ---------------------------------------------------------------- Eigh
// dw_i = v_i^T dA v_i and dV = V (F o V^T dA V) with F_ij = 1 / (w_j - w_i)
// (0 on the diagonal), giving the symmetric gradient V (diag(gw) + F o V^T gV) V^T.
// Needs distinct eigenvalues.

std::vector<array> Eigh::jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                             const std::vector<int>&) {
  const Stream& s = stream();
  std::string uplo(1, uplo_);
  auto [w, v] = linalg::eigh(primals[0], uplo, s);
  array da = from_triangle(tangents[0], uplo_ == 'U', s);
  array da_v = matmul(da, v, s);
  array dw = sum(multiply(v, da_v, s), -2, false, s);
  if (!compute_eigenvectors_) return {dw};
  array p = matmul(mT(v, s), da_v, s);
  return {dw, matmul(v, multiply(inv_gaps(w, s), p, s), s)};
}

std::vector<array> Eigh::vjp(const std::vector<array>& primals,
                             const std::vector<array>& cotangents, const std::vector<int>&,
                             const std::vector<array>& outputs) {
  const Stream& s = stream();
  std::string uplo(1, uplo_);
  array w = outputs[0];
  std::optional<array> v;
  if (compute_eigenvectors_) {
    v = outputs[1];
  } else {
    v = linalg::eigh(primals[0], uplo, s).second;
  }
  // diag(gw): the mask in diag_part broadcasts the row of gw to a square.
  array inner = diag_part(expand_dims(cotangents[0], -2, s), s);
  if (compute_eigenvectors_) {
    array f = inv_gaps(w, s);
    inner = add(inner, multiply(f, matmul(mT(*v, s), cotangents[1], s), s), s);
  }
  array g = matmul(matmul(*v, inner, s), mT(*v, s), s);
  g = multiply(array(0.5, g.dtype()), add(g, mT(g, s), s), s);
  return {to_triangle(g, uplo_ == 'U', s)};
}

std::pair<std::vector<array>, std::vector<int>> Eigh::vmap(const std::vector<array>& inputs,
                                                           const std::vector<int>& axes) {
  return vmap_leading(
      inputs, axes,
      [&](const std::vector<array>& x) {
        std::string uplo(1, uplo_);
        if (!compute_eigenvectors_)
          return std::vector<array>{linalg::eigvalsh(x[0], uplo, stream())};
        auto [w, v] = linalg::eigh(x[0], uplo, stream());
        return std::vector<array>{w, v};
      },
      stream());
}

bool Eigh::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const Eigh*>(&other);
  return o && o->uplo_ == uplo_ && o->compute_eigenvectors_ == compute_eigenvectors_;
}

}  // namespace mx
