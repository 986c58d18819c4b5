// CPU kernel of Scan (cumsum, cumprod, cummax, cummin). The input is viewed
// as [outer, n, inner] around the scanned axis; with inner > 1 a row of
// accumulators advances along the axis so the inner loop is contiguous.
#include <algorithm>
#include <vector>

#include "mlxcpp/mx/backend/cpu/elementwise.h"
#include "mlxcpp/mx/backend/cpu/reduce_ops.h"
#include "mlxcpp/mx/primitives/reduce.h"

namespace mx {
namespace {

// Scans accumulate like the matching reduction, except that sums stay in the
// input's precision class (acc_t), as NumPy's cumsum does.
template <typename In, typename Out>
struct ScanSumOp {
  using Acc = acc_t<Out>;
  Acc init() const { return Acc(0); }
  Acc operator()(Acc a, In x) const { return cpu::wrap_add(a, cast_value<Acc>(x)); }
  Out finalize(Acc a) const { return cast_value<Out>(a); }
};

template <typename In, typename Out, typename Op>
void scan_typed(const array& in_arr, array& out, int axis, bool reverse, bool inclusive,
                const Op& op) {
  using Acc = typename Op::Acc;
  cpu::allocate_row_contiguous(out);
  if (out.size() == 0) return;
  array in = cpu::ensure_row_contiguous(in_arr);
  const In* src = in.data<In>();
  Out* dst = out.data<Out>();
  int64_t n = in.shape(axis);
  int64_t inner = 1;
  for (size_t d = axis + 1; d < in.ndim(); ++d) inner *= in.shape(d);
  int64_t outer = static_cast<int64_t>(in.size()) / (n * inner);

  if (inner == 1) {
    size_t grain = std::max<size_t>(1, cpu::kParallelGrain / n);
    scheduler::parallel_for(outer, grain, [&](size_t b, size_t e) {
      for (size_t r = b; r < e; ++r) {
        const In* x = src + r * n;
        Out* y = dst + r * n;
        Acc acc = op.init();
        for (int64_t t = 0; t < n; ++t) {
          int64_t k = reverse ? n - 1 - t : t;
          if (inclusive) {
            acc = op(acc, x[k]);
            y[k] = op.finalize(acc);
          } else {
            y[k] = op.finalize(acc);
            acc = op(acc, x[k]);
          }
        }
      }
    });
    return;
  }

  constexpr int64_t kCols = 512;
  int64_t col_chunks = (inner + kCols - 1) / kCols;
  size_t grain = std::max<size_t>(1, cpu::kParallelGrain / (kCols * n));
  scheduler::parallel_for(outer * col_chunks, grain, [&](size_t b, size_t e) {
    std::vector<Acc> acc(kCols);
    for (size_t u = b; u < e; ++u) {
      int64_t r = static_cast<int64_t>(u) / col_chunks;
      int64_t c0 = (static_cast<int64_t>(u) % col_chunks) * kCols;
      int64_t len = std::min(kCols, inner - c0);
      std::fill(acc.begin(), acc.begin() + len, op.init());
      for (int64_t t = 0; t < n; ++t) {
        int64_t k = reverse ? n - 1 - t : t;
        const In* x = src + (r * n + k) * inner + c0;
        Out* y = dst + (r * n + k) * inner + c0;
        if (inclusive) {
          for (int64_t j = 0; j < len; ++j) {
            acc[j] = op(acc[j], x[j]);
            y[j] = op.finalize(acc[j]);
          }
        } else {
          for (int64_t j = 0; j < len; ++j) {
            y[j] = op.finalize(acc[j]);
            acc[j] = op(acc[j], x[j]);
          }
        }
      }
    }
  });
}

}  // namespace

const char* Scan::name() const {
  switch (type_) {
    case Max:
      return "CumMax";
    case Min:
      return "CumMin";
    case Sum:
      return "CumSum";
    case Prod:
      return "CumProd";
  }
  return "Scan";
}

void Scan::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  dispatch_all(in.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (type_) {
      case Sum:
        if constexpr (std::is_same_v<T, bool>) {
          scan_typed<T, int32_t>(in, out, axis_, reverse_, inclusive_, ScanSumOp<T, int32_t>{});
        } else {
          scan_typed<T, T>(in, out, axis_, reverse_, inclusive_, ScanSumOp<T, T>{});
        }
        break;
      case Prod:
        scan_typed<T, T>(in, out, axis_, reverse_, inclusive_, cpu::ProdOp<T, T>{});
        break;
      case Max:
      case Min:
        if constexpr (is_complex_v<T>) {
          throw std::invalid_argument(std::string("[") + (type_ == Max ? "cummax" : "cummin") +
                                      "] does not support complex64");
        } else if (type_ == Max) {
          scan_typed<T, T>(in, out, axis_, reverse_, inclusive_, cpu::MaxOp<T, T>{});
        } else {
          scan_typed<T, T>(in, out, axis_, reverse_, inclusive_, cpu::MinOp<T, T>{});
        }
        break;
    }
  });
}

}  // namespace mx
