// Where an array's data lives, for checks and benchmarks of the GPU path.
#pragma once

#include "mlxcpp/mx/array.h"

namespace mx {

// Whether the evaluated array's data is in GPU memory: device memory, or
// unified memory placed on the device (prefetched there, or preferring it).
// False for host memory (mmap'd files too) and in a build without a GPU.
bool in_device_memory(const array& a);

}  // namespace mx
