// Shared by the gather and scatter kernels: turning index arrays into element
// offsets, checked against the indexed array's shape.
#pragma once

#include <vector>

#include "mlxcpp/mx/array.h"

namespace mx::cpu {

// For each position of the (common, broadcast) shape of `indices`, the offset
// in elements of the window start in an array of `shape` laid out with
// `strides`: sum_k idx_k * strides[axes[k]]. Negative indices count from the
// end; an index whose window of `window[axis]` elements leaves the axis throws
// std::invalid_argument starting with "[op]" and naming the index, axis and shape.
// With no index arrays there is one offset, 0.
std::vector<int64_t> index_offsets(const char* op, const std::vector<array>& indices,
                                   const std::vector<int>& axes, const Shape& shape,
                                   const Shape& window, const Strides& strides);

}  // namespace mx::cpu
