// The linear-algebra primitives on the GPU through cuSOLVER, with the CPU
// kernels' semantics (backend/cpu/linalg.cpp): float32 and float64, every
// matrix of the batch factored in turn on the stream, and the same errors for
// singular or non-positive-definite inputs. cuSOLVER is column-major and our
// arrays are row-major: a row-major matrix read column-major is its transpose.
// Symmetric and triangular routines use that directly (the triangle flips);
// LU, QR and tall SVDs factor the matrix itself (transposed into scratch), so
// that pivots, Householder signs and the reported singular pivot are those of
// LAPACK on the CPU. Data-dependent errors (a singular matrix, a failed
// convergence) are read on the host after the stream has run, as on the CPU
// the factorization has finished before the error is known.
#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "mlxcpp/mx/backend/cuda/cusolver.h"
#include "mlxcpp/mx/backend/cuda/kernel_utils.cuh"
#include "mlxcpp/mx/primitives/linalg.h"

namespace mx::cuda {
namespace {

// ---------------------------------------------------------------- kernels

// dst (batch, cols, rows) = src (batch, rows, cols) with its last two axes
// swapped; the batch strides are given (a matrix may be the leading part of
// a larger one).
template <typename T>
__global__ void transpose_kernel(const T* src, T* dst, int64_t batch, int64_t rows, int64_t cols,
                                 int64_t src_stride, int64_t dst_stride) {
  const int64_t mat = rows * cols, total = batch * mat;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += step) {
    const int64_t b = i / mat, r = i - b * mat;
    const int64_t j = r / rows, k = r - j * rows;  // dst[b][j][k] = src[b][k][j]
    dst[b * dst_stride + j * rows + k] = src[b * src_stride + k * cols + j];
  }
}

// Zeroes the entries above (upper_part) or below the diagonal of each
// row-major n x n matrix.
template <typename T>
__global__ void zero_triangle_kernel(T* a, int64_t batch, int64_t n, bool upper_part) {
  const int64_t total = batch * n * n;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += step) {
    const int64_t r = (i / n) % n, c = i % n;
    if (upper_part ? c > r : c < r) a[i] = T(0);
  }
}

template <typename T>
__global__ void eye_kernel(T* a, int64_t batch, int64_t n) {
  const int64_t total = batch * n * n;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += step) {
    a[i] = (i / n) % n == i % n ? T(1) : T(0);
  }
}

// R (batch, k, n), row-major, from the upper triangle of geqrf's column-major
// (m x n) result.
template <typename T>
__global__ void extract_r_kernel(const T* a, T* r, int64_t batch, int64_t m, int64_t n, int64_t k) {
  const int64_t total = batch * k * n;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += step) {
    const int64_t b = i / (k * n), row = (i / n) % k, col = i % n;
    r[i] = col >= row ? a[b * m * n + row + col * m] : T(0);
  }
}

template <typename T>
void transpose(const T* src, T* dst, size_t batch, int64_t rows, int64_t cols, int64_t src_stride,
               int64_t dst_stride, cudaStream_t s) {
  const size_t total = batch * static_cast<size_t>(rows) * cols;
  if (total == 0) return;
  transpose_kernel<T>
      <<<grid_for(total), 256, 0, s>>>(src, dst, batch, rows, cols, src_stride, dst_stride);
  check_launch("linalg transpose");
}

template <typename T>
void zero_triangle(T* a, size_t batch, int64_t n, bool upper_part, cudaStream_t s) {
  const size_t total = batch * static_cast<size_t>(n) * n;
  if (total == 0) return;
  zero_triangle_kernel<T><<<grid_for(total), 256, 0, s>>>(a, batch, n, upper_part);
  check_launch("linalg zero_triangle");
}

// ---------------------------------------------------------------- helpers

// The CPU kernels' wording, so that errors read the same on both devices.
std::string where(const char* op, size_t b, size_t batch) {
  std::string s = std::string("[linalg::") + op + "] ";
  return s + (batch > 1 ? "matrix " + std::to_string(b) + " of the batch " : "the matrix ");
}

template <typename F>
void dispatch_solver(Dtype d, const char* op, F&& f) {
  if (d == float32) {
    f(float{});
  } else if (d == float64) {
    f(double{});
  } else {
    throw std::invalid_argument(std::string("[linalg::") + op + "] needs float32 or float64, got " +
                                dtype_name(d));
  }
}

template <typename T>
constexpr cudaDataType data_type() {
  return std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_64F;
}

struct BatchShape {
  size_t batch;
  int m, n;
};
BatchShape batch_shape(const array& a) {
  int m = a.shape(-2), n = a.shape(-1);
  size_t mat = static_cast<size_t>(m) * n;
  return {mat == 0 ? 0 : a.size() / mat, m, n};
}

// A buffer of `count` elements of `dtype`, kept alive until the stream has
// used it.
array scratch(size_t count, Dtype dtype, const Stream& s) {
  constexpr size_t kRow = size_t{1} << 20;
  count = std::max<size_t>(count, 1);
  Shape shape =
      count <= static_cast<size_t>(INT32_MAX)
          ? Shape{static_cast<int32_t>(count)}
          : Shape{static_cast<int32_t>((count + kRow - 1) / kRow), static_cast<int32_t>(kRow)};
  array a(shape, dtype, nullptr, {});
  allocate_row_contiguous(a);
  keep_until_done(s, a);
  return a;
}

// One factorization's resources: the stream's solver handle (locked for the
// whole primitive), device workspace, info values (one per matrix, plus one
// for calls whose info only reports invalid arguments) and host workspace.
struct Solver {
  const Cusolver& lib = cusolver();
  cudaStream_t stream;
  SolverHandle& h;
  std::unique_lock<std::mutex> lock;
  Stream mx_stream;
  array info;
  array workspace;
  size_t device_bytes = 0;

  Solver(const Primitive& p, size_t batch)
      : stream(stream_of(p)),
        h(solver_for(stream)),
        lock(h.mu),
        mx_stream(p.stream()),
        info(scratch(batch + 1, int32, p.stream())),
        workspace(scratch(1, uint8, p.stream())) {}

  // Grows the workspaces to the sizes a routine asked for.
  void reserve(size_t device, size_t host) {
    if (device > device_bytes) {
      workspace = scratch(device, uint8, mx_stream);
      device_bytes = device;
    }
    if (host > h.host_workspace.size()) h.host_workspace.resize(host);
  }
  void* dev() { return workspace.data<char>(); }
  void* host() { return h.host_workspace.empty() ? nullptr : h.host_workspace.data(); }
  int* info_of(size_t b) { return info.data<int32_t>() + b; }
  int* unused_info(size_t batch) { return info.data<int32_t>() + batch; }

  // Waits for the stream, then reads the info value of each matrix.
  std::vector<int> infos(size_t batch) {
    check(cudaStreamSynchronize(stream), "waiting for a factorization");
    const int* p = info.data<int32_t>();
    return std::vector<int>(p, p + batch);
  }
};

cublasFillMode_t flipped(bool row_major_upper) {
  return row_major_upper ? CUBLAS_FILL_MODE_LOWER : CUBLAS_FILL_MODE_UPPER;
}

// ---------------------------------------------------------------- primitives

// Triangular inverse: the row-major triangle read column-major is the other
// triangle of the transpose, whose inverse read row-major is the inverse.
void tri_inverse(Primitive& p, const array& in, array& out, bool upper) {
  allocate_row_contiguous(out);
  auto [batch, m, n] = batch_shape(out);
  if (batch == 0) return;
  cudaStream_t s = stream_of(p);
  copy_into(in, out, p.stream());
  dispatch_solver(out.dtype(), "tri_inv", [&](auto tag) {
    using T = decltype(tag);
    T* base = out.data<T>();
    zero_triangle(base, batch, n, !upper, s);
    Solver sv(p, batch);
    size_t dev = 0, host = 0;
    check_cusolver(sv.lib.trtri_buffer_size(sv.h.handle, flipped(upper), CUBLAS_DIAG_NON_UNIT, n,
                                            data_type<T>(), base, n, &dev, &host),
                   "trtri_bufferSize");
    sv.reserve(dev, host);
    for (size_t b = 0; b < batch; ++b) {
      check_cusolver(sv.lib.trtri(sv.h.handle, flipped(upper), CUBLAS_DIAG_NON_UNIT, n,
                                  data_type<T>(), base + b * static_cast<size_t>(n) * n, n,
                                  sv.dev(), dev, sv.host(), host, sv.info_of(b)),
                     "trtri");
    }
    auto info = sv.infos(batch);
    for (size_t b = 0; b < batch; ++b) {
      if (info[b] > 0) {
        throw std::invalid_argument(where("tri_inv", b, batch) + "is singular: diagonal entry " +
                                    std::to_string(info[b] - 1) + " is zero");
      }
    }
  });
}

// General inverse: A (transposed into column-major) is LU-factored as LAPACK
// does; solving A^T Y = I gives Y = A^-T column-major, which read row-major
// is A^-1.
void inverse_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  auto& inv = static_cast<Inverse&>(p);
  if (inv.triangular()) {
    tri_inverse(p, inputs[0], outputs[0], inv.upper());
    return;
  }
  array& out = outputs[0];
  allocate_row_contiguous(out);
  auto [batch, m, n] = batch_shape(out);
  if (batch == 0) return;
  cudaStream_t s = stream_of(p);
  array a = ensure_row_contiguous(inputs[0], p.stream());
  dispatch_solver(out.dtype(), "inv", [&](auto tag) {
    using T = decltype(tag);
    const size_t mat = static_cast<size_t>(n) * n;
    array w = scratch(batch * mat, out.dtype(), p.stream());
    array ipiv = scratch(n, int64, p.stream());
    transpose(a.data<T>(), w.data<T>(), batch, n, n, mat, mat, s);
    eye_kernel<T><<<grid_for(batch * mat), 256, 0, s>>>(out.data<T>(), batch, n);
    check_launch("linalg eye");
    Solver sv(p, batch);
    size_t dev = 0, host = 0;
    check_cusolver(sv.lib.getrf_buffer_size(sv.h.handle, sv.h.params, n, n, data_type<T>(),
                                            w.data<T>(), n, data_type<T>(), &dev, &host),
                   "getrf_bufferSize");
    sv.reserve(dev, host);
    for (size_t b = 0; b < batch; ++b) {
      T* wb = w.data<T>() + b * mat;
      check_cusolver(
          sv.lib.getrf(sv.h.handle, sv.h.params, n, n, data_type<T>(), wb, n, ipiv.data<int64_t>(),
                       data_type<T>(), sv.dev(), dev, sv.host(), host, sv.info_of(b)),
          "getrf");
      check_cusolver(sv.lib.getrs(sv.h.handle, sv.h.params, CUBLAS_OP_T, n, n, data_type<T>(), wb,
                                  n, ipiv.data<int64_t>(), data_type<T>(), out.data<T>() + b * mat,
                                  n, sv.unused_info(batch)),
                     "getrs");
    }
    auto info = sv.infos(batch);
    for (size_t b = 0; b < batch; ++b) {
      if (info[b] > 0) {
        throw std::invalid_argument(
            where("inv", b, batch) + "is singular: U(" + std::to_string(info[b] - 1) + ", " +
            std::to_string(info[b] - 1) + ") of its LU factorization is zero");
      }
    }
  });
}

// Cholesky: the selected row-major triangle is the other column-major one.
void cholesky_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  const bool upper = static_cast<Cholesky&>(p).upper();
  array& out = outputs[0];
  allocate_row_contiguous(out);
  auto [batch, m, n] = batch_shape(out);
  if (batch == 0) return;
  cudaStream_t s = stream_of(p);
  copy_into(inputs[0], out, p.stream());
  dispatch_solver(out.dtype(), "cholesky", [&](auto tag) {
    using T = decltype(tag);
    const size_t mat = static_cast<size_t>(n) * n;
    T* base = out.data<T>();
    Solver sv(p, batch);
    size_t dev = 0, host = 0;
    check_cusolver(sv.lib.potrf_buffer_size(sv.h.handle, sv.h.params, flipped(upper), n,
                                            data_type<T>(), base, n, data_type<T>(), &dev, &host),
                   "potrf_bufferSize");
    sv.reserve(dev, host);
    for (size_t b = 0; b < batch; ++b) {
      check_cusolver(
          sv.lib.potrf(sv.h.handle, sv.h.params, flipped(upper), n, data_type<T>(), base + b * mat,
                       n, data_type<T>(), sv.dev(), dev, sv.host(), host, sv.info_of(b)),
          "potrf");
    }
    zero_triangle(base, batch, n, !upper, s);
    auto info = sv.infos(batch);
    for (size_t b = 0; b < batch; ++b) {
      if (info[b] > 0) {
        throw std::invalid_argument(where("cholesky", b, batch) +
                                    "is not positive definite (its leading minor of order " +
                                    std::to_string(info[b]) + " is not positive)");
      }
    }
  });
}

// a x = b with a LU-factored (as LAPACK's gesv does) and b column-major.
void solve_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  array& out = outputs[0];
  allocate_row_contiguous(out);
  const int n = inputs[0].shape(-1), k = out.shape(-1);
  const size_t mat = static_cast<size_t>(n) * n, rhs = static_cast<size_t>(n) * k;
  const size_t batch = n == 0 ? 0 : inputs[0].size() / mat;
  if (k == 0 || batch == 0) return;
  cudaStream_t s = stream_of(p);
  array a = ensure_row_contiguous(inputs[0], p.stream());
  array bm = ensure_row_contiguous(inputs[1], p.stream());
  dispatch_solver(out.dtype(), "solve", [&](auto tag) {
    using T = decltype(tag);
    array w = scratch(batch * mat, out.dtype(), p.stream());
    array x = scratch(batch * rhs, out.dtype(), p.stream());
    array ipiv = scratch(n, int64, p.stream());
    transpose(a.data<T>(), w.data<T>(), batch, n, n, mat, mat, s);
    transpose(bm.data<T>(), x.data<T>(), batch, n, k, rhs, rhs, s);
    Solver sv(p, batch);
    size_t dev = 0, host = 0;
    check_cusolver(sv.lib.getrf_buffer_size(sv.h.handle, sv.h.params, n, n, data_type<T>(),
                                            w.data<T>(), n, data_type<T>(), &dev, &host),
                   "getrf_bufferSize");
    sv.reserve(dev, host);
    for (size_t b = 0; b < batch; ++b) {
      T* wb = w.data<T>() + b * mat;
      check_cusolver(
          sv.lib.getrf(sv.h.handle, sv.h.params, n, n, data_type<T>(), wb, n, ipiv.data<int64_t>(),
                       data_type<T>(), sv.dev(), dev, sv.host(), host, sv.info_of(b)),
          "getrf");
      check_cusolver(sv.lib.getrs(sv.h.handle, sv.h.params, CUBLAS_OP_N, n, k, data_type<T>(), wb,
                                  n, ipiv.data<int64_t>(), data_type<T>(), x.data<T>() + b * rhs, n,
                                  sv.unused_info(batch)),
                     "getrs");
    }
    transpose(x.data<T>(), out.data<T>(), batch, k, n, rhs, rhs, s);
    auto info = sv.infos(batch);
    for (size_t b = 0; b < batch; ++b) {
      if (info[b] > 0) {
        throw std::invalid_argument(
            where("solve", b, batch) + "is singular: U(" + std::to_string(info[b] - 1) + ", " +
            std::to_string(info[b] - 1) + ") of its LU factorization is zero");
      }
    }
  });
}

// Householder QR of A itself (transposed into column-major), then Q from the
// reflectors, as LAPACK's geqrf + orgqr on the CPU.
void qrf_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  array& q = outputs[0];
  array& r = outputs[1];
  allocate_row_contiguous(q);
  allocate_row_contiguous(r);
  auto [batch, m, n] = batch_shape(inputs[0]);
  if (batch == 0) return;
  const int k = std::min(m, n);
  const size_t mat = static_cast<size_t>(m) * n;
  cudaStream_t s = stream_of(p);
  array in = ensure_row_contiguous(inputs[0], p.stream());
  dispatch_solver(in.dtype(), "qr", [&](auto tag) {
    using T = decltype(tag);
    array w = scratch(batch * mat, in.dtype(), p.stream());
    array tau = scratch(batch * k, in.dtype(), p.stream());
    transpose(in.data<T>(), w.data<T>(), batch, m, n, mat, mat, s);
    Solver sv(p, batch);
    size_t dev = 0, host = 0;
    check_cusolver(
        sv.lib.geqrf_buffer_size(sv.h.handle, sv.h.params, m, n, data_type<T>(), w.data<T>(), m,
                                 data_type<T>(), tau.data<T>(), data_type<T>(), &dev, &host),
        "geqrf_bufferSize");
    int lwork = 0;
    if constexpr (std::is_same_v<T, float>) {
      check_cusolver(
          sv.lib.sorgqr_buffer_size(sv.h.handle, m, k, k, w.data<T>(), m, tau.data<T>(), &lwork),
          "orgqr_bufferSize");
    } else {
      check_cusolver(
          sv.lib.dorgqr_buffer_size(sv.h.handle, m, k, k, w.data<T>(), m, tau.data<T>(), &lwork),
          "orgqr_bufferSize");
    }
    sv.reserve(std::max(dev, static_cast<size_t>(lwork) * sizeof(T)), host);
    for (size_t b = 0; b < batch; ++b) {
      check_cusolver(
          sv.lib.geqrf(sv.h.handle, sv.h.params, m, n, data_type<T>(), w.data<T>() + b * mat, m,
                       data_type<T>(), tau.data<T>() + b * k, data_type<T>(), sv.dev(), dev,
                       sv.host(), host, sv.unused_info(batch)),
          "geqrf");
    }
    const size_t r_total = batch * static_cast<size_t>(k) * n;
    extract_r_kernel<T><<<grid_for(r_total), 256, 0, s>>>(w.data<T>(), r.data<T>(), batch, m, n, k);
    check_launch("linalg extract_r");
    for (size_t b = 0; b < batch; ++b) {
      T* wb = w.data<T>() + b * mat;
      T* work = static_cast<T*>(sv.dev());
      if constexpr (std::is_same_v<T, float>) {
        check_cusolver(sv.lib.sorgqr(sv.h.handle, m, k, k, wb, m, tau.data<T>() + b * k, work,
                                     lwork, sv.unused_info(batch)),
                       "orgqr");
      } else {
        check_cusolver(sv.lib.dorgqr(sv.h.handle, m, k, k, wb, m, tau.data<T>() + b * k, work,
                                     lwork, sv.unused_info(batch)),
                       "orgqr");
      }
    }
    // The first k columns of each column-major factor are Q.
    transpose(w.data<T>(), q.data<T>(), batch, k, m, mat, static_cast<int64_t>(m) * k, s);
  });
}

// cuSOLVER's gesvd needs rows >= columns. A wide (or square) row-major A read
// column-major is A^T, which is tall: A^T = U' S V'^T gives A = V' S U'^T, and
// the column-major U' and V'^T read row-major are exactly Vt and U. A tall A
// is transposed into column-major and its factors transposed back.
void svd_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  const bool uv = outputs.size() == 3;
  for (auto& o : outputs) allocate_row_contiguous(o);
  auto [batch, m, n] = batch_shape(inputs[0]);
  if (batch == 0) return;
  const int k = std::min(m, n);
  const size_t mat = static_cast<size_t>(m) * n;
  const size_t umat = static_cast<size_t>(m) * m, vmat = static_cast<size_t>(n) * n;
  cudaStream_t s = stream_of(p);
  array in = ensure_row_contiguous(inputs[0], p.stream());
  array& sv_out = uv ? outputs[1] : outputs[0];
  const bool tall = m > n;
  const signed char job = uv ? 'A' : 'N';
  dispatch_solver(in.dtype(), "svd", [&](auto tag) {
    using T = decltype(tag);
    array w = scratch(batch * mat, in.dtype(), p.stream());
    if (tall) {
      transpose(in.data<T>(), w.data<T>(), batch, m, n, mat, mat, s);
    } else {
      check(
          cudaMemcpyAsync(w.data<T>(), in.data<T>(), batch * mat * sizeof(T), cudaMemcpyDefault, s),
          "copying the svd input");
    }
    // Rows and columns of the column-major matrix factored, and where its
    // left (ul, rows^2) and right (vl, cols^2) factors go.
    const int64_t rows = tall ? m : n, cols = tall ? n : m;
    std::optional<array> ut, vt;
    T* ul = nullptr;
    T* vl = nullptr;
    if (uv && tall) {
      ut = scratch(batch * umat, in.dtype(), p.stream());
      vt = scratch(batch * vmat, in.dtype(), p.stream());
      ul = ut->data<T>();
      vl = vt->data<T>();
    } else if (uv) {
      ul = outputs[2].data<T>();
      vl = outputs[0].data<T>();
    }
    Solver sv(p, batch);
    size_t dev = 0, host = 0;
    check_cusolver(sv.lib.gesvd_buffer_size(sv.h.handle, sv.h.params, job, job, rows, cols,
                                            data_type<T>(), w.data<T>(), rows, data_type<T>(),
                                            sv_out.data<T>(), data_type<T>(), ul, rows,
                                            data_type<T>(), vl, cols, data_type<T>(), &dev, &host),
                   "gesvd_bufferSize");
    sv.reserve(dev, host);
    for (size_t b = 0; b < batch; ++b) {
      T* ub = ul ? ul + b * static_cast<size_t>(rows) * rows : nullptr;
      T* vb = vl ? vl + b * static_cast<size_t>(cols) * cols : nullptr;
      check_cusolver(
          sv.lib.gesvd(sv.h.handle, sv.h.params, job, job, rows, cols, data_type<T>(),
                       w.data<T>() + b * mat, rows, data_type<T>(), sv_out.data<T>() + b * k,
                       data_type<T>(), ub, rows, data_type<T>(), vb, cols, data_type<T>(), sv.dev(),
                       dev, sv.host(), host, sv.info_of(b)),
          "gesvd");
    }
    if (uv && tall) {
      transpose(ul, outputs[0].data<T>(), batch, m, m, umat, umat, s);
      transpose(vl, outputs[2].data<T>(), batch, n, n, vmat, vmat, s);
    }
    auto info = sv.infos(batch);
    for (size_t b = 0; b < batch; ++b) {
      if (info[b] > 0) throw std::runtime_error(where("svd", b, batch) + "did not converge");
      if (info[b] < 0) throw std::runtime_error(where("svd", b, batch) + "had an invalid argument");
    }
  });
}

// Symmetric eigensolver: the stored row-major triangle is the other
// column-major one; the column-major eigenvectors are transposed back.
void eigh_gpu(Primitive& p, const std::vector<array>& inputs, std::vector<array>& outputs) {
  const auto& eig = static_cast<Eigh&>(p);
  const bool vectors = outputs.size() == 2;
  for (auto& o : outputs) allocate_row_contiguous(o);
  auto [batch, m, n] = batch_shape(inputs[0]);
  if (batch == 0) return;
  const size_t mat = static_cast<size_t>(n) * n;
  cudaStream_t s = stream_of(p);
  array in = ensure_row_contiguous(inputs[0], p.stream());
  const cublasFillMode_t uplo = flipped(eig.uplo() == 'U');
  const cusolverEigMode_t jobz = vectors ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR;
  dispatch_solver(in.dtype(), "eigh", [&](auto tag) {
    using T = decltype(tag);
    array w = scratch(batch * mat, in.dtype(), p.stream());
    check(cudaMemcpyAsync(w.data<T>(), in.data<T>(), batch * mat * sizeof(T), cudaMemcpyDefault, s),
          "copying the eigh input");
    T* vals = outputs[0].data<T>();
    Solver sv(p, batch);
    size_t dev = 0, host = 0;
    check_cusolver(
        sv.lib.syevd_buffer_size(sv.h.handle, sv.h.params, jobz, uplo, n, data_type<T>(),
                                 w.data<T>(), n, data_type<T>(), vals, data_type<T>(), &dev, &host),
        "syevd_bufferSize");
    sv.reserve(dev, host);
    for (size_t b = 0; b < batch; ++b) {
      check_cusolver(sv.lib.syevd(sv.h.handle, sv.h.params, jobz, uplo, n, data_type<T>(),
                                  w.data<T>() + b * mat, n, data_type<T>(), vals + b * n,
                                  data_type<T>(), sv.dev(), dev, sv.host(), host, sv.info_of(b)),
                     "syevd");
    }
    if (vectors) transpose(w.data<T>(), outputs[1].data<T>(), batch, n, n, mat, mat, s);
    auto info = sv.infos(batch);
    for (size_t b = 0; b < batch; ++b) {
      if (info[b] > 0) throw std::runtime_error(where("eigh", b, batch) + "did not converge");
    }
  });
}

const Register<Inverse> r_inverse(&inverse_gpu);
const Register<Cholesky> r_cholesky(&cholesky_gpu);
const Register<Solve> r_solve(&solve_gpu);
const Register<QRF> r_qrf(&qrf_gpu);
const Register<SVD> r_svd(&svd_gpu);
const Register<Eigh> r_eigh(&eigh_gpu);

}  // namespace
}  // namespace mx::cuda
