// CPU kernel of fast::grouped_linear: one row of x against several row-major
// matrices in a single parallel pass (simd_gemv_impl.inc), or, without vector
// kernels (float64, or no AVX2), one dot product per output in a loop.
#include <cstdint>
#include <vector>

#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/backend/cpu/simd_kernels.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/primitives/fast.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx::fast {

void GroupedLinear::eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) {
  const array& x = inputs[0];
  const int K = x.shape(-1);
  const int64_t xcs = x.ndim() > 0 ? x.strides().back() : 1;
  std::vector<array> ws;  // weights in a layout the kernels read (row-major rows)
  std::vector<cpu::GemvGroupItem> items;
  for (size_t i = 1; i < inputs.size(); ++i) {
    array w = inputs[i];
    const int N = w.shape(0);
    if (!(w.strides()[1] == 1 && (N <= 1 || w.strides()[0] >= K))) {
      w = cpu::ensure_row_contiguous(w);
    }
    array& y = outputs[i - 1];
    cpu::allocate_row_contiguous(y);
    const int64_t ldw = N <= 1 ? K : w.strides()[0];
    items.push_back({w.data<char>(), ldw, N, y.data<char>()});
    ws.push_back(std::move(w));
  }
  if (cpu::gemv_group_dispatch(x.dtype(), K, x.data<char>(), xcs, items)) return;
  dispatch_float(x.dtype(), "grouped_linear", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* xp = x.data<T>();
    for (const auto& it : items) {
      const T* w = static_cast<const T*>(it.w);
      T* y = static_cast<T*>(it.y);
      scheduler::parallel_for(static_cast<size_t>(it.N), 64, [&](size_t b, size_t e) {
        for (size_t n = b; n < e; ++n) {
          A s = 0;
          const T* row = w + static_cast<int64_t>(n) * it.ldw;
          for (int k = 0; k < K; ++k) s += static_cast<A>(xp[k * xcs]) * static_cast<A>(row[k]);
          y[n] = static_cast<T>(s);
        }
      });
    }
  });
}

}  // namespace mx::fast
