// CPU kernel of the fused LogSumExp over the last axis. A row is read once,
// in blocks small enough to stay in L1: the block's max (and whether it holds
// a NaN), one rescale of the running sum when that max raises the running
// max, then the block's exponentials shifted by the running max, summed in
// eight float lanes (exp8). Rows are spread over the pool; a few long rows (a
// decode step's vocabulary) are also cut into chunks whose (max, sum) states
// are merged, so one row still uses every core.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "mlxcpp/mx/backend/cpu/elementwise.h"
#include "mlxcpp/mx/backend/cpu/fast_common.h"
#include "mlxcpp/mx/primitives/reduce.h"

namespace mx {
namespace {

using fast::cpu_detail::exp8;
using fast::cpu_detail::I8;
using fast::cpu_detail::splat;
using fast::cpu_detail::V8;

constexpr int64_t kBlock = 512;
// A chunk of a split row: long enough that the merge and the task cost nothing.
constexpr int64_t kMinChunk = 16384;

// The state of a row (or chunk) read so far: its max m, the sum of exp(x - m)
// (in double, so that the block totals of a 262144-wide row add up without
// drift; each block's own total is a float sum of 64 values per lane), and
// whether a NaN was seen.
template <typename A>
struct LseState {
  A m = -std::numeric_limits<A>::infinity();
  double s = 0;
  bool nan = false;
};

// Raises st's running max to `m` (when larger), rescaling its sum.
template <typename A>
void raise_max(LseState<A>& st, A m) {
  if (m > st.m) {
    // exp(-inf) = 0 covers an empty state (s is 0 then anyway).
    st.s *= std::exp(static_cast<double>(st.m) - static_cast<double>(m));
    st.m = m;
  }
}

template <typename A>
void merge_into(LseState<A>& a, const LseState<A>& b) {
  a.nan = a.nan || b.nan;
  if (b.m == -std::numeric_limits<A>::infinity()) return;  // b saw only -inf: adds nothing
  raise_max(a, b.m);
  if (std::isfinite(a.m)) {
    a.s += b.s * std::exp(static_cast<double>(b.m) - static_cast<double>(a.m));
  }
}

// NaN wins, then an infinite max (+inf, or -inf for a row of -inf, where the
// shifted sum would be inf - inf), else m + log(sum).
template <typename A>
A finalize(const LseState<A>& st) {
  if (st.nan) return std::numeric_limits<A>::quiet_NaN();
  if (!std::isfinite(st.m)) return st.m;
  return static_cast<A>(static_cast<double>(st.m) + std::log(st.s));
}

inline float hmax(V8 v) {
  float m = v[0];
  for (int k = 1; k < 8; ++k) m = v[k] > m ? v[k] : m;
  return m;
}
inline float hsum(V8 v) {
  float s = 0;
  for (int k = 0; k < 8; ++k) s += v[k];
  return s;
}

// float / bfloat16 / float16 values: converted to float, then eight lanes.
template <typename T>
void fold_block(const T* x, int64_t len, LseState<float>& st) {
  alignas(32) float buf[kBlock];
  const float* v = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    v = x;
  } else {
    for (int64_t i = 0; i < len; ++i) buf[i] = static_cast<float>(x[i]);
    v = buf;
  }
  V8 mx = splat(-std::numeric_limits<float>::infinity());
  I8 bad = {};
  int64_t i = 0;
  for (; i + 8 <= len; i += 8) {
    V8 t;
    std::memcpy(&t, v + i, sizeof(t));
    bad |= (t != t);
    mx = t > mx ? t : mx;
  }
  float bm = hmax(mx);
  bool nan = false;
  for (int k = 0; k < 8; ++k) nan = nan || bad[k] != 0;
  for (; i < len; ++i) {
    nan = nan || std::isnan(v[i]);
    bm = v[i] > bm ? v[i] : bm;
  }
  if (nan) {
    st.nan = true;
    return;
  }
  raise_max(st, bm);
  // With the max at -inf (all -inf so far) or +inf the answer is the max itself.
  if (!std::isfinite(st.m)) return;
  const V8 m = splat(st.m);
  V8 acc = {};
  i = 0;
  // exp8 clamps its argument at -87, so a -inf element adds 1.6e-38 rather
  // than 0: nothing next to the max's own exp(0) = 1.
  for (; i + 8 <= len; i += 8) {
    V8 t;
    std::memcpy(&t, v + i, sizeof(t));
    acc += exp8(t - m);
  }
  float tail = 0;
  for (; i < len; ++i) tail += std::exp(v[i] - st.m);
  st.s += static_cast<double>(hsum(acc) + tail);
}

void fold_block(const double* x, int64_t len, LseState<double>& st) {
  double bm = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < len; ++i) {
    if (std::isnan(x[i])) {
      st.nan = true;
      return;
    }
    bm = x[i] > bm ? x[i] : bm;
  }
  raise_max(st, bm);
  if (!std::isfinite(st.m)) return;
  double part[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= len; i += 4) {
    for (int k = 0; k < 4; ++k) part[k] += std::exp(x[i + k] - st.m);
  }
  for (; i < len; ++i) part[0] += std::exp(x[i] - st.m);
  st.s += (part[0] + part[1]) + (part[2] + part[3]);
}

template <typename T>
LseState<acc_t<T>> fold(const T* x, int64_t n) {
  LseState<acc_t<T>> st;
  for (int64_t b = 0; b < n && !st.nan; b += kBlock) fold_block(x + b, std::min(kBlock, n - b), st);
  return st;
}

template <typename T>
void logsumexp_typed(const array& in_arr, array& out) {
  using A = acc_t<T>;
  const int64_t n = in_arr.shape(-1);
  // Rows are read in place whatever the leading strides; a strided last axis
  // is made contiguous first.
  array in = (n == 1 || in_arr.strides().back() == 1) ? in_arr : cpu::ensure_row_contiguous(in_arr);
  cpu::allocate_row_contiguous(out);
  const int64_t rows = static_cast<int64_t>(out.size());
  if (rows == 0) return;
  if (n == 0) {  // the sum of no exponentials is 0
    std::fill(out.data<T>(), out.data<T>() + rows,
              static_cast<T>(-std::numeric_limits<A>::infinity()));
    return;
  }
  Shape lead(in.shape().begin(), in.shape().end() - 1);
  Strides lead_strides(in.strides().begin(), in.strides().end() - 1);
  auto [shape, strides] = cpu::collapse_contiguous_dims(lead, {lead_strides});
  const T* src = in.data<T>();
  T* dst = out.data<T>();
  auto row = [&](int64_t r) { return src + cpu::elem_to_loc(r, shape, strides[0]); };

  const int64_t threads = scheduler::num_threads();
  const int64_t chunks =
      rows >= threads ? 1
                      : std::clamp<int64_t>(n / kMinChunk, 1, std::max<int64_t>(1, threads / rows));
  if (chunks == 1) {
    size_t grain = std::max<size_t>(1, cpu::kParallelGrain / static_cast<size_t>(n));
    scheduler::parallel_for(static_cast<size_t>(rows), grain, [&](size_t b, size_t e) {
      for (size_t r = b; r < e; ++r) {
        dst[r] = static_cast<T>(finalize(fold(row(static_cast<int64_t>(r)), n)));
      }
    });
    return;
  }
  // Few long rows: (row, chunk) tasks, then each row's chunk states merged in order.
  const int64_t per = (n + chunks - 1) / chunks;
  std::vector<LseState<A>> part(static_cast<size_t>(rows * chunks));
  scheduler::parallel_for(part.size(), 1, [&](size_t b, size_t e) {
    for (size_t u = b; u < e; ++u) {
      int64_t r = static_cast<int64_t>(u) / chunks, c = static_cast<int64_t>(u) % chunks;
      int64_t s = c * per, len = std::max<int64_t>(0, std::min(n, s + per) - s);
      part[u] = fold(row(r) + s, len);
    }
  });
  for (int64_t r = 0; r < rows; ++r) {
    LseState<A> st = part[r * chunks];
    for (int64_t c = 1; c < chunks; ++c) merge_into(st, part[r * chunks + c]);
    dst[r] = static_cast<T>(finalize(st));
  }
}

}  // namespace

void LogSumExp::eval_cpu(const std::vector<array>& inputs, array& out) {
  dispatch_float(inputs[0].dtype(), "logsumexp",
                 [&](auto tag) { logsumexp_typed<typename decltype(tag)::type>(inputs[0], out); });
}

}  // namespace mx
