// CPU kernel of rotary position embeddings. The angles depend only on the
// position and the frequency, so their cosines and sines are tabulated (in
// double, then rounded to the accumulation type) and shared by every head;
// each row is then a handful of multiply-adds per pair. A decode step applies
// the same table to the queries and keys of every layer, so small tables are
// kept in a per-thread cache keyed by everything they depend on.
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/primitives/fast.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx::fast {

namespace {

// One row: pairs (2i, 2i+1) or (i, i + half); a compile-time layout lets the
// half-split loop vectorize.
template <bool Traditional, typename T, typename A>
inline void rotate_row(const T* xr, T* yr, const A* cosv, const A* sinv, int half) {
  for (int i = 0; i < half; ++i) {
    const int i1 = Traditional ? 2 * i : i;
    const int i2 = Traditional ? 2 * i + 1 : i + half;
    const A x1 = static_cast<A>(xr[i1]);
    const A x2 = static_cast<A>(xr[i2]);
    yr[i1] = static_cast<T>(x1 * cosv[i] - x2 * sinv[i]);
    yr[i2] = static_cast<T>(x1 * sinv[i] + x2 * cosv[i]);
  }
}

// Per distinct position: half cosines, then half sines (negated for the inverse).
template <typename A>
void fill_table(std::vector<A>& cs, const std::vector<int64_t>& row_pos,
                const std::vector<double>& inv_freq, double scale, bool forward) {
  const int half = static_cast<int>(inv_freq.size());
  cs.resize(row_pos.size() * half * 2);
  scheduler::parallel_for(
      row_pos.size(), std::max<int64_t>(1, 4096 / std::max(half, 1)), [&](size_t b, size_t e) {
        for (size_t p = b; p < e; ++p) {
          A* c = cs.data() + p * half * 2;
          for (int i = 0; i < half; ++i) {
            double theta = scale * static_cast<double>(row_pos[p]) * inv_freq[i];
            c[i] = static_cast<A>(std::cos(theta));
            c[half + i] = static_cast<A>(forward ? std::sin(theta) : -std::sin(theta));
          }
        }
      });
}

// The last few small tables of this thread. The key holds the inverse
// frequencies themselves (not where they came from), so custom frequency
// arrays are safe to cache too.
template <typename A>
const std::vector<A>& cached_table(const std::vector<int64_t>& row_pos,
                                   const std::vector<double>& inv_freq, double scale,
                                   bool forward) {
  struct Entry {
    std::vector<int64_t> pos;
    std::vector<double> inv_freq;
    double scale = 0;
    bool forward = true;
    std::vector<A> table;
  };
  constexpr size_t kEntries = 8, kMaxPositions = 16;
  thread_local std::array<Entry, kEntries> entries;
  thread_local size_t next = 0;
  thread_local std::vector<A> uncached;
  if (row_pos.size() > kMaxPositions) {
    fill_table(uncached, row_pos, inv_freq, scale, forward);
    return uncached;
  }
  for (auto& e : entries) {
    if (e.scale == scale && e.forward == forward && e.pos == row_pos && e.inv_freq == inv_freq &&
        !e.table.empty()) {
      return e.table;
    }
  }
  Entry& e = entries[next];
  next = (next + 1) % kEntries;
  e.pos = row_pos;
  e.inv_freq = inv_freq;
  e.scale = scale;
  e.forward = forward;
  fill_table(e.table, row_pos, inv_freq, scale, forward);
  return e.table;
}

template <typename T>
void rope_rows(const array& x, const std::vector<int64_t>& row_pos, bool batched_offset,
               const std::vector<double>& inv_freq, double scale, int dims, bool traditional,
               bool forward, array& out) {
  using A = acc_t<T>;
  const int d = x.shape(-1);
  const int half = dims / 2;
  const int64_t num_rows = static_cast<int64_t>(x.size() / d);
  const std::vector<A>& cs = cached_table<A>(row_pos, inv_freq, scale, forward);

  const T* xp = x.data<T>();
  T* op = out.data<T>();
  const int L = x.shape(-2);
  Shape outer(x.shape().begin(), x.shape().end() - 1);
  Strides outer_strides(x.strides().begin(), x.strides().end() - 1);
  const int64_t per_batch = num_rows / std::max(x.shape(0), 1);
  scheduler::parallel_for(
      num_rows, std::max<int64_t>(1, 8192 / std::max(d, 1)), [&](size_t b, size_t e) {
        cpu::StridedCursor cur(outer, {&outer_strides}, static_cast<int64_t>(b));
        for (size_t r = b; r < e; ++r, cur.step()) {
          const T* xr = xp + cur.offset(0);
          T* yr = op + r * d;
          // Row r is (batch, ..., l); positions are tabulated per l, and per
          // batch element when the offsets differ.
          int64_t l = static_cast<int64_t>(r) % L;
          int64_t p = batched_offset ? (static_cast<int64_t>(r) / per_batch) * L + l : l;
          const A* c = cs.data() + p * half * 2;
          if (traditional) {
            rotate_row<true>(xr, yr, c, c + half, half);
          } else {
            rotate_row<false>(xr, yr, c, c + half, half);
          }
          for (int i = dims; i < d; ++i) yr[i] = xr[i];
        }
      });
}

}  // namespace

void RoPE::eval_cpu(const std::vector<array>& inputs, array& out) {
  array x = inputs[0];
  if (x.ndim() > 0 && x.shape(-1) > 1 && x.strides().back() != 1) {
    x = cpu::ensure_row_contiguous(x);
  }
  cpu::allocate_row_contiguous(out);
  if (out.size() == 0) return;
  const array& offset = inputs[1];
  const int half = dims_ / 2;

  thread_local std::vector<double> inv_freq;
  thread_local int freq_dims = -1;
  thread_local float freq_base = 0;
  if (inputs.size() > 2) {
    array freqs = cpu::ensure_row_contiguous(inputs[2]);
    const float* f = freqs.data<float>();
    inv_freq.resize(half);
    for (int i = 0; i < half; ++i) inv_freq[i] = 1.0 / static_cast<double>(f[i]);
    freq_dims = -1;
  } else if (freq_dims != dims_ || freq_base != base_) {
    // Tabulated once per (dims, base): every layer of a model shares one or two.
    const double log_base = std::log(static_cast<double>(base_));
    inv_freq.resize(half);
    for (int i = 0; i < half; ++i) inv_freq[i] = std::exp(-(2.0 * i / dims_) * log_base);
    freq_dims = dims_;
    freq_base = base_;
  }

  // Distinct positions: L of them for a scalar offset, B * L for per-batch ones.
  const int L = x.shape(-2);
  const int32_t* off = offset.data<int32_t>();
  std::vector<int64_t> pos;
  if (offset.size() == 1) {
    for (int l = 0; l < L; ++l) pos.push_back(static_cast<int64_t>(off[0]) + l);
  } else {
    const int64_t os = offset.strides()[0];
    for (int b = 0; b < x.shape(0); ++b) {
      for (int l = 0; l < L; ++l) pos.push_back(static_cast<int64_t>(off[b * os]) + l);
    }
  }
  dispatch_float(x.dtype(), "rope", [&](auto tag) {
    rope_rows<typename decltype(tag)::type>(x, pos, offset.size() != 1, inv_freq, scale_, dims_,
                                            traditional_, forward_, out);
  });
}

}  // namespace mx::fast
