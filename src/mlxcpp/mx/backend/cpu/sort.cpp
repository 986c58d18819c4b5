// CPU sorting kernels. Each output is laid out with the sorted axis innermost
// (a dense, possibly permuted layout), so every row is sorted in place in one
// contiguous span; rows are spread over the CPU pool.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/primitives/sort.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx {

namespace {

// A strict weak order with NaNs after every number (as NumPy sorts);
// complex numbers compare by real part, then imaginary part.
template <typename T>
struct NanLast {
  bool operator()(const T& a, const T& b) const {
    if constexpr (is_complex_v<T>) {
      if (a.real() != b.real()) return a.real() < b.real();
      return a.imag() < b.imag();
    } else if constexpr (is_half_v<T> || std::is_floating_point_v<T>) {
      acc_t<T> x = static_cast<acc_t<T>>(a), y = static_cast<acc_t<T>>(b);
      if (std::isnan(x)) return false;
      if (std::isnan(y)) return true;
      return x < y;
    } else {
      return a < b;
    }
  }
};

// Allocates `out` with `axis` innermost and calls
// body(input row pointer offset, input axis stride, output row offset, n)
// for every row along `axis`.
template <typename Body>
void for_each_row(const array& in, array& out, int axis, const Body& body) {
  int nd = static_cast<int>(out.ndim());
  Strides strides(nd, 1);
  int64_t acc = out.shape(axis);
  for (int d = nd - 1; d >= 0; --d) {
    if (d == axis) continue;
    strides[d] = acc;
    acc *= out.shape(d);
  }
  out.set_data(allocator::malloc(std::max<size_t>(out.nbytes(), 1)), out.size(), strides,
               detail::view_flags(out.shape(), strides, true));
  int64_t n = out.shape(axis);
  if (out.size() == 0) return;
  Shape rest;
  Strides in_rest;
  for (int d = 0; d < nd; ++d) {
    if (d == axis) continue;
    rest.push_back(in.shape(d));
    in_rest.push_back(in.strides()[d]);
  }
  int64_t in_stride = in.strides()[axis];
  size_t rows = out.size() / static_cast<size_t>(n);
  size_t grain = std::max<size_t>(1, 4096 / static_cast<size_t>(n));
  scheduler::parallel_for(rows, grain, [&](size_t b, size_t e) {
    cpu::StridedCursor cur(rest, {&in_rest}, static_cast<int64_t>(b));
    for (size_t r = b; r < e; ++r) {
      body(cur.offset(0), in_stride, static_cast<int64_t>(r) * n, n);
      cur.step();
    }
  });
}

// The index permutation that partitions (kth >= 0) or stably sorts (kth < 0)
// one row; Partition and ArgPartition share it so that the gradient of a
// partition follows the same permutation as its values.
template <typename T>
void order_row(const T* src, int64_t stride, int64_t n, int kth, std::vector<T>& vals,
               uint32_t* idx) {
  vals.resize(n);
  for (int64_t i = 0; i < n; ++i) vals[i] = src[i * stride];
  std::iota(idx, idx + n, uint32_t{0});
  auto cmp = [&](uint32_t a, uint32_t b) { return NanLast<T>{}(vals[a], vals[b]); };
  if (kth < 0) {
    std::stable_sort(idx, idx + n, cmp);
  } else {
    std::nth_element(idx, idx + kth, idx + n, cmp);
  }
}

}  // namespace

void Sort::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  dispatch_all(in.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = in.data<T>();
    for_each_row(in, out, axis_, [&](int64_t io, int64_t is, int64_t oo, int64_t n) {
      T* row = out.data<T>() + oo;
      for (int64_t i = 0; i < n; ++i) row[i] = src[io + i * is];
      std::sort(row, row + n, NanLast<T>{});
    });
  });
}

void ArgSort::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  dispatch_all(in.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = in.data<T>();
    for_each_row(in, out, axis_, [&](int64_t io, int64_t is, int64_t oo, int64_t n) {
      thread_local std::vector<T> vals;
      order_row(src + io, is, n, -1, vals, out.data<uint32_t>() + oo);
    });
  });
}

void Partition::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  dispatch_all(in.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = in.data<T>();
    for_each_row(in, out, axis_, [&](int64_t io, int64_t is, int64_t oo, int64_t n) {
      thread_local std::vector<T> vals;
      thread_local std::vector<uint32_t> idx;
      idx.resize(n);
      order_row(src + io, is, n, kth_, vals, idx.data());
      T* row = out.data<T>() + oo;
      for (int64_t i = 0; i < n; ++i) row[i] = vals[idx[i]];
    });
  });
}

void ArgPartition::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  dispatch_all(in.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = in.data<T>();
    for_each_row(in, out, axis_, [&](int64_t io, int64_t is, int64_t oo, int64_t n) {
      thread_local std::vector<T> vals;
      order_row(src + io, is, n, kth_, vals, out.data<uint32_t>() + oo);
    });
  });
}

}  // namespace mx
