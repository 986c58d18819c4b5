// What the core asks of a GPU backend. The functions are defined by the
// backend's own files (backend/cuda/) or, in a build without one, by
// backend/no_gpu/, so the core links against exactly one of them and never
// names a kernel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
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
// the system allocator. Blocks have a placement, chosen by `placement` from
// the size and the calling thread and kept for the block's life (the cache
// pools each placement apart): 0 lives on the device; 1 lives on the host and
// is mapped for the device, for small blocks the host writes or reads (scalars
// made from host values, a sampled token id), which would otherwise migrate
// page by page on every access and stall kernels on device page faults.
struct RawAllocator {
  int (*placement)(size_t bytes);
  void* (*alloc)(size_t bytes, int placement);  // nullptr when out of memory
  void (*free)(void* ptr);
};
const RawAllocator* raw_allocator();

// The inputs a kernel launched on stream `s` should read: `inputs` itself when the device
// reads them all well, else `scratch` holding them with some replaced: those it cannot read
// (host memory allocated before activate(), a mmap'd file on a system without HMM) by copies
// in unified memory, and, with `uploads`, small non-integer host-made blocks that live on the
// host (placement 1: scalars, masks made from host values) by device copies made on `s`,
// reused while the original lives. Blocks of the buffer cache are known without a driver
// query (one per input otherwise, on a device without pageable memory access).
const std::vector<array>& device_accessible(const std::vector<array>& inputs,
                                            std::vector<array>& scratch, const Stream& s,
                                            bool uploads = true);

// Keeps arrays (and so their buffers) alive until the work launched so far on
// the stream has run: a buffer freed while a kernel still reads or writes it
// could otherwise be handed to a CPU kernel.
void retain(const Stream& s, std::vector<array> arrays);
// Called at exit once queued GPU work has finished: later releases of
// buffers and events make no CUDA calls (the runtime is being torn down).
void shutdown();

// Set on a thread while it launches (and releases the inputs of) one node's
// kernels on a gpu stream: buffers it allocates are written in that stream's
// order, buffers it frees were last used there.
class LaunchScope {
 public:
  explicit LaunchScope(const Stream& s);
  ~LaunchScope();
  LaunchScope(const LaunchScope&) = delete;
  LaunchScope& operator=(const LaunchScope&) = delete;

 private:
  int previous_;
  void* previous_state_;
};

// What a freed unified-memory buffer waits for before it can be handed out
// again: kernels launched before the free may still read or write it. A
// kernel launched later on the stream that last used it is ordered after them
// by the stream itself, so that stream may reuse it at once; anyone else (the
// host, another stream) waits for the markers listed.
struct FreeTicket {
  using Wait = std::pair<const void*, uint64_t>;  // (stream state, marker)
  int stream = -1;  // the mx stream that may reuse the buffer at once, or -1
  // Every buffer a kernel frees takes a ticket: the waits of up to two gpu
  // streams are kept inline (no heap allocation), any further ones in `more`.
  Wait first[2] = {};
  int nfirst = 0;
  std::vector<Wait> more;
  void add(const void* state, uint64_t marker) {
    if (nfirst < 2) {
      first[nfirst++] = {state, marker};
    } else {
      more.emplace_back(state, marker);
    }
  }
};
FreeTicket free_ticket();
// Whether the calling thread (launching on a stream, or the host) may reuse a
// buffer freed with this ticket now.
bool reusable(const FreeTicket& t);
// Notes which markers have finished (cheap queries, no waiting).
void poll();
// Blocks until all device work has finished (before buffers are returned to
// the driver).
void wait_for_all();

// Copies of `arrays` in device-resident unified memory (prefetched to the GPU,
// advised as read-mostly and preferring the GPU), made with DMA copies on the
// stream and waited for; arrays already in unified or device memory, and
// views, are returned as they are. Host reads keep working.
std::vector<array> to_device_memory(const std::vector<array>& arrays, const Stream& s);
// Device-to-device copy bandwidth (bytes read + written per second, in GB/s),
// the best of `repeats` copies of `bytes`.
double copy_bandwidth_gbs(size_t bytes, int repeats);

// MLXCPP_GPU_PROFILE=1: the device time of each node's kernels, measured by a
// pair of CUDA events recorded on its stream around its launches, summed per
// key (primitive, output and input shapes) and printed to stderr at exit, with
// TFLOP/s where the caller gives the node's FLOPs. The time between the events
// includes any gap while the device waits for the host to launch the node's
// kernels: exact for device-bound work (prefill), an upper bound otherwise.
// Off (the default) nothing is recorded and the check is one cached branch.
bool device_profiling();
class DeviceTimer {
 public:
  DeviceTimer(const Stream& s, std::string key, double flops);
  ~DeviceTimer();  // records the stop event after the node's launches
  DeviceTimer(const DeviceTimer&) = delete;
  DeviceTimer& operator=(const DeviceTimer&) = delete;

 private:
  void* stream_;  // the cudaStream_t
  std::string key_;
  double flops_;
  void* start_;
};

// Blocks until all work launched on the stream has finished.
void synchronize(const Stream& s);
// Marks the work launched so far on the stream; calling the result (from any
// thread, any number of times) blocks until that work has finished.
std::function<void()> fence(const Stream& s);

}  // namespace mx::gpu
