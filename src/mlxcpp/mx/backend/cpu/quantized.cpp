// CPU kernels of Quantize, Dequantize and QuantizedMatmul. Quantize follows
// formats.md 2.2-2.4 step by step. QuantizedMatmul takes the SIMD
// matrix-vector kernels (qgemv_*.cpp) for a few rows of x against an affine
// nn.Linear-layout matrix, and otherwise dequantizes W a tile at a time into
// float32 (or x's 16-bit dtype) and runs the dense GEMM on the tile.
#include <cblas.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#include "mlxcpp/mx/backend/cpu/gemm.h"
#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/backend/cpu/qgemv.h"
#include "mlxcpp/mx/backend/cpu/quantized_codec.h"
#include "mlxcpp/mx/backend/cpu/simd_kernels.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/primitives/fast.h"
#include "mlxcpp/mx/primitives/quantized.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx {
namespace {

using cpu::quant::BitReader;
using cpu::quant::BitWriter;

// ---------------------------------------------------------------- quantize

template <typename T>
void affine_quantize_rows(const T* w, uint32_t* wq, T* scales, T* biases, int64_t rows, int K,
                          int g, int bits) {
  const int ngroups = K / g;
  const int64_t words = int64_t{K} * bits / 32;
  const float n_bins = static_cast<float>((1 << bits) - 1);
  scheduler::parallel_for(rows, std::max<int64_t>(1, 65536 / K), [&](size_t rb, size_t re) {
    for (size_t r = rb; r < re; ++r) {
      const T* src = w + r * K;
      BitWriter out(wq + r * words, bits);
      for (int gi = 0; gi < ngroups; ++gi) {
        const T* grp = src + gi * g;
        T tmax = grp[0], tmin = grp[0];
        for (int i = 1; i < g; ++i) {
          if (static_cast<float>(grp[i]) > static_cast<float>(tmax)) tmax = grp[i];
          if (static_cast<float>(grp[i]) < static_cast<float>(tmin)) tmin = grp[i];
        }
        float wmax = static_cast<float>(tmax), wmin = static_cast<float>(tmin);
        float s = std::max((wmax - wmin) / n_bins, 1e-7f);
        bool min_edge = std::fabs(wmin) > std::fabs(wmax);
        float edge = min_edge ? wmin : wmax;
        float scale = min_edge ? s : -s;
        float q0 = std::nearbyint(edge / scale);
        float bias = 0.0f;
        if (q0 != 0.0f) {
          scale = edge / q0;
          bias = edge;
        }
        for (int i = 0; i < g; ++i) {
          float q = std::nearbyint((static_cast<float>(grp[i]) - bias) / scale);
          q = std::clamp(q, 0.0f, n_bins);
          out.put(static_cast<uint32_t>(q));
        }
        scales[r * ngroups + gi] = T(scale);
        biases[r * ngroups + gi] = T(bias);
      }
      out.flush();
    }
  });
}

template <typename T>
void fp_quantize_rows(const T* w, uint32_t* wq, uint8_t* scales, int64_t rows, int K, int g,
                      QuantizationMode mode) {
  const int ngroups = K / g;
  const int bits = mode == QuantizationMode::mxfp8 ? 8 : 4;
  const int64_t words = int64_t{K} * bits / 32;
  scheduler::parallel_for(rows, std::max<int64_t>(1, 65536 / K), [&](size_t rb, size_t re) {
    for (size_t r = rb; r < re; ++r) {
      const T* src = w + r * K;
      BitWriter out(wq + r * words, bits);
      for (int gi = 0; gi < ngroups; ++gi) {
        const T* grp = src + gi * g;
        float amax = 0.0f;
        for (int i = 0; i < g; ++i) amax = std::max(amax, std::fabs(static_cast<float>(grp[i])));
        float inv;  // w' = w * inv
        uint8_t sbyte;
        if (mode == QuantizationMode::nvfp4) {
          sbyte = cpu::quant::e4m3_encode(amax / 6.0f);
          float sv = cpu::quant::e4m3_decode(sbyte);
          inv = sv > 0.0f ? 1.0f / sv : 0.0f;
        } else {
          float s = amax / (mode == QuantizationMode::mxfp8 ? 448.0f : 6.0f);
          int e = s > 0.0f ? static_cast<int>(std::nearbyint(std::log2(s))) : 0;
          e = std::clamp(e, -127, 127);
          sbyte = static_cast<uint8_t>(e + 127);
          inv = std::ldexp(1.0f, -e);
        }
        for (int i = 0; i < g; ++i) {
          float v = static_cast<float>(grp[i]) * inv;
          out.put(mode == QuantizationMode::mxfp8 ? cpu::quant::e4m3_encode(v)
                                                  : cpu::quant::fp4_encode(v));
        }
        scales[r * ngroups + gi] = sbyte;
      }
      out.flush();
    }
  });
}

// ---------------------------------------------------------------- dequantize

// One packed row of `len` values into `out` (any float type).
struct QRows {
  const uint32_t* w;
  const void* scales;
  const void* biases;
  Dtype sdtype = float32;
  int64_t words;   // per row
  int64_t groups;  // per row
  int len, bits, group_size;
  QuantizationMode mode;
};

// bfloat16 from float32, rounding to nearest even and keeping NaN a NaN, as
// bfloat16_t does; written on the bits so that the loop vectorizes.
inline void store_bf16(const float* v, int n, bfloat16_t* o) {
  for (int i = 0; i < n; ++i) {
    uint32_t u = std::bit_cast<uint32_t>(v[i]);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x40u;
    o[i] = bfloat16_t::from_bits(static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : r));
  }
}

// The codes of a group are unpacked 32 at a time (a block of exactly BITS
// words, copied with a zero word after it so a value straddling into the
// next word reads it without a branch; the fully unrolled loop has constant
// shifts), then scaled in a loop the compiler vectorizes: the tile path of
// prefill spends its time here.
template <typename S, typename O, int BITS>
void dequant_row_affine(const QRows& q, int64_t r, O* out) {
  // float64 scales or output (derivative checks) keep their precision.
  using A =
      std::conditional_t<std::is_same_v<S, double> || std::is_same_v<O, double>, double, float>;
  constexpr uint64_t mask = (uint64_t{1} << BITS) - 1;
  const S* sc = static_cast<const S*>(q.scales) + r * q.groups;
  const S* bi = static_cast<const S*>(q.biases) + r * q.groups;
  const uint32_t* wp = q.w + r * q.words;
  A codes[128];  // one group (group_size <= 128)
  A vals[128];
  for (int64_t gi = 0; gi < q.groups; ++gi) {
    const A s = static_cast<A>(sc[gi]), b = static_cast<A>(bi[gi]);
    for (int blk = 0; blk < q.group_size / 32; ++blk) {
      uint32_t wv[BITS + 1];
      std::memcpy(wv, wp, BITS * sizeof(uint32_t));
      wv[BITS] = 0;
      wp += BITS;
#pragma GCC unroll 32
      for (int k = 0; k < 32; ++k) {
        const int bit = k * BITS;
        const uint64_t two = wv[bit / 32] | (uint64_t{wv[bit / 32 + 1]} << 32);
        codes[blk * 32 + k] = static_cast<A>((two >> (bit % 32)) & mask);
      }
    }
    O* o = out + gi * q.group_size;
    // One rounding (a fused multiply-add), as the matmul kernels compute it.
    if constexpr (std::is_same_v<O, A>) {
      for (int i = 0; i < q.group_size; ++i) o[i] = std::fma(s, codes[i], b);
    } else {
      for (int i = 0; i < q.group_size; ++i) vals[i] = std::fma(s, codes[i], b);
      if constexpr (std::is_same_v<O, bfloat16_t> && std::is_same_v<A, float>) {
        store_bf16(vals, q.group_size, o);
      } else {
        for (int i = 0; i < q.group_size; ++i) o[i] = O(vals[i]);
      }
    }
  }
}

template <typename S, typename O>
void dequant_row_affine_bits(const QRows& q, int64_t r, O* out) {
  switch (q.bits) {
    case 2:
      return dequant_row_affine<S, O, 2>(q, r, out);
    case 3:
      return dequant_row_affine<S, O, 3>(q, r, out);
    case 4:
      return dequant_row_affine<S, O, 4>(q, r, out);
    case 5:
      return dequant_row_affine<S, O, 5>(q, r, out);
    case 6:
      return dequant_row_affine<S, O, 6>(q, r, out);
    default:
      return dequant_row_affine<S, O, 8>(q, r, out);
  }
}

template <typename O>
void dequant_row_fp(const QRows& q, int64_t r, O* out) {
  const uint8_t* sc = static_cast<const uint8_t*>(q.scales) + r * q.groups;
  BitReader rd(q.w + r * q.words, q.bits);
  for (int64_t gi = 0; gi < q.groups; ++gi) {
    float s = q.mode == QuantizationMode::nvfp4 ? cpu::quant::e4m3_decode(sc[gi])
                                                : cpu::quant::e8m0_decode(sc[gi]);
    O* o = out + gi * q.group_size;
    for (int i = 0; i < q.group_size; ++i) {
      uint32_t c = rd.next();
      float v = q.mode == QuantizationMode::mxfp8 ? cpu::quant::e4m3_decode(static_cast<uint8_t>(c))
                                                  : cpu::quant::kFp4Values[c];
      o[i] = O(v * s);
    }
  }
}

template <typename O>
void dequant_row(const QRows& q, int64_t r, O* out) {
  if (q.mode != QuantizationMode::affine) {
    dequant_row_fp<O>(q, r, out);
    return;
  }
  if (q.sdtype == bfloat16) {
    dequant_row_affine_bits<bfloat16_t, O>(q, r, out);
  } else if (q.sdtype == float16) {
    dequant_row_affine_bits<float16_t, O>(q, r, out);
  } else if (q.sdtype == float32) {
    dequant_row_affine_bits<float, O>(q, r, out);
  } else {
    dequant_row_affine_bits<double, O>(q, r, out);
  }
}

// Rows [r0, r1) into out (row-major, `len` per row), over the pool.
template <typename O>
void dequant_rows(const QRows& q, int64_t r0, int64_t r1, O* out) {
  scheduler::parallel_for(static_cast<size_t>(r1 - r0), std::max<int64_t>(1, 16384 / q.len),
                          [&](size_t b, size_t e) {
                            for (size_t i = b; i < e; ++i) {
                              dequant_row<O>(q, r0 + static_cast<int64_t>(i), out + i * q.len);
                            }
                          });
}

QRows make_qrows(const array& w, const array& scales, const std::optional<array>& biases,
                 int group_size, int bits, QuantizationMode mode, int64_t matrix_offset_rows) {
  QRows q;
  q.words = w.shape(-1);
  q.groups = scales.shape(-1);
  q.len = static_cast<int>(q.words * 32 / bits);
  q.bits = bits;
  q.group_size = group_size;
  q.mode = mode;
  q.sdtype = scales.dtype();
  q.w = w.data<uint32_t>() + matrix_offset_rows * q.words;
  q.scales = scales.data<uint8_t>() + matrix_offset_rows * q.groups * scales.itemsize();
  q.biases = biases ? biases->data<uint8_t>() + matrix_offset_rows * q.groups * biases->itemsize()
                    : nullptr;
  return q;
}

// ---------------------------------------------------------------- quantized matmul

// Portable matrix-vector product for CPUs without the SIMD kernels.
void qgemv_portable(const cpu::QGemvArgs& a, const QRows& q) {
  scheduler::parallel_for(a.N, std::max(1, 16384 / a.K), [&](size_t nb, size_t ne) {
    std::vector<float> row(a.K);
    for (size_t n = nb; n < ne; ++n) {
      dequant_row<float>(q, static_cast<int64_t>(n), row.data());
      for (int m = 0; m < a.M; ++m) {
        const float* x = a.x + int64_t{m} * a.K;
        float acc = 0.0f;
        for (int k = 0; k < a.K; ++k) acc += x[k] * row[k];
        a.y[m * a.ldy + n] = acc;
      }
    }
  });
}

// y (M x N, row stride N) = x (M x K) @ W^T for W [N, K], a tile of rows of
// W dequantized at a time into x's type; each tile writes its own columns.
template <typename T>
void qmm_tiles_t(const T* x, int M, int K, const QRows& q, int N, T* y) {
  constexpr int64_t kTileElems = int64_t{1} << 20;
  const int nt = static_cast<int>(std::clamp<int64_t>(kTileElems / K / 64 * 64, 64, N));
  std::vector<T> tile(static_cast<size_t>(std::min(nt, N)) * K);
  for (int n0 = 0; n0 < N; n0 += nt) {
    const int cols = std::min(nt, N - n0);
    dequant_rows<T>(q, n0, n0 + cols, tile.data());
    cpu::MatRef a{x, K, 1}, b{tile.data(), 1, K};
    if constexpr (std::is_same_v<T, float>) {
      if (!cpu::gemv_dispatch(float32, M, cols, K, 1.0f, a, b, 0.0f, y + n0, N)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, cols, K, 1.0f, x, K, tile.data(), K,
                    0.0f, y + n0, N);
      }
    } else if constexpr (std::is_same_v<T, double>) {
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, cols, K, 1.0, x, K, tile.data(), K,
                  0.0, y + n0, N);
    } else {
      cpu::gemm_half(TypeToDtype<T>::value, M, cols, K, 1.0f, a, b, 0.0f, y + n0, N);
    }
  }
}

// y (M x N) = x (M x K) @ W for W [K, N] (quantized along N), accumulated
// over tiles of rows of W (so in float32 or float64 only).
template <typename T>
void qmm_tiles_nt(const T* x, int M, int K, const QRows& q, int N, T* y) {
  constexpr int64_t kTileElems = int64_t{1} << 20;
  const int kt = static_cast<int>(std::clamp<int64_t>(kTileElems / N, 1, K));
  std::vector<T> tile(static_cast<size_t>(kt) * N);
  for (int k0 = 0; k0 < K; k0 += kt) {
    const int rows = std::min(kt, K - k0);
    dequant_rows<T>(q, k0, k0 + rows, tile.data());
    if constexpr (std::is_same_v<T, float>) {
      cpu::MatRef a{x + k0, K, 1}, b{tile.data(), N, 1};
      float beta = k0 == 0 ? 0.0f : 1.0f;
      if (!cpu::gemv_dispatch(float32, M, N, rows, 1.0f, a, b, beta, y, N)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, rows, 1.0f, x + k0, K,
                    tile.data(), N, beta, y, N);
      }
    } else {
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, rows, 1.0, x + k0, K,
                  tile.data(), N, k0 == 0 ? 0.0 : 1.0, y, N);
    }
  }
}

template <typename T>
std::vector<float> to_float(const T* p, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(p[i]);
  return v;
}

template <typename T>
void from_float(const float* v, size_t n, T* p) {
  for (size_t i = 0; i < n; ++i) p[i] = T(v[i]);
}

// One product of the batch: x (M x K), W from q, y (M x N); T is out's type.
// x @ W^T in affine mode for up to kQGemvBlockedRows rows of x goes through
// the matrix-vector kernels in blocks of up to kQGemvMaxRows rows: each block
// reads W once more, but the codes never leave registers, where the tiled path
// dequantizes all of W first (Gemma 3 1B's 4-bit gate projection, 6912 x 1152,
// alternating runs: 15 rows 9.2 -> 4.0 ms). Beyond that the tiled GEMM wins:
// a 128-token prefill of the 4-bit 1B model was 20-30 % slower blocked (x rows
// of the 6912-wide down projection no longer stay in L1), 512 rows 2x slower.
constexpr int kQGemvBlockedRows = 32;

template <typename T>
void qmm_one(const T* x, int M, int K, int N, const QRows& q, bool transpose, T* y) {
  const bool fast = !std::is_same_v<T, double> && transpose && q.mode == QuantizationMode::affine &&
                    q.sdtype != float64 && M <= kQGemvBlockedRows;
  if (fast) {
    constexpr int kRows = cpu::kQGemvMaxRows;
    // Grow-only per-thread float32 staging: a fresh zeroed vector per call
    // cost a decode step of the 4-bit 1B model ~1 MB of page faults and
    // memset for the 262144-wide LM head.
    thread_local std::vector<float> xf_store, yf_store;
    float* xf = nullptr;
    float* yf = nullptr;
    if constexpr (!std::is_same_v<T, float>) {
      const size_t xn = static_cast<size_t>(std::min(M, kRows)) * K;
      const size_t yn = static_cast<size_t>(std::min(M, kRows)) * N;
      if (xf_store.size() < xn) xf_store.resize(xn);
      if (yf_store.size() < yn) yf_store.resize(yn);
      xf = xf_store.data();
      yf = yf_store.data();
    }
    for (int m0 = 0; m0 < M; m0 += kRows) {
      const int rows = std::min(kRows, M - m0);
      const T* xb = x + int64_t{m0} * K;
      T* yb = y + int64_t{m0} * N;
      cpu::QGemvArgs a;
      a.M = rows;
      a.N = N;
      a.K = K;
      if constexpr (std::is_same_v<T, float>) {
        a.x = xb;
        a.y = yb;
      } else {
        for (size_t i = 0; i < static_cast<size_t>(rows) * K; ++i)
          xf[i] = static_cast<float>(xb[i]);
        a.x = xf;
        a.y = yf;
      }
      a.x_bf16_exact = std::is_same_v<T, bfloat16_t>;
      a.w = q.w;
      a.scales = q.scales;
      a.biases = q.biases;
      a.sdtype = q.sdtype;
      a.bits = q.bits;
      a.group_size = q.group_size;
      a.ldy = N;
      if (!cpu::qgemv_dispatch(a)) qgemv_portable(a, q);
      if constexpr (!std::is_same_v<T, float>) {
        // In parallel: the LM head's 262144 outputs took ~0.3 ms on one core.
        scheduler::parallel_for(static_cast<size_t>(rows) * N, size_t{1} << 15,
                                [&](size_t b, size_t e) { from_float(yf + b, e - b, yb + b); });
      }
    }
    return;
  }
  if constexpr (std::is_same_v<T, double>) {
    if (transpose) {
      qmm_tiles_t<double>(x, M, K, q, N, y);
    } else {
      qmm_tiles_nt<double>(x, M, K, q, N, y);
    }
  } else if (transpose) {
    qmm_tiles_t<T>(x, M, K, q, N, y);
  } else {
    // Accumulated across tiles in float32, whatever x's type.
    std::vector<float> xf = to_float(x, static_cast<size_t>(M) * K);
    std::vector<float> yf(static_cast<size_t>(M) * N);
    qmm_tiles_nt<float>(xf.data(), M, K, q, N, yf.data());
    from_float(yf.data(), yf.size(), y);
  }
}

// One bfloat16 row of x against every matrix of a GroupedQuantizedMatmul
// (q/k/v and gate/up in decode) in one pass of the one-row kernel
// (qgemv_multi_dispatch): x converted, packed and summed per group once, one
// thread-pool hand-off instead of one per matrix. Returns false, writing
// nothing, where that kernel does not take them all.
bool grouped_one_row(const std::vector<array>& inputs, std::vector<array>& outputs, int group_size,
                     int bits) {
  const size_t count = outputs.size();
  if (count == 0 || inputs.size() != 1 + 3 * count || inputs[0].dtype() != bfloat16) return false;
  if (inputs[0].ndim() == 0) return false;
  const int K = inputs[0].shape(-1);
  if (K == 0 || static_cast<int64_t>(inputs[0].size()) != K) return false;
  std::vector<array> held;  // contiguous copies where an input was a view
  held.reserve(3 * count + 1);
  held.push_back(cpu::ensure_row_contiguous(inputs[0]));
  std::vector<cpu::QGemvArgs> args(count);
  size_t total = 0;
  for (size_t i = 0; i < count; ++i) {
    const array& w = inputs[1 + 3 * i];
    const array& s = inputs[2 + 3 * i];
    const array& b = inputs[3 + 3 * i];
    if (outputs[i].dtype() != bfloat16 || w.ndim() != 2 || s.ndim() != 2 || b.ndim() != 2 ||
        w.dtype() != uint32 || s.dtype() != b.dtype() ||
        int64_t{w.shape(1)} * 32 != int64_t{K} * bits || s.shape(1) * group_size != K ||
        s.shape(0) != w.shape(0) || b.shape() != s.shape()) {
      return false;
    }
    held.push_back(cpu::ensure_row_contiguous(w));
    held.push_back(cpu::ensure_row_contiguous(s));
    held.push_back(cpu::ensure_row_contiguous(b));
    cpu::QGemvArgs& a = args[i];
    a.M = 1;
    a.N = w.shape(0);
    a.K = K;
    a.x_bf16_exact = true;
    a.w = held[held.size() - 3].data<uint32_t>();
    a.scales = held[held.size() - 2].data<uint8_t>();
    a.biases = held[held.size() - 1].data<uint8_t>();
    a.sdtype = s.dtype();
    a.bits = bits;
    a.group_size = group_size;
    a.ldy = a.N;
    total += static_cast<size_t>(a.N);
  }
  // Grow-only per-thread staging, as qmm_one's.
  thread_local std::vector<float> xf_store, yf_store;
  if (xf_store.size() < static_cast<size_t>(K)) xf_store.resize(K);
  if (yf_store.size() < total) yf_store.resize(total);
  const bfloat16_t* xb = held[0].data<bfloat16_t>();
  for (int k = 0; k < K; ++k) xf_store[k] = static_cast<float>(xb[k]);
  size_t off = 0;
  for (auto& a : args) {
    a.x = xf_store.data();
    a.y = yf_store.data() + off;
    off += static_cast<size_t>(a.N);
  }
  if (!cpu::qgemv_multi_dispatch(args.data(), static_cast<int>(count))) return false;
  for (size_t i = 0; i < count; ++i) {
    cpu::allocate_row_contiguous(outputs[i]);
    store_bf16(args[i].y, args[i].N, outputs[i].data<bfloat16_t>());
  }
  return true;
}
}  // namespace

void Quantize::eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) {
  array w = cpu::ensure_row_contiguous(inputs[0]);
  for (auto& o : outputs) cpu::allocate_row_contiguous(o);
  const int K = w.shape(-1);
  const int64_t rows = K == 0 ? 0 : static_cast<int64_t>(w.size() / K);
  if (rows == 0) return;
  dispatch_float(w.dtype(), "quantize", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (mode_ == QuantizationMode::affine) {
      affine_quantize_rows<T>(w.data<T>(), outputs[0].data<uint32_t>(), outputs[1].data<T>(),
                              outputs[2].data<T>(), rows, K, group_size_, bits_);
    } else {
      fp_quantize_rows<T>(w.data<T>(), outputs[0].data<uint32_t>(), outputs[1].data<uint8_t>(),
                          rows, K, group_size_, mode_);
    }
  });
}

void Dequantize::eval_cpu(const std::vector<array>& inputs, array& out) {
  array w = cpu::ensure_row_contiguous(inputs[0]);
  array scales = cpu::ensure_row_contiguous(inputs[1]);
  std::optional<array> biases;
  if (inputs.size() > 2) biases = cpu::ensure_row_contiguous(inputs[2]);
  cpu::allocate_row_contiguous(out);
  if (out.size() == 0) return;
  QRows q = make_qrows(w, scales, biases, group_size_, bits_, mode_, 0);
  const int64_t rows = static_cast<int64_t>(out.size() / q.len);
  dispatch_float(out.dtype(), "dequantize", [&](auto tag) {
    using T = typename decltype(tag)::type;
    dequant_rows<T>(q, 0, rows, out.data<T>());
  });
}

void QuantizedMatmul::eval_cpu(const std::vector<array>& inputs, array& out) {
  array x = cpu::ensure_row_contiguous(inputs[0]);
  array w = cpu::ensure_row_contiguous(inputs[1]);
  array scales = cpu::ensure_row_contiguous(inputs[2]);
  std::optional<array> biases;
  if (inputs.size() > 3) biases = cpu::ensure_row_contiguous(inputs[3]);
  cpu::allocate_row_contiguous(out);
  if (out.size() == 0) return;
  const int K = x.shape(-1), N = out.shape(-1);
  if (K == 0) {
    std::memset(out.data<uint8_t>(), 0, out.nbytes());
    return;
  }
  // A 2-D W serves every row of x; a batched one (broadcast by the op to
  // x's batch dims) one matrix per batch entry.
  const bool shared = w.ndim() == 2;
  const int M = shared ? static_cast<int>(x.size() / K) : x.shape(-2);
  const int64_t nbatch = shared ? 1 : static_cast<int64_t>(out.size() / (int64_t{M} * N));
  const int64_t wrows = w.shape(-2);
  dispatch_float(out.dtype(), "quantized_matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (int64_t b = 0; b < nbatch; ++b) {
      QRows q = make_qrows(w, scales, biases, group_size_, bits_, mode_, b * wrows);
      qmm_one<T>(x.data<T>() + b * int64_t{M} * K, M, K, N, q, transpose_,
                 out.data<T>() + b * int64_t{M} * N);
    }
  });
}

// Every matrix in one pass where the one-row kernel takes them all, else each
// as its QuantizedMatmul.
void GroupedQuantizedMatmul::eval_cpu(const std::vector<array>& inputs,
                                      std::vector<array>& outputs) {
  if (geglu_) {
    // Gate and up as the plain primitive computes them, then the activation's kernel.
    std::vector<array> gu;
    for (int i = 0; i < 2; ++i)
      gu.emplace_back(outputs[0].shape(), outputs[0].dtype(), nullptr, std::vector<array>{});
    GroupedQuantizedMatmul(stream(), group_size_, bits_).eval_cpu(inputs, gu);
    fast::GeluApproxMul(stream()).eval_cpu(gu, outputs[0]);
    return;
  }
  if (grouped_one_row(inputs, outputs, group_size_, bits_)) return;
  for (size_t i = 0; i < outputs.size(); ++i) {
    QuantizedMatmul p(stream(), group_size_, bits_, QuantizationMode::affine, true);
    p.eval_cpu({inputs[0], inputs[1 + 3 * i], inputs[2 + 3 * i], inputs[3 + 3 * i]}, outputs[i]);
  }
}

// The norms' kernel into h and a temporary x, then the products of x.
void ResidualNormQuantizedMatmul::eval_cpu(const std::vector<array>& inputs,
                                           std::vector<array>& outputs) {
  std::vector<array> hx{outputs[0],
                        array(inputs[0].shape(), inputs[0].dtype(), nullptr, std::vector<array>{})};
  fast::ResidualRMSNorm(stream(), eps_).eval_cpu({inputs[0], inputs[1], inputs[2], inputs[3]}, hx);
  std::vector<array> prod_in{hx[1]};
  prod_in.insert(prod_in.end(), inputs.begin() + 4, inputs.end());
  std::vector<array> prods(outputs.begin() + 1, outputs.end());
  GroupedQuantizedMatmul(stream(), group_size_, bits_, geglu_).eval_cpu(prod_in, prods);
}

}  // namespace mx
