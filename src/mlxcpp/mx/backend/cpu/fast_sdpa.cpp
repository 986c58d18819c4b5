// CPU kernels of scaled dot-product attention (forward and backward).
//
// Forward: flash-style. One task takes a key/value head, all the query heads
// that share it (grouped-query attention) and a block of queries, walks the
// visible keys in blocks and keeps a running max, denominator and weighted sum
// per query row (online softmax), so K and V are read once per task and the
// full score matrix never exists. Scores and sums are in acc_t (float for
// 16-bit inputs). When there are fewer tasks than cores (decode: one query),
// the keys are split too and the partial softmax states merged.
//
// Masking follows MLX: masked scores get the lowest finite value rather than
// -inf, so a row that sees no key averages all values uniformly; a row that
// sees some keys gives the masked ones exactly zero weight, which lets the
// kernel skip key blocks outside the causal / sliding window.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "mlxcpp/mx/backend/cpu/fast_common.h"
#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/primitives/fast.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx::fast {

namespace {

using cpu_detail::lane_sum;

constexpr int kKeyBlock = 64;
constexpr int kRowsPerTask = 32;
constexpr int kDirectRows = 4;

// A rank-4 operand whose last axis is unit-stride (others arbitrary).
array unit_last_stride(const array& a) {
  if (a.shape(-1) <= 1 || a.strides().back() == 1) return a;
  return cpu::ensure_row_contiguous(a);
}

template <typename T>
struct Operand {
  const T* p;
  int64_t s0, s1, s2;
  explicit Operand(const array& a)
      : p(a.data<T>()), s0(a.strides()[0]), s1(a.strides()[1]), s2(a.strides()[2]) {}
  const T* row(int b, int h, int i) const { return p + b * s0 + h * s1 + i * s2; }
};

// Everything both kernels need to know about the problem.
template <typename T>
struct Problem {
  using A = acc_t<T>;
  int B, Hq, Hkv, rep, Lq, Lk, D, Dv;
  A scale;
  AttentionMask mode;
  Operand<T> q, k, v;
  const void* mask = nullptr;
  bool bool_mask = false;
  int64_t ms[4] = {0, 0, 0, 0};
  const T* sinks = nullptr;
  int64_t sink_stride = 0;

  Problem(const std::vector<array>& in, const array& q_, const array& k_, const array& v_,
          float scale_, AttentionMask m)
      : B(q_.shape(0)),
        Hq(q_.shape(1)),
        Hkv(k_.shape(1)),
        rep(Hq / std::max(Hkv, 1)),
        Lq(q_.shape(2)),
        Lk(k_.shape(2)),
        D(q_.shape(3)),
        Dv(v_.shape(3)),
        scale(static_cast<A>(scale_)),
        mode(m),
        q(q_),
        k(k_),
        v(v_) {
    size_t next = 3;
    if (m.has_array) {
      const array& ma = in[next++];
      mask = ma.data<void>();
      bool_mask = ma.dtype() == bool_;
      for (int i = 0; i < 4; ++i) ms[i] = ma.strides()[i];
    }
    if (m.has_sinks) {
      const array& sa = in[next++];
      sinks = sa.data<T>();
      sink_stride = sa.ndim() == 0 ? 0 : sa.strides()[0];
    }
  }

  // Keys [lo, hi] that the causal / window masks leave visible to query i.
  std::pair<int, int> key_range(int i) const {
    int64_t pos = static_cast<int64_t>(i) + Lk - Lq;  // the query's position among the keys
    int64_t lo = 0, hi = Lk - 1;
    if (mode.causal) hi = std::min<int64_t>(hi, pos);
    if (mode.window > 0) lo = std::max<int64_t>(lo, pos - mode.window + 1);
    return {static_cast<int>(lo), static_cast<int>(hi)};
  }

  // Applies the array mask to score s of (b, h, i, j); false: masked out.
  bool apply_mask(int b, int h, int i, int j, A& s) const {
    if (!mask) return true;
    int64_t off = b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3];
    if (bool_mask) return static_cast<const bool*>(mask)[off];
    s += static_cast<A>(static_cast<const T*>(mask)[off]);
    return true;
  }

  A sink(int h) const { return static_cast<A>(sinks[h * sink_stride]); }
};

// Running softmax state of the rows of one task.
template <typename A>
struct RowState {
  std::vector<A> m, l, o;
  std::vector<char> seen;  // whether the row saw any unmasked key
  void reset(int rows, int dv) {
    m.assign(rows, -std::numeric_limits<A>::infinity());
    l.assign(rows, A(0));
    o.assign(static_cast<size_t>(rows) * dv, A(0));
    seen.assign(rows, 0);
  }
};

// Rows of a task are (head h0 + r / nq, query q0 + r % nq). K and V blocks
// are converted to acc_t once (K transposed) and shared by the many rows.
template <typename T>
void attend_staged(const Problem<T>& P, int b, int kvh, int q0, int nq, int ks, int ke,
                   RowState<acc_t<T>>& st, std::vector<acc_t<T>>& qs, std::vector<acc_t<T>>& kt,
                   std::vector<acc_t<T>>& vb) {
  using A = acc_t<T>;
  const int rows = P.rep * nq, D = P.D, Dv = P.Dv;
  const int h0 = kvh * P.rep;
  st.reset(rows, Dv);
  qs.resize(static_cast<size_t>(rows) * D);
  std::vector<std::pair<int, int>> range(rows);
  int klo = ke, khi = ks - 1;
  for (int r = 0; r < rows; ++r) {
    int h = h0 + r / nq, i = q0 + r % nq;
    const T* qr = P.q.row(b, h, i);
    for (int d = 0; d < D; ++d) qs[r * D + d] = static_cast<A>(qr[d]) * P.scale;
    auto [lo, hi] = P.key_range(i);
    lo = std::max(lo, ks);
    hi = std::min(hi, ke - 1);
    range[r] = {lo, hi};
    if (lo <= hi) {
      klo = std::min(klo, lo);
      khi = std::max(khi, hi);
    }
  }
  kt.resize(static_cast<size_t>(D) * kKeyBlock);
  vb.resize(static_cast<size_t>(kKeyBlock) * Dv);
  const A neg_inf = -std::numeric_limits<A>::infinity();
  for (int j0 = klo; j0 <= khi; j0 += kKeyBlock) {
    const int jn = std::min(kKeyBlock, khi + 1 - j0);
    auto vrow = [&](int jj) { return static_cast<const A*>(vb.data() + jj * Dv); };
    // K transposed so that the score loop runs over keys, unit-stride, and
    // zero-padded to a full block so that its trip count is a constant.
    for (int jj = 0; jj < kKeyBlock; ++jj) {
      if (jj >= jn) {
        for (int d = 0; d < D; ++d) kt[d * kKeyBlock + jj] = A(0);
        continue;
      }
      const T* kr = P.k.row(b, kvh, j0 + jj);
      for (int d = 0; d < D; ++d) kt[d * kKeyBlock + jj] = static_cast<A>(kr[d]);
      const T* vr = P.v.row(b, kvh, j0 + jj);
      for (int d = 0; d < Dv; ++d) vb[jj * Dv + d] = static_cast<A>(vr[d]);
    }
    for (int r = 0; r < rows; ++r) {
      auto [lo, hi] = range[r];
      if (lo > hi || hi < j0 || lo >= j0 + jn) continue;
      const int h = h0 + r / nq, i = q0 + r % nq;
      // A block of scores fits in vector registers while q . k accumulates.
      alignas(64) A s[kKeyBlock] = {};
      const A* qr = qs.data() + r * D;
      for (int d = 0; d < D; ++d) {
        const A qd = qr[d];
        const A* kd = kt.data() + d * kKeyBlock;
        for (int jj = 0; jj < kKeyBlock; ++jj) s[jj] += qd * kd[jj];
      }
      A bmax = neg_inf;
      for (int jj = 0; jj < jn; ++jj) {
        int j = j0 + jj;
        if (j < lo || j > hi || !P.apply_mask(b, h, i, j, s[jj])) {
          s[jj] = neg_inf;
          continue;
        }
        st.seen[r] = 1;
        bmax = std::max(bmax, s[jj]);
      }
      const A m_new = std::max(st.m[r], bmax);
      if (m_new == neg_inf) continue;
      const A corr = std::exp(st.m[r] - m_new);
      A* o = st.o.data() + static_cast<size_t>(r) * Dv;
      if (corr != A(1)) {
        for (int d = 0; d < Dv; ++d) o[d] *= corr;
      }
      A l = st.l[r] * corr;
      for (int jj = 0; jj < jn; ++jj) {
        s[jj] = std::exp(s[jj] - m_new);
        l += s[jj];
      }
      // Four keys per pass over the accumulator: a quarter of its loads and
      // stores. Keys of weight zero are skipped one by one, so that a masked
      // value (say, an unfilled cache slot holding NaN) cannot leak in as 0 * NaN.
      auto add_one = [&](int t) {
        const A p = s[t];
        if (p == A(0)) return;
        const auto* vr = vrow(t);
        for (int d = 0; d < Dv; ++d) o[d] += p * static_cast<A>(vr[d]);
      };
      int jj = 0;
      for (; jj + 4 <= jn; jj += 4) {
        const A p0 = s[jj], p1 = s[jj + 1], p2 = s[jj + 2], p3 = s[jj + 3];
        if (p0 == A(0) || p1 == A(0) || p2 == A(0) || p3 == A(0)) {
          for (int t = jj; t < jj + 4; ++t) add_one(t);
          continue;
        }
        const auto *v0 = vrow(jj), *v1 = vrow(jj + 1), *v2 = vrow(jj + 2), *v3 = vrow(jj + 3);
        for (int d = 0; d < Dv; ++d) {
          o[d] += p0 * static_cast<A>(v0[d]) + p1 * static_cast<A>(v1[d]) +
                  p2 * static_cast<A>(v2[d]) + p3 * static_cast<A>(v3[d]);
        }
      }
      for (; jj < jn; ++jj) add_one(jj);
      st.l[r] = l;
      st.m[r] = m_new;
    }
  }
}

// 32-byte vectors of the accumulation type for the direct path (GCC / Clang
// vector extensions: SIMD whatever the target, no intrinsics).
template <typename A>
struct Vec32Of;
template <>
struct Vec32Of<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Vec32Of<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <typename A>
using Vec32 = typename Vec32Of<A>::type;

template <typename A, typename T>
Vec32<A> load_vec(const T* p) {
  Vec32<A> v;
  for (int l = 0; l < static_cast<int>(32 / sizeof(A)); ++l) v[l] = static_cast<A>(p[l]);
  return v;
}

// s[r] = q_r . k for R query rows against one key row, the key converted once.
template <int R, typename A, typename T>
void dot_rows(const A* qs, int D, const T* k, A* s) {
  constexpr int W = 32 / sizeof(A);
  Vec32<A> acc[R] = {};
  int d = 0;
  for (; d + W <= D; d += W) {
    const Vec32<A> kv = load_vec<A>(k + d);
    for (int r = 0; r < R; ++r) {
      Vec32<A> q;
      std::memcpy(&q, qs + r * D + d, sizeof(q));
      acc[r] += q * kv;
    }
  }
  for (int r = 0; r < R; ++r) {
    A t = 0;
    for (int l = 0; l < W; ++l) t += acc[r][l];
    for (int e = d; e < D; ++e) t += qs[r * D + e] * static_cast<A>(k[e]);
    s[r] = t;
  }
}

// o_r += sum over the block's keys of p[r][jj] v_jj, for R rows whose weights
// are all nonzero: each value vector is converted once for the R rows and the
// accumulators stay in registers across the keys.
template <int R, typename A, typename T>
void accumulate_rows(const Operand<T>& v, int b, int kvh, int j0, int jn, int Dv,
                     const A (*p)[kKeyBlock], A* o) {
  constexpr int W = 32 / sizeof(A);
  int d = 0;
  for (; d + W <= Dv; d += W) {
    Vec32<A> acc[R];
    for (int r = 0; r < R; ++r) std::memcpy(&acc[r], o + r * Dv + d, sizeof(acc[r]));
    for (int jj = 0; jj < jn; ++jj) {
      const Vec32<A> vv = load_vec<A>(v.row(b, kvh, j0 + jj) + d);
      for (int r = 0; r < R; ++r) acc[r] += p[r][jj] * vv;
    }
    for (int r = 0; r < R; ++r) std::memcpy(o + r * Dv + d, &acc[r], sizeof(acc[r]));
  }
  for (; d < Dv; ++d) {
    for (int jj = 0; jj < jn; ++jj) {
      const A x = static_cast<A>(v.row(b, kvh, j0 + jj)[d]);
      for (int r = 0; r < R; ++r) o[r * Dv + d] += p[r][jj] * x;
    }
  }
}

// Few rows (decoding: the query heads that share one KV head): each key and
// value row is read and converted once, for all the rows at a time, where it
// lies (staging a block would cost as much as the rows' own arithmetic).
template <typename T>
void attend_direct(const Problem<T>& P, int b, int kvh, int q0, int nq, int ks, int ke,
                   RowState<acc_t<T>>& st, std::vector<acc_t<T>>& qs, std::vector<acc_t<T>>& vf) {
  using A = acc_t<T>;
  const int rows = P.rep * nq, D = P.D, Dv = P.Dv;
  const int h0 = kvh * P.rep;
  st.reset(rows, Dv);
  qs.resize(static_cast<size_t>(rows) * D);
  vf.resize(Dv);
  int lo[kDirectRows], hi[kDirectRows], head[kDirectRows], query[kDirectRows];
  int klo = ke, khi = ks - 1;
  for (int r = 0; r < rows; ++r) {
    head[r] = h0 + r / nq;
    query[r] = q0 + r % nq;
    const T* qr = P.q.row(b, head[r], query[r]);
    for (int d = 0; d < D; ++d) qs[r * D + d] = static_cast<A>(qr[d]) * P.scale;
    auto [l, h] = P.key_range(query[r]);
    lo[r] = std::max(l, ks);
    hi[r] = std::min(h, ke - 1);
    if (lo[r] <= hi[r]) {
      klo = std::min(klo, lo[r]);
      khi = std::max(khi, hi[r]);
    }
  }
  const A neg_inf = -std::numeric_limits<A>::infinity();
  alignas(64) A s[kDirectRows][kKeyBlock];
  for (int j0 = klo; j0 <= khi; j0 += kKeyBlock) {
    const int jn = std::min(kKeyBlock, khi + 1 - j0);
    for (int jj = 0; jj < jn; ++jj) {
      const int j = j0 + jj;
      const T* kr = P.k.row(b, kvh, j);
      A dots[kDirectRows];
      switch (rows) {
        case 1:
          dot_rows<1>(qs.data(), D, kr, dots);
          break;
        case 2:
          dot_rows<2>(qs.data(), D, kr, dots);
          break;
        case 3:
          dot_rows<3>(qs.data(), D, kr, dots);
          break;
        default:
          dot_rows<4>(qs.data(), D, kr, dots);
          break;
      }
      for (int r = 0; r < rows; ++r) {
        if (j < lo[r] || j > hi[r]) {
          s[r][jj] = neg_inf;
          continue;
        }
        A v = dots[r];
        if (P.apply_mask(b, head[r], query[r], j, v)) {
          st.seen[r] = 1;
          s[r][jj] = v;
        } else {
          s[r][jj] = neg_inf;
        }
      }
    }
    bool any = false;
    for (int r = 0; r < rows; ++r) {
      A bmax = neg_inf;
      for (int jj = 0; jj < jn; ++jj) bmax = std::max(bmax, s[r][jj]);
      const A m_new = std::max(st.m[r], bmax);
      if (m_new == neg_inf) {
        for (int jj = 0; jj < jn; ++jj) s[r][jj] = A(0);
        continue;
      }
      any = true;
      const A corr = std::exp(st.m[r] - m_new);
      A* o = st.o.data() + static_cast<size_t>(r) * Dv;
      if (corr != A(1)) {
        for (int d = 0; d < Dv; ++d) o[d] *= corr;
      }
      A l = st.l[r] * corr;
      int jj = 0;
      if constexpr (std::is_same_v<A, float>) {
        // Eight at a time (libm's expf is one element at a time). A score
        // of -inf (masked) must give exactly 0, which exp8's clamp would not.
        using cpu_detail::V8;
        for (; jj + 8 <= jn; jj += 8) {
          V8 t;
          std::memcpy(&t, &s[r][jj], sizeof(t));
          t -= m_new;
          V8 e = cpu_detail::exp8(t);
          e = t < cpu_detail::splat(-87.0f) ? cpu_detail::splat(0.0f) : e;
          std::memcpy(&s[r][jj], &e, sizeof(e));
          for (int i = 0; i < 8; ++i) l += e[i];
        }
      }
      for (; jj < jn; ++jj) {
        s[r][jj] = std::exp(s[r][jj] - m_new);
        l += s[r][jj];
      }
      st.l[r] = l;
      st.m[r] = m_new;
    }
    if (!any) continue;
    bool all_nonzero = true;
    for (int r = 0; r < rows; ++r) {
      for (int jj = 0; jj < jn; ++jj) all_nonzero &= s[r][jj] != A(0);
    }
    if (all_nonzero) {
      A* o = st.o.data();
      switch (rows) {
        case 1:
          accumulate_rows<1>(P.v, b, kvh, j0, jn, Dv, s, o);
          break;
        case 2:
          accumulate_rows<2>(P.v, b, kvh, j0, jn, Dv, s, o);
          break;
        case 3:
          accumulate_rows<3>(P.v, b, kvh, j0, jn, Dv, s, o);
          break;
        default:
          accumulate_rows<4>(P.v, b, kvh, j0, jn, Dv, s, o);
          break;
      }
      continue;
    }
    // Keys of weight zero are skipped row by row, so that a masked value (say,
    // an unfilled cache slot holding NaN) cannot leak in as 0 * NaN.
    for (int jj = 0; jj < jn; ++jj) {
      bool used = false;
      for (int r = 0; r < rows; ++r) used |= s[r][jj] != A(0);
      if (!used) continue;
      const T* vr = P.v.row(b, kvh, j0 + jj);
      for (int d = 0; d < Dv; ++d) vf[d] = static_cast<A>(vr[d]);
      for (int r = 0; r < rows; ++r) {
        const A p = s[r][jj];
        if (p == A(0)) continue;
        A* o = st.o.data() + static_cast<size_t>(r) * Dv;
        for (int d = 0; d < Dv; ++d) o[d] += p * vf[d];
      }
    }
  }
}

template <typename T>
void run_attend(const Problem<T>& P, int b, int kvh, int q0, int nq, int ks, int ke,
                RowState<acc_t<T>>& st, std::vector<acc_t<T>>& qs, std::vector<acc_t<T>>& kt,
                std::vector<acc_t<T>>& vb) {
  if (P.rep * nq <= kDirectRows) {
    attend_direct(P, b, kvh, q0, nq, ks, ke, st, qs, vb);
  } else {
    attend_staged(P, b, kvh, q0, nq, ks, ke, st, qs, kt, vb);
  }
}

// Merges the partial state `src` (another key range) into `dst`.
template <typename A>
void merge_state(RowState<A>& dst, const RowState<A>& src, int dv) {
  for (size_t r = 0; r < dst.m.size(); ++r) {
    dst.seen[r] |= src.seen[r];
    A m = std::max(dst.m[r], src.m[r]);
    if (m == -std::numeric_limits<A>::infinity()) continue;
    A a = std::exp(dst.m[r] - m), c = std::exp(src.m[r] - m);
    dst.l[r] = dst.l[r] * a + src.l[r] * c;
    for (int d = 0; d < dv; ++d) {
      dst.o[r * dv + d] = dst.o[r * dv + d] * a + src.o[r * dv + d] * c;
    }
    dst.m[r] = m;
  }
}

// Folds the sinks in and writes the rows of a task.
template <typename T>
void finish(const Problem<T>& P, int b, int kvh, int q0, int nq, RowState<acc_t<T>>& st, T* out) {
  using A = acc_t<T>;
  const int Dv = P.Dv, h0 = kvh * P.rep;
  for (int r = 0; r < P.rep * nq; ++r) {
    const int h = h0 + r / nq, i = q0 + r % nq;
    T* dst = out + ((static_cast<int64_t>(b) * P.Hq + h) * P.Lq + i) * Dv;
    A* o = st.o.data() + static_cast<size_t>(r) * Dv;
    if (P.sinks) {
      A sk = P.sink(h);
      A m = std::max(st.m[r], sk);
      A a = std::exp(st.m[r] - m);
      st.l[r] = st.l[r] * a + std::exp(sk - m);
      for (int d = 0; d < Dv; ++d) o[d] *= a;
    } else if (!st.seen[r]) {
      // Every score is the same lowest value: a uniform average.
      std::fill(o, o + Dv, A(0));
      for (int j = 0; j < P.Lk; ++j) {
        const T* vr = P.v.row(b, kvh, j);
        for (int d = 0; d < Dv; ++d) o[d] += static_cast<A>(vr[d]);
      }
      st.l[r] = static_cast<A>(std::max(P.Lk, 1));
    }
    for (int d = 0; d < Dv; ++d) dst[d] = static_cast<T>(o[d] / st.l[r]);
  }
}

template <typename T>
void sdpa_forward(const Problem<T>& P, array& out) {
  using A = acc_t<T>;
  T* op = out.data<T>();
  const int qb = std::max(1, std::min(P.Lq, kRowsPerTask / std::max(P.rep, 1)));
  const int nqb = (P.Lq + qb - 1) / qb;
  const int64_t tasks = static_cast<int64_t>(P.B) * P.Hkv * nqb;
  // Split the keys when the tasks alone cannot keep the cores busy.
  const int threads = scheduler::num_threads();
  int splits = 1;
  // From two key blocks per split: a decode step of Gemma 3 (one KV head)
  // with 128-255 keys otherwise ran every layer's attention on one core.
  if (tasks < threads && P.Lk >= 2 * kKeyBlock) {
    splits = static_cast<int>(std::min<int64_t>((threads + tasks - 1) / tasks, P.Lk / kKeyBlock));
  }
  const int chunk = (P.Lk + splits - 1) / splits;
  auto task_coords = [&](int64_t t, int& b, int& kvh, int& q0, int& nq) {
    const int qi = static_cast<int>(t % nqb);
    kvh = static_cast<int>((t / nqb) % P.Hkv);
    b = static_cast<int>(t / (static_cast<int64_t>(nqb) * P.Hkv));
    q0 = qi * qb;
    nq = std::min(qb, P.Lq - q0);
  };
  if (splits == 1) {
    scheduler::parallel_for(tasks, 1, [&](size_t tb, size_t te) {
      RowState<A> st;
      std::vector<A> qs, kt, vb;
      for (size_t t = tb; t < te; ++t) {
        int b, kvh, q0, nq;
        task_coords(static_cast<int64_t>(t), b, kvh, q0, nq);
        run_attend(P, b, kvh, q0, nq, 0, P.Lk, st, qs, kt, vb);
        finish(P, b, kvh, q0, nq, st, op);
      }
    });
    return;
  }
  // Each (task, key range) pair is a unit of work; the merge is cheap.
  std::vector<RowState<A>> parts(static_cast<size_t>(tasks) * splits);
  scheduler::parallel_for(parts.size(), 1, [&](size_t ub, size_t ue) {
    std::vector<A> qs, kt, vb;
    for (size_t u = ub; u < ue; ++u) {
      int b, kvh, q0, nq;
      task_coords(static_cast<int64_t>(u / splits), b, kvh, q0, nq);
      const int ks = static_cast<int>(u % splits) * chunk;
      run_attend(P, b, kvh, q0, nq, ks, std::min(P.Lk, ks + chunk), parts[u], qs, kt, vb);
    }
  });
  for (int64_t t = 0; t < tasks; ++t) {
    int b, kvh, q0, nq;
    task_coords(t, b, kvh, q0, nq);
    RowState<A>& st = parts[t * splits];
    for (int sp = 1; sp < splits; ++sp) merge_state(st, parts[t * splits + sp], P.Dv);
    finish(P, b, kvh, q0, nq, st, op);
  }
}

// Backward, one task per (batch, key/value head) so that the key and value
// gradients of a task are private. Each query row recomputes its softmax over
// all keys, then
//   dP_j = dO . v_j,  dS_j = P_j (dP_j - sum_k P_k dP_k),
//   dq = scale sum_j dS_j k_j,  dk_j += scale dS_j q,  dv_j += P_j dO.
template <typename T>
void sdpa_backward(const Problem<T>& P, const array& cot, std::vector<array>& outs) {
  using A = acc_t<T>;
  Operand<T> g(cot);
  T* dq = outs[0].data<T>();
  T* dk = outs[1].data<T>();
  T* dv = outs[2].data<T>();
  const int D = P.D, Dv = P.Dv, Lk = P.Lk;
  const A neg_inf = -std::numeric_limits<A>::infinity();
  scheduler::parallel_for(static_cast<size_t>(P.B) * P.Hkv, 1, [&](size_t tb, size_t te) {
    std::vector<A> dk_acc, dv_acc, qs(D), go(Dv), s(Lk), dp(Lk), dqr(D);
    std::vector<char> vis(Lk);
    for (size_t t = tb; t < te; ++t) {
      const int b = static_cast<int>(t / P.Hkv), kvh = static_cast<int>(t % P.Hkv);
      dk_acc.assign(static_cast<size_t>(Lk) * D, A(0));
      dv_acc.assign(static_cast<size_t>(Lk) * Dv, A(0));
      for (int h = kvh * P.rep; h < (kvh + 1) * P.rep; ++h) {
        for (int i = 0; i < P.Lq; ++i) {
          const T* qr = P.q.row(b, h, i);
          for (int d = 0; d < D; ++d) qs[d] = static_cast<A>(qr[d]) * P.scale;
          const T* gr = g.row(b, h, i);
          for (int d = 0; d < Dv; ++d) go[d] = static_cast<A>(gr[d]);
          auto [lo, hi] = P.key_range(i);
          A m = P.sinks ? P.sink(h) : neg_inf;
          bool seen = false;
          for (int j = 0; j < Lk; ++j) {
            const T* kr = P.k.row(b, kvh, j);
            A acc = lane_sum<A>(D, [&](int d) { return qs[d] * static_cast<A>(kr[d]); });
            vis[j] = j >= lo && j <= hi && P.apply_mask(b, h, i, j, acc);
            s[j] = vis[j] ? acc : neg_inf;
            seen |= static_cast<bool>(vis[j]);
            m = std::max(m, s[j]);
          }
          // Probabilities in s; a row that sees nothing is uniform (no sinks)
          // or all-sink, and its scores are constants with zero gradient.
          A denom = 0;
          if (seen) {
            for (int j = 0; j < Lk; ++j) denom += s[j] = std::exp(s[j] - m);
            if (P.sinks) denom += std::exp(P.sink(h) - m);
            for (int j = 0; j < Lk; ++j) s[j] /= denom;
          } else {
            std::fill(s.begin(), s.end(), P.sinks ? A(0) : A(1) / static_cast<A>(Lk));
          }
          A dsum = 0;
          for (int j = 0; j < Lk; ++j) {
            const T* vr = P.v.row(b, kvh, j);
            const A acc = lane_sum<A>(Dv, [&](int d) { return go[d] * static_cast<A>(vr[d]); });
            dp[j] = acc;
            dsum += s[j] * acc;
            A* dvr = dv_acc.data() + static_cast<size_t>(j) * Dv;
            for (int d = 0; d < Dv; ++d) dvr[d] += s[j] * go[d];
          }
          std::fill(dqr.begin(), dqr.end(), A(0));
          for (int j = 0; j < Lk; ++j) {
            if (!vis[j]) continue;
            const A ds = s[j] * (dp[j] - dsum);
            if (ds == A(0)) continue;
            const T* kr = P.k.row(b, kvh, j);
            A* dkr = dk_acc.data() + static_cast<size_t>(j) * D;
            for (int d = 0; d < D; ++d) {
              dqr[d] += ds * static_cast<A>(kr[d]);
              dkr[d] += ds * qs[d];
            }
          }
          T* dqo = dq + ((static_cast<int64_t>(b) * P.Hq + h) * P.Lq + i) * D;
          for (int d = 0; d < D; ++d) dqo[d] = static_cast<T>(dqr[d] * P.scale);
        }
      }
      T* dko = dk + (static_cast<int64_t>(b) * P.Hkv + kvh) * Lk * D;
      for (size_t e = 0; e < dk_acc.size(); ++e) dko[e] = static_cast<T>(dk_acc[e]);
      T* dvo = dv + (static_cast<int64_t>(b) * P.Hkv + kvh) * Lk * Dv;
      for (size_t e = 0; e < dv_acc.size(); ++e) dvo[e] = static_cast<T>(dv_acc[e]);
    }
  });
}

}  // namespace

void ScaledDotProductAttention::eval_cpu(const std::vector<array>& inputs, array& out) {
  array q = unit_last_stride(inputs[0]);
  array k = unit_last_stride(inputs[1]);
  array v = unit_last_stride(inputs[2]);
  cpu::allocate_row_contiguous(out);
  if (out.size() == 0) return;
  dispatch_float(out.dtype(), "scaled_dot_product_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    Problem<T> P(inputs, q, k, v, scale_, mask_);
    sdpa_forward(P, out);
  });
}

void ScaledDotProductAttentionVJP::eval_cpu(const std::vector<array>& inputs,
                                            std::vector<array>& outputs) {
  array q = unit_last_stride(inputs[0]);
  array k = unit_last_stride(inputs[1]);
  array v = unit_last_stride(inputs[2]);
  array g = unit_last_stride(inputs.back());
  for (auto& o : outputs) cpu::allocate_row_contiguous(o);
  dispatch_float(q.dtype(), "scaled_dot_product_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    Problem<T> P(inputs, q, k, v, scale_, mask_);
    if (outputs[0].size() + outputs[1].size() + outputs[2].size() == 0) return;
    sdpa_backward(P, g, outputs);
  });
}

}  // namespace mx::fast
