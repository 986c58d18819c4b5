// Shared by the gather and scatter kernels.
#pragma once

#include <vector>

#include "mlxcpp/mx/array.h"

namespace mx::cuda {

// Throws std::invalid_argument as the CPU kernels do (cpu::index_offsets:
// "[op] index 3 is out of bounds for axis 1 with size 3 ...") when an index
// window leaves the array. Only indices the host can already read (available
// arrays) are checked: waiting for the device to compute them would cost a
// synchronization, so indices made on the device are clamped (gather) or
// skipped (scatter) by the kernels instead.
void check_indices(const char* op, const std::vector<array>& indices, const std::vector<int>& axes,
                   const Shape& shape, const Shape& window, const Strides& strides);

}  // namespace mx::cuda
