// sort, argsort, partition, argpartition and topk, with the rules of their
// primitives. Indices are uint32 (MLX); NaNs sort last (NumPy).
#include <functional>
#include <sstream>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/sort.h"

namespace mx {

namespace {

int sort_axis(const array& a, int axis, const char* op) {
  if (a.ndim() == 0) {
    throw std::invalid_argument(std::string("[") + op +
                                "] needs an array with at least 1 dimension (axis " +
                                std::to_string(axis) + " given for a 0-d array)");
  }
  return normalize_axis(axis, static_cast<int>(a.ndim()), op);
}

int kth_index(const array& a, int kth, int ax, const char* op) {
  int n = a.shape(ax);
  int k = kth < 0 ? kth + n : kth;
  if (k < 0 || k >= n) {
    throw std::invalid_argument(std::string("[") + op + "] kth " + std::to_string(kth) +
                                " is out of range for axis " + std::to_string(ax) + " of size " +
                                std::to_string(n) + " in shape " + shape_str(a.shape()));
  }
  return k;
}

}  // namespace

array sort(const array& a, int axis, S s) {
  int ax = sort_axis(a, axis, "sort");
  return array(a.shape(), a.dtype(), std::make_shared<Sort>(to_stream(s), ax), {a});
}
array sort(const array& a, S s) { return sort(flatten(a, s), 0, s); }

array argsort(const array& a, int axis, S s) {
  int ax = sort_axis(a, axis, "argsort");
  return array(a.shape(), uint32, std::make_shared<ArgSort>(to_stream(s), ax), {a});
}
array argsort(const array& a, S s) { return argsort(flatten(a, s), 0, s); }

array partition(const array& a, int kth, int axis, S s) {
  int ax = sort_axis(a, axis, "partition");
  int k = kth_index(a, kth, ax, "partition");
  return array(a.shape(), a.dtype(), std::make_shared<Partition>(to_stream(s), k, ax), {a});
}
array partition(const array& a, int kth, S s) { return partition(flatten(a, s), kth, 0, s); }

array argpartition(const array& a, int kth, int axis, S s) {
  int ax = sort_axis(a, axis, "argpartition");
  int k = kth_index(a, kth, ax, "argpartition");
  return array(a.shape(), uint32, std::make_shared<ArgPartition>(to_stream(s), k, ax), {a});
}
array argpartition(const array& a, int kth, S s) { return argpartition(flatten(a, s), kth, 0, s); }

// The k largest along axis, in no particular order (a partition's tail).
array topk(const array& a, int k, int axis, S s) {
  int ax = sort_axis(a, axis, "topk");
  int n = a.shape(ax);
  if (k < 0 || k > n) {
    throw std::invalid_argument("[topk] k " + std::to_string(k) + " is out of range for axis " +
                                std::to_string(axis) + " of size " + std::to_string(n) +
                                " in shape " + shape_str(a.shape()));
  }
  if (k == n) return a;
  Shape start(a.ndim(), 0), stop = a.shape();
  start[ax] = n - k;
  array p = k == 0 ? a : partition(a, -k, ax, s);
  return slice(p, start, stop, s);
}
array topk(const array& a, int k, S s) { return topk(flatten(a, s), k, 0, s); }

// ---------------------------------------------------------------- primitive rules

namespace {
// The inverse of the permutation `p` along `axis`.
array inverse_permutation(const array& p, int axis, const Stream& s) { return argsort(p, axis, s); }

std::pair<std::vector<array>, std::vector<int>> batch_first(
    const std::vector<array>& inputs, const std::vector<int>& axes, const Stream& s,
    const std::function<array(const array&)>& op) {
  array x = moveaxis(inputs[0], axes[0], 0, s);
  return {{op(x)}, {0}};
}
}  // namespace

bool Sort::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const Sort*>(&o);
  return p && p->axis_ == axis_;
}
std::vector<array> Sort::jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                             const std::vector<int>&) {
  return {take_along_axis(tangents[0], argsort(primals[0], axis_, stream()), axis_, stream())};
}
std::vector<array> Sort::vjp(const std::vector<array>& primals, const std::vector<array>& cot,
                             const std::vector<int>&, const std::vector<array>&) {
  array p = argsort(primals[0], axis_, stream());
  return {take_along_axis(cot[0], inverse_permutation(p, axis_, stream()), axis_, stream())};
}
std::pair<std::vector<array>, std::vector<int>> Sort::vmap(const std::vector<array>& inputs,
                                                           const std::vector<int>& axes) {
  return batch_first(inputs, axes, stream(),
                     [&](const array& x) { return sort(x, axis_ + 1, stream()); });
}

bool ArgSort::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const ArgSort*>(&o);
  return p && p->axis_ == axis_;
}
// Indices are piecewise constant in the input: zero derivative.
std::vector<array> ArgSort::jvp(const std::vector<array>& primals, const std::vector<array>&,
                                const std::vector<int>&) {
  return {zeros(primals[0].shape(), uint32, stream())};
}
std::vector<array> ArgSort::vjp(const std::vector<array>& primals, const std::vector<array>&,
                                const std::vector<int>&, const std::vector<array>&) {
  return {zeros_like(primals[0], stream())};
}
std::pair<std::vector<array>, std::vector<int>> ArgSort::vmap(const std::vector<array>& inputs,
                                                              const std::vector<int>& axes) {
  return batch_first(inputs, axes, stream(),
                     [&](const array& x) { return argsort(x, axis_ + 1, stream()); });
}

bool Partition::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const Partition*>(&o);
  return p && p->kth_ == kth_ && p->axis_ == axis_;
}
std::vector<array> Partition::jvp(const std::vector<array>& primals,
                                  const std::vector<array>& tangents, const std::vector<int>&) {
  array p = argpartition(primals[0], kth_, axis_, stream());
  return {take_along_axis(tangents[0], p, axis_, stream())};
}
std::vector<array> Partition::vjp(const std::vector<array>& primals, const std::vector<array>& cot,
                                  const std::vector<int>&, const std::vector<array>&) {
  array p = argpartition(primals[0], kth_, axis_, stream());
  return {take_along_axis(cot[0], inverse_permutation(p, axis_, stream()), axis_, stream())};
}
std::pair<std::vector<array>, std::vector<int>> Partition::vmap(const std::vector<array>& inputs,
                                                                const std::vector<int>& axes) {
  return batch_first(inputs, axes, stream(),
                     [&](const array& x) { return partition(x, kth_, axis_ + 1, stream()); });
}

bool ArgPartition::is_equivalent(const Primitive& o) const {
  auto* p = dynamic_cast<const ArgPartition*>(&o);
  return p && p->kth_ == kth_ && p->axis_ == axis_;
}
std::vector<array> ArgPartition::jvp(const std::vector<array>& primals, const std::vector<array>&,
                                     const std::vector<int>&) {
  return {zeros(primals[0].shape(), uint32, stream())};
}
std::vector<array> ArgPartition::vjp(const std::vector<array>& primals, const std::vector<array>&,
                                     const std::vector<int>&, const std::vector<array>&) {
  return {zeros_like(primals[0], stream())};
}
std::pair<std::vector<array>, std::vector<int>> ArgPartition::vmap(const std::vector<array>& inputs,
                                                                   const std::vector<int>& axes) {
  return batch_first(inputs, axes, stream(),
                     [&](const array& x) { return argpartition(x, kth_, axis_ + 1, stream()); });
}

}  // namespace mx
