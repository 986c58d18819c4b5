// CPU side of the layout primitives: views set strides over the input's
// buffer; the rest copy.
#include <cmath>

#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/primitives/shape.h"

namespace mx {

namespace detail {
array::Flags view_flags(const Shape& shape, const Strides& strides, bool dense) {
  array::Flags f{false, true, true};
  int64_t expect = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    if (shape[i] == 1) continue;
    if (strides[i] != expect) f.row_contiguous = false;
    expect *= shape[i];
  }
  expect = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    if (strides[i] != expect) f.col_contiguous = false;
    expect *= shape[i];
  }
  f.contiguous = f.row_contiguous || f.col_contiguous || dense;
  return f;
}
}  // namespace detail

void Broadcast::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  Strides strides(out.ndim(), 0);
  int diff = static_cast<int>(out.ndim() - in.ndim());
  for (int i = static_cast<int>(in.ndim()) - 1; i >= 0; --i) {
    strides[i + diff] = in.shape(i) == 1 ? 0 : in.strides()[i];
  }
  auto flags = detail::view_flags(out.shape(), strides, false);
  if (out.size() > in.size())
    flags.contiguous = flags.row_contiguous = flags.col_contiguous = false;
  out.copy_shared_buffer(in, strides, flags, in.data_size());
}

void Reshape::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  if (in.flags().row_contiguous) {
    Strides strides(out.ndim(), 1);
    for (int i = static_cast<int>(out.ndim()) - 2; i >= 0; --i) {
      strides[i] = strides[i + 1] * std::max<int64_t>(out.shape(i + 1), 1);
    }
    out.copy_shared_buffer(in, strides, detail::view_flags(out.shape(), strides, true),
                           in.data_size());
    return;
  }
  cpu::allocate_row_contiguous(out);
  // Copy in row-major order of the input into the new shape.
  array tmp(in.shape(), in.dtype(), nullptr, {});
  tmp.copy_shared_buffer(
      out,
      [&] {
        Strides s(in.ndim(), 1);
        for (int i = static_cast<int>(in.ndim()) - 2; i >= 0; --i) {
          s[i] = s[i + 1] * std::max<int64_t>(in.shape(i + 1), 1);
        }
        return s;
      }(),
      array::Flags{true, true, false}, out.size());
  cpu::copy_into(in, tmp);
}

void Transpose::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  Strides strides(axes_.size());
  for (size_t i = 0; i < axes_.size(); ++i) strides[i] = in.strides()[axes_[i]];
  bool dense = in.flags().contiguous && in.data_size() == in.size();
  out.copy_shared_buffer(in, strides, detail::view_flags(out.shape(), strides, dense),
                         in.data_size());
}

void Slice::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  if (out.size() == 0) {
    cpu::allocate_row_contiguous(out);
    return;
  }
  int64_t offset = 0;
  Strides strides(in.ndim());
  for (size_t i = 0; i < in.ndim(); ++i) {
    offset += static_cast<int64_t>(start_[i]) * in.strides()[i];
    strides[i] = in.strides()[i] * strides_[i];
  }
  auto flags = detail::view_flags(out.shape(), strides, false);
  size_t data_size = flags.contiguous ? out.size() : (out.size() == 1 ? 1 : out.size());
  if (!flags.contiguous && in.data_size() < in.size()) {
    // A slice of a broadcast: keep the broadcast's (smaller) extent.
    data_size = std::min(data_size, in.data_size());
  }
  out.copy_shared_buffer(in, strides, flags, data_size, offset);
}

void SliceUpdate::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& src = inputs[0];
  const array& upd = inputs[1];
  if (src.is_donatable() && src.flags().row_contiguous) {
    out.copy_shared_buffer(src);
  } else {
    cpu::allocate_row_contiguous(out);
    cpu::copy_into(src, out);
  }
  if (upd.size() == 0) return;
  int64_t offset = 0;
  Strides strides(out.ndim());
  for (size_t i = 0; i < out.ndim(); ++i) {
    offset += static_cast<int64_t>(start_[i]) * out.strides()[i];
    strides[i] = out.strides()[i] * strides_[i];
  }
  array window(upd.shape(), out.dtype(), nullptr, {});
  window.copy_shared_buffer(out, strides, detail::view_flags(upd.shape(), strides, false),
                            upd.size(), offset);
  cpu::copy_into(upd, window);
}

void Arange::eval_cpu(const std::vector<array>&, array& out) {
  cpu::allocate_row_contiguous(out);
  dispatch_all(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, bool> || is_complex_v<T>) {
      throw std::invalid_argument("[arange] cannot produce " + dtype_name(out.dtype()));
    } else {
      T* p = out.data<T>();
      for (size_t i = 0; i < out.size(); ++i) p[i] = T(start_ + static_cast<double>(i) * step_);
    }
  });
}

void Full::eval_cpu(const std::vector<array>& inputs, array& out) {
  cpu::allocate_row_contiguous(out);
  cpu::copy_into(inputs[0], out);
}

}  // namespace mx
