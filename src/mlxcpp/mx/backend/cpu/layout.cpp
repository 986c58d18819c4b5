#include "mlxcpp/mx/backend/cpu/layout.h"

#include <cstring>

#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx::cpu {

std::pair<Shape, std::vector<Strides>> collapse_contiguous_dims(
    const Shape& shape, const std::vector<Strides>& strides) {
  Shape out_shape;
  std::vector<Strides> out_strides(strides.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !out_shape.empty();
    if (merge) {
      for (size_t k = 0; k < strides.size(); ++k) {
        if (out_strides[k].back() != strides[k][d] * shape[d]) {
          merge = false;
          break;
        }
      }
    }
    if (merge) {
      out_shape.back() *= shape[d];
      for (size_t k = 0; k < strides.size(); ++k) out_strides[k].back() = strides[k][d];
    } else {
      out_shape.push_back(shape[d]);
      for (size_t k = 0; k < strides.size(); ++k) out_strides[k].push_back(strides[k][d]);
    }
  }
  if (out_shape.empty()) {
    out_shape.push_back(1);
    for (auto& s : out_strides) s.push_back(0);
  }
  return {out_shape, out_strides};
}

StridedCursor::StridedCursor(const Shape& shape, const std::vector<const Strides*>& strides,
                             int64_t start)
    : shape_(shape), strides_(strides), index_(shape.size(), 0), offsets_(strides.size(), 0) {
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0 && start > 0; --d) {
    index_[d] = static_cast<int32_t>(start % shape[d]);
    start /= shape[d];
  }
  for (size_t k = 0; k < strides_.size(); ++k) {
    for (size_t d = 0; d < shape.size(); ++d) offsets_[k] += index_[d] * (*strides_[k])[d];
  }
}

void StridedCursor::step() {
  for (int d = static_cast<int>(shape_.size()) - 1; d >= 0; --d) {
    if (++index_[d] < shape_[d]) {
      for (size_t k = 0; k < strides_.size(); ++k) offsets_[k] += (*strides_[k])[d];
      return;
    }
    for (size_t k = 0; k < strides_.size(); ++k) {
      offsets_[k] -= (*strides_[k])[d] * (shape_[d] - 1);
    }
    index_[d] = 0;
  }
}

void allocate_row_contiguous(array& out) {
  out.set_data(allocator::malloc(std::max<size_t>(out.nbytes(), 1)));
}

void allocate_like(const array& in, array& out) {
  if (in.itemsize() == out.itemsize() && in.is_donatable() && in.flags().contiguous) {
    out.copy_shared_buffer(in);
    return;
  }
  if (in.flags().row_contiguous || !in.flags().contiguous) {
    allocate_row_contiguous(out);
  } else {
    out.set_data(allocator::malloc(std::max<size_t>(in.data_size() * out.itemsize(), 1)),
                 in.data_size(), in.strides(), in.flags());
  }
}

namespace {

template <typename From, typename To>
void copy_typed(const array& src, array& dst) {
  const From* s = src.data<From>();
  To* d = dst.data<To>();
  size_t n = src.size();
  if (n == 0) return;
  bool same_layout = src.strides() == dst.strides() && src.flags().contiguous &&
                     dst.flags().contiguous && src.data_size() == dst.data_size();
  if (same_layout) {
    size_t m = src.data_size();
    if constexpr (std::is_same_v<From, To>) {
      std::memcpy(d, s, m * sizeof(To));
    } else {
      scheduler::parallel_for(m, 1 << 16, [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i) d[i] = cast_value<To>(s[i]);
      });
    }
    return;
  }
  auto [shape, strides] = collapse_contiguous_dims(src.shape(), {src.strides(), dst.strides()});
  if (shape.back() == 0) return;
  int64_t inner = shape.back();
  int64_t ss = strides[0].back(), ds = strides[1].back();
  int64_t rows = static_cast<int64_t>(n) / inner;
  Shape outer(shape.begin(), shape.end() - 1);
  Strides so(strides[0].begin(), strides[0].end() - 1),
      dso(strides[1].begin(), strides[1].end() - 1);
  scheduler::parallel_for(rows, std::max<int64_t>(1, (1 << 16) / inner), [&](size_t b, size_t e) {
    StridedCursor cur(outer, {&so, &dso}, static_cast<int64_t>(b));
    for (size_t r = b; r < e; ++r) {
      const From* sp = s + cur.offset(0);
      To* dp = d + cur.offset(1);
      for (int64_t i = 0; i < inner; ++i) dp[i * ds] = cast_value<To>(sp[i * ss]);
      cur.step();
    }
  });
}

}  // namespace

void copy_into(const array& src, array& dst) {
  dispatch_all(src.dtype(), [&](auto st) {
    using From = typename decltype(st)::type;
    dispatch_all(dst.dtype(), [&](auto dt) {
      using To = typename decltype(dt)::type;
      copy_typed<From, To>(src, dst);
    });
  });
}

array ensure_row_contiguous(const array& a) {
  if (a.flags().row_contiguous) return a;
  array out(a.shape(), a.dtype(), nullptr, {});
  allocate_row_contiguous(out);
  copy_into(a, out);
  return out;
}

}  // namespace mx::cpu
