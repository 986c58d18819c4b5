// CPU side of concatenate, pad, diagonal, as_strided, view and the dynamic
// slices. Diagonal, as_strided, view and dynamic slice are views; the rest
// copy each input into a window of a freshly allocated output.
#include <algorithm>

#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/primitives/shape_more.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx {

namespace {

// data_size of a view of `in`: the dense extent when the view is contiguous;
// otherwise 1 exactly when every element is the same value (kernels take
// data_size == 1 as a broadcast scalar).
size_t view_data_size(const array& in, size_t out_size, array::Flags flags) {
  if (flags.contiguous) return out_size;
  if (in.data_size() <= 1) return std::min<size_t>(out_size, 1);
  return out_size;
}

Strides row_major(const Shape& shape) {
  Strides s(shape.size(), 1);
  for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i) {
    s[i] = s[i + 1] * std::max<int64_t>(shape[i + 1], 1);
  }
  return s;
}

// Copies `src` into the window of `out` (row-contiguous) that starts at
// element `offset` and has src's shape.
void copy_to_window(const array& src, array& out, int64_t offset) {
  if (src.size() == 0) return;
  array window(src.shape(), out.dtype(), nullptr, {});
  window.copy_shared_buffer(out, out.strides(),
                            detail::view_flags(src.shape(), out.strides(), false), src.size(),
                            offset);
  cpu::copy_into(src, window);
}

}  // namespace

namespace detail {
int64_t dynamic_slice_offset(const array& start, const std::vector<int>& axes,
                             const Shape& in_shape, const Shape& window, const Strides& strides) {
  if (start.size() != axes.size()) {
    throw std::invalid_argument("[slice] start has " + std::to_string(start.size()) +
                                " elements but " + std::to_string(axes.size()) +
                                " axes were given");
  }
  int64_t offset = 0;
  dispatch_all(start.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_integral_v<T> || std::is_same_v<T, bool>) {
      throw std::invalid_argument("[slice] start must be an integer array, got " +
                                  dtype_name(start.dtype()));
    } else {
      const T* p = start.data<T>();
      for (size_t i = 0; i < axes.size(); ++i) {
        int ax = axes[i];
        int64_t v = static_cast<int64_t>(
            p[cpu::elem_to_loc(static_cast<int64_t>(i), start.shape(), start.strides())]);
        if (v < 0) v += in_shape[ax];
        v = std::clamp<int64_t>(v, 0, in_shape[ax] - window[ax]);
        offset += v * strides[ax];
      }
    }
  });
  return offset;
}
}  // namespace detail

void Concatenate::eval_cpu(const std::vector<array>& inputs, array& out) {
  cpu::allocate_row_contiguous(out);
  int64_t offset = 0;
  for (const auto& in : inputs) {
    copy_to_window(in, out, offset);
    offset += static_cast<int64_t>(in.shape(axis_)) * out.strides()[axis_];
  }
}

void Pad::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& a = inputs[0];
  const array& value = inputs[1];
  cpu::allocate_row_contiguous(out);
  dispatch_all(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T v = value.data<T>()[0];
    T* dst = out.data<T>();
    scheduler::parallel_for(out.size(), size_t{1} << 16,
                            [&](size_t b, size_t e) { std::fill(dst + b, dst + e, v); });
  });
  int64_t offset = 0;
  for (size_t i = 0; i < axes_.size(); ++i) {
    offset += static_cast<int64_t>(low_[i]) * out.strides()[axes_[i]];
  }
  copy_to_window(a, out, offset);
}

void Diagonal::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  if (out.size() == 0) {
    cpu::allocate_row_contiguous(out);
    return;
  }
  int64_t s1 = in.strides()[axis1_], s2 = in.strides()[axis2_];
  int64_t offset = offset_ >= 0 ? offset_ * s2 : -static_cast<int64_t>(offset_) * s1;
  Strides strides;
  for (int i = 0; i < static_cast<int>(in.ndim()); ++i) {
    if (i != axis1_ && i != axis2_) strides.push_back(in.strides()[i]);
  }
  strides.push_back(s1 + s2);
  auto flags = detail::view_flags(out.shape(), strides, false);
  out.copy_shared_buffer(in, strides, flags, view_data_size(in, out.size(), flags), offset);
}

void AsStrided::eval_cpu(const std::vector<array>& inputs, array& out) {
  if (out.size() == 0) {
    cpu::allocate_row_contiguous(out);
    return;
  }
  // The strides address the row-major layout of the input.
  array x = cpu::ensure_row_contiguous(inputs[0]);
  auto flags = detail::view_flags(shape_, strides_, false);
  out.copy_shared_buffer(x, strides_, flags, view_data_size(x, out.size(), flags),
                         static_cast<int64_t>(offset_));
}

void View::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  if (out.size() == 0) {
    cpu::allocate_row_contiguous(out);
    return;
  }
  if (in.itemsize() == out.itemsize()) {
    out.copy_shared_buffer(in);
    return;
  }
  array x = cpu::ensure_row_contiguous(in);
  Strides strides = row_major(out.shape());
  out.copy_shared_buffer(x, strides, detail::view_flags(out.shape(), strides, true), out.size());
}

void DynamicSlice::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  if (out.size() == 0) {
    cpu::allocate_row_contiguous(out);
    return;
  }
  int64_t offset =
      detail::dynamic_slice_offset(inputs[1], axes_, in.shape(), slice_size_, in.strides());
  auto flags = detail::view_flags(out.shape(), in.strides(), false);
  out.copy_shared_buffer(in, in.strides(), flags, view_data_size(in, out.size(), flags), offset);
}

void DynamicSliceUpdate::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& src = inputs[0];
  const array& upd = inputs[1];
  if (in_place_ && !(src.flags().row_contiguous && src.data_size() == src.size())) {
    throw std::invalid_argument("[slice_update_in_place] src must be row-contiguous");
  }
  if (in_place_ || (src.is_donatable() && src.flags().row_contiguous)) {
    out.copy_shared_buffer(src);
  } else {
    cpu::allocate_row_contiguous(out);
    cpu::copy_into(src, out);
  }
  if (upd.size() == 0) return;
  int64_t offset =
      detail::dynamic_slice_offset(inputs[2], axes_, out.shape(), upd.shape(), out.strides());
  copy_to_window(upd, out, offset);
}

}  // namespace mx
