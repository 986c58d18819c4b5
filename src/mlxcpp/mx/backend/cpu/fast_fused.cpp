// CPU kernels of fast::rms_norm_f32, fast::gelu_approx_mul, fast::residual_rms_norm and
// fast::rms_norm_rope: each element is read once in its own dtype, computed in float32 and
// rounded where the unfused graph rounds (the activation of gelu_approx_mul before the
// product; the normalized rows before the residual add or the rotation).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numbers>
#include <vector>

#include "mlxcpp/mx/backend/cpu/fast_common.h"
#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/primitives/fast.h"
#include "mlxcpp/mx/primitives/shape_more.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx::fast {

namespace {

constexpr size_t kGrainElems = size_t{1} << 14;

// libm's tanhf took 40 us of one core per 2048-wide Gemma 3 270M MLP row,
// ~15 % of a 1B 4-bit decode step's CPU time.
using V8 = cpu_detail::V8;

using U8 = uint32_t __attribute__((vector_size(32)));
using H8 = uint16_t __attribute__((vector_size(16)));

inline V8 load_bf16(const bfloat16_t* p) {
  H8 h;
  std::memcpy(&h, p, sizeof(h));
  const U8 u = __builtin_convertvector(h, U8) << 16;
  V8 f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// bfloat16_t::from_float's rounding (nearest even, NaN kept a quiet NaN),
// as the top 16 bits of each lane.
inline U8 bf16_bits(V8 f) {
  U8 u;
  std::memcpy(&u, &f, sizeof(u));
  const U8 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return f != f ? ((u >> 16) | 0x40u) : rounded;
}

// f rounded to bfloat16, kept as float32.
inline V8 round_bf16(V8 f) {
  const U8 u = bf16_bits(f) << 16;
  V8 r;
  std::memcpy(&r, &u, sizeof(r));
  return r;
}

inline void store_bf16(bfloat16_t* p, V8 f) {
  const H8 h = __builtin_convertvector(bf16_bits(f), H8);
  std::memcpy(static_cast<void*>(p), &h, sizeof(h));
}

// gelu with the tanh approximation, 0.5 x (1 + tanh(u)), written as
// x / (1 + exp(-2u)) (the same function; no cancellation for x << 0).
inline V8 gelu_tanh8(V8 x) {
  using cpu_detail::exp8;
  using cpu_detail::splat;
  const V8 u = splat(0.7978845608f) * (x + splat(0.044715f) * x * x * x);
  return x / (splat(1.0f) + exp8(splat(-2.0f) * u));
}

}  // namespace

void RMSNormF32::eval_cpu(const std::vector<array>& inputs, array& out) {
  array x = cpu::ensure_row_contiguous(inputs[0]);
  array w = cpu::ensure_row_contiguous(inputs[1]);
  cpu::allocate_row_contiguous(out);
  if (out.size() == 0) return;
  const int d = x.shape(-1);
  const size_t rows = x.size() / d;
  const float* wp = w.data<float>();
  dispatch_float(out.dtype(), "rms_norm_f32", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, double>) {
      throw std::invalid_argument("[rms_norm_f32] float64 input takes the composed path");
    } else {
      const T* xp = x.data<T>();
      T* op = out.data<T>();
      const float eps = eps_;
      scheduler::parallel_for(rows, std::max<size_t>(1, kGrainElems / d), [&](size_t b, size_t e) {
        for (size_t r = b; r < e; ++r) {
          const T* xr = xp + r * d;
          T* yr = op + r * d;
          const float ss = cpu_detail::lane_sum<float>(d, [&](int i) {
            float v = static_cast<float>(xr[i]);
            return v * v;
          });
          const float n = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
          for (int i = 0; i < d; ++i) yr[i] = static_cast<T>(static_cast<float>(xr[i]) * n * wp[i]);
        }
      });
    }
  });
}

void GeluApproxMul::eval_cpu(const std::vector<array>& inputs, array& out) {
  array g = cpu::ensure_row_contiguous(inputs[0]);
  array u = cpu::ensure_row_contiguous(inputs[1]);
  cpu::allocate_row_contiguous(out);
  const size_t n = out.size();
  if (n == 0) return;
  dispatch_float(out.dtype(), "gelu_approx_mul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, double>) {
      throw std::invalid_argument("[gelu_approx_mul] float64 input takes the composed path");
    } else {
      const T* gp = g.data<T>();
      const T* up = u.data<T>();
      T* op = out.data<T>();
      scheduler::parallel_for(n, kGrainElems, [&](size_t b, size_t e) {
        size_t i = b;
        if constexpr (std::is_same_v<T, bfloat16_t>) {
          // bfloat16 in and out in vectors too: rounding each element on
          // its own (with its NaN test) cost more than the activation.
          for (; i + 8 <= e; i += 8) {
            const V8 act = round_bf16(gelu_tanh8(load_bf16(gp + i)));
            store_bf16(op + i, act * load_bf16(up + i));
          }
        }
        for (; i + 8 <= e; i += 8) {
          V8 x;
          for (int j = 0; j < 8; ++j) x[j] = static_cast<float>(gp[i + j]);
          const V8 act = gelu_tanh8(x);
          for (int j = 0; j < 8; ++j) {
            const T a = static_cast<T>(act[j]);
            op[i + j] = static_cast<T>(static_cast<float>(a) * static_cast<float>(up[i + j]));
          }
        }
        if (i < e) {
          V8 x{};
          for (size_t j = 0; i + j < e; ++j) x[j] = static_cast<float>(gp[i + j]);
          const V8 act = gelu_tanh8(x);
          for (size_t j = 0; i + j < e; ++j) {
            const T a = static_cast<T>(act[j]);
            op[i + j] = static_cast<T>(static_cast<float>(a) * static_cast<float>(up[i + j]));
          }
        }
      });
    }
  });
}

namespace {

// Saturates a float16 sum at the largest finite value (NaN stays NaN); other dtypes round as is.
template <typename T>
inline float residual_sum(float a, float b) {
  float v = a + b;
  if constexpr (std::is_same_v<T, float16_t>) {
    v = v > 65504.0f ? 65504.0f : (v < -65504.0f ? -65504.0f : v);
  }
  return v;
}

// cos and sin (half of each, in that order) per position of `pos` and pair, in double rounded
// to float as fast::rope's kernels do. A decode step asks for the same one-position table in
// every layer of a kind (Gemma 3 has two RoPE bases), so small tables are kept per thread.
const std::vector<float>& rope_table(const std::vector<int64_t>& pos, int dims, float base,
                                     float scale) {
  struct Entry {
    std::vector<int64_t> pos;
    int dims = 0;
    float base = 0, scale = 0;
    std::vector<float> table;
  };
  constexpr size_t kEntries = 4, kMaxPositions = 16;
  thread_local std::array<Entry, kEntries> entries;
  thread_local size_t next = 0;
  thread_local Entry uncached;
  const bool cache = pos.size() <= kMaxPositions;
  if (cache) {
    for (auto& e : entries) {
      if (e.dims == dims && e.base == base && e.scale == scale && e.pos == pos) return e.table;
    }
  }
  Entry& e = cache ? entries[next] : uncached;
  if (cache) next = (next + 1) % kEntries;
  const int half = dims / 2;
  const double log_base = std::log(static_cast<double>(base));
  std::vector<double> inv(half);
  for (int k = 0; k < half; ++k) inv[k] = std::exp(-(2.0 * k / dims) * log_base);
  e.table.resize(pos.size() * half * 2);
  scheduler::parallel_for(
      pos.size(), std::max(1, 4096 / std::max(half, 1)), [&](size_t b, size_t end) {
        for (size_t p = b; p < end; ++p) {
          float* c = e.table.data() + p * half * 2;
          for (int k = 0; k < half; ++k) {
            const double theta = static_cast<double>(scale) * static_cast<double>(pos[p]) * inv[k];
            c[k] = static_cast<float>(std::cos(theta));
            c[half + k] = static_cast<float>(std::sin(theta));
          }
        }
      });
  e.pos = pos;
  e.dims = dims;
  e.base = base;
  e.scale = scale;
  return e.table;
}

}  // namespace

void ResidualRMSNorm::eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) {
  array res = cpu::ensure_row_contiguous(inputs[0]);
  array y = cpu::ensure_row_contiguous(inputs[1]);
  array wy = cpu::ensure_row_contiguous(inputs[2]);
  array wo = cpu::ensure_row_contiguous(inputs[3]);
  for (auto& o : outputs) cpu::allocate_row_contiguous(o);
  if (outputs[0].size() == 0) return;
  const int d = y.shape(-1);
  const size_t rows = y.size() / d;
  const float* wyp = wy.data<float>();
  const float* wop = wo.data<float>();
  dispatch_float(outputs[0].dtype(), "residual_rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, double>) {
      throw std::invalid_argument("[residual_rms_norm] float64 input takes the composed path");
    } else {
      const T* rp = res.data<T>();
      const T* yp = y.data<T>();
      T* hp = outputs[0].data<T>();
      T* np = outputs[1].data<T>();
      const float eps = eps_;
      scheduler::parallel_for(rows, std::max<size_t>(1, kGrainElems / d), [&](size_t b, size_t e) {
        for (size_t r = b; r < e; ++r) {
          const T* yr = yp + r * d;
          const T* rr = rp + r * d;
          T* hr = hp + r * d;
          T* nr = np + r * d;
          const float ssy = cpu_detail::lane_sum<float>(d, [&](int i) {
            float v = static_cast<float>(yr[i]);
            return v * v;
          });
          const float ny = 1.0f / std::sqrt(ssy / static_cast<float>(d) + eps);
          for (int i = 0; i < d; ++i) {
            const T a = static_cast<T>(static_cast<float>(yr[i]) * ny * wyp[i]);
            hr[i] =
                static_cast<T>(residual_sum<T>(static_cast<float>(rr[i]), static_cast<float>(a)));
          }
          const float ssh = cpu_detail::lane_sum<float>(d, [&](int i) {
            float v = static_cast<float>(hr[i]);
            return v * v;
          });
          const float nh = 1.0f / std::sqrt(ssh / static_cast<float>(d) + eps);
          for (int i = 0; i < d; ++i)
            nr[i] = static_cast<T>(static_cast<float>(hr[i]) * nh * wop[i]);
        }
      });
    }
  });
}

void RMSNormRoPE::eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) {
  const size_t n = outputs.size();
  const array& offset = inputs.back();
  const int half = dims_ / 2;
  const int B = inputs[0].shape(0);
  const int L = inputs[0].shape(-2);
  // Distinct positions: L of them, or B * L with one offset per batch row.
  const int32_t* off = offset.data<int32_t>();
  const bool batched = offset.size() != 1;
  const int64_t os = offset.ndim() == 0 ? 0 : offset.strides()[0];
  std::vector<int64_t> pos;
  for (int bi = 0; bi < (batched ? B : 1); ++bi) {
    for (int l = 0; l < L; ++l) pos.push_back(static_cast<int64_t>(off[bi * os]) + l);
  }
  const std::vector<float>& cs = rope_table(pos, dims_, base_, scale_);
  for (size_t t = 0; t < n; ++t) {
    array x = cpu::ensure_row_contiguous(inputs[t]);
    array w = cpu::ensure_row_contiguous(inputs[n + t]);
    array& out = outputs[t];
    cpu::allocate_row_contiguous(out);
    if (out.size() == 0) continue;
    const int d = x.shape(-1);
    const int64_t rows = static_cast<int64_t>(x.size() / d);
    const int64_t per_batch = rows / std::max(B, 1);
    const float* wp = w.data<float>();
    dispatch_float(out.dtype(), "rms_norm_rope", [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (std::is_same_v<T, double>) {
        throw std::invalid_argument("[rms_norm_rope] float64 input takes the composed path");
      } else {
        const T* xp = x.data<T>();
        T* op = out.data<T>();
        const float eps = eps_;
        const int dims = dims_;
        const bool trad = traditional_;
        scheduler::parallel_for(
            rows, std::max<int64_t>(1, kGrainElems / d), [&](size_t b, size_t e) {
              std::vector<T> normed(d);
              for (size_t r = b; r < e; ++r) {
                const T* xr = xp + r * d;
                T* yr = op + r * d;
                const float ss = cpu_detail::lane_sum<float>(d, [&](int i) {
                  float v = static_cast<float>(xr[i]);
                  return v * v;
                });
                const float nrm = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
                // The norm's rounding to T, which the unfused graph stores between the two ops.
                for (int i = 0; i < d; ++i) {
                  normed[i] = static_cast<T>(static_cast<float>(xr[i]) * nrm * wp[i]);
                }
                const int64_t l = static_cast<int64_t>(r) % L;
                const int64_t p = batched ? (static_cast<int64_t>(r) / per_batch) * L + l : l;
                const float* c = cs.data() + p * half * 2;
                const float* sn = c + half;
                for (int k = 0; k < half; ++k) {
                  const int i1 = trad ? 2 * k : k;
                  const int i2 = trad ? 2 * k + 1 : k + half;
                  const float x1 = static_cast<float>(normed[i1]);
                  const float x2 = static_cast<float>(normed[i2]);
                  yr[i1] = static_cast<T>(x1 * c[k] - x2 * sn[k]);
                  yr[i2] = static_cast<T>(x1 * sn[k] + x2 * c[k]);
                }
                for (int i = dims; i < d; ++i) yr[i] = normed[i];
              }
            });
      }
    });
  }
}

void RMSNormRoPEKVWrite::eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) {
  // q and k through the norm-rope kernel, then k's and v's rows into the caches' own buffers at
  // the slot, placed as slice_update places a one-position window on axis 2.
  std::vector<array> qk{outputs[0], array(inputs[1].shape(), inputs[1].dtype(), nullptr, {})};
  RMSNormRoPE::eval_cpu({inputs[0], inputs[1], inputs[3], inputs[4], inputs[5]}, qk);
  const array& k_cache = inputs[6];
  const int C = k_cache.shape(2);
  const int D = k_cache.shape(3);
  Shape window = k_cache.shape();
  window[2] = 1;
  // Unit stride on axis 2 alone: the offset is the slot itself.
  const int64_t slot = mx::detail::dynamic_slice_offset(inputs[8], {2}, k_cache.shape(), window,
                                                        Strides{0, 0, 1, 0});
  for (int c = 0; c < 2; ++c) {
    const array& cache = inputs[6 + c];
    const bool contiguous = cache.flags().row_contiguous && cache.data_size() == cache.size();
    if (in_place() && !contiguous) {
      throw std::invalid_argument("[rms_norm_rope_kv_write] the caches must be row-contiguous");
    }
    if (in_place() || (contiguous && cache.is_donatable(static_cast<long>(outputs.size())))) {
      outputs[1 + c].copy_shared_buffer(cache);
    } else {
      cpu::allocate_row_contiguous(outputs[1 + c]);
      cpu::copy_into(cache, outputs[1 + c]);
    }
    const array src = cpu::ensure_row_contiguous(c == 0 ? qk[1] : inputs[2]);
    const size_t row_bytes = static_cast<size_t>(D) * src.itemsize();
    const int64_t rows = static_cast<int64_t>(src.size()) / D;
    char* dst = outputs[1 + c].data<char>();
    const char* from = src.data<char>();
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(dst + (r * C + slot) * row_bytes, from + r * row_bytes, row_bytes);
    }
  }
}

}  // namespace mx::fast
