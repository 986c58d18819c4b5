// CPU kernel of Gather, and the index resolution it shares with Scatter.
#include <atomic>
#include <cstring>
#include <limits>
#include <sstream>

#include "mlxcpp/mx/backend/cpu/elementwise.h"
#include "mlxcpp/mx/backend/cpu/indexing.h"
#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/primitives/indexing.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx {
namespace cpu {
namespace {

// Index conversion is a light loop, so chunks can be smaller than for kernels.
constexpr size_t kIndexGrain = size_t{1} << 14;

// Whether `raw` (wrapped when negative) starts a window of `win` elements
// inside an axis of `size`; the wrapped value goes to `v`.
template <typename I>
inline bool in_window(I raw, int64_t size, int64_t win, int64_t& v) {
  if constexpr (std::is_unsigned_v<I>) {
    // Compared as unsigned so that uint64 values above INT64_MAX are caught.
    if (static_cast<uint64_t>(raw) > static_cast<uint64_t>(size - win)) return false;
    v = static_cast<int64_t>(raw);
  } else {
    v = static_cast<int64_t>(raw);
    if (v < 0) v += size;
    if (v < 0 || v > size - win) return false;
  }
  return true;
}

template <typename I>
std::string element_string(const array& idx, size_t pos) {
  const I* p = idx.data<I>();
  I raw = p[elem_to_loc(static_cast<int64_t>(pos), idx.shape(), idx.strides())];
  if constexpr (std::is_unsigned_v<I>) {
    return std::to_string(static_cast<unsigned long long>(raw));
  } else {
    return std::to_string(static_cast<long long>(raw));
  }
}

void atomic_min(std::atomic<int64_t>& a, int64_t v) {
  int64_t cur = a.load();
  while (v < cur && !a.compare_exchange_weak(cur, v)) {
  }
}

}  // namespace

std::vector<int64_t> index_offsets(const char* op, const std::vector<array>& indices,
                                   const std::vector<int>& axes, const Shape& shape,
                                   const Shape& window, const Strides& strides) {
  if (indices.empty()) return {0};
  size_t n = indices[0].size();
  std::vector<int64_t> offsets(n, 0);
  for (size_t k = 0; k < indices.size(); ++k) {
    const array& idx = indices[k];
    int ax = axes[k];
    int64_t size = shape[ax], win = window[ax], stride = strides[ax];
    // The first failing position, so that the error does not depend on the
    // order in which threads finish.
    std::atomic<int64_t> bad{std::numeric_limits<int64_t>::max()};
    std::string bad_value;
    dispatch_all(idx.dtype(), [&](auto tag) {
      using I = typename decltype(tag)::type;
      if constexpr (std::is_integral_v<I> && !std::is_same_v<I, bool>) {
        const I* p = idx.data<I>();
        scheduler::parallel_for(n, kIndexGrain, [&](size_t b, size_t e) {
          int64_t v;
          if (idx.flags().row_contiguous) {
            for (size_t i = b; i < e; ++i) {
              if (!in_window(p[i], size, win, v)) {
                atomic_min(bad, static_cast<int64_t>(i));
                return;
              }
              offsets[i] += v * stride;
            }
          } else {
            StridedCursor cur(idx.shape(), {&idx.strides()}, static_cast<int64_t>(b));
            for (size_t i = b; i < e; ++i) {
              if (!in_window(p[cur.offset(0)], size, win, v)) {
                atomic_min(bad, static_cast<int64_t>(i));
                return;
              }
              offsets[i] += v * stride;
              cur.step();
            }
          }
        });
        if (bad.load() != std::numeric_limits<int64_t>::max()) {
          bad_value = element_string<I>(idx, static_cast<size_t>(bad.load()));
        }
      } else {
        throw std::invalid_argument(std::string("[") + op +
                                    "] indices need an integer dtype, got " +
                                    dtype_name(idx.dtype()));
      }
    });
    if (!bad_value.empty()) {
      std::string what = win == 1 ? "" : " with a slice of " + std::to_string(win);
      throw std::invalid_argument(std::string("[") + op + "] index " + bad_value + what +
                                  " is out of bounds for axis " + std::to_string(ax) +
                                  " with size " + std::to_string(size) + " (array shape " +
                                  shape_str(shape) + ")");
    }
  }
  return offsets;
}

namespace {

// Copies one window per index tuple; the windows are cut into rows of the
// innermost collapsed dim, and (tuple, row) pairs are split across threads.
template <typename T>
void gather_windows(const T* src, T* dst, const std::vector<int64_t>& offsets, int64_t rows,
                    int64_t inner, int64_t istride, const Shape& outer, const Strides& ostrides) {
  size_t n = offsets.size();
  if (rows == 1 && inner == 1) {
    scheduler::parallel_for(n, kParallelGrain, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) dst[i] = src[offsets[i]];
    });
    return;
  }
  size_t units = n * static_cast<size_t>(rows);
  size_t grain = std::max<size_t>(1, kParallelGrain / static_cast<size_t>(inner));
  scheduler::parallel_for(units, grain, [&](size_t b, size_t e) {
    size_t i = b / rows;
    int64_t r = static_cast<int64_t>(b % rows);
    StridedCursor cur(outer, {&ostrides}, r);
    for (size_t u = b; u < e; ++u) {
      const T* sp = src + offsets[i] + cur.offset(0);
      T* dp = dst + u * inner;
      if (istride == 1) {
        std::memcpy(dp, sp, static_cast<size_t>(inner) * sizeof(T));
      } else {
        for (int64_t j = 0; j < inner; ++j) dp[j] = sp[j * istride];
      }
      cur.step();  // wraps to the first row after the last one
      if (++r == rows) {
        r = 0;
        ++i;
      }
    }
  });
}

}  // namespace
}  // namespace cpu

void Gather::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& a = inputs[0];
  cpu::allocate_row_contiguous(out);
  if (out.size() == 0) return;
  std::vector<array> indices(inputs.begin() + 1, inputs.end());
  auto offsets = cpu::index_offsets("gather", indices, axes_, a.shape(), slice_sizes_, a.strides());

  Strides dst_strides(slice_sizes_.size(), 1);
  for (int d = static_cast<int>(slice_sizes_.size()) - 2; d >= 0; --d) {
    dst_strides[d] = dst_strides[d + 1] * slice_sizes_[d + 1];
  }
  auto [shape, strides] = cpu::collapse_contiguous_dims(slice_sizes_, {a.strides(), dst_strides});
  int64_t inner = shape.back(), istride = strides[0].back();
  Shape outer(shape.begin(), shape.end() - 1);
  Strides ostrides(strides[0].begin(), strides[0].end() - 1);
  int64_t window = 1;
  for (auto s : slice_sizes_) window *= s;
  int64_t rows = window / inner;

  // Gather only moves bytes, so one instantiation per element size suffices.
  auto run = [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu::gather_windows<T>(static_cast<const T*>(static_cast<const void*>(a.data<char>())),
                           static_cast<T*>(static_cast<void*>(out.data<char>())), offsets, rows,
                           inner, istride, outer, ostrides);
  };
  switch (a.itemsize()) {
    case 1:
      run(TypeTag<uint8_t>{});
      break;
    case 2:
      run(TypeTag<uint16_t>{});
      break;
    case 4:
      run(TypeTag<uint32_t>{});
      break;
    case 8:
      run(TypeTag<uint64_t>{});
      break;
    default:
      throw std::invalid_argument("[gather] unsupported element size " +
                                  std::to_string(a.itemsize()));
  }
}

}  // namespace mx
