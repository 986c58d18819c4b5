// CPU kernels of the linear-algebra primitives: each matrix of the batch is
// copied into the output (or a scratch buffer) and factored in place by LAPACK.
#include <lapacke.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/primitives/linalg.h"

namespace mx {

namespace {

std::string where(const char* op, size_t b, size_t batch) {
  std::string s = std::string("[linalg::") + op + "] ";
  return s + (batch > 1 ? "matrix " + std::to_string(b) + " of the batch " : "the matrix ");
}

// Dispatches to float or double; the ops only ever build these two.
template <typename F>
void dispatch_lapack(Dtype d, const char* op, F&& f) {
  if (d == float32) {
    f(float{});
  } else if (d == float64) {
    f(double{});
  } else {
    throw std::invalid_argument(std::string("[linalg::") + op + "] needs float32 or float64, got " +
                                dtype_name(d));
  }
}

// Number of matrices and their rows and columns.
struct BatchShape {
  size_t batch;
  int m, n;
};
BatchShape batch_shape(const array& a) {
  int m = a.shape(-2), n = a.shape(-1);
  size_t mat = static_cast<size_t>(m) * n;
  return {mat == 0 ? 0 : a.size() / mat, m, n};
}

// Copies the input into `out`'s fresh row-contiguous buffer.
void copy_to_output(const array& in, array& out) {
  cpu::allocate_row_contiguous(out);
  if (in.size() > 0) cpu::copy_into(in, out);
}

template <typename T>
void zero_triangle(T* a, int n, bool upper_part) {
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      if (upper_part ? j > i : j < i) a[i * n + j] = T(0);
    }
  }
}

template <typename T>
lapack_int getrf(int n, T* a, lapack_int* ipiv) {
  if constexpr (std::is_same_v<T, float>) {
    return LAPACKE_sgetrf(LAPACK_ROW_MAJOR, n, n, a, n, ipiv);
  } else {
    return LAPACKE_dgetrf(LAPACK_ROW_MAJOR, n, n, a, n, ipiv);
  }
}
template <typename T>
lapack_int getri(int n, T* a, const lapack_int* ipiv) {
  if constexpr (std::is_same_v<T, float>) {
    return LAPACKE_sgetri(LAPACK_ROW_MAJOR, n, a, n, ipiv);
  } else {
    return LAPACKE_dgetri(LAPACK_ROW_MAJOR, n, a, n, ipiv);
  }
}
template <typename T>
lapack_int trtri(char uplo, int n, T* a) {
  if constexpr (std::is_same_v<T, float>) {
    return LAPACKE_strtri(LAPACK_ROW_MAJOR, uplo, 'N', n, a, n);
  } else {
    return LAPACKE_dtrtri(LAPACK_ROW_MAJOR, uplo, 'N', n, a, n);
  }
}
template <typename T>
lapack_int potrf(char uplo, int n, T* a) {
  if constexpr (std::is_same_v<T, float>) {
    return LAPACKE_spotrf(LAPACK_ROW_MAJOR, uplo, n, a, n);
  } else {
    return LAPACKE_dpotrf(LAPACK_ROW_MAJOR, uplo, n, a, n);
  }
}
template <typename T>
lapack_int gesv(int n, int k, T* a, lapack_int* ipiv, T* b) {
  if constexpr (std::is_same_v<T, float>) {
    return LAPACKE_sgesv(LAPACK_ROW_MAJOR, n, k, a, n, ipiv, b, k);
  } else {
    return LAPACKE_dgesv(LAPACK_ROW_MAJOR, n, k, a, n, ipiv, b, k);
  }
}
template <typename T>
lapack_int geqrf(int m, int n, T* a, T* tau) {
  if constexpr (std::is_same_v<T, float>) {
    return LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, m, n, a, n, tau);
  } else {
    return LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, m, n, a, n, tau);
  }
}
template <typename T>
lapack_int orgqr(int m, int n, int k, T* a, int lda, const T* tau) {
  if constexpr (std::is_same_v<T, float>) {
    return LAPACKE_sorgqr(LAPACK_ROW_MAJOR, m, n, k, a, lda, tau);
  } else {
    return LAPACKE_dorgqr(LAPACK_ROW_MAJOR, m, n, k, a, lda, tau);
  }
}
template <typename T>
lapack_int gesdd(char jobz, int m, int n, T* a, T* s, T* u, T* vt) {
  // With jobz 'N' the U/Vt arguments are not referenced, but LAPACKE still
  // checks their leading dimensions.
  if constexpr (std::is_same_v<T, float>) {
    return LAPACKE_sgesdd(LAPACK_ROW_MAJOR, jobz, m, n, a, n, s, u, std::max(m, 1), vt,
                          std::max(n, 1));
  } else {
    return LAPACKE_dgesdd(LAPACK_ROW_MAJOR, jobz, m, n, a, n, s, u, std::max(m, 1), vt,
                          std::max(n, 1));
  }
}
template <typename T>
lapack_int syevd(char jobz, char uplo, int n, T* a, T* w) {
  if constexpr (std::is_same_v<T, float>) {
    return LAPACKE_ssyevd(LAPACK_ROW_MAJOR, jobz, uplo, n, a, n, w);
  } else {
    return LAPACKE_dsyevd(LAPACK_ROW_MAJOR, jobz, uplo, n, a, n, w);
  }
}

}  // namespace

void Inverse::eval_cpu(const std::vector<array>& inputs, array& out) {
  const char* op = tri_ ? "tri_inv" : "inv";
  copy_to_output(inputs[0], out);
  auto [batch, m, n] = batch_shape(out);
  dispatch_lapack(out.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    T* base = out.data<T>();
    std::vector<lapack_int> ipiv(n);
    for (size_t b = 0; b < batch; ++b) {
      T* a = base + b * static_cast<size_t>(n) * n;
      if (tri_) {
        zero_triangle(a, n, !upper_);
        lapack_int info = trtri(upper_ ? 'U' : 'L', n, a);
        if (info > 0) {
          throw std::invalid_argument(where(op, b, batch) + "is singular: diagonal entry " +
                                      std::to_string(info - 1) + " is zero");
        }
        continue;
      }
      lapack_int info = getrf(n, a, ipiv.data());
      if (info > 0) {
        throw std::invalid_argument(where(op, b, batch) + "is singular: U(" +
                                    std::to_string(info - 1) + ", " + std::to_string(info - 1) +
                                    ") of its LU factorization is zero");
      }
      info = getri(n, a, ipiv.data());
      if (info != 0) throw std::runtime_error(where(op, b, batch) + "could not be inverted");
    }
  });
}

void Cholesky::eval_cpu(const std::vector<array>& inputs, array& out) {
  copy_to_output(inputs[0], out);
  auto [batch, m, n] = batch_shape(out);
  dispatch_lapack(out.dtype(), "cholesky", [&](auto tag) {
    using T = decltype(tag);
    T* base = out.data<T>();
    for (size_t b = 0; b < batch; ++b) {
      T* a = base + b * static_cast<size_t>(n) * n;
      lapack_int info = potrf(upper_ ? 'U' : 'L', n, a);
      if (info > 0) {
        throw std::invalid_argument(where("cholesky", b, batch) +
                                    "is not positive definite (its leading minor of order " +
                                    std::to_string(info) + " is not positive)");
      }
      zero_triangle(a, n, !upper_);
    }
  });
}

void Solve::eval_cpu(const std::vector<array>& inputs, array& out) {
  array a = cpu::ensure_row_contiguous(inputs[0]);
  copy_to_output(inputs[1], out);
  int n = a.shape(-1), k = out.shape(-1);
  size_t batch = n == 0 ? 0 : a.size() / (static_cast<size_t>(n) * n);
  if (k == 0) return;
  dispatch_lapack(out.dtype(), "solve", [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> lu(static_cast<size_t>(n) * n);
    std::vector<lapack_int> ipiv(n);
    for (size_t b = 0; b < batch; ++b) {
      std::memcpy(lu.data(), a.data<T>() + b * lu.size(), lu.size() * sizeof(T));
      T* x = out.data<T>() + b * static_cast<size_t>(n) * k;
      lapack_int info = gesv(n, k, lu.data(), ipiv.data(), x);
      if (info > 0) {
        throw std::invalid_argument(where("solve", b, batch) + "is singular: U(" +
                                    std::to_string(info - 1) + ", " + std::to_string(info - 1) +
                                    ") of its LU factorization is zero");
      }
    }
  });
}

void QRF::eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) {
  array in = cpu::ensure_row_contiguous(inputs[0]);
  array& q = outputs[0];
  array& r = outputs[1];
  cpu::allocate_row_contiguous(q);
  cpu::allocate_row_contiguous(r);
  auto [batch, m, n] = batch_shape(in);
  int k = std::min(m, n);
  dispatch_lapack(in.dtype(), "qr", [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> a(static_cast<size_t>(m) * n), tau(std::max(k, 1));
    for (size_t b = 0; b < batch; ++b) {
      std::memcpy(a.data(), in.data<T>() + b * a.size(), a.size() * sizeof(T));
      lapack_int info = geqrf(m, n, a.data(), tau.data());
      if (info != 0) throw std::runtime_error(where("qr", b, batch) + "failed in geqrf");
      T* rp = r.data<T>() + b * static_cast<size_t>(k) * n;
      for (int i = 0; i < k; ++i) {
        for (int j = 0; j < n; ++j) rp[i * n + j] = j >= i ? a[i * n + j] : T(0);
      }
      // The first k columns of `a` (row stride n) hold the reflectors.
      info = orgqr(m, k, k, a.data(), n, tau.data());
      if (info != 0) throw std::runtime_error(where("qr", b, batch) + "failed in orgqr");
      T* qp = q.data<T>() + b * static_cast<size_t>(m) * k;
      for (int i = 0; i < m; ++i) {
        for (int j = 0; j < k; ++j) qp[i * k + j] = a[i * n + j];
      }
    }
  });
}

void SVD::eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) {
  array in = cpu::ensure_row_contiguous(inputs[0]);
  for (auto& o : outputs) cpu::allocate_row_contiguous(o);
  auto [batch, m, n] = batch_shape(in);
  int k = std::min(m, n);
  dispatch_lapack(in.dtype(), "svd", [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> a(static_cast<size_t>(m) * n), dummy(1);
    array& s = compute_uv_ ? outputs[1] : outputs[0];
    for (size_t b = 0; b < batch; ++b) {
      std::memcpy(a.data(), in.data<T>() + b * a.size(), a.size() * sizeof(T));
      T* sp = s.data<T>() + b * k;
      lapack_int info;
      if (compute_uv_) {
        T* u = outputs[0].data<T>() + b * static_cast<size_t>(m) * m;
        T* vt = outputs[2].data<T>() + b * static_cast<size_t>(n) * n;
        info = gesdd('A', m, n, a.data(), sp, u, vt);
      } else {
        info = gesdd('N', m, n, a.data(), sp, dummy.data(), dummy.data());
      }
      if (info > 0) throw std::runtime_error(where("svd", b, batch) + "did not converge");
      if (info < 0) throw std::runtime_error(where("svd", b, batch) + "had an invalid argument");
    }
  });
}

void Eigh::eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) {
  array in = cpu::ensure_row_contiguous(inputs[0]);
  for (auto& o : outputs) cpu::allocate_row_contiguous(o);
  auto [batch, m, n] = batch_shape(in);
  dispatch_lapack(in.dtype(), "eigh", [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> scratch(compute_eigenvectors_ ? 0 : static_cast<size_t>(n) * n);
    for (size_t b = 0; b < batch; ++b) {
      T* a = compute_eigenvectors_ ? outputs[1].data<T>() + b * static_cast<size_t>(n) * n
                                   : scratch.data();
      std::memcpy(a, in.data<T>() + b * static_cast<size_t>(n) * n,
                  static_cast<size_t>(n) * n * sizeof(T));
      T* w = outputs[0].data<T>() + b * n;
      lapack_int info = syevd(compute_eigenvectors_ ? 'V' : 'N', uplo_, n, a, w);
      if (info > 0) throw std::runtime_error(where("eigh", b, batch) + "did not converge");
    }
  });
}

}  // namespace mx
