// Chooses between the ISA-specific matrix kernels (simd_avx2.cpp,
// simd_avx512.cpp) at run time and maps a matrix product onto their operand
// conventions.
#include "mlxcpp/mx/backend/cpu/isa.h"
#include "mlxcpp/mx/backend/cpu/qgemv.h"
#include "mlxcpp/mx/backend/cpu/simd_kernels.h"

namespace mx::cpu {

bool gemv_dispatch(Dtype dtype, int M, int N, int K, float alpha, MatRef a, MatRef b, float beta,
                   void* c, int64_t ldc) {
#if defined(__x86_64__)
  Isa i = isa();
  if (i == Isa::none || K <= 0 || M <= 0 || N <= 0) return false;
  if (dtype != float32 && dtype != bfloat16 && dtype != float16) return false;
  GemvArgs g;
  g.dtype = dtype;
  g.K = K;
  g.alpha = alpha;
  g.beta = beta;
  g.y = c;
  if (M <= kGemvMaxRows) {
    // y = a @ b: x = a, w(n, k) = b(k, n).
    if (b.rs == 1 || K == 1) {
      g.kn = false;
      g.ldw = b.cs;
    } else if (b.cs == 1 || N == 1) {
      g.kn = true;
      g.ldw = b.rs;
    } else {
      return false;
    }
    g.M = M;
    g.N = N;
    g.x = a.p;
    g.xrs = a.rs;
    g.xcs = a.cs;
    g.w = b.p;
    g.yrs = ldc;
    g.ycs = 1;
  } else if (N <= kGemvMaxRows) {
    // y^T = b^T @ a^T: x(n, k) = b(k, n), w(m, k) = a(m, k), y(n, m) = c(m, n).
    if (a.cs == 1 || K == 1) {
      g.kn = false;
      g.ldw = a.rs;
    } else if (a.rs == 1 || M == 1) {
      g.kn = true;
      g.ldw = a.cs;
    } else {
      return false;
    }
    g.M = N;
    g.N = M;
    g.x = b.p;
    g.xrs = b.cs;
    g.xcs = b.rs;
    g.w = a.p;
    g.yrs = 1;
    g.ycs = ldc;
  } else {
    return false;
  }
  if (i == Isa::avx512) {
    avx512::gemv(g);
  } else {
    avx2::gemv(g);
  }
  return true;
#else
  return false;
#endif
}

bool gemv_group_dispatch(Dtype dtype, int K, const void* x, int64_t xcs,
                         const std::vector<GemvGroupItem>& items) {
#if defined(__x86_64__)
  Isa i = isa();
  if (i == Isa::none || K <= 0 || items.empty()) return false;
  if (dtype != float32 && dtype != bfloat16 && dtype != float16) return false;
  std::vector<GemvArgs> gs(items.size());
  for (size_t j = 0; j < items.size(); ++j) {
    GemvArgs& g = gs[j];
    g.dtype = dtype;
    g.M = 1;
    g.N = items[j].N;
    g.K = K;
    g.x = x;
    g.xrs = K;
    g.xcs = xcs;
    g.w = items[j].w;
    g.ldw = items[j].ldw;
    g.kn = false;
    g.y = items[j].y;
    g.yrs = g.N;
    g.ycs = 1;
  }
  if (i == Isa::avx512) {
    avx512::gemv_group(gs.data(), static_cast<int>(gs.size()));
  } else {
    avx2::gemv_group(gs.data(), static_cast<int>(gs.size()));
  }
  return true;
#else
  return false;
#endif
}

bool gemm_bf16_dispatch(int M, int N, int K, float alpha, MatRef a, MatRef b, float beta, void* c,
                        int64_t ldc) {
#if defined(__x86_64__)
  if (isa() != Isa::avx512 || M <= 0 || N <= 0 || K <= 0) return false;
  GemmArgs g;
  g.M = M;
  g.N = N;
  g.K = K;
  g.a = a;
  g.b = b;
  g.c = c;
  g.ldc = ldc;
  g.alpha = alpha;
  g.beta = beta;
  avx512::gemm_bf16(g);
  return true;
#else
  return false;
#endif
}

bool qgemv_multi_dispatch(const QGemvArgs* a, int count) {
#if defined(__x86_64__)
  if (isa() != Isa::avx512 || count <= 0) return false;
  for (int i = 0; i < count; ++i) {
    if (a[i].M != 1 || a[i].N <= 0 || a[i].K <= 0 || a[i].group_size % 32 != 0 ||
        a[i].K % a[i].group_size != 0) {
      return false;
    }
  }
  return avx512::qgemv_multi(a, count);
#else
  (void)a;
  (void)count;
  return false;
#endif
}

bool qgemv_dispatch(const QGemvArgs& a) {
#if defined(__x86_64__)
  Isa i = isa();
  if (i == Isa::none || a.M <= 0 || a.M > kQGemvMaxRows || a.N <= 0 || a.K <= 0) return false;
  if (a.sdtype != float32 && a.sdtype != bfloat16 && a.sdtype != float16) return false;
  if (a.group_size % 32 != 0 || a.K % a.group_size != 0) return false;
  if (i == Isa::avx512) {
    avx512::qgemv(a);
  } else {
    avx2::qgemv(a);
  }
  return true;
#else
  return false;
#endif
}

}  // namespace mx::cpu
