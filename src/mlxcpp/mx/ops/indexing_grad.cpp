// Derivatives and batching rules of Gather and Scatter. Indices are integer
// data: their derivatives are zeros.
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/indexing.h"

namespace mx {

namespace {

using Reduce = Scatter::ReduceType;

array scatter_by(Reduce r, const array& a, const std::vector<array>& idx, const array& upd,
                 const std::vector<int>& axes, const Stream& s) {
  switch (r) {
    case Reduce::Sum:
      return scatter_add(a, idx, upd, axes, s);
    case Reduce::Prod:
      return scatter_prod(a, idx, upd, axes, s);
    case Reduce::Max:
      return scatter_max(a, idx, upd, axes, s);
    case Reduce::Min:
      return scatter_min(a, idx, upd, axes, s);
    default:
      return scatter(a, idx, upd, axes, s);
  }
}

// The index arrays of a vmapped gather/scatter: batched ones get their batch
// axis in front, unbatched ones a leading 1, all with the same rank.
std::vector<array> batch_indices(const std::vector<array>& idx, const std::vector<int>& axes,
                                 const Stream& s) {
  int rank = 0;
  for (size_t k = 0; k < idx.size(); ++k) {
    rank = std::max(rank, static_cast<int>(idx[k].ndim()) - (axes[k] >= 0 ? 1 : 0));
  }
  std::vector<array> out;
  for (size_t k = 0; k < idx.size(); ++k) {
    array x = axes[k] >= 0 ? moveaxis(idx[k], axes[k], 0, s) : expand_dims(idx[k], 0, s);
    Shape shape = x.shape();
    shape.insert(shape.begin() + 1, rank - (static_cast<int>(shape.size()) - 1), 1);
    out.push_back(reshape(x, shape, s));
  }
  return out;
}

// arange(batch) shaped (batch, 1, ..., 1) with `rank` trailing ones.
array batch_arange(int batch, int rank, const Stream& s) {
  Shape shape(rank + 1, 1);
  shape[0] = batch;
  return reshape(arange(0, batch, s), shape, s);
}

// For scatter_prod: for every update element, the product of the other
// updates that land on the same position. Computed from the product of the
// non-zero updates and the number of zeros, so that it stays exact (no 0/0)
// when some updates are zero.
array product_of_others(const array& a, const std::vector<array>& idx, const array& updates,
                        const std::vector<int>& axes, const Shape& window, const Stream& s) {
  array zero = zeros_like(updates, s);
  array one = ones_like(updates, s);
  array is0 = equal(updates, zero, s);
  array nonzero = where(is0, one, updates, s);
  array nz_prod =
      gather(scatter_prod(ones_like(a, s), idx, nonzero, axes, s), idx, axes, window, s);
  array zeros_at =
      gather(scatter_add(zeros(a.shape(), int32, s), idx, astype(is0, int32, s), axes, s), idx,
             axes, window, s);
  array if_zero = where(equal(zeros_at, array(1), s), nz_prod, zero, s);
  array if_nonzero = where(equal(zeros_at, array(0), s), divide(nz_prod, nonzero, s), zero, s);
  return where(is0, if_zero, if_nonzero, s);
}

}  // namespace

// ---------------------------------------------------------------- Gather

bool Gather::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const Gather*>(&other);
  return o && o->axes_ == axes_ && o->slice_sizes_ == slice_sizes_;
}

std::vector<Shape> Gather::output_shapes(const std::vector<array>& inputs) {
  Shape shape = inputs.size() > 1 ? inputs[1].shape() : Shape{};
  shape.insert(shape.end(), slice_sizes_.begin(), slice_sizes_.end());
  return {shape};
}

std::vector<array> Gather::jvp(const std::vector<array>& primals,
                               const std::vector<array>& tangents,
                               const std::vector<int>& argnums) {
  std::vector<array> idx(primals.begin() + 1, primals.end());
  for (size_t k = 0; k < argnums.size(); ++k) {
    if (argnums[k] == 0) return {gather(tangents[k], idx, axes_, slice_sizes_, stream())};
  }
  return {zeros(output_shapes(primals)[0], primals[0].dtype(), stream())};
}

std::vector<array> Gather::vjp(const std::vector<array>& primals,
                               const std::vector<array>& cotangents,
                               const std::vector<int>& argnums, const std::vector<array>&) {
  std::vector<array> idx(primals.begin() + 1, primals.end());
  std::vector<array> out;
  for (int i : argnums) {
    if (i == 0) {
      out.push_back(
          scatter_add(zeros_like(primals[0], stream()), idx, cotangents[0], axes_, stream()));
    } else {
      out.push_back(zeros_like(primals[i], stream()));
    }
  }
  return out;
}

std::pair<std::vector<array>, std::vector<int>> Gather::vmap(const std::vector<array>& inputs,
                                                             const std::vector<int>& axes) {
  const array& a = inputs[0];
  std::vector<array> idx(inputs.begin() + 1, inputs.end());
  std::vector<int> idx_axes(axes.begin() + 1, axes.end());
  bool idx_batched = false;
  for (int ax : idx_axes) idx_batched |= ax >= 0;
  if (!idx_batched) {
    if (axes[0] < 0) return {{gather(a, idx, axes_, slice_sizes_, stream())}, {-1}};
    // Only the data is batched: carry the batch axis inside the window.
    array x = moveaxis(a, axes[0], 0, stream());
    std::vector<int> new_axes;
    for (int ax : axes_) new_axes.push_back(ax + 1);
    Shape window = slice_sizes_;
    window.insert(window.begin(), x.shape(0));
    int r = idx.empty() ? 0 : static_cast<int>(idx[0].ndim());
    return {{gather(x, idx, new_axes, window, stream())}, {r}};
  }
  auto bidx = batch_indices(idx, idx_axes, stream());
  if (axes[0] < 0) return {{gather(a, bidx, axes_, slice_sizes_, stream())}, {0}};
  // Both batched: pair batch b of the indices with batch b of the data by
  // indexing the data's batch axis with arange(batch).
  array x = moveaxis(a, axes[0], 0, stream());
  int rank = static_cast<int>(bidx[0].ndim()) - 1;
  std::vector<array> all{batch_arange(x.shape(0), rank, stream())};
  all.insert(all.end(), bidx.begin(), bidx.end());
  std::vector<int> new_axes{0};
  for (int ax : axes_) new_axes.push_back(ax + 1);
  Shape window = slice_sizes_;
  window.insert(window.begin(), 1);
  array g = gather(x, all, new_axes, window, stream());
  Shape shape = g.shape();
  shape.erase(shape.begin() + rank + 1);
  return {{reshape(g, shape, stream())}, {0}};
}

// ---------------------------------------------------------------- Scatter

const char* Scatter::name() const {
  switch (reduce_) {
    case Reduce::Sum:
      return "ScatterAdd";
    case Reduce::Prod:
      return "ScatterProd";
    case Reduce::Max:
      return "ScatterMax";
    case Reduce::Min:
      return "ScatterMin";
    default:
      return "Scatter";
  }
}

bool Scatter::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const Scatter*>(&other);
  return o && o->reduce_ == reduce_ && o->axes_ == axes_;
}

std::vector<array> Scatter::jvp(const std::vector<array>& primals,
                                const std::vector<array>& tangents,
                                const std::vector<int>& argnums) {
  const Stream& s = stream();
  size_t last = primals.size() - 1;
  const array& a = primals[0];
  const array& updates = primals[last];
  array ta = zeros_like(a, s);
  array tu = zeros_like(updates, s);
  for (size_t k = 0; k < argnums.size(); ++k) {
    if (argnums[k] == 0) ta = tangents[k];
    if (static_cast<size_t>(argnums[k]) == last) tu = tangents[k];
  }
  std::vector<array> idx(primals.begin() + 1, primals.end() - 1);
  Shape window(updates.shape().end() - a.ndim(), updates.shape().end());
  switch (reduce_) {
    case Reduce::None:
    case Reduce::Sum:
      return {scatter_by(reduce_, ta, idx, tu, axes_, s)};
    case Reduce::Prod: {
      // d(a * prod u) = da * prod u + sum_k a * (prod_{j != k} u_j) du_k
      array prod_u = scatter_prod(ones_like(a, s), idx, updates, axes_, s);
      array per_update = multiply(multiply(tu, gather(a, idx, axes_, window, s), s),
                                  product_of_others(a, idx, updates, axes_, window, s), s);
      return {add(multiply(ta, prod_u, s), scatter_add(zeros_like(a, s), idx, per_update, axes_, s),
                  s)};
    }
    default: {
      // The tangent of whichever value won each position (ties add up).
      array out = scatter_by(reduce_, a, idx, updates, axes_, s);
      array from_a = where(equal(out, a, s), ta, zeros_like(ta, s), s);
      array won = equal(gather(out, idx, axes_, window, s), updates, s);
      array from_u = where(won, tu, zeros_like(tu, s), s);
      return {add(from_a, scatter_add(zeros_like(a, s), idx, from_u, axes_, s), s)};
    }
  }
}

std::vector<array> Scatter::vjp(const std::vector<array>& primals,
                                const std::vector<array>& cotangents,
                                const std::vector<int>& argnums,
                                const std::vector<array>& outputs) {
  const array& a = primals[0];
  const array& cot = cotangents[0];
  size_t last = primals.size() - 1;
  const array& updates = primals[last];
  std::vector<array> idx(primals.begin() + 1, primals.end() - 1);
  Shape window(updates.shape().end() - a.ndim(), updates.shape().end());
  auto zero = [&](const array& like) { return zeros_like(like, stream()); };
  std::vector<array> out;
  for (int i : argnums) {
    if (i == 0) {
      switch (reduce_) {
        case Reduce::None:
          // Overwritten positions do not reach the output.
          out.push_back(scatter(cot, idx, zero(updates), axes_, stream()));
          break;
        case Reduce::Sum:
          out.push_back(cot);
          break;
        case Reduce::Prod:
          out.push_back(multiply(
              cot, scatter_prod(ones_like(a, stream()), idx, updates, axes_, stream()), stream()));
          break;
        default:
          out.push_back(where(equal(outputs[0], a, stream()), cot, zero(cot), stream()));
          break;
      }
    } else if (static_cast<size_t>(i) == last) {
      if (reduce_ == Reduce::Prod) {
        array ca = gather(multiply(cot, a, stream()), idx, axes_, window, stream());
        out.push_back(
            multiply(ca, product_of_others(a, idx, updates, axes_, window, stream()), stream()));
        continue;
      }
      array g = gather(cot, idx, axes_, window, stream());
      if (reduce_ == Reduce::None) {
        // With duplicate positions only the last write reaches the output
        // (MLX gives every duplicate the gradient). Find the winner of each
        // position by scattering the tuple numbers themselves.
        Shape ishape(updates.shape().begin(), updates.shape().end() - a.ndim());
        int n = 1;
        for (auto d : ishape) n *= d;
        Shape tshape = ishape;
        tshape.insert(tshape.end(), a.ndim(), 1);
        array tuple = broadcast_to(reshape(arange(0, n, stream()), tshape, stream()),
                                   updates.shape(), stream());
        array owner =
            scatter(full(a.shape(), array(-1), int32, stream()), idx, tuple, axes_, stream());
        array won = equal(gather(owner, idx, axes_, window, stream()), tuple, stream());
        g = where(won, g, zero(g), stream());
      } else if (reduce_ == Reduce::Max || reduce_ == Reduce::Min) {
        // Only updates that are the extreme value receive the gradient.
        array hit = equal(gather(outputs[0], idx, axes_, window, stream()), updates, stream());
        g = where(hit, g, zero(g), stream());
      }
      out.push_back(g);
    } else {
      out.push_back(zero(primals[i]));
    }
  }
  return out;
}

std::pair<std::vector<array>, std::vector<int>> Scatter::vmap(const std::vector<array>& inputs,
                                                              const std::vector<int>& axes) {
  size_t last = inputs.size() - 1;
  std::vector<array> idx(inputs.begin() + 1, inputs.end() - 1);
  std::vector<int> idx_axes(axes.begin() + 1, axes.end() - 1);
  int batch = -1;
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (axes[k] >= 0) batch = inputs[k].shape(axes[k]);
  }
  if (batch < 0)
    return {{scatter_by(reduce_, inputs[0], idx, inputs[last], axes_, stream())}, {-1}};
  // Every batch element scatters into its own copy: index the data's batch
  // axis with arange(batch) and make the updates' window 1 there.
  array a = axes[0] >= 0 ? moveaxis(inputs[0], axes[0], 0, stream())
                         : broadcast_to(
                               expand_dims(inputs[0], 0, stream()),
                               [&] {
                                 Shape sh = inputs[0].shape();
                                 sh.insert(sh.begin(), batch);
                                 return sh;
                               }(),
                               stream());
  auto bidx = batch_indices(idx, idx_axes, stream());
  int rank = bidx.empty() ? 0 : static_cast<int>(bidx[0].ndim()) - 1;
  std::vector<array> all{batch_arange(batch, rank, stream())};
  all.insert(all.end(), bidx.begin(), bidx.end());
  std::vector<int> new_axes{0};
  for (int ax : axes_) new_axes.push_back(ax + 1);
  array u = axes[last] >= 0 ? moveaxis(inputs[last], axes[last], 0, stream())
                            : expand_dims(inputs[last], 0, stream());
  Shape ushape = u.shape();
  ushape.insert(ushape.begin() + 1 + rank, 1);
  u = reshape(u, ushape, stream());
  return {{scatter_by(reduce_, a, all, u, new_axes, stream())}, {0}};
}

}  // namespace mx
