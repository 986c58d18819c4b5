// Loops shared by the elementwise kernels: contiguous fast paths, scalar
// broadcasts and a general strided walk, split across the CPU pool.
#pragma once

#include <cmath>
#include <type_traits>

#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx::cpu {

// Elements per task below which a kernel stays on one thread.
inline constexpr size_t kParallelGrain = size_t{1} << 15;

// Applies op (on acc_t values) for 16-bit floats, op directly otherwise.
template <typename Out, typename Op, typename... T>
inline Out apply_op(const Op& op, T... v) {
  if constexpr ((is_half_v<T> || ...)) {
    return Out(op(static_cast<acc_t<T>>(v)...));
  } else {
    return static_cast<Out>(op(v...));
  }
}

template <typename In, typename Out, typename Op>
void unary_loop(const array& a, array& out, const Op& op) {
  const In* src = a.data<In>();
  if (a.flags().contiguous) {
    allocate_like(a, out);
    Out* dst = out.data<Out>();
    size_t n = a.data_size();
    scheduler::parallel_for(n, kParallelGrain, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) dst[i] = apply_op<Out>(op, src[i]);
    });
    return;
  }
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  Out* dst = out.data<Out>();
  auto [shape, strides] = collapse_contiguous_dims(a.shape(), {a.strides()});
  int64_t inner = shape.back(), is = strides[0].back();
  Shape outer(shape.begin(), shape.end() - 1);
  Strides so(strides[0].begin(), strides[0].end() - 1);
  int64_t rows = static_cast<int64_t>(a.size()) / inner;
  scheduler::parallel_for(rows, std::max<int64_t>(1, kParallelGrain / inner),
                          [&](size_t b, size_t e) {
                            StridedCursor cur(outer, {&so}, static_cast<int64_t>(b));
                            for (size_t r = b; r < e; ++r) {
                              const In* sp = src + cur.offset(0);
                              Out* dp = dst + r * inner;
                              for (int64_t i = 0; i < inner; ++i)
                                dp[i] = apply_op<Out>(op, sp[i * is]);
                              cur.step();
                            }
                          });
}

template <typename In, typename Out, typename Op>
void binary_loop(const array& a, const array& b, array& out, const Op& op) {
  const In* pa = a.data<In>();
  const In* pb = b.data<In>();
  bool a_scalar = a.data_size() == 1, b_scalar = b.data_size() == 1;
  bool same = a.flags().contiguous && b.flags().contiguous && a.strides() == b.strides() &&
              a.data_size() == b.data_size();
  if (same || (a_scalar && b.flags().contiguous) || (b_scalar && a.flags().contiguous)) {
    const array& ref = (a_scalar && !b_scalar) ? b : a;
    const array& other = (&ref == &a) ? b : a;
    if (out.itemsize() == other.itemsize() && other.is_donatable() &&
        other.data_size() == ref.data_size() && other.strides() == ref.strides()) {
      out.copy_shared_buffer(other);
    } else {
      allocate_like(ref, out);
    }
    Out* dst = out.data<Out>();
    size_t n = ref.data_size();
    if (same) {
      scheduler::parallel_for(n, kParallelGrain, [&](size_t s, size_t e) {
        for (size_t i = s; i < e; ++i) dst[i] = apply_op<Out>(op, pa[i], pb[i]);
      });
    } else if (a_scalar) {
      In va = pa[0];
      scheduler::parallel_for(n, kParallelGrain, [&](size_t s, size_t e) {
        for (size_t i = s; i < e; ++i) dst[i] = apply_op<Out>(op, va, pb[i]);
      });
    } else {
      In vb = pb[0];
      scheduler::parallel_for(n, kParallelGrain, [&](size_t s, size_t e) {
        for (size_t i = s; i < e; ++i) dst[i] = apply_op<Out>(op, pa[i], vb);
      });
    }
    return;
  }
  allocate_row_contiguous(out);
  if (out.size() == 0) return;
  Out* dst = out.data<Out>();
  auto [shape, strides] = collapse_contiguous_dims(a.shape(), {a.strides(), b.strides()});
  int64_t inner = shape.back(), sa = strides[0].back(), sb = strides[1].back();
  Shape outer(shape.begin(), shape.end() - 1);
  Strides oa(strides[0].begin(), strides[0].end() - 1),
      ob(strides[1].begin(), strides[1].end() - 1);
  int64_t rows = static_cast<int64_t>(a.size()) / inner;
  scheduler::parallel_for(rows, std::max<int64_t>(1, kParallelGrain / inner),
                          [&](size_t s, size_t e) {
                            StridedCursor cur(outer, {&oa, &ob}, static_cast<int64_t>(s));
                            for (size_t r = s; r < e; ++r) {
                              const In* x = pa + cur.offset(0);
                              const In* y = pb + cur.offset(1);
                              Out* d = dst + r * inner;
                              if (sa == 1 && sb == 1) {
                                for (int64_t i = 0; i < inner; ++i)
                                  d[i] = apply_op<Out>(op, x[i], y[i]);
                              } else if (sb == 0) {
                                for (int64_t i = 0; i < inner; ++i)
                                  d[i] = apply_op<Out>(op, x[i * sa], y[0]);
                              } else if (sa == 0) {
                                for (int64_t i = 0; i < inner; ++i)
                                  d[i] = apply_op<Out>(op, x[0], y[i * sb]);
                              } else {
                                for (int64_t i = 0; i < inner; ++i)
                                  d[i] = apply_op<Out>(op, x[i * sa], y[i * sb]);
                              }
                              cur.step();
                            }
                          });
}

// Runs `body(TypeTag<T>)` for the input dtype, restricted by the op's
// predicate so that each op instantiates only the types it supports.
template <template <typename> class Supports, typename F>
void dispatch_supported(Dtype d, const char* op, F&& f) {
  dispatch_all(d, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (Supports<T>::value) {
      f(tag);
    } else {
      throw std::invalid_argument(std::string("[") + op + "] does not support dtype " +
                                  dtype_name(d));
    }
  });
}

template <typename T>
struct AnyType : std::true_type {};
template <typename T>
struct NotComplex : std::bool_constant<!is_complex_v<T>> {};
template <typename T>
struct IntegerOrBool : std::bool_constant<std::is_integral_v<T>> {};
template <typename T>
struct Integer : std::bool_constant<std::is_integral_v<T> && !std::is_same_v<T, bool>> {};
template <typename T>
struct Inexact
    : std::bool_constant<is_half_v<T> || std::is_floating_point_v<T> || is_complex_v<T>> {};
template <typename T>
struct FloatingOnly : std::bool_constant<is_half_v<T> || std::is_floating_point_v<T>> {};

}  // namespace mx::cpu
