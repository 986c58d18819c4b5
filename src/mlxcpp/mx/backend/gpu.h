// What the core asks of a GPU backend. The functions are defined by the
// backend's own files (backend/cuda/) or, in a build without one, by
// backend/no_gpu/, so the core links against exactly one of them and never
// names a kernel.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/device.h"

namespace mx::gpu {

// Whether the backend was built and a device is present (checked once).
bool is_available();

// Called when a gpu stream is first made or the gpu becomes the default
// device: from then on the buffer cache allocates unified memory. Until then
// the process has touched no CUDA context, so CPU-only work pays nothing for
// the backend.
void activate();

// The raw allocation behind the buffer cache: memory the host and the device
// can both address (unified memory), once activate() has run. nullptr means
// the system allocator.
struct RawAllocator {
  void* (*alloc)(size_t bytes);  // nullptr when out of memory
  void (*free)(void* ptr);
};
const RawAllocator* raw_allocator();

// `inputs` with those the device cannot read (host memory allocated before
// activate(), a mmap'd file on a system without HMM) replaced by copies in
// unified memory.
std::vector<array> device_accessible(const std::vector<array>& inputs);

// Keeps arrays (and so their buffers) alive until the work launched so far on
// the stream has run: a buffer freed while a kernel still reads or writes it
// could otherwise be handed to a CPU kernel.
void retain(const Stream& s, std::vector<array> arrays);
// Called at exit once queued GPU work has finished: later releases of
// buffers and events make no CUDA calls (the runtime is being torn down).
void shutdown();

// Blocks until all work launched on the stream has finished.
void synchronize(const Stream& s);
// Marks the work launched so far on the stream; calling the result (from any
// thread, any number of times) blocks until that work has finished.
std::function<void()> fence(const Stream& s);

}  // namespace mx::gpu
