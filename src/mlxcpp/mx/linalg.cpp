// mx::linalg ops: argument checks and shapes here, factorizations in the
// primitives (primitives/linalg.h), norms and derived ops composed from ops.
#include "mlxcpp/mx/linalg.h"

#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/linalg.h"

namespace mx::linalg {

namespace {

void check_float(const array& a, const char* op) {
  if (a.dtype() != float32 && a.dtype() != float64) {
    throw std::invalid_argument(std::string("[linalg::") + op +
                                "] needs a float32 or float64 array, got " + dtype_name(a.dtype()));
  }
}

void check_matrix(const array& a, const char* op, bool square) {
  check_float(a, op);
  if (a.ndim() < 2) {
    throw std::invalid_argument(std::string("[linalg::") + op +
                                "] needs an array with at least 2 dimensions, got shape " +
                                shape_str(a.shape()));
  }
  if (square && a.shape(-1) != a.shape(-2)) {
    throw std::invalid_argument(std::string("[linalg::") + op +
                                "] needs square matrices in the last two dimensions, got shape " +
                                shape_str(a.shape()));
  }
}

// a[..., :rows, :cols]
array leading_block(const array& a, int rows, int cols, const Stream& st) {
  Shape start(a.ndim(), 0), stop = a.shape();
  stop[a.ndim() - 2] = rows;
  stop[a.ndim() - 1] = cols;
  return slice(a, start, stop, st);
}

array matrix_transpose(const array& a, const Stream& st) { return swapaxes(a, -1, -2, st); }

}  // namespace

array inv(const array& a, StreamOrDevice s) {
  check_matrix(a, "inv", true);
  return array(a.shape(), a.dtype(), std::make_shared<Inverse>(to_stream(s), false, false), {a});
}

array tri_inv(const array& a, bool upper, StreamOrDevice s) {
  check_matrix(a, "tri_inv", true);
  return array(a.shape(), a.dtype(), std::make_shared<Inverse>(to_stream(s), true, upper), {a});
}

array cholesky(const array& a, bool upper, StreamOrDevice s) {
  check_matrix(a, "cholesky", true);
  return array(a.shape(), a.dtype(), std::make_shared<Cholesky>(to_stream(s), upper), {a});
}

array cholesky_inv(const array& a, bool upper, StreamOrDevice s) {
  check_matrix(a, "cholesky_inv", true);
  Stream st = to_stream(s);
  array f = tri_inv(a, upper, st);
  // A = L L^T gives A^-1 = L^-T L^-1; A = U^T U gives A^-1 = U^-1 U^-T.
  return upper ? matmul(f, matrix_transpose(f, st), st) : matmul(matrix_transpose(f, st), f, st);
}

array solve(const array& a, const array& b, StreamOrDevice s) {
  check_matrix(a, "solve", true);
  Stream st = to_stream(s);
  Dtype d = promote_types(a.dtype(), b.dtype());
  if (d != float32 && d != float64) {
    throw std::invalid_argument("[linalg::solve] needs float32 or float64 arrays, got " +
                                dtype_name(a.dtype()) + " and " + dtype_name(b.dtype()));
  }
  // b is a batch of vectors when it has one dimension fewer than a.
  bool vector = b.ndim() == a.ndim() - 1 || b.ndim() == 1;
  array bm = vector ? expand_dims(b, -1, st) : b;
  int n = a.shape(-1);
  if (bm.ndim() < 2 || bm.shape(-2) != n) {
    throw std::invalid_argument("[linalg::solve] a of shape " + shape_str(a.shape()) +
                                " and b of shape " + shape_str(b.shape()) +
                                " do not match: b needs " + std::to_string(n) + " rows");
  }
  Shape batch_a(a.shape().begin(), a.shape().end() - 2);
  Shape batch_b(bm.shape().begin(), bm.shape().end() - 2);
  Shape batch;
  try {
    batch = broadcast_shapes(batch_a, batch_b);
  } catch (const std::invalid_argument&) {
    throw std::invalid_argument("[linalg::solve] the batch dimensions of a " +
                                shape_str(a.shape()) + " and b " + shape_str(b.shape()) +
                                " do not broadcast");
  }
  Shape sa = batch, sb = batch;
  sa.insert(sa.end(), {n, n});
  sb.insert(sb.end(), {n, bm.shape(-1)});
  array aa = broadcast_to(astype(a, d, st), sa, st);
  array bb = broadcast_to(astype(bm, d, st), sb, st);
  array x(sb, d, std::make_shared<Solve>(st), {aa, bb});
  return vector ? squeeze(x, -1, st) : x;
}

array solve_triangular(const array& a, const array& b, bool upper, StreamOrDevice s) {
  check_matrix(a, "solve_triangular", true);
  Stream st = to_stream(s);
  array ainv = tri_inv(a, upper, st);
  bool vector = b.ndim() == a.ndim() - 1 || b.ndim() == 1;
  if (vector) return squeeze(matmul(ainv, expand_dims(b, -1, st), st), -1, st);
  return matmul(ainv, b, st);
}

std::pair<array, array> qr(const array& a, StreamOrDevice s) {
  check_matrix(a, "qr", false);
  int m = a.shape(-2), n = a.shape(-1), k = std::min(m, n);
  Shape qs = a.shape(), rs = a.shape();
  qs.back() = k;
  rs[rs.size() - 2] = k;
  auto out = array::make_arrays({qs, rs}, {a.dtype(), a.dtype()},
                                std::make_shared<QRF>(to_stream(s)), {a});
  return {out[0], out[1]};
}

std::vector<array> svd(const array& a, bool compute_uv, StreamOrDevice s) {
  check_matrix(a, "svd", false);
  int m = a.shape(-2), n = a.shape(-1);
  Shape batch(a.shape().begin(), a.shape().end() - 2);
  Shape ss = batch;
  ss.push_back(std::min(m, n));
  auto prim = std::make_shared<SVD>(to_stream(s), compute_uv);
  if (!compute_uv) return array::make_arrays({ss}, {a.dtype()}, prim, {a});
  Shape us = batch, vs = batch;
  us.insert(us.end(), {m, m});
  vs.insert(vs.end(), {n, n});
  return array::make_arrays({us, ss, vs}, {a.dtype(), a.dtype(), a.dtype()}, prim, {a});
}

array pinv(const array& a, StreamOrDevice s) {
  check_matrix(a, "pinv", false);
  Stream st = to_stream(s);
  int m = a.shape(-2), n = a.shape(-1), k = std::min(m, n);
  auto usv = svd(a, true, st);
  array u = leading_block(usv[0], m, k, st);
  array vt = leading_block(usv[2], k, n, st);
  array sv = usv[1];
  // Singular values below max(M, N) * eps * s_max are treated as zero (as NumPy's matrix_rank).
  double eps = a.dtype() == float64 ? std::numeric_limits<double>::epsilon()
                                    : std::numeric_limits<float>::epsilon();
  array cutoff = multiply(array(std::max(m, n) * eps, a.dtype()), max(sv, -1, true, st), st);
  array inv_s = where(greater(sv, cutoff, st), reciprocal(sv, st), array(0.0, a.dtype()), st);
  return matmul(multiply(matrix_transpose(vt, st), expand_dims(inv_s, -2, st), st),
                matrix_transpose(u, st), st);
}

array cross(const array& a, const array& b, int axis, StreamOrDevice s) {
  Stream st = to_stream(s);
  if (a.ndim() != b.ndim()) {
    throw std::invalid_argument("[linalg::cross] a " + shape_str(a.shape()) + " and b " +
                                shape_str(b.shape()) + " must have the same number of dimensions");
  }
  int ax = normalize_axis(axis, static_cast<int>(a.ndim()), "linalg::cross");
  if (a.shape(ax) != 3 || b.shape(ax) != 3) {
    throw std::invalid_argument("[linalg::cross] a " + shape_str(a.shape()) + " and b " +
                                shape_str(b.shape()) + " need size 3 along axis " +
                                std::to_string(axis));
  }
  Shape shape = a.shape();
  Shape bs = b.shape();
  shape[ax] = bs[ax] = 1;
  shape = broadcast_shapes(shape, bs);
  shape[ax] = 3;
  Dtype d = promote_types(a.dtype(), b.dtype());
  array x = broadcast_to(astype(a, d, st), shape, st);
  array y = broadcast_to(astype(b, d, st), shape, st);
  auto comp = [&](const array& v, int i) {
    Shape start(v.ndim(), 0), stop = v.shape();
    start[ax] = i;
    stop[ax] = i + 1;
    return slice(v, start, stop, st);
  };
  array x0 = comp(x, 0), x1 = comp(x, 1), x2 = comp(x, 2);
  array y0 = comp(y, 0), y1 = comp(y, 1), y2 = comp(y, 2);
  return concatenate({subtract(multiply(x1, y2, st), multiply(x2, y1, st), st),
                      subtract(multiply(x2, y0, st), multiply(x0, y2, st), st),
                      subtract(multiply(x0, y1, st), multiply(x1, y0, st), st)},
                     ax, st);
}

namespace {

char check_uplo(const std::string& uplo, const char* op) {
  if (uplo != "L" && uplo != "U") {
    throw std::invalid_argument(std::string("[linalg::") + op + "] UPLO must be 'L' or 'U', got '" +
                                uplo + "'");
  }
  return uplo[0];
}

}  // namespace

array eigvalsh(const array& a, std::string UPLO, StreamOrDevice s) {
  check_matrix(a, "eigvalsh", true);
  char uplo = check_uplo(UPLO, "eigvalsh");
  Shape ws(a.shape().begin(), a.shape().end() - 1);
  return array(ws, a.dtype(), std::make_shared<Eigh>(to_stream(s), uplo, false), {a});
}

std::pair<array, array> eigh(const array& a, std::string UPLO, StreamOrDevice s) {
  check_matrix(a, "eigh", true);
  char uplo = check_uplo(UPLO, "eigh");
  Shape ws(a.shape().begin(), a.shape().end() - 1);
  auto out = array::make_arrays({ws, a.shape()}, {a.dtype(), a.dtype()},
                                std::make_shared<Eigh>(to_stream(s), uplo, true), {a});
  return {out[0], out[1]};
}

// ---------------------------------------------------------------- norms

namespace {

array as_inexact(const array& a, const Stream& st) {
  return is_inexact(a.dtype()) ? a : astype(a, float32, st);
}

std::vector<int> resolve_axes(const std::vector<int>& axes, int ndim) {
  std::vector<int> out;
  for (int ax : axes) out.push_back(normalize_axis(ax, ndim, "linalg::norm"));
  if (out.size() == 2 && out[0] == out[1]) {
    throw std::invalid_argument("[linalg::norm] the two axes must differ, got " +
                                std::to_string(axes[0]) + " and " + std::to_string(axes[1]));
  }
  return out;
}

array vector_norm(const array& a, double ord, const std::vector<int>& axes, bool keepdims,
                  const Stream& st) {
  array x = abs(a, st);
  if (std::isinf(ord)) return ord > 0 ? max(x, axes, keepdims, st) : min(x, axes, keepdims, st);
  if (ord == 0) return sum(astype(not_equal(a, array(0), st), x.dtype(), st), axes, keepdims, st);
  if (ord == 1) return sum(x, axes, keepdims, st);
  if (ord == 2) return sqrt(sum(square(x, st), axes, keepdims, st), st);
  array p(ord, x.dtype());
  return power(sum(power(x, p, st), axes, keepdims, st), array(1.0 / ord, x.dtype()), st);
}

// Singular values of the matrices spanned by axes (r, c), with those axes
// moved to the end.
array singular_values(const array& a, int r, int c, const Stream& st) {
  std::vector<int> perm;
  for (int i = 0; i < static_cast<int>(a.ndim()); ++i) {
    if (i != r && i != c) perm.push_back(i);
  }
  perm.push_back(r);
  perm.push_back(c);
  array x = transpose(a, perm, st);
  if (!issubdtype(x.dtype(), floating) || x.dtype() == float16 || x.dtype() == bfloat16) {
    x = astype(x, float32, st);
  }
  return svd(x, false, st)[0];
}

// Re-inserts the reduced axes r and c (as size 1) into a result that lost them.
array keep_matrix_dims(const array& x, int r, int c, const Stream& st) {
  return expand_dims(x, {std::min(r, c), std::max(r, c)}, st);
}

array matrix_norm(const array& a, double ord, int r, int c, bool keepdims, const Stream& st) {
  if (ord == 2 || ord == -2) {
    array sv = singular_values(a, r, c, st);
    array out = ord > 0 ? max(sv, -1, false, st) : min(sv, -1, false, st);
    return keepdims ? keep_matrix_dims(out, r, c, st) : out;
  }
  bool col_sums = ord == 1 || ord == -1;  // sum down each column, then pick over columns
  bool row_sums = std::isinf(ord);
  if (!col_sums && !row_sums) {
    throw std::invalid_argument("[linalg::norm] invalid ord " + std::to_string(ord) +
                                " for a matrix norm (expected 1, -1, 2, -2, inf or -inf)");
  }
  int sum_axis = col_sums ? r : c, pick_axis = col_sums ? c : r;
  array sums = sum(abs(a, st), sum_axis, keepdims, st);
  if (!keepdims && pick_axis > sum_axis) --pick_axis;
  return ord > 0 ? max(sums, pick_axis, keepdims, st) : min(sums, pick_axis, keepdims, st);
}

}  // namespace

array norm(const array& a, double ord, const std::optional<std::vector<int>>& axis, bool keepdims,
           StreamOrDevice s) {
  Stream st = to_stream(s);
  array x = as_inexact(a, st);
  int ndim = static_cast<int>(a.ndim());
  std::vector<int> axes;
  if (axis) {
    axes = resolve_axes(*axis, ndim);
  } else if (ndim == 1 || ndim == 2) {
    axes.resize(ndim);
    std::iota(axes.begin(), axes.end(), 0);
  } else {
    throw std::invalid_argument(
        "[linalg::norm] with an ord and no axis, the array must be 1-D or "
        "2-D; got shape " +
        shape_str(a.shape()));
  }
  if (axes.size() == 1) return vector_norm(x, ord, axes, keepdims, st);
  if (axes.size() == 2) return matrix_norm(x, ord, axes[0], axes[1], keepdims, st);
  throw std::invalid_argument("[linalg::norm] takes 1 or 2 axes, got " +
                              std::to_string(axes.size()));
}

array norm(const array& a, const std::string& ord, const std::optional<std::vector<int>>& axis,
           bool keepdims, StreamOrDevice s) {
  Stream st = to_stream(s);
  array x = as_inexact(a, st);
  int ndim = static_cast<int>(a.ndim());
  std::vector<int> axes;
  if (axis) {
    axes = resolve_axes(*axis, ndim);
  } else if (ndim == 2) {
    axes = {0, 1};
  } else {
    throw std::invalid_argument("[linalg::norm] ord '" + ord +
                                "' without an axis needs a 2-D array; got shape " +
                                shape_str(a.shape()));
  }
  if (axes.size() != 2) {
    throw std::invalid_argument("[linalg::norm] ord '" + ord +
                                "' is a matrix norm and needs 2 "
                                "axes, got " +
                                std::to_string(axes.size()));
  }
  if (ord == "fro" || ord == "f") {
    return sqrt(sum(square(abs(x, st), st), axes, keepdims, st), st);
  }
  if (ord == "nuc") {
    array out = sum(singular_values(x, axes[0], axes[1], st), -1, false, st);
    return keepdims ? keep_matrix_dims(out, axes[0], axes[1], st) : out;
  }
  throw std::invalid_argument("[linalg::norm] unknown ord '" + ord + "' (expected 'fro' or 'nuc')");
}

array norm(const array& a, const std::optional<std::vector<int>>& axis, bool keepdims,
           StreamOrDevice s) {
  Stream st = to_stream(s);
  array x = as_inexact(a, st);
  if (!axis) {
    array flat = reshape(abs(x, st), {-1}, st);
    array out = sqrt(sum(square(flat, st), false, st), st);
    if (keepdims) out = reshape(out, Shape(a.ndim(), 1), st);
    return out;
  }
  auto axes = resolve_axes(*axis, static_cast<int>(a.ndim()));
  if (axes.size() > 2) {
    throw std::invalid_argument("[linalg::norm] takes 1 or 2 axes, got " +
                                std::to_string(axes.size()));
  }
  // The 2-norm of vectors and the Frobenius norm of matrices are the same sum.
  return sqrt(sum(square(abs(x, st), st), axes, keepdims, st), st);
}

}  // namespace mx::linalg
