// CPU kernel of the fused Softmax over the last axis: per row, the max, the
// shifted exponentials and their sum, then one scaling pass.
#include <algorithm>
#include <cmath>
#include <vector>

#include "mlxcpp/mx/backend/cpu/elementwise.h"
#include "mlxcpp/mx/primitives/reduce.h"

namespace mx {
namespace {

template <typename T>
void softmax_typed(const array& in_arr, array& out) {
  // float for the 16-bit types whatever `precise` says: on the CPU the wider
  // accumulation costs nothing and avoids rounding every exponential.
  using A = acc_t<T>;
  array in = cpu::ensure_row_contiguous(in_arr);
  cpu::allocate_row_contiguous(out);
  if (out.size() == 0) return;
  int64_t n = in.shape(-1);
  int64_t rows = static_cast<int64_t>(in.size()) / n;
  const T* src = in.data<T>();
  T* dst = out.data<T>();
  size_t grain = std::max<size_t>(1, cpu::kParallelGrain / n);
  scheduler::parallel_for(rows, grain, [&](size_t b, size_t e) {
    std::vector<A> ex(n);
    for (size_t r = b; r < e; ++r) {
      const T* x = src + r * n;
      T* y = dst + r * n;
      A m = static_cast<A>(x[0]);
      for (int64_t i = 1; i < n; ++i) m = std::max(m, static_cast<A>(x[i]));
      A total = 0;
      for (int64_t i = 0; i < n; ++i) {
        ex[i] = std::exp(static_cast<A>(x[i]) - m);
        total += ex[i];
      }
      A inv = A(1) / total;
      for (int64_t i = 0; i < n; ++i) y[i] = static_cast<T>(ex[i] * inv);
    }
  });
}

}  // namespace

void Softmax::eval_cpu(const std::vector<array>& inputs, array& out) {
  dispatch_float(inputs[0].dtype(), "softmax",
                 [&](auto tag) { softmax_typed<typename decltype(tag)::type>(inputs[0], out); });
}

}  // namespace mx
