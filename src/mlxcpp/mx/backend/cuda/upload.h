// Device copies of small host-made arrays (device.cpp): a scalar, mask or offsets array made
// from host values lives in host memory (placement 1, gpu.h), which every thread of a kernel
// that reads it reaches over the bus. gpu::device_accessible gives kernels such copies of
// their non-integer inputs; a kernel that wants one of an integer input asks here.
#pragma once

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/device.h"

namespace mx::cuda {

// `a` itself, or when it is small, host-made (cuda::host_made) and lives on the host, a copy
// in device memory made on `s` (once while `a` lives: later calls reuse it), marked as
// computed on the device. Kernels on `s` read it in stream order; the host never should.
array device_copy(const array& a, const Stream& s);

// Copies `bytes` bytes from `src` to `dst`, both addressable by the device (unified memory), with
// a kernel queued on `s`: the host call returns at once, where the copy engine's call for
// unified memory may wait for the stream. The source must stay as it is until the copy has run.
void copy_bytes(void* dst, const void* src, size_t bytes, const Stream& s);

}  // namespace mx::cuda
