// The runtime-dispatched matrix kernels (simd_avx2.cpp, simd_avx512.cpp, the
// portable path) against float64 loops written here. Every ISA this CPU has is
// forced in turn through mx::cpu::set_isa. Inputs are multiples of 1/16 in
// [-1, 1], exact in bfloat16 and float16, so float32 accumulation of these
// sums is exact as well and the only error left is the output's rounding.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/backend/cpu/isa.h"

namespace {

using mx::array;
using mx::Shape;
namespace cpu = mx::cpu;

double value(int64_t i, int seed) { return double((i * 37 + seed * 11 + 5) % 33 - 16) / 16.0; }

std::vector<double> values(int64_t n, int seed) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = value(i, seed);
  return v;
}

array make(const std::vector<double>& v, const Shape& s, mx::Dtype d) {
  return mx::astype(array(v, s, mx::float64), d);
}

double rtol(mx::Dtype d) {
  if (d == mx::bfloat16) return 1.0 / 256;
  if (d == mx::float16) return 1.0 / 2048;
  return 1e-6;
}

// The ISAs to force: every one this CPU runs (AVX2 and AVX-512 kernels, or the
// portable code where there are none).
std::vector<cpu::Isa> isas() {
  std::vector<cpu::Isa> out;
  for (cpu::Isa i : {cpu::Isa::none, cpu::Isa::avx2, cpu::Isa::avx512}) {
    if (cpu::isa_supported(i)) out.push_back(i);
  }
  return out;
}

struct IsaGuard {
  cpu::Isa saved = cpu::isa();
  ~IsaGuard() { cpu::set_isa(saved); }
};

const mx::Dtype kDtypes[] = {mx::bfloat16, mx::float16, mx::float32};

// y[m][n] = sum_k x[m][k] * w(n, k), w(n, k) = wv[n * K + k] (layout 0) or
// wv[k * N + n] (layout 1).
std::vector<double> reference(const std::vector<double>& xv, const std::vector<double>& wv, int M,
                              int N, int K, bool kn) {
  std::vector<double> y(size_t(M) * N, 0.0);
  for (int m = 0; m < M; ++m) {
    for (int n = 0; n < N; ++n) {
      double s = 0.0;
      for (int k = 0; k < K; ++k)
        s += xv[size_t(m) * K + k] * wv[kn ? size_t(k) * N + n : size_t(n) * K + k];
      y[size_t(m) * N + n] = s;
    }
  }
  return y;
}

TEST(MatmulKernels, IsaSelection) {
  IsaGuard guard;
  EXPECT_TRUE(cpu::isa_supported(cpu::Isa::none));
  // Forcing never goes above what the CPU has.
  cpu::Isa got = cpu::set_isa(cpu::Isa::avx512);
  EXPECT_TRUE(cpu::isa_supported(got));
  EXPECT_EQ(got == cpu::Isa::avx512, cpu::isa_supported(cpu::Isa::avx512));
  EXPECT_EQ(cpu::set_isa(cpu::Isa::none), cpu::Isa::none);
  EXPECT_EQ(cpu::isa(), cpu::Isa::none);
  EXPECT_STREQ(cpu::isa_name(cpu::Isa::avx2), "avx2");
}

// Rows of x in {1, 2, 3, 5, 8} take the GEMV kernels, 9 and 33 the GEMM ones
// (or the GEMV kernels transposed, when N <= 8); odd K and N leave tails.
TEST(MatmulKernels, BothLayoutsAllRowCounts) {
  IsaGuard guard;
  const int Ms[] = {1, 2, 3, 5, 8, 9, 33};
  const std::pair<int, int> KNs[] = {{37, 45}, {67, 131}, {301, 70}, {1, 19}, {64, 7}, {33, 1}};
  for (cpu::Isa isa : isas()) {
    cpu::set_isa(isa);
    for (mx::Dtype d : kDtypes) {
      for (int M : Ms) {
        for (auto [K, N] : KNs) {
          for (bool kn : {false, true}) {
            SCOPED_TRACE(std::string(cpu::isa_name(isa)) + " " + mx::dtype_name(d) +
                         " M=" + std::to_string(M) + " K=" + std::to_string(K) +
                         " N=" + std::to_string(N) + (kn ? " x@W" : " x@W.T"));
            auto xv = values(int64_t(M) * K, 1), wv = values(int64_t(N) * K, 2);
            array x = make(xv, {M, K}, d);
            array w = kn ? make(wv, {K, N}, d) : make(wv, {N, K}, d);
            array y = kn ? mx::matmul(x, w) : mx::matmul(x, mx::transpose(w));
            mxtest::expect_close(y, reference(xv, wv, M, N, K, kn), {M, N}, 1e-6, rtol(d));
          }
        }
      }
    }
  }
}

// Operands seen through views: x sliced out of a wider matrix, x transposed
// (non-unit stride along k), w with a row stride larger than its width, and
// batches with the weight broadcast or batched.
TEST(MatmulKernels, StridedAndBatchedOperands) {
  IsaGuard guard;
  const int K = 75, N = 53;
  for (cpu::Isa isa : isas()) {
    cpu::set_isa(isa);
    for (mx::Dtype d : kDtypes) {
      for (int M : {1, 4, 8, 9, 33}) {
        SCOPED_TRACE(std::string(cpu::isa_name(isa)) + " " + mx::dtype_name(d) +
                     " M=" + std::to_string(M));
        auto xv = values(int64_t(M) * K, 3), wv = values(int64_t(N) * K, 4);
        auto ref = reference(xv, wv, M, N, K, false);
        // x inside a wider matrix: columns 2 .. K+1 of an M x (K + 5) array.
        std::vector<double> wide(size_t(M) * (K + 5), 7.0);
        for (int m = 0; m < M; ++m) {
          for (int k = 0; k < K; ++k) wide[size_t(m) * (K + 5) + k + 2] = xv[size_t(m) * K + k];
        }
        array xs = mx::slice(make(wide, {M, K + 5}, d), {0, 2}, {M, K + 2});
        // w inside a wider matrix: row stride K + 3.
        std::vector<double> wwide(size_t(N) * (K + 3), -3.0);
        for (int n = 0; n < N; ++n) {
          for (int k = 0; k < K; ++k) wwide[size_t(n) * (K + 3) + k] = wv[size_t(n) * K + k];
        }
        array ws = mx::slice(make(wwide, {N, K + 3}, d), {0, 0}, {N, K});
        mxtest::expect_close(mx::matmul(xs, mx::transpose(ws)), ref, {M, N}, 1e-6, rtol(d));
        // x transposed: stored (K, M).
        std::vector<double> xtv(size_t(K) * M);
        for (int m = 0; m < M; ++m) {
          for (int k = 0; k < K; ++k) xtv[size_t(k) * M + m] = xv[size_t(m) * K + k];
        }
        array xt = mx::transpose(make(xtv, {K, M}, d));
        array w = make(wv, {N, K}, d);
        mxtest::expect_close(mx::matmul(xt, mx::transpose(w)), ref, {M, N}, 1e-6, rtol(d));
        // Batch of 3 with the weight broadcast, then with a weight per batch
        // (batch b uses w scaled by b + 1, exact in every dtype).
        std::vector<double> xb, wb, refb;
        for (int b = 0; b < 3; ++b) {
          auto xvb = values(int64_t(M) * K, 10 + b);
          xb.insert(xb.end(), xvb.begin(), xvb.end());
          auto r = reference(xvb, wv, M, N, K, false);
          for (double& v : r) v *= (b + 1);
          refb.insert(refb.end(), r.begin(), r.end());
          for (double v : wv) wb.push_back(v * (b + 1));
        }
        array x3 = make(xb, {3, M, K}, d);
        array w3 = make(wb, {3, N, K}, d);
        mxtest::expect_close(mx::matmul(x3, mx::transpose(w3, {0, 2, 1})), refb, {3, M, N}, 1e-6,
                             rtol(d));
        std::vector<double> refb1;
        for (int b = 0; b < 3; ++b) {
          std::vector<double> xvb(xb.begin() + size_t(b) * M * K,
                                  xb.begin() + size_t(b + 1) * M * K);
          auto r = reference(xvb, wv, M, N, K, false);
          refb1.insert(refb1.end(), r.begin(), r.end());
        }
        mxtest::expect_close(mx::matmul(x3, mx::transpose(w)), refb1, {3, M, N}, 1e-6, rtol(d));
      }
    }
  }
}

// A weight whose rows start off the vector width (as tensors mapped from a
// safetensors file do) while the row pitch is a multiple of it: the one-row
// kernel peels each row's first elements with a masked load. Start offsets of
// 1 to 31 elements, K from below the peel to several vectors past it.
TEST(MatmulKernels, MisalignedWeightRowsOneRowOfX) {
  IsaGuard guard;
  const int pitch = 128, N = 37;  // 256 bytes of bfloat16 / float16, 512 of float32
  for (cpu::Isa isa : isas()) {
    cpu::set_isa(isa);
    for (mx::Dtype d : kDtypes) {
      for (int off : {1, 3, 8, 17, 24, 31}) {
        for (int K : {5, 29, 40, 97}) {
          SCOPED_TRACE(std::string(cpu::isa_name(isa)) + " " + mx::dtype_name(d) +
                       " offset=" + std::to_string(off) + " K=" + std::to_string(K));
          auto xv = values(K, 8), wv = values(int64_t(N) * K, 9);
          std::vector<double> wide(size_t(N) * pitch, 5.0);
          for (int n = 0; n < N; ++n) {
            for (int k = 0; k < K; ++k) wide[size_t(n) * pitch + off + k] = wv[size_t(n) * K + k];
          }
          array ws = mx::slice(make(wide, {N, pitch}, d), {0, off}, {N, off + K});
          array x = make(xv, {1, K}, d);
          auto ref = reference(xv, wv, 1, N, K, false);
          mxtest::expect_close(mx::matmul(x, mx::transpose(ws)), ref, {1, N}, 1e-6, rtol(d));
        }
      }
    }
  }
}

// C = alpha * x @ w.T + beta * C, the result written through the kernels' own
// output conversion.
TEST(MatmulKernels, AddmmAlphaBeta) {
  IsaGuard guard;
  const int K = 41, N = 29;
  for (cpu::Isa isa : isas()) {
    cpu::set_isa(isa);
    for (mx::Dtype d : kDtypes) {
      for (int M : {1, 3, 8, 17}) {
        for (bool kn : {false, true}) {
          SCOPED_TRACE(std::string(cpu::isa_name(isa)) + " " + mx::dtype_name(d) +
                       " M=" + std::to_string(M) + (kn ? " x@W" : " x@W.T"));
          auto xv = values(int64_t(M) * K, 5), wv = values(int64_t(N) * K, 6),
               cv = values(int64_t(M) * N, 7);
          auto ref = reference(xv, wv, M, N, K, kn);
          for (size_t i = 0; i < ref.size(); ++i) ref[i] = 0.5 * ref[i] + 2.0 * cv[i];
          array w = kn ? make(wv, {K, N}, d) : mx::transpose(make(wv, {N, K}, d));
          array y = mx::addmm(make(cv, {M, N}, d), make(xv, {M, K}, d), w, 0.5f, 2.0f);
          mxtest::expect_close(y, ref, {M, N}, 1e-6, rtol(d));
        }
      }
    }
  }
}

// A NaN or an infinity in the weight reaches exactly the outputs that use it;
// zero padding of tails must not turn into NaN elsewhere.
TEST(MatmulKernels, NanAndInfReachTheirOutputsOnly) {
  IsaGuard guard;
  const int K = 35, N = 21, bad_n = 20, bad_k = 34;
  const double inf = std::numeric_limits<double>::infinity();
  for (cpu::Isa isa : isas()) {
    cpu::set_isa(isa);
    for (mx::Dtype d : kDtypes) {
      for (int M : {1, 4, 12}) {
        for (bool kn : {false, true}) {
          for (double bad : {std::nan(""), inf}) {
            SCOPED_TRACE(std::string(cpu::isa_name(isa)) + " " + mx::dtype_name(d) +
                         " M=" + std::to_string(M) + (kn ? " x@W" : " x@W.T"));
            // x is positive, so an infinite weight gives an infinite output.
            std::vector<double> xv(size_t(M) * K);
            for (size_t i = 0; i < xv.size(); ++i) xv[i] = 1.0 + double(i % 5) / 8;
            auto wv = values(int64_t(N) * K, 8);
            wv[kn ? size_t(bad_k) * N + bad_n : size_t(bad_n) * K + bad_k] = bad;
            auto ref = reference(xv, wv, M, N, K, kn);
            array w = kn ? make(wv, {K, N}, d) : mx::transpose(make(wv, {N, K}, d));
            mxtest::expect_close(mx::matmul(make(xv, {M, K}, d), w), ref, {M, N}, 1e-6, rtol(d));
          }
        }
      }
    }
  }
}

// Sizes past the GEMM kernel's cache blocks (k blocks of 256, 16 row panels
// and 4 column strips per block) with values that are not exact: the error is
// bounded by float32 accumulation, relative to sum |x * w|.
TEST(MatmulKernels, LargeProductsWithinAccumulationError) {
  IsaGuard guard;
  const int M = 130, N = 300, K = 601;
  std::vector<double> xv(size_t(M) * K), wv(size_t(N) * K);
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = std::sin(0.37 * double(i)) * 1.5;
  for (size_t i = 0; i < wv.size(); ++i) wv[i] = std::cos(0.91 * double(i) + 0.2);
  for (cpu::Isa isa : isas()) {
    cpu::set_isa(isa);
    for (mx::Dtype d : kDtypes) {
      // The reference takes the inputs as rounded to d.
      auto xr = mxtest::to_vector(make(xv, {M, K}, d));
      auto wr = mxtest::to_vector(make(wv, {N, K}, d));
      for (bool kn : {false, true}) {
        SCOPED_TRACE(std::string(cpu::isa_name(isa)) + " " + mx::dtype_name(d) +
                     (kn ? " x@W" : " x@W.T"));
        std::vector<double> wkn(wr.size());
        for (int n = 0; n < N; ++n) {
          for (int k = 0; k < K; ++k) wkn[size_t(k) * N + n] = wr[size_t(n) * K + k];
        }
        array w = kn ? make(wkn, {K, N}, d) : mx::transpose(make(wr, {N, K}, d));
        auto got = mxtest::to_vector(mx::matmul(make(xr, {M, K}, d), w));
        double out_eps = d == mx::bfloat16 ? 1.0 / 256 : d == mx::float16 ? 1.0 / 2048 : 0.0;
        for (int m = 0; m < M; ++m) {
          for (int n = 0; n < N; ++n) {
            double s = 0.0, sa = 0.0;
            for (int k = 0; k < K; ++k) {
              double p = xr[size_t(m) * K + k] * wr[size_t(n) * K + k];
              s += p;
              sa += std::abs(p);
            }
            double tol = out_eps * std::abs(s) + 1e-5 * sa;
            ASSERT_NEAR(got[size_t(m) * N + n], s, tol) << "m=" << m << " n=" << n;
          }
        }
      }
    }
  }
}

}  // namespace
