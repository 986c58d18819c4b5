// Shared by the gather and scatter kernels.
#pragma once

#include <vector>

#include "mlxcpp/mx/array.h"

namespace mx::cuda {

// Whether `a` holds data made on the host (built from values, never the
// output of a primitive), which the host can read at once.
bool host_made(const array& a);

// Throws std::invalid_argument as the CPU kernels do (cpu::index_offsets:
// "[op] index 3 is out of bounds for axis 1 with size 3 ...") when an index
// window leaves the array. Only host-made indices are checked: reading
// indices that a primitive computed would mean waiting for the device, so
// those are clamped (gather) or skipped (scatter) by the kernels instead.
void check_indices(const char* op, const std::vector<array>& indices, const std::vector<int>& axes,
                   const Shape& shape, const Shape& window, const Strides& strides);

}  // namespace mx::cuda
