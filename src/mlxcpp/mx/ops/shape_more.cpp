// Joining, splitting, padding, tiling, diagonals, strided views, byte views,
// dynamic slices and the triangular/identity creation ops.
#include <algorithm>
#include <numeric>
#include <sstream>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/shape_more.h"

namespace mx {

namespace {

template <typename V>
std::string list_str(const V& v) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << "]";
  return os.str();
}

int ndim_of(const array& a) { return static_cast<int>(a.ndim()); }

}  // namespace

// ---------------------------------------------------------------- concatenate / stack / split

array concatenate(std::vector<array> arrays, int axis, S s) {
  if (arrays.empty()) {
    throw std::invalid_argument("[concatenate] needs at least one array");
  }
  const array& first = arrays[0];
  if (first.ndim() == 0) {
    throw std::invalid_argument("[concatenate] cannot concatenate 0-d arrays");
  }
  int nd = ndim_of(first);
  int ax = normalize_axis(axis, nd, "concatenate");
  Dtype dtype = first.dtype();
  Shape out_shape = first.shape();
  out_shape[ax] = 0;
  for (const auto& a : arrays) {
    bool ok = ndim_of(a) == nd;
    for (int i = 0; ok && i < nd; ++i) ok = i == ax || a.shape(i) == first.shape(i);
    if (!ok) {
      throw std::invalid_argument(
          "[concatenate] all arrays must have the same shape except on axis " +
          std::to_string(axis) + "; got shapes " + shape_str(first.shape()) + " and " +
          shape_str(a.shape()));
    }
    out_shape[ax] += a.shape(ax);
    dtype = promote_types(dtype, a.dtype());
  }
  if (arrays.size() == 1) return arrays[0];
  for (auto& a : arrays) {
    if (a.dtype() != dtype) a = astype(a, dtype, s);
  }
  return array(std::move(out_shape), dtype, std::make_shared<Concatenate>(to_stream(s), ax),
               std::move(arrays));
}

array concatenate(std::vector<array> arrays, S s) {
  for (auto& a : arrays) a = flatten(a, s);
  return concatenate(std::move(arrays), 0, s);
}

array stack(const std::vector<array>& arrays, int axis, S s) {
  if (arrays.empty()) throw std::invalid_argument("[stack] needs at least one array");
  int out_nd = ndim_of(arrays[0]) + 1;
  int ax = normalize_axis(axis, out_nd, "stack");
  std::vector<array> parts;
  for (const auto& a : arrays) {
    if (a.shape() != arrays[0].shape()) {
      throw std::invalid_argument("[stack] all arrays must have the same shape; got " +
                                  shape_str(arrays[0].shape()) + " and " + shape_str(a.shape()));
    }
    parts.push_back(expand_dims(a, ax, s));
  }
  if (parts.size() == 1) return parts[0];
  return concatenate(std::move(parts), ax, s);
}

array stack(const std::vector<array>& arrays, S s) { return stack(arrays, 0, s); }

namespace {
std::vector<array> split_at(const array& a, const Shape& bounds, int ax, S s) {
  std::vector<array> out;
  for (size_t i = 0; i + 1 < bounds.size(); ++i) {
    Shape start(a.ndim(), 0), stop = a.shape();
    start[ax] = bounds[i];
    stop[ax] = bounds[i + 1];
    out.push_back(slice(a, start, stop, s));
  }
  return out;
}
}  // namespace

std::vector<array> split(const array& a, int num_splits, int axis, S s) {
  int ax = normalize_axis(axis, ndim_of(a), "split");
  int n = a.shape(ax);
  if (num_splits <= 0 || n % num_splits != 0) {
    throw std::invalid_argument("[split] an array of shape " + shape_str(a.shape()) +
                                " cannot be split into " + std::to_string(num_splits) +
                                " equal parts along axis " + std::to_string(axis));
  }
  Shape bounds;
  for (int i = 0; i <= num_splits; ++i) bounds.push_back(i * (n / num_splits));
  return split_at(a, bounds, ax, s);
}

std::vector<array> split(const array& a, int num_splits, S s) { return split(a, num_splits, 0, s); }

std::vector<array> split(const array& a, const Shape& indices, int axis, S s) {
  int ax = normalize_axis(axis, ndim_of(a), "split");
  int n = a.shape(ax);
  // Python slice semantics (as NumPy): negative indices count from the end,
  // and an index below the one before it gives an empty part.
  Shape bounds{0};
  for (int i : indices) bounds.push_back(std::clamp(i < 0 ? i + n : i, 0, n));
  bounds.push_back(n);
  return split_at(a, bounds, ax, s);
}

std::vector<array> split(const array& a, const Shape& indices, S s) {
  return split(a, indices, 0, s);
}

std::vector<array> meshgrid(const std::vector<array>& arrays, bool sparse,
                            const std::string& indexing, S s) {
  if (indexing != "xy" && indexing != "ij") {
    throw std::invalid_argument("[meshgrid] indexing must be \"xy\" or \"ij\", got \"" + indexing +
                                "\"");
  }
  int n = static_cast<int>(arrays.size());
  std::vector<array> flat;
  for (const auto& a : arrays) flat.push_back(flatten(a, s));
  Shape full_shape;
  for (const auto& a : flat) full_shape.push_back(a.shape(0));
  bool swap = indexing == "xy" && n >= 2;
  if (swap) std::swap(full_shape[0], full_shape[1]);
  std::vector<array> out;
  for (int i = 0; i < n; ++i) {
    int pos = i;
    if (swap && i < 2) pos = 1 - i;
    Shape sh(n, 1);
    sh[pos] = flat[i].shape(0);
    array x = reshape(flat[i], sh, s);
    out.push_back(sparse ? x : broadcast_to(x, full_shape, s));
  }
  return out;
}

// ---------------------------------------------------------------- repeat / tile

array repeat(const array& arr, int repeats, int axis, S s) {
  int ax = normalize_axis(axis, ndim_of(arr), "repeat");
  if (repeats < 0) {
    throw std::invalid_argument("[repeat] repeats must be non-negative, got " +
                                std::to_string(repeats));
  }
  if (repeats == 1) return arr;
  Shape b = arr.shape();
  b.insert(b.begin() + ax + 1, repeats);
  array x = broadcast_to(expand_dims(arr, ax + 1, s), b, s);
  Shape out = arr.shape();
  out[ax] *= repeats;
  return reshape(x, out, s);
}

array repeat(const array& arr, int repeats, S s) { return repeat(flatten(arr, s), repeats, 0, s); }

array tile(const array& arr, std::vector<int> reps, S s) {
  for (int r : reps) {
    if (r < 0) {
      throw std::invalid_argument("[tile] reps must be non-negative, got " + list_str(reps));
    }
  }
  int nd = std::max(ndim_of(arr), static_cast<int>(reps.size()));
  reps.insert(reps.begin(), nd - reps.size(), 1);
  Shape shape = arr.shape();
  shape.insert(shape.begin(), nd - shape.size(), 1);
  // (1, d0, 1, d1, ...) broadcast to (r0, d0, r1, d1, ...), then merged.
  Shape inter, stretched, out;
  for (int i = 0; i < nd; ++i) {
    inter.push_back(1);
    inter.push_back(shape[i]);
    stretched.push_back(reps[i]);
    stretched.push_back(shape[i]);
    out.push_back(reps[i] * shape[i]);
  }
  array x = broadcast_to(reshape(arr, inter, s), stretched, s);
  return reshape(x, out, s);
}

// ---------------------------------------------------------------- pad

namespace {
// Edge padding: per axis, concatenates copies of the first and last slices.
array pad_edge(const array& a, const std::vector<int>& axes, const Shape& low, const Shape& high,
               S s) {
  array x = a;
  for (size_t i = 0; i < axes.size(); ++i) {
    int ax = axes[i];
    if (low[i] == 0 && high[i] == 0) continue;
    int n = x.shape(ax);
    if (n == 0) {
      throw std::invalid_argument("[pad] edge padding cannot extend the empty axis " +
                                  std::to_string(ax) + " of shape " + shape_str(a.shape()));
    }
    std::vector<array> parts;
    Shape start(x.ndim(), 0), stop = x.shape();
    if (low[i] > 0) {
      stop[ax] = 1;
      Shape b = x.shape();
      b[ax] = low[i];
      parts.push_back(broadcast_to(slice(x, start, stop, s), b, s));
    }
    parts.push_back(x);
    if (high[i] > 0) {
      start[ax] = n - 1;
      stop[ax] = n;
      Shape b = x.shape();
      b[ax] = high[i];
      parts.push_back(broadcast_to(slice(x, start, stop, s), b, s));
    }
    x = concatenate(std::move(parts), ax, s);
  }
  return x;
}
}  // namespace

array pad(const array& a, const std::vector<int>& axes, const Shape& low_pad_size,
          const Shape& high_pad_size, const array& pad_value, const std::string& mode, S s) {
  if (axes.size() != low_pad_size.size() || axes.size() != high_pad_size.size()) {
    throw std::invalid_argument("[pad] got " + std::to_string(axes.size()) + " axes but " +
                                std::to_string(low_pad_size.size()) + " low and " +
                                std::to_string(high_pad_size.size()) + " high pad sizes");
  }
  int nd = ndim_of(a);
  std::vector<int> ax(axes.size());
  std::vector<bool> seen(nd, false);
  Shape out = a.shape();
  for (size_t i = 0; i < axes.size(); ++i) {
    ax[i] = normalize_axis(axes[i], nd, "pad");
    if (seen[ax[i]]) throw std::invalid_argument("[pad] repeated axis " + std::to_string(axes[i]));
    seen[ax[i]] = true;
    if (low_pad_size[i] < 0 || high_pad_size[i] < 0) {
      throw std::invalid_argument(
          "[pad] pad sizes must be non-negative; got low " + std::to_string(low_pad_size[i]) +
          " and high " + std::to_string(high_pad_size[i]) + " on axis " + std::to_string(axes[i]));
    }
    out[ax[i]] += low_pad_size[i] + high_pad_size[i];
  }
  if (mode == "edge") return pad_edge(a, ax, low_pad_size, high_pad_size, s);
  if (mode != "constant") {
    throw std::invalid_argument("[pad] mode must be \"constant\" or \"edge\", got \"" + mode +
                                "\"");
  }
  if (pad_value.size() != 1) {
    throw std::invalid_argument("[pad] pad_value must be a scalar, got shape " +
                                shape_str(pad_value.shape()));
  }
  if (out == a.shape()) return a;
  array v = reshape(astype(pad_value, a.dtype(), s), {}, s);
  return array(std::move(out), a.dtype(),
               std::make_shared<Pad>(to_stream(s), std::move(ax), low_pad_size, high_pad_size),
               {a, v});
}

array pad(const array& a, const std::vector<std::pair<int, int>>& pad_width, const array& pad_value,
          const std::string& mode, S s) {
  int nd = ndim_of(a);
  if (pad_width.size() != 1 && static_cast<int>(pad_width.size()) != nd) {
    throw std::invalid_argument("[pad] got " + std::to_string(pad_width.size()) +
                                " pad widths for an array of shape " + shape_str(a.shape()));
  }
  std::vector<int> axes(nd);
  std::iota(axes.begin(), axes.end(), 0);
  Shape low, high;
  for (int i = 0; i < nd; ++i) {
    const auto& w = pad_width.size() == 1 ? pad_width[0] : pad_width[i];
    low.push_back(w.first);
    high.push_back(w.second);
  }
  return pad(a, axes, low, high, pad_value, mode, s);
}

array pad(const array& a, const std::pair<int, int>& pad_width, const array& pad_value,
          const std::string& mode, S s) {
  return pad(a, std::vector<std::pair<int, int>>{pad_width}, pad_value, mode, s);
}

array pad(const array& a, int pad_width, const array& pad_value, const std::string& mode, S s) {
  return pad(a, std::vector<std::pair<int, int>>{{pad_width, pad_width}}, pad_value, mode, s);
}

// ---------------------------------------------------------------- diagonals

namespace {

int diagonal_length(int n1, int n2, int k) {
  return std::max(0, k >= 0 ? std::min(n1, n2 - k) : std::min(n1 + k, n2));
}

}  // namespace

namespace detail {
// Built from pads and reshapes (so it is differentiable): in the flattened
// matrix the diagonal elements sit n2 + 1 apart, starting at k (or -k * n2).
array embed_diagonal(const array& d, int n1, int n2, int k, StreamOrDevice s) {
  int m = d.shape(-1);
  Shape batch(d.shape().begin(), d.shape().end() - 1);
  int nd = ndim_of(d);
  array x = pad(expand_dims(d, -1, s), {nd}, {0}, {n2}, array(0, d.dtype()), "constant", s);
  Shape flat = batch;
  flat.push_back(m * (n2 + 1));
  x = reshape(x, flat, s);
  int64_t lead = k >= 0 ? k : static_cast<int64_t>(-k) * n2;
  int64_t total = static_cast<int64_t>(n1) * n2;
  int64_t have = lead + static_cast<int64_t>(m) * (n2 + 1);
  if (have > total) {
    // Everything past `total` is padding; cut it before shifting.
    Shape start(x.ndim(), 0), stop = x.shape();
    stop.back() = static_cast<int>(std::max<int64_t>(total - lead, 0));
    x = slice(x, start, stop, s);
    have = lead + stop.back();
  }
  x = pad(x, {nd - 1}, {static_cast<int>(std::min(lead, total))},
          {static_cast<int>(total - std::min(have, total))}, array(0, d.dtype()), "constant", s);
  Shape out = batch;
  out.push_back(n1);
  out.push_back(n2);
  return reshape(x, out, s);
}
}  // namespace detail

array diagonal(const array& a, int offset, int axis1, int axis2, S s) {
  int nd = ndim_of(a);
  if (nd < 2) {
    throw std::invalid_argument("[diagonal] needs an array with at least 2 dimensions, got shape " +
                                shape_str(a.shape()));
  }
  int ax1 = normalize_axis(axis1, nd, "diagonal");
  int ax2 = normalize_axis(axis2, nd, "diagonal");
  if (ax1 == ax2) {
    throw std::invalid_argument("[diagonal] axis1 and axis2 must differ; got " +
                                std::to_string(axis1) + " and " + std::to_string(axis2) +
                                " for shape " + shape_str(a.shape()));
  }
  Shape out;
  for (int i = 0; i < nd; ++i) {
    if (i != ax1 && i != ax2) out.push_back(a.shape(i));
  }
  out.push_back(diagonal_length(a.shape(ax1), a.shape(ax2), offset));
  return array(std::move(out), a.dtype(),
               std::make_shared<Diagonal>(to_stream(s), offset, ax1, ax2), {a});
}

array diag(const array& a, int k, S s) {
  if (a.ndim() == 1) {
    int n = a.shape(0) + std::abs(k);
    return detail::embed_diagonal(a, n, n, k, s);
  }
  if (a.ndim() == 2) return diagonal(a, k, 0, 1, s);
  throw std::invalid_argument("[diag] needs a 1-D or 2-D array, got shape " + shape_str(a.shape()));
}

// ---------------------------------------------------------------- roll

array roll(const array& a, const Shape& shift, const std::vector<int>& axes, S s) {
  if (shift.size() != axes.size()) {
    throw std::invalid_argument("[roll] got " + std::to_string(shift.size()) + " shifts for " +
                                std::to_string(axes.size()) + " axes");
  }
  array x = a;
  for (size_t i = 0; i < axes.size(); ++i) {
    int ax = normalize_axis(axes[i], ndim_of(a), "roll");
    int n = x.shape(ax);
    if (n == 0) continue;
    int k = ((shift[i] % n) + n) % n;
    if (k == 0) continue;
    auto parts = split(x, Shape{n - k}, ax, s);
    x = concatenate({parts[1], parts[0]}, ax, s);
  }
  return x;
}

array roll(const array& a, int shift, int axis, S s) {
  return roll(a, Shape{shift}, std::vector<int>{axis}, s);
}

array roll(const array& a, int shift, S s) {
  return reshape(roll(flatten(a, s), shift, 0, s), a.shape(), s);
}

// ---------------------------------------------------------------- eye / tri

array tri(int n, int m, int k, Dtype type, S s) {
  if (n < 0 || m < 0) {
    throw std::invalid_argument("[tri] sizes must be non-negative, got n=" + std::to_string(n) +
                                " m=" + std::to_string(m));
  }
  // The elementwise kernels are not entered for empty outputs.
  if (n == 0 || m == 0) return zeros({n, m}, type, s);
  array rows = reshape(arange(0, n, s), {n, 1}, s);
  array cols = reshape(arange(0, m, s), {1, m}, s);
  return astype(greater_equal(add(rows, array(k), s), cols, s), type, s);
}

array eye(int n, int m, int k, Dtype dtype, S s) {
  if (n < 0 || m < 0) {
    throw std::invalid_argument("[eye] sizes must be non-negative, got n=" + std::to_string(n) +
                                " m=" + std::to_string(m));
  }
  // The elementwise kernels are not entered for empty outputs.
  if (n == 0 || m == 0) return zeros({n, m}, dtype, s);
  array rows = reshape(arange(0, n, s), {n, 1}, s);
  array cols = reshape(arange(0, m, s), {1, m}, s);
  return astype(equal(add(rows, array(k), s), cols, s), dtype, s);
}

array identity(int n, Dtype dtype, S s) { return eye(n, n, 0, dtype, s); }

array tril(array x, int k, S s) {
  if (x.ndim() < 2) {
    throw std::invalid_argument("[tril] needs an array with at least 2 dimensions, got shape " +
                                shape_str(x.shape()));
  }
  if (x.size() == 0) return x;
  array mask = tri(x.shape(-2), x.shape(-1), k, bool_, s);
  return where(mask, x, array(0, x.dtype()), s);
}

array triu(array x, int k, S s) {
  if (x.ndim() < 2) {
    throw std::invalid_argument("[triu] needs an array with at least 2 dimensions, got shape " +
                                shape_str(x.shape()));
  }
  if (x.size() == 0) return x;
  array mask = tri(x.shape(-2), x.shape(-1), k - 1, bool_, s);
  return where(mask, array(0, x.dtype()), x, s);
}

// ---------------------------------------------------------------- as_strided / view

array as_strided(array a, Shape shape, Strides strides, size_t offset, S s) {
  if (shape.size() != strides.size()) {
    throw std::invalid_argument("[as_strided] shape " + shape_str(shape) + " and strides " +
                                list_str(strides) + " must have the same length");
  }
  int64_t lo = static_cast<int64_t>(offset), hi = lo;
  bool empty = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      throw std::invalid_argument("[as_strided] negative dimension in shape " + shape_str(shape));
    }
    if (shape[i] == 0) empty = true;
    int64_t reach = static_cast<int64_t>(shape[i] - 1) * strides[i];
    (reach < 0 ? lo : hi) += reach;
  }
  if (!empty && (lo < 0 || hi >= static_cast<int64_t>(a.size()))) {
    throw std::invalid_argument("[as_strided] shape " + shape_str(shape) + " with strides " +
                                list_str(strides) + " and offset " + std::to_string(offset) +
                                " reads outside an array of shape " + shape_str(a.shape()));
  }
  Shape sh = shape;
  auto p = std::make_shared<AsStrided>(to_stream(s), std::move(shape), std::move(strides), offset);
  return array(std::move(sh), a.dtype(), std::move(p), {a});
}

array view(const array& a, const Dtype& dtype, S s) {
  if (a.dtype() == dtype) return a;
  Shape out = a.shape();
  size_t ib = a.itemsize(), ob = size_of(dtype);
  if (ib != ob) {
    if (a.ndim() == 0) {
      throw std::invalid_argument("[view] cannot view a 0-d " + dtype_name(a.dtype()) +
                                  " array as " + dtype_name(dtype) + " (the item sizes differ)");
    }
    int64_t bytes = static_cast<int64_t>(out.back()) * static_cast<int64_t>(ib);
    if (bytes % static_cast<int64_t>(ob) != 0) {
      throw std::invalid_argument("[view] the last axis of shape " + shape_str(a.shape()) + " (" +
                                  dtype_name(a.dtype()) + ") is " + std::to_string(bytes) +
                                  " bytes, not a multiple of the " + std::to_string(ob) + "-byte " +
                                  dtype_name(dtype));
    }
    out.back() = static_cast<int>(bytes / static_cast<int64_t>(ob));
  }
  return array(std::move(out), dtype, std::make_shared<View>(to_stream(s), dtype), {a});
}

// ---------------------------------------------------------------- dynamic slices

namespace {
std::vector<int> check_dynamic(const char* op, const array& a, const array& start,
                               std::vector<int> axes) {
  if (!is_integral(start.dtype())) {
    throw std::invalid_argument(std::string("[") + op + "] start must be an integer array, got " +
                                dtype_name(start.dtype()));
  }
  if (start.size() != axes.size()) {
    throw std::invalid_argument(std::string("[") + op + "] start of shape " +
                                shape_str(start.shape()) + " does not give one index for each of " +
                                std::to_string(axes.size()) + " axes " + list_str(axes));
  }
  std::vector<bool> seen(a.ndim(), false);
  for (auto& ax : axes) {
    int x = normalize_axis(ax, ndim_of(a), op);
    if (seen[x])
      throw std::invalid_argument(std::string("[") + op + "] repeated axis " + std::to_string(ax));
    seen[x] = true;
    ax = x;
  }
  return axes;
}
}  // namespace

array slice(const array& a, const array& start, std::vector<int> axes, Shape slice_size, S s) {
  axes = check_dynamic("slice", a, start, std::move(axes));
  if (slice_size.size() != a.ndim()) {
    throw std::invalid_argument("[slice] slice_size " + shape_str(slice_size) +
                                " needs one entry per axis of shape " + shape_str(a.shape()));
  }
  for (size_t i = 0; i < a.ndim(); ++i) {
    if (slice_size[i] < 0 || slice_size[i] > a.shape(static_cast<int>(i))) {
      throw std::invalid_argument("[slice] slice_size " + shape_str(slice_size) +
                                  " does not fit in shape " + shape_str(a.shape()));
    }
  }
  Shape out = slice_size;
  return array(std::move(out), a.dtype(),
               std::make_shared<DynamicSlice>(to_stream(s), std::move(axes), std::move(slice_size)),
               {a, start});
}

namespace {

array dynamic_slice_update(const char* op, const array& src, const array& update,
                           const array& start, std::vector<int> axes, bool in_place, S s) {
  axes = check_dynamic(op, src, start, std::move(axes));
  if (update.ndim() > src.ndim()) {
    throw std::invalid_argument("[slice_update] update of shape " + shape_str(update.shape()) +
                                " has more dimensions than src of shape " + shape_str(src.shape()));
  }
  Shape ushape = update.shape();
  ushape.insert(ushape.begin(), src.ndim() - update.ndim(), 1);
  for (size_t i = 0; i < src.ndim(); ++i) {
    if (ushape[i] > src.shape(static_cast<int>(i))) {
      throw std::invalid_argument("[slice_update] update of shape " + shape_str(update.shape()) +
                                  " does not fit in src of shape " + shape_str(src.shape()));
    }
  }
  array upd = reshape(astype(update, src.dtype(), s), ushape, s);
  return array(src.shape(), src.dtype(),
               std::make_shared<DynamicSliceUpdate>(to_stream(s), std::move(axes), in_place),
               {src, upd, start});
}

}  // namespace

array slice_update(const array& src, const array& update, const array& start, std::vector<int> axes,
                   S s) {
  return dynamic_slice_update("slice_update", src, update, start, std::move(axes), false, s);
}

array slice_update_in_place(const array& src, const array& update, const array& start,
                            std::vector<int> axes, S s) {
  return dynamic_slice_update("slice_update_in_place", src, update, start, std::move(axes), true,
                              s);
}

}  // namespace mx
