// Helpers for kernels that walk strided arrays: collapsing dims that are
// contiguous in every operand, and allocating outputs.
#pragma once

#include <utility>
#include <vector>

#include "mlxcpp/mx/array.h"

namespace mx::cpu {

// Merges adjacent dims that are contiguous in all of `strides` (and drops
// size-1 dims). Returns the collapsed shape and the collapsed strides of each.
std::pair<Shape, std::vector<Strides>> collapse_contiguous_dims(
    const Shape& shape, const std::vector<Strides>& strides);

// Offset (in elements) of the flat row-major index `i` under `strides`.
inline int64_t elem_to_loc(int64_t i, const Shape& shape, const Strides& strides) {
  int64_t loc = 0;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0 && i > 0; --d) {
    loc += (i % shape[d]) * strides[d];
    i /= shape[d];
  }
  return loc;
}

// Walks a row-major index over `shape` keeping the offsets of several strided
// operands up to date; step() is O(1) amortised.
class StridedCursor {
 public:
  StridedCursor(const Shape& shape, const std::vector<const Strides*>& strides, int64_t start);
  int64_t offset(int k) const { return offsets_[k]; }
  void step();

 private:
  const Shape& shape_;
  std::vector<const Strides*> strides_;
  std::vector<int32_t> index_;
  std::vector<int64_t> offsets_;
};

// Allocates a row-contiguous buffer for `out`.
void allocate_row_contiguous(array& out);
// Gives `out` the same layout as the contiguous input `in` (maybe permuted),
// reusing in's buffer when it can be donated and the dtypes match in size.
void allocate_like(const array& in, array& out);

// A row-contiguous copy of `a` (or `a` itself when it already is).
array ensure_row_contiguous(const array& a);
// Copies `src` (any layout, any dtype) into `dst`'s existing buffer and layout,
// converting the element type.
void copy_into(const array& src, array& dst);

}  // namespace mx::cpu
