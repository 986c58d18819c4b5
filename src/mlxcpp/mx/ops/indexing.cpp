// Indexing ops: gather/scatter (MLX's primitives) and the NumPy-style ops built
// on them (take, take_along_axis, put_along_axis).
//
// Index semantics, for every op here: any integer dtype (index arrays of
// different integer dtypes may be mixed), negative values count from the end
// of their axis (NumPy/MLX), and an index outside [-n, n) is an error. MLX does
// not check bounds; we throw std::invalid_argument naming the index, the axis
// and the array shape -- at evaluation time, since the values are data.
// Duplicate indices: scatter keeps the last write (in row-major index order),
// scatter_add / _prod / _max / _min accumulate every update (np.add.at, ...).
// Updates have shape broadcast(indices).shape + window with one window dim per
// array dim (MLX's rule); their leading dims may broadcast against the index shape.
//
// Derivatives (indexing_grad.cpp): gather's vjp scatter-adds the cotangent into
// zeros; scatter's vjp gathers it for the updates -- for plain scatter only the
// update that won a position (the last one) gets its gradient, unlike MLX, which
// gives it to every duplicate; max/min send it to the values equal to the
// result (ties all receive it); scatter_prod's rules use the product of the
// other updates at a position, exact when some of them are zero.
#include <numeric>
#include <sstream>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/indexing.h"

namespace mx {

namespace {

using Reduce = Scatter::ReduceType;

std::string err(const char* op, const std::string& msg) {
  return std::string("[") + op + "] " + msg;
}

void check_index_dtype(const char* op, const array& idx) {
  if (!is_integral(idx.dtype())) {
    throw std::invalid_argument(
        err(op, "indices need an integer dtype, got " + dtype_name(idx.dtype())));
  }
}

// Normalizes the axes (negative count from the end) and checks that they are
// distinct and match the index arrays one to one.
std::vector<int> check_axes(const char* op, const array& a, const std::vector<int>& axes,
                            size_t num_indices) {
  if (axes.size() != num_indices) {
    throw std::invalid_argument(err(op, "got " + std::to_string(num_indices) +
                                            " index arrays but " + std::to_string(axes.size()) +
                                            " axes"));
  }
  std::vector<int> out;
  std::vector<bool> seen(a.ndim(), false);
  for (int ax : axes) {
    int x = normalize_axis(ax, static_cast<int>(a.ndim()), op);
    if (seen[x]) throw std::invalid_argument(err(op, "axis " + std::to_string(ax) + " repeats"));
    seen[x] = true;
    out.push_back(x);
  }
  return out;
}

// Checks the dtypes and broadcasts the index arrays to their common shape.
std::vector<array> broadcast_indices(const char* op, const std::vector<array>& indices, S s) {
  Shape shape;
  for (auto& idx : indices) {
    check_index_dtype(op, idx);
    try {
      shape = broadcast_shapes(shape, idx.shape());
    } catch (const std::invalid_argument&) {
      std::string shapes;
      for (auto& x : indices) shapes += (shapes.empty() ? "" : " and ") + shape_str(x.shape());
      throw std::invalid_argument(err(op, "index shapes " + shapes + " cannot be broadcast"));
    }
  }
  std::vector<array> out;
  for (auto& idx : indices) out.push_back(broadcast_to(idx, shape, s));
  return out;
}

// An index into an axis of size 0 can never be valid; say so now rather than
// at evaluation.
void check_nonempty_axes(const char* op, const array& a, const std::vector<int>& axes,
                         const Shape& window, size_t num_tuples) {
  if (num_tuples == 0) return;
  for (int ax : axes) {
    if (a.shape(ax) == 0 && window[ax] > 0) {
      throw std::invalid_argument(err(op, "cannot index axis " + std::to_string(ax) +
                                              " of size 0 (array shape " + shape_str(a.shape()) +
                                              ")"));
    }
  }
}

array scatter_impl(const char* op, Reduce reduce, const array& a, const std::vector<array>& indices,
                   const array& updates, const std::vector<int>& axes, S s) {
  auto ax = check_axes(op, a, axes, indices.size());
  auto idx = broadcast_indices(op, indices, s);
  Shape ishape = idx.empty() ? Shape{} : idx[0].shape();
  if (updates.ndim() != ishape.size() + a.ndim()) {
    throw std::invalid_argument(
        err(op, "updates of shape " + shape_str(updates.shape()) + " need " +
                    std::to_string(ishape.size() + a.ndim()) + " dimensions: the index shape " +
                    shape_str(ishape) + " followed by one per dimension of the array of shape " +
                    shape_str(a.shape())));
  }
  Shape window(updates.shape().begin() + ishape.size(), updates.shape().end());
  for (size_t d = 0; d < a.ndim(); ++d) {
    if (window[d] > a.shape(static_cast<int>(d))) {
      throw std::invalid_argument(err(op, "update slice " + shape_str(window) +
                                              " exceeds the array shape " + shape_str(a.shape()) +
                                              " on axis " + std::to_string(d)));
    }
  }
  Shape full_shape = ishape;
  full_shape.insert(full_shape.end(), window.begin(), window.end());
  array upd = updates;
  try {
    upd = broadcast_to(updates, full_shape, s);
  } catch (const std::invalid_argument&) {
    throw std::invalid_argument(err(op, "updates of shape " + shape_str(updates.shape()) +
                                            " do not broadcast to the index shape " +
                                            shape_str(ishape) + " followed by the slice " +
                                            shape_str(window)));
  }
  if (upd.dtype() != a.dtype()) upd = astype(upd, a.dtype(), s);
  if (is_complex(a.dtype()) && (reduce == Reduce::Max || reduce == Reduce::Min)) {
    throw std::invalid_argument(err(op, "is not defined for complex64"));
  }
  size_t tuples = 1;
  for (auto d : ishape) tuples *= d;
  check_nonempty_axes(op, a, ax, window, tuples);
  std::vector<array> inputs{a};
  inputs.insert(inputs.end(), idx.begin(), idx.end());
  inputs.push_back(upd);
  return array(a.shape(), a.dtype(), std::make_shared<Scatter>(to_stream(s), reduce, std::move(ax)),
               std::move(inputs));
}

// For take/put_along_axis: index arrays that select every position of the
// other axes (aranges shaped to broadcast), with `indices` on `axis`.
std::vector<array> along_axis_indices(const char* op, const array& a, const array& indices,
                                      int axis, S s) {
  if (indices.ndim() != a.ndim()) {
    throw std::invalid_argument(err(op, "indices of shape " + shape_str(indices.shape()) +
                                            " and array of shape " + shape_str(a.shape()) +
                                            " need the same number of dimensions"));
  }
  check_index_dtype(op, indices);
  for (int i = 0; i < static_cast<int>(a.ndim()); ++i) {
    if (i == axis) continue;
    int x = a.shape(i), y = indices.shape(i);
    if (x != y && x != 1 && y != 1) {
      throw std::invalid_argument(err(op, "indices of shape " + shape_str(indices.shape()) +
                                              " do not broadcast against the array of shape " +
                                              shape_str(a.shape()) + " on axis " +
                                              std::to_string(i)));
    }
  }
  std::vector<array> out;
  Shape shape(a.ndim(), 1);
  for (int i = 0; i < static_cast<int>(a.ndim()); ++i) {
    if (i == axis) {
      out.push_back(indices);
    } else {
      shape[i] = a.shape(i);
      out.push_back(reshape(arange(0, a.shape(i), s), shape, s));
      shape[i] = 1;
    }
  }
  return out;
}

}  // namespace

array gather(const array& a, const std::vector<array>& indices, const std::vector<int>& axes,
             const Shape& slice_sizes, S s) {
  auto ax = check_axes("gather", a, axes, indices.size());
  if (slice_sizes.size() != a.ndim()) {
    throw std::invalid_argument(err("gather", "got " + std::to_string(slice_sizes.size()) +
                                                  " slice sizes for an array of shape " +
                                                  shape_str(a.shape())));
  }
  for (size_t d = 0; d < a.ndim(); ++d) {
    if (slice_sizes[d] < 0 || slice_sizes[d] > a.shape(static_cast<int>(d))) {
      throw std::invalid_argument(err(
          "gather", "slice sizes " + shape_str(slice_sizes) + " do not fit the array of shape " +
                        shape_str(a.shape()) + " on axis " + std::to_string(d)));
    }
  }
  auto idx = broadcast_indices("gather", indices, s);
  Shape shape = idx.empty() ? Shape{} : idx[0].shape();
  size_t tuples = 1;
  for (auto d : shape) tuples *= d;
  check_nonempty_axes("gather", a, ax, slice_sizes, tuples);
  shape.insert(shape.end(), slice_sizes.begin(), slice_sizes.end());
  std::vector<array> inputs{a};
  inputs.insert(inputs.end(), idx.begin(), idx.end());
  return array(std::move(shape), a.dtype(),
               std::make_shared<Gather>(to_stream(s), std::move(ax), slice_sizes),
               std::move(inputs));
}

array gather(const array& a, const array& indices, int axis, const Shape& slice_sizes, S s) {
  return gather(a, std::vector<array>{indices}, std::vector<int>{axis}, slice_sizes, s);
}

array take(const array& a, const array& indices, int axis, S s) {
  if (a.ndim() == 0) {
    throw std::invalid_argument(err("take", "cannot take along an axis of a 0-d array"));
  }
  int ax = normalize_axis(axis, static_cast<int>(a.ndim()), "take");
  check_index_dtype("take", indices);
  Shape window = a.shape();
  window[ax] = indices.size() > 0 ? 1 : 0;
  if (a.shape(ax) == 0 && indices.size() > 0) {
    throw std::invalid_argument(err("take", "cannot take from axis " + std::to_string(axis) +
                                                " of size 0 (array shape " + shape_str(a.shape()) +
                                                ")"));
  }
  array g = gather(a, indices, ax, window, s);
  // g is indices.shape + window; drop the window's axis, then move the index
  // dims to where the axis was: a.shape[:ax] + indices.shape + a.shape[ax+1:].
  int r = static_cast<int>(indices.ndim());
  Shape flat = indices.shape();
  for (int d = 0; d < static_cast<int>(a.ndim()); ++d) {
    if (d != ax) flat.push_back(a.shape(d));
  }
  g = reshape(g, flat, s);
  if (ax == 0 || r == 0) return g;
  std::vector<int> perm;
  for (int d = 0; d < ax; ++d) perm.push_back(r + d);
  for (int d = 0; d < r; ++d) perm.push_back(d);
  for (int d = r + ax; d < static_cast<int>(g.ndim()); ++d) perm.push_back(d);
  return transpose(g, perm, s);
}

array take(const array& a, int index, int axis, S s) {
  if (a.ndim() == 0) {
    throw std::invalid_argument(err("take", "cannot take along an axis of a 0-d array"));
  }
  int ax = normalize_axis(axis, static_cast<int>(a.ndim()), "take");
  int n = a.shape(ax);
  int i = index < 0 ? index + n : index;
  if (i < 0 || i >= n) {
    throw std::invalid_argument(
        err("take", "index " + std::to_string(index) + " is out of bounds for axis " +
                        std::to_string(axis) + " with size " + std::to_string(n) +
                        " (array shape " + shape_str(a.shape()) + ")"));
  }
  Shape start(a.ndim(), 0), stop = a.shape();
  start[ax] = i;
  stop[ax] = i + 1;
  return squeeze(slice(a, start, stop, s), ax, s);
}

array take(const array& a, const array& indices, S s) { return take(flatten(a, s), indices, 0, s); }

array take(const array& a, int index, S s) { return take(flatten(a, s), index, 0, s); }

array take_along_axis(const array& a, const array& indices, int axis, S s) {
  int ax = normalize_axis(axis, static_cast<int>(a.ndim()), "take_along_axis");
  auto idx = along_axis_indices("take_along_axis", a, indices, ax, s);
  std::vector<int> axes(a.ndim());
  std::iota(axes.begin(), axes.end(), 0);
  Shape window(a.ndim(), 1);
  Shape out_shape(a.ndim());
  for (int d = 0; d < static_cast<int>(a.ndim()); ++d) {
    out_shape[d] = d == ax ? indices.shape(d) : std::max(a.shape(d), indices.shape(d));
    if (d != ax && (a.shape(d) == 0 || indices.shape(d) == 0)) out_shape[d] = 0;
  }
  size_t out_size = 1;
  for (auto d : out_shape) out_size *= d;
  if (out_size > 0 && a.shape(ax) == 0) {
    throw std::invalid_argument(
        err("take_along_axis", "cannot take from axis " + std::to_string(axis) +
                                   " of size 0 (array shape " + shape_str(a.shape()) + ")"));
  }
  if (out_size == 0) {
    // Nothing to read; avoid windows that would not fit empty axes.
    return zeros(out_shape, a.dtype(), s);
  }
  array g = gather(a, idx, axes, window, s);
  return reshape(g, out_shape, s);
}

array put_along_axis(const array& a, const array& indices, const array& values, int axis, S s) {
  int ax = normalize_axis(axis, static_cast<int>(a.ndim()), "put_along_axis");
  auto idx = along_axis_indices("put_along_axis", a, indices, ax, s);
  Shape ishape;
  for (auto& x : idx) ishape = broadcast_shapes(ishape, x.shape());
  array v = values;
  try {
    v = broadcast_to(values, ishape, s);
  } catch (const std::invalid_argument&) {
    throw std::invalid_argument(
        err("put_along_axis", "values of shape " + shape_str(values.shape()) +
                                  " do not broadcast to the index shape " + shape_str(ishape)));
  }
  Shape ushape = ishape;
  ushape.insert(ushape.end(), a.ndim(), 1);
  std::vector<int> axes(a.ndim());
  std::iota(axes.begin(), axes.end(), 0);
  size_t n = 1;
  for (auto d : ishape) n *= d;
  if (n == 0) return a;
  return scatter_impl("put_along_axis", Reduce::None, a, idx, reshape(v, ushape, s), axes, s);
}

array scatter(const array& a, const std::vector<array>& indices, const array& updates,
              const std::vector<int>& axes, S s) {
  return scatter_impl("scatter", Reduce::None, a, indices, updates, axes, s);
}
array scatter_add(const array& a, const std::vector<array>& indices, const array& updates,
                  const std::vector<int>& axes, S s) {
  return scatter_impl("scatter_add", Reduce::Sum, a, indices, updates, axes, s);
}
array scatter_prod(const array& a, const std::vector<array>& indices, const array& updates,
                   const std::vector<int>& axes, S s) {
  return scatter_impl("scatter_prod", Reduce::Prod, a, indices, updates, axes, s);
}
array scatter_max(const array& a, const std::vector<array>& indices, const array& updates,
                  const std::vector<int>& axes, S s) {
  return scatter_impl("scatter_max", Reduce::Max, a, indices, updates, axes, s);
}
array scatter_min(const array& a, const std::vector<array>& indices, const array& updates,
                  const std::vector<int>& axes, S s) {
  return scatter_impl("scatter_min", Reduce::Min, a, indices, updates, axes, s);
}

// Single-index forms (MLX has these overloads too).
array scatter(const array& a, const array& indices, const array& updates, int axis, S s) {
  return scatter(a, std::vector<array>{indices}, updates, std::vector<int>{axis}, s);
}
array scatter_add(const array& a, const array& indices, const array& updates, int axis, S s) {
  return scatter_add(a, std::vector<array>{indices}, updates, std::vector<int>{axis}, s);
}
array scatter_prod(const array& a, const array& indices, const array& updates, int axis, S s) {
  return scatter_prod(a, std::vector<array>{indices}, updates, std::vector<int>{axis}, s);
}
array scatter_max(const array& a, const array& indices, const array& updates, int axis, S s) {
  return scatter_max(a, std::vector<array>{indices}, updates, std::vector<int>{axis}, s);
}
array scatter_min(const array& a, const array& indices, const array& updates, int axis, S s) {
  return scatter_min(a, std::vector<array>{indices}, updates, std::vector<int>{axis}, s);
}

}  // namespace mx
