// CPU kernels of Matmul and AddMM: float32/float64/complex64 through OpenBLAS,
// float16/bfloat16 through our own kernels (gemm_half.cpp), integers and bool
// through a plain loop. Batch dims are walked with strides (0 where an operand
// is broadcast), and transposed views go to BLAS as transpose flags.
#include <cblas.h>

#include <algorithm>
#include <cstring>

#include "mlxcpp/mx/backend/cpu/gemm.h"
#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/backend/cpu/simd_kernels.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/primitives/matmul.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx {
namespace {

// OpenBLAS stays on one thread below this many multiply-adds (its
// GEMM_MULTITHREAD_THRESHOLD of 4 x 65536), so batches of smaller products are
// worth spreading over our pool instead.
constexpr int64_t kSmallProduct = int64_t{1} << 18;

// How BLAS can read a rows x cols matrix with element strides (rs, cs) in
// row-major order: as is (trans = false) or transposed, with leading dim ld.
struct BlasLayout {
  bool ok = false;
  bool trans = false;
  int64_t ld = 0;
};

BlasLayout blas_layout(int64_t rs, int64_t cs, int rows, int cols) {
  BlasLayout l;
  if (cs == 1 || cols == 1) {
    int64_t ld = rows == 1 ? std::max(cols, 1) : rs;
    if (ld >= std::max(cols, 1)) return {true, false, ld};
  }
  if (rs == 1 || rows == 1) {
    int64_t ld = cols == 1 ? std::max(rows, 1) : cs;
    if (ld >= std::max(rows, 1)) return {true, true, ld};
  }
  return l;
}

// Strides of an operand's batch dims, aligned to the output's batch dims
// (missing or size-1 dims get stride 0: the broadcast happens here).
Strides batch_strides(const array& x, const Shape& out_batch) {
  int nb = static_cast<int>(out_batch.size());
  int xb = static_cast<int>(x.ndim()) - 2;
  Strides s(nb, 0);
  for (int d = 0; d < xb; ++d) {
    if (x.shape(d) != 1) s[nb - xb + d] = x.strides()[d];
  }
  return s;
}

template <typename T>
void scale_in_place(T* c, size_t n, float beta) {
  for (size_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, bool>) {
      c[i] = beta != 0.0f && c[i];
    } else if constexpr (is_complex_v<T>) {
      c[i] *= beta;
    } else {
      c[i] = beta == 0.0f ? T(0) : T(static_cast<acc_t<T>>(c[i]) * beta);
    }
  }
}

// Integer and bool products wrap like NumPy's: the arithmetic is done modulo
// 2^64 in unsigned integers (no signed-overflow UB) and truncated on store.
template <typename T>
void gemm_generic(int M, int N, int K, float alpha, cpu::MatRef a, cpu::MatRef b, float beta, T* c,
                  int64_t ldc) {
  const T* pa = static_cast<const T*>(a.p);
  const T* pb = static_cast<const T*>(b.p);
  scheduler::parallel_for(M, std::max<size_t>(1, 4096 / std::max<int64_t>(1, int64_t{N} * K)),
                          [&](size_t ib, size_t ie) {
                            std::vector<uint64_t> acc(N);
                            for (int64_t i = ib; i < static_cast<int64_t>(ie); ++i) {
                              std::fill(acc.begin(), acc.end(), 0);
                              for (int k = 0; k < K; ++k) {
                                auto x = static_cast<uint64_t>(pa[i * a.rs + k * a.cs]);
                                if (x == 0) continue;
                                const T* brow = pb + k * b.rs;
                                for (int j = 0; j < N; ++j) {
                                  acc[j] += x * static_cast<uint64_t>(brow[j * b.cs]);
                                }
                              }
                              T* crow = c + i * ldc;
                              for (int j = 0; j < N; ++j) {
                                if constexpr (std::is_same_v<T, bool>) {
                                  crow[j] = acc[j] != 0;
                                } else {
                                  crow[j] = static_cast<T>(acc[j]);
                                }
                              }
                            }
                          });
}

// OpenBLAS runs single-threaded: its threads busy-wait for a while after
// every call, which on a small machine took the cores from our own pool (a
// decode step right after a prefill ran at half speed, and the read rate
// measured then was halved). Products are split over our pool instead.
[[maybe_unused]] const bool kSerialBlas = [] {
  openblas_set_num_threads(1);
  return true;
}();

template <typename T>
void gemm_blas_serial(int M, int N, int K, float alpha, cpu::MatRef a, cpu::MatRef b, float beta,
                      T* c, int64_t ldc) {
  BlasLayout la = blas_layout(a.rs, a.cs, M, K);
  BlasLayout lb = blas_layout(b.rs, b.cs, K, N);
  auto ta = la.trans ? CblasTrans : CblasNoTrans;
  auto tb = lb.trans ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, static_cast<const float*>(a.p), la.ld,
                static_cast<const float*>(b.p), lb.ld, beta, c, ldc);
  } else if constexpr (std::is_same_v<T, double>) {
    cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, static_cast<const double*>(a.p), la.ld,
                static_cast<const double*>(b.p), lb.ld, beta, c, ldc);
  } else {
    complex64_t al(alpha, 0.0f), be(beta, 0.0f);
    cblas_cgemm(CblasRowMajor, ta, tb, M, N, K, &al, a.p, la.ld, b.p, lb.ld, &be, c, ldc);
  }
}

template <typename T>
void gemm_blas(int M, int N, int K, float alpha, cpu::MatRef a, cpu::MatRef b, float beta, T* c,
               int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    // A few rows against a matrix: our GEMV kernels read the matrix once at
    // memory speed, where OpenBLAS's sgemm packs it first (see bench/RESULTS.md).
    if (cpu::gemv_dispatch(float32, M, N, K, alpha, a, b, beta, c, ldc)) return;
  }
  // Blocks of rows (or of columns, whichever is longer), one serial BLAS call
  // each, when every block keeps enough work to amortize BLAS's packing.
  constexpr double kMinWorkPerPart = double{1 << 22};  // multiply-adds
  constexpr int kMinLenPerPart = 32;
  const bool by_rows = M >= N;
  const int len = by_rows ? M : N;
  const double work = static_cast<double>(M) * N * K;
  int parts = std::min({scheduler::num_threads(), len / kMinLenPerPart,
                        static_cast<int>(std::min(work / kMinWorkPerPart, 1024.0))});
  if (parts <= 1) {
    gemm_blas_serial<T>(M, N, K, alpha, a, b, beta, c, ldc);
    return;
  }
  const size_t grain = (static_cast<size_t>(len) + parts - 1) / parts;
  scheduler::parallel_for(static_cast<size_t>(len), grain, [&](size_t b0, size_t e0) {
    const int n = static_cast<int>(e0 - b0);
    const auto off = static_cast<int64_t>(b0);
    if (by_rows) {
      cpu::MatRef ra{static_cast<const T*>(a.p) + off * a.rs, a.rs, a.cs};
      gemm_blas_serial<T>(n, N, K, alpha, ra, b, beta, c + off * ldc, ldc);
    } else {
      cpu::MatRef rb{static_cast<const T*>(b.p) + off * b.cs, b.rs, b.cs};
      gemm_blas_serial<T>(M, n, K, alpha, a, rb, beta, c + off, ldc);
    }
  });
}

template <typename T>
constexpr bool uses_blas_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || is_complex_v<T>;

// out (allocated, row-contiguous; holding c when beta != 0) =
// alpha * a @ b + beta * out, over the broadcast batch dims.
void run_matmul(array a, array b, array& out, float alpha, float beta) {
  int nd = static_cast<int>(out.ndim());
  int M = out.shape(nd - 2), N = out.shape(nd - 1);
  int K = a.shape(-1);
  if (out.size() == 0) return;
  size_t mat = static_cast<size_t>(M) * N;
  size_t nbatch = out.size() / mat;
  dispatch_all(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* pc = out.data<T>();
    if (K == 0) {
      scale_in_place(pc, out.size(), beta);
      return;
    }
    if constexpr (uses_blas_v<T>) {
      // BLAS reads each matrix through one leading dim; other layouts are copied.
      auto usable = [](const array& x) {
        int n = static_cast<int>(x.ndim());
        return blas_layout(x.strides()[n - 2], x.strides()[n - 1], x.shape(n - 2), x.shape(n - 1))
            .ok;
      };
      if (!usable(a)) a = cpu::ensure_row_contiguous(a);
      if (!usable(b)) b = cpu::ensure_row_contiguous(b);
    }
    Shape batch(out.shape().begin(), out.shape().end() - 2);
    Strides sa = batch_strides(a, batch), sb = batch_strides(b, batch);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    int na = static_cast<int>(a.ndim()), nbd = static_cast<int>(b.ndim());
    int64_t ars = a.strides()[na - 2], acs = a.strides()[na - 1];
    int64_t brs = b.strides()[nbd - 2], bcs = b.strides()[nbd - 1];
    auto rows = [&](int m, const T* x, const T* y, T* z) {
      cpu::MatRef ma{x, ars, acs}, mb{y, brs, bcs};
      if constexpr (uses_blas_v<T>) {
        gemm_blas<T>(m, N, K, alpha, ma, mb, beta, z, N);
      } else if constexpr (is_half_v<T>) {
        cpu::gemm_half(out.dtype(), m, N, K, alpha, ma, mb, beta, z, N);
      } else {
        gemm_generic<T>(m, N, K, alpha, ma, mb, beta, z, N);
      }
    };
    auto one = [&](const T* x, const T* y, T* z) { rows(M, x, y, z); };
    // x [..., M, K] @ W [K, N] with W shared by every batch entry (a linear
    // layer over a batch of sequences): when x's rows are evenly spaced across
    // the batch, one product over all nbatch * M rows reads W once instead of
    // once per entry (decode batches are [B, 1, K]).
    if (nbatch > 1 && ars != 0) {
      bool fold = true;
      int64_t expect = static_cast<int64_t>(M) * ars;
      for (int d = static_cast<int>(batch.size()) - 1; d >= 0 && fold; --d) {
        if (batch[d] == 1) continue;
        fold = sb[d] == 0 && sa[d] == expect;
        expect *= batch[d];
      }
      if (fold) {
        rows(static_cast<int>(nbatch) * M, pa, pb, pc);
        return;
      }
    }
    auto range = [&](size_t begin, size_t end) {
      cpu::StridedCursor cur(batch, {&sa, &sb}, static_cast<int64_t>(begin));
      for (size_t i = begin; i < end; ++i) {
        one(pa + cur.offset(0), pb + cur.offset(1), pc + i * mat);
        cur.step();
      }
    };
    int64_t work = int64_t{M} * N * K;
    if (nbatch > 1 && work < kSmallProduct) {
      scheduler::parallel_for(nbatch, std::max<int64_t>(1, 32768 / std::max<int64_t>(work, 1)),
                              range);
    } else {
      range(0, nbatch);
    }
  });
}

}  // namespace

void Matmul::eval_cpu(const std::vector<array>& inputs, array& out) {
  cpu::allocate_row_contiguous(out);
  run_matmul(inputs[0], inputs[1], out, 1.0f, 0.0f);
}

void AddMM::eval_cpu(const std::vector<array>& inputs, array& out) {
  cpu::allocate_row_contiguous(out);
  if (beta_ != 0.0f) cpu::copy_into(inputs[2], out);
  run_matmul(inputs[0], inputs[1], out, alpha_, beta_);
}

}  // namespace mx
