// Our float16/bfloat16 matrix products (OpenBLAS has none), accumulated in
// float32 as MLX's CPU backend does. The runtime-dispatched SIMD kernels
// (simd_*.cpp) take matrix-vector products and, with AVX-512 BF16, bfloat16
// GEMM; this file is the portable path for the rest: inputs converted to
// float32 panel by panel, matrix-vector products streaming the matrix once.
#include <immintrin.h>

// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_* "may be used
// uninitialized") wherever the intrinsics are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>
#include <vector>

#include "mlxcpp/mx/backend/cpu/gemm.h"
#include "mlxcpp/mx/backend/cpu/simd_kernels.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx::cpu {
namespace {

// ---- a minimal float vector type: AVX-512, AVX2 or scalar, chosen at build time

#if defined(__AVX512F__)
constexpr int W = 16;
using vf = __m512;
inline vf vzero() { return _mm512_setzero_ps(); }
inline vf vset(float x) { return _mm512_set1_ps(x); }
inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
inline float vsum(vf v) { return _mm512_reduce_add_ps(v); }
inline vf vload(const bfloat16_t* p) {
  __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline vf vload(const float16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
constexpr int W = 8;
using vf = __m256;
inline vf vzero() { return _mm256_setzero_ps(); }
inline vf vset(float x) { return _mm256_set1_ps(x); }
inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, vf v) { _mm256_storeu_ps(p, v); }
inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
inline float vsum(vf v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline vf vload(const bfloat16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline vf vload(const float16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
#else
constexpr int W = 1;
using vf = float;
inline vf vzero() { return 0.0f; }
inline vf vset(float x) { return x; }
inline vf vload(const float* p) { return *p; }
inline void vstore(float* p, vf v) { *p = v; }
inline vf vfma(vf a, vf b, vf c) { return a * b + c; }
inline vf vadd(vf a, vf b) { return a + b; }
inline float vsum(vf v) { return v; }
inline vf vload(const bfloat16_t* p) { return static_cast<float>(*p); }
inline vf vload(const float16_t* p) { return static_cast<float>(*p); }
#endif

// Register block of the GEMM micro-kernel: MR rows x NR columns of C.
constexpr int MR = 6;
constexpr int NR = 2 * W;
// Cache blocks: a KC x NC panel of B (float) stays in L2, MC x KC of A in L1/L2.
constexpr int KC = 256;
constexpr int MC = MR * 16;
constexpr int NC = 256;
static_assert(NC % NR == 0);

template <typename T>
inline float at(const T* p, int64_t i) {
  return static_cast<float>(p[i]);
}

// ---- matrix-vector: y[i] = sum_k mat(i, k) * v[k], each y[i] handed to
// store(i, y[i]) on the thread that computed it (the output conversion is
// part of the parallel work, not a serial tail).

// Rows of `mat` are contiguous along k: one dot product per output, the matrix
// read exactly once; four rows at a time keep four streams in flight.
template <typename T, typename Store>
void gemv_rows(const T* mat, int64_t rs, int rows, int K, const float* v, const Store& y) {
  auto dot = [&](const T* row) {
    vf s0 = vzero(), s1 = vzero();
    int k = 0;
    for (; k + 2 * W <= K; k += 2 * W) {
      s0 = vfma(vload(row + k), vload(v + k), s0);
      s1 = vfma(vload(row + k + W), vload(v + k + W), s1);
    }
    for (; k + W <= K; k += W) s0 = vfma(vload(row + k), vload(v + k), s0);
    float s = vsum(vadd(s0, s1));
    for (; k < K; ++k) s += at(row, k) * v[k];
    return s;
  };
  int groups = (rows + 3) / 4;
  size_t grain = std::max<size_t>(1, (size_t{1} << 14) / std::max(K, 1));
  scheduler::parallel_for(groups, grain, [&](size_t gb, size_t ge) {
    for (size_t g = gb; g < ge; ++g) {
      int i = static_cast<int>(g) * 4;
      if (i + 4 > rows) {
        for (; i < rows; ++i) y(i, dot(mat + i * rs));
        continue;
      }
      const T* r0 = mat + i * rs;
      const T* r1 = r0 + rs;
      const T* r2 = r1 + rs;
      const T* r3 = r2 + rs;
      vf s0 = vzero(), s1 = vzero(), s2 = vzero(), s3 = vzero();
      int k = 0;
      for (; k + W <= K; k += W) {
        vf x = vload(v + k);
        s0 = vfma(vload(r0 + k), x, s0);
        s1 = vfma(vload(r1 + k), x, s1);
        s2 = vfma(vload(r2 + k), x, s2);
        s3 = vfma(vload(r3 + k), x, s3);
      }
      float t0 = vsum(s0), t1 = vsum(s1), t2 = vsum(s2), t3 = vsum(s3);
      for (; k < K; ++k) {
        t0 += at(r0, k) * v[k];
        t1 += at(r1, k) * v[k];
        t2 += at(r2, k) * v[k];
        t3 += at(r3, k) * v[k];
      }
      y(i, t0);
      y(i + 1, t1);
      y(i + 2, t2);
      y(i + 3, t3);
    }
  });
}

// Columns of `mat` are contiguous along i (the matrix is stored k-major): each
// thread streams a contiguous band of k into its own accumulator row, four k
// at a time, and the bands' partial sums are added at the end.
template <typename T, typename Store>
void gemv_cols(const T* mat, int64_t cs, int rows, int K, const float* v, const Store& y) {
  int parts = std::max(1, std::min(scheduler::num_threads(), K / 16));
  // Uninitialised on purpose: each band clears its own row on its own thread.
  std::unique_ptr<float[]> partial(new float[static_cast<size_t>(parts) * rows]);
  scheduler::parallel_for(parts, 1, [&](size_t pb, size_t pe) {
    for (size_t p = pb; p < pe; ++p) {
      int k0 = static_cast<int>(int64_t{K} * p / parts);
      int k1 = static_cast<int>(int64_t{K} * (p + 1) / parts);
      float* acc = partial.get() + p * rows;
      std::fill(acc, acc + rows, 0.0f);
      int k = k0;
      // Eight k per pass: the accumulator row is read and written once per
      // eight weight rows.
      constexpr int KU = 8;
      for (; k + KU <= k1; k += KU) {
        const T* c[KU];
        vf a[KU];
        for (int u = 0; u < KU; ++u) {
          c[u] = mat + (k + u) * cs;
          a[u] = vset(v[k + u]);
        }
        int i = 0;
        for (; i + W <= rows; i += W) {
          vf r = vload(acc + i);
          for (int u = 0; u < KU; ++u) r = vfma(a[u], vload(c[u] + i), r);
          vstore(acc + i, r);
        }
        for (; i < rows; ++i) {
          float r = acc[i];
          for (int u = 0; u < KU; ++u) r += v[k + u] * at(c[u], i);
          acc[i] = r;
        }
      }
      for (; k < k1; ++k) {
        const T* col = mat + k * cs;
        vf a = vset(v[k]);
        int i = 0;
        for (; i + W <= rows; i += W) vstore(acc + i, vfma(a, vload(col + i), vload(acc + i)));
        for (; i < rows; ++i) acc[i] += v[k] * at(col, i);
      }
    }
  });
  scheduler::parallel_for(rows, 1024, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      float s = 0.0f;
      for (int p = 0; p < parts; ++p) s += partial[static_cast<size_t>(p) * rows + i];
      y(static_cast<int>(i), s);
    }
  });
}

template <typename T, typename Store>
void gemv_strided(const T* mat, int64_t rs, int64_t cs, int rows, int K, const float* v,
                  const Store& y) {
  scheduler::parallel_for(rows, std::max<size_t>(1, 4096 / std::max(K, 1)),
                          [&](size_t b, size_t e) {
                            for (int64_t i = b; i < static_cast<int64_t>(e); ++i) {
                              float s = 0.0f;
                              for (int k = 0; k < K; ++k) s += at(mat + i * rs, k * cs) * v[k];
                              y(static_cast<int>(i), s);
                            }
                          });
}

// out[i * os] = alpha * (mat @ v)[i] + beta * out[i * os]
template <typename T>
void gemv(int rows, int K, float alpha, const T* mat, int64_t rs, int64_t cs, const T* vec,
          int64_t vs, float beta, T* out, int64_t os) {
  std::vector<float> v(K);
  int k = 0;
  if (vs == 1) {
    for (; k + W <= K; k += W) vstore(v.data() + k, vload(vec + k));
  }
  for (; k < K; ++k) v[k] = at(vec, k * vs);
  auto store = [&](int i, float acc) {
    float r = alpha * acc;
    if (beta != 0.0f) r += beta * static_cast<float>(out[i * os]);
    out[i * os] = T(r);
  };
  if (cs == 1 || K == 1) {
    gemv_rows(mat, rs, rows, K, v.data(), store);
  } else if (rs == 1 || rows == 1) {
    gemv_cols(mat, cs, rows, K, v.data(), store);
  } else {
    gemv_strided(mat, rs, cs, rows, K, v.data(), store);
  }
}

// ---- blocked GEMM

// Packs rows [i0, i0+mc) x cols [p0, p0+kc) of A as MR-row panels, k-major
// inside a panel (Ap[panel][k][r]); rows past mc are zero.
template <typename T>
void pack_a(const T* a, int64_t rs, int64_t cs, int i0, int mc, int p0, int kc, float* ap) {
  for (int r0 = 0; r0 < mc; r0 += MR) {
    float* dst = ap + static_cast<int64_t>(r0) * kc;
    for (int r = 0; r < MR; ++r) {
      if (r0 + r >= mc) {
        for (int k = 0; k < kc; ++k) dst[k * MR + r] = 0.0f;
        continue;
      }
      const T* src = a + (i0 + r0 + r) * rs + p0 * cs;
      for (int k = 0; k < kc; ++k) dst[k * MR + r] = at(src, k * cs);
    }
  }
}

// Packs rows [p0, p0+kc) x cols [j0, j0+nc) of B row-major with row length
// ncp (nc rounded up to NR, zero padded).
template <typename T>
void pack_b(const T* b, int64_t rs, int64_t cs, int p0, int kc, int j0, int nc, int ncp,
            float* bp) {
  for (int k = 0; k < kc; ++k) {
    const T* src = b + (p0 + k) * rs + j0 * cs;
    float* dst = bp + static_cast<int64_t>(k) * ncp;
    int j = 0;
    if (cs == 1) {
      for (; j + W <= nc; j += W) vstore(dst + j, vload(src + j));
    }
    for (; j < nc; ++j) dst[j] = at(src, j * cs);
    for (; j < ncp; ++j) dst[j] = 0.0f;
  }
}

// C[MR x NR] (row stride ldc) += Ap-panel @ Bp-strip over kc.
inline void micro_kernel(int kc, const float* ap, const float* bp, int64_t ldb, float* c,
                         int64_t ldc) {
  vf acc[MR][2];
  for (int r = 0; r < MR; ++r) {
    acc[r][0] = vload(c + r * ldc);
    acc[r][1] = vload(c + r * ldc + W);
  }
  for (int k = 0; k < kc; ++k) {
    vf b0 = vload(bp + k * ldb);
    vf b1 = vload(bp + k * ldb + W);
    const float* a = ap + k * MR;
    for (int r = 0; r < MR; ++r) {
      vf x = vset(a[r]);
      acc[r][0] = vfma(x, b0, acc[r][0]);
      acc[r][1] = vfma(x, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    vstore(c + r * ldc, acc[r][0]);
    vstore(c + r * ldc + W, acc[r][1]);
  }
}

template <typename T>
void gemm_blocked(int M, int N, int K, float alpha, const T* a, int64_t ars, int64_t acs,
                  const T* b, int64_t brs, int64_t bcs, float beta, T* c, int64_t ldc) {
  int mtiles = (M + MC - 1) / MC, ntiles = (N + NC - 1) / NC;
  scheduler::parallel_for(static_cast<size_t>(mtiles) * ntiles, 1, [&](size_t tb, size_t te) {
    // Sized for this problem, so that tiny products do not clear big buffers.
    size_t mcap = (std::min(MC, M) + MR - 1) / MR * MR, ncap = (std::min(NC, N) + NR - 1) / NR * NR;
    size_t kcap = std::min(KC, K);
    std::vector<float> ap(mcap * kcap), bp(kcap * ncap), cf(mcap * ncap);
    for (size_t t = tb; t < te; ++t) {
      int i0 = static_cast<int>(t / ntiles) * MC, j0 = static_cast<int>(t % ntiles) * NC;
      int mc = std::min(MC, M - i0), nc = std::min(NC, N - j0);
      int mcp = (mc + MR - 1) / MR * MR, ncp = (nc + NR - 1) / NR * NR;
      std::fill(cf.begin(), cf.begin() + static_cast<size_t>(mcp) * ncp, 0.0f);
      for (int p0 = 0; p0 < K; p0 += KC) {
        int kc = std::min(KC, K - p0);
        pack_b(b, brs, bcs, p0, kc, j0, nc, ncp, bp.data());
        pack_a(a, ars, acs, i0, mc, p0, kc, ap.data());
        for (int r0 = 0; r0 < mcp; r0 += MR) {
          for (int jj = 0; jj < ncp; jj += NR) {
            micro_kernel(kc, ap.data() + static_cast<int64_t>(r0) * kc, bp.data() + jj, ncp,
                         cf.data() + static_cast<int64_t>(r0) * ncp + jj, ncp);
          }
        }
      }
      for (int i = 0; i < mc; ++i) {
        T* crow = c + (i0 + i) * ldc + j0;
        const float* frow = cf.data() + static_cast<int64_t>(i) * ncp;
        for (int j = 0; j < nc; ++j) {
          float r = alpha * frow[j];
          if (beta != 0.0f) r += beta * static_cast<float>(crow[j]);
          crow[j] = T(r);
        }
      }
    }
  });
}

template <typename T>
void gemm_typed(int M, int N, int K, float alpha, MatRef a, MatRef b, float beta, T* c,
                int64_t ldc) {
  const T* pa = static_cast<const T*>(a.p);
  const T* pb = static_cast<const T*>(b.p);
  if (K == 0) {
    for (int i = 0; i < M; ++i) {
      for (int j = 0; j < N; ++j) {
        T& o = c[i * ldc + j];
        o = T(beta != 0.0f ? beta * static_cast<float>(o) : 0.0f);
      }
    }
    return;
  }
  // The SIMD kernels chosen at run time (simd_dispatch.cpp); what they do not
  // cover (unusual strides, CPUs without AVX2) takes the portable code below.
  constexpr Dtype dt = std::is_same_v<T, bfloat16_t> ? bfloat16 : float16;
  if (gemv_dispatch(dt, M, N, K, alpha, a, b, beta, c, ldc)) return;
  if constexpr (std::is_same_v<T, bfloat16_t>) {
    if (gemm_bf16_dispatch(M, N, K, alpha, a, b, beta, c, ldc)) return;
  }
  if (M == 1) {
    // out row = B^T (N x K) @ a-row
    gemv<T>(N, K, alpha, pb, b.cs, b.rs, pa, a.cs, beta, c, 1);
  } else if (N == 1) {
    gemv<T>(M, K, alpha, pa, a.rs, a.cs, pb, b.rs, beta, c, ldc);
  } else {
    gemm_blocked<T>(M, N, K, alpha, pa, a.rs, a.cs, pb, b.rs, b.cs, beta, c, ldc);
  }
}

}  // namespace

void gemm_half(Dtype dtype, int M, int N, int K, float alpha, MatRef a, MatRef b, float beta,
               void* c, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (dtype == bfloat16) {
    gemm_typed<bfloat16_t>(M, N, K, alpha, a, b, beta, static_cast<bfloat16_t*>(c), ldc);
  } else if (dtype == float16) {
    gemm_typed<float16_t>(M, N, K, alpha, a, b, beta, static_cast<float16_t*>(c), ldc);
  } else {
    throw std::invalid_argument("[matmul] half-precision kernel called with " + dtype_name(dtype));
  }
}

}  // namespace mx::cpu
