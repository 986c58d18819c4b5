// CPU kernels of the fused normalizations (rms_norm, layer_norm) and their
// backward passes. Each row of the last axis is reduced in acc_t (float for
// 16-bit inputs); the normalized value is rounded to the output type before
// the weight multiplies it, as MLX does.
#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "mlxcpp/mx/backend/cpu/fast_common.h"
#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/primitives/fast.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx::fast {

namespace {

using cpu_detail::lane_sum;

constexpr size_t kGrainElems = size_t{1} << 14;

size_t row_grain(int d) { return std::max<size_t>(1, kGrainElems / std::max(d, 1)); }

// A 1-D parameter (weight or bias), made contiguous so that row loops vectorize.
template <typename T>
struct Param {
  std::optional<array> a;
  const T* p = nullptr;
  explicit Param(const array* src) {
    if (src) {
      a = cpu::ensure_row_contiguous(*src);
      p = a->data<T>();
    }
  }
  explicit operator bool() const { return p != nullptr; }
  acc_t<T> operator[](int i) const { return static_cast<acc_t<T>>(p[i]); }
};

// The backward kernels reduce the parameter gradients over rows. A fixed
// number of row chunks (independent of the thread count) keeps the summation
// order, and so the result, deterministic.
size_t num_chunks(size_t rows) { return std::min<size_t>(rows, 64); }

template <typename A>
void sum_chunks(const std::vector<A>& partial, size_t chunks, int d, std::vector<A>& total) {
  total.assign(d, A(0));
  for (size_t c = 0; c < chunks; ++c) {
    const A* p = partial.data() + c * d;
    for (int i = 0; i < d; ++i) total[i] += p[i];
  }
}

template <typename T, typename A>
void write_vector(const std::vector<A>& v, array& out) {
  cpu::allocate_row_contiguous(out);
  T* o = out.data<T>();
  for (size_t i = 0; i < v.size(); ++i) o[i] = static_cast<T>(v[i]);
}

}  // namespace

void RMSNorm::eval_cpu(const std::vector<array>& inputs, array& out) {
  array x = cpu::ensure_row_contiguous(inputs[0]);
  cpu::allocate_row_contiguous(out);
  if (out.size() == 0) return;
  const int d = x.shape(-1);
  const size_t rows = x.size() / d;
  dispatch_float(out.dtype(), "rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    Param<T> w(has_weight_ ? &inputs[1] : nullptr);
    const A eps = static_cast<A>(eps_);
    scheduler::parallel_for(rows, row_grain(d), [&](size_t b, size_t e) {
      for (size_t r = b; r < e; ++r) {
        const T* xr = xp + r * d;
        T* yr = op + r * d;
        const A ss = lane_sum<A>(d, [&](int i) {
          A v = static_cast<A>(xr[i]);
          return v * v;
        });
        const A n = A(1) / std::sqrt(ss / static_cast<A>(d) + eps);
        if (w) {
          for (int i = 0; i < d; ++i) {
            T y = static_cast<T>(static_cast<A>(xr[i]) * n);
            yr[i] = static_cast<T>(static_cast<A>(y) * w[i]);
          }
        } else {
          for (int i = 0; i < d; ++i) yr[i] = static_cast<T>(static_cast<A>(xr[i]) * n);
        }
      }
    });
  });
}

// dx = n * (w*g) - x * n^3 * mean(w*g*x);  dw = sum over rows of g * x * n.
void RMSNormVJP::eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) {
  array x = cpu::ensure_row_contiguous(inputs[0]);
  array g = cpu::ensure_row_contiguous(inputs.back());
  array& dx = outputs[0];
  cpu::allocate_row_contiguous(dx);
  const int d = x.ndim() == 0 ? 1 : x.shape(-1);
  const size_t rows = d == 0 ? 0 : x.size() / d;
  dispatch_float(x.dtype(), "rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* xp = x.data<T>();
    const T* gp = g.data<T>();
    T* dxp = dx.data<T>();
    Param<T> w(has_weight_ ? &inputs[1] : nullptr);
    const A eps = static_cast<A>(eps_);
    const size_t chunks = num_chunks(rows);
    std::vector<A> partial(has_weight_ ? chunks * d : 0, A(0));
    scheduler::parallel_for(chunks, 1, [&](size_t cb, size_t ce) {
      for (size_t c = cb; c < ce; ++c) {
        A* dw = has_weight_ ? partial.data() + c * d : nullptr;
        for (size_t r = rows * c / chunks; r < rows * (c + 1) / chunks; ++r) {
          const T* xr = xp + r * d;
          const T* gr = gp + r * d;
          T* dxr = dxp + r * d;
          const A ss = lane_sum<A>(d, [&](int i) {
            A xv = static_cast<A>(xr[i]);
            return xv * xv;
          });
          const A wgx = lane_sum<A>(d, [&](int i) {
            return static_cast<A>(gr[i]) * (w ? w[i] : A(1)) * static_cast<A>(xr[i]);
          });
          const A n = A(1) / std::sqrt(ss / static_cast<A>(d) + eps);
          const A c3 = n * n * n * wgx / static_cast<A>(d);
          for (int i = 0; i < d; ++i) {
            A xv = static_cast<A>(xr[i]);
            A gv = static_cast<A>(gr[i]);
            A wg = gv * (w ? w[i] : A(1));
            dxr[i] = static_cast<T>(n * wg - xv * c3);
            if (dw) dw[i] += gv * xv * n;
          }
        }
      }
    });
    if (has_weight_) {
      std::vector<A> total;
      sum_chunks(partial, chunks, d, total);
      dispatch_float(outputs[1].dtype(), "rms_norm", [&](auto wtag) {
        write_vector<typename decltype(wtag)::type>(total, outputs[1]);
      });
    }
  });
}

void LayerNorm::eval_cpu(const std::vector<array>& inputs, array& out) {
  array x = cpu::ensure_row_contiguous(inputs[0]);
  cpu::allocate_row_contiguous(out);
  if (out.size() == 0) return;
  const int d = x.shape(-1);
  const size_t rows = x.size() / d;
  dispatch_float(out.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    Param<T> w(has_weight_ ? &inputs[1] : nullptr);
    Param<T> bias(has_bias_ ? &inputs[has_weight_ ? 2 : 1] : nullptr);
    const A eps = static_cast<A>(eps_);
    scheduler::parallel_for(rows, row_grain(d), [&](size_t b, size_t e) {
      for (size_t r = b; r < e; ++r) {
        const T* xr = xp + r * d;
        T* yr = op + r * d;
        // Two passes: the centred sum of squares does not cancel catastrophically.
        const A mu =
            lane_sum<A>(d, [&](int i) { return static_cast<A>(xr[i]); }) / static_cast<A>(d);
        const A ss = lane_sum<A>(d, [&](int i) {
          A c = static_cast<A>(xr[i]) - mu;
          return c * c;
        });
        const A n = A(1) / std::sqrt(ss / static_cast<A>(d) + eps);
        for (int i = 0; i < d; ++i) {
          A y = static_cast<A>(static_cast<T>((static_cast<A>(xr[i]) - mu) * n));
          if (w) y *= w[i];
          if (bias) y += bias[i];
          yr[i] = static_cast<T>(y);
        }
      }
    });
  });
}

// With xh = (x - mean) * n and wg = w * g:
// dx = n * (wg - mean(wg) - xh * mean(wg * xh));  dw = sum g * xh;  db = sum g.
void LayerNormVJP::eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) {
  array x = cpu::ensure_row_contiguous(inputs[0]);
  array g = cpu::ensure_row_contiguous(inputs.back());
  array& dx = outputs[0];
  cpu::allocate_row_contiguous(dx);
  const int d = x.ndim() == 0 ? 1 : x.shape(-1);
  const size_t rows = d == 0 ? 0 : x.size() / d;
  dispatch_float(x.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* xp = x.data<T>();
    const T* gp = g.data<T>();
    T* dxp = dx.data<T>();
    Param<T> w(has_weight_ ? &inputs[1] : nullptr);
    const A eps = static_cast<A>(eps_);
    const size_t chunks = num_chunks(rows);
    const bool params = has_weight_ || has_bias_;
    // Per chunk: d sums for dw, then d sums for db.
    std::vector<A> partial(params ? chunks * 2 * d : 0, A(0));
    scheduler::parallel_for(chunks, 1, [&](size_t cb, size_t ce) {
      std::vector<A> xh(d);
      for (size_t c = cb; c < ce; ++c) {
        A* dw = params ? partial.data() + c * 2 * d : nullptr;
        A* db = params ? dw + d : nullptr;
        for (size_t r = rows * c / chunks; r < rows * (c + 1) / chunks; ++r) {
          const T* xr = xp + r * d;
          const T* gr = gp + r * d;
          T* dxr = dxp + r * d;
          const A mu =
              lane_sum<A>(d, [&](int i) { return static_cast<A>(xr[i]); }) / static_cast<A>(d);
          const A ss = lane_sum<A>(d, [&](int i) {
            A cv = static_cast<A>(xr[i]) - mu;
            return cv * cv;
          });
          const A n = A(1) / std::sqrt(ss / static_cast<A>(d) + eps);
          for (int i = 0; i < d; ++i) xh[i] = (static_cast<A>(xr[i]) - mu) * n;
          auto wg_at = [&](int i) { return static_cast<A>(gr[i]) * (w ? w[i] : A(1)); };
          const A mean_wg = lane_sum<A>(d, wg_at) / static_cast<A>(d);
          const A mean_wgxh =
              lane_sum<A>(d, [&](int i) { return wg_at(i) * xh[i]; }) / static_cast<A>(d);
          for (int i = 0; i < d; ++i) {
            A gv = static_cast<A>(gr[i]);
            A wg = gv * (w ? w[i] : A(1));
            dxr[i] = static_cast<T>(n * (wg - mean_wg - xh[i] * mean_wgxh));
            if (dw) {
              dw[i] += gv * xh[i];
              db[i] += gv;
            }
          }
        }
      }
    });
    if (!params) return;
    std::vector<A> dw_total(d, A(0)), db_total(d, A(0));
    for (size_t c = 0; c < chunks; ++c) {
      const A* p = partial.data() + c * 2 * d;
      for (int i = 0; i < d; ++i) {
        dw_total[i] += p[i];
        db_total[i] += p[d + i];
      }
    }
    size_t k = 1;
    if (has_weight_) {
      array& o = outputs[k++];
      dispatch_float(o.dtype(), "layer_norm",
                     [&](auto t) { write_vector<typename decltype(t)::type>(dw_total, o); });
    }
    if (has_bias_) {
      array& o = outputs[k++];
      dispatch_float(o.dtype(), "layer_norm",
                     [&](auto t) { write_vector<typename decltype(t)::type>(db_total, o); });
    }
  });
}

}  // namespace mx::fast
