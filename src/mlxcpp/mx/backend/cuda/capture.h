// Between device.cpp and graph.cu: what the device does differently on a thread that records
// a CUDA graph.
#pragma once

#include <vector>

#include "mlxcpp/mx/array.h"

namespace mx::cuda {

// Set on the thread that records a CUDA graph (graph.cu) while it records: every array the
// kernels keep alive for themselves (keep_until_done) is also added to `kept`, since the graph
// addresses their buffers on every replay; and blocks allocated there live on the device
// whatever their size, since the graph's kernels, not the host, read and write them.
// `recording` is false for a sink set only to place blocks as a recording will (the
// evaluation before it): blocks are then also prefetched to the device as usual.
struct CaptureSink {
  std::vector<array> kept;
  bool recording = false;
};
void set_capture_sink(CaptureSink* sink);
// False once the process is tearing the CUDA runtime down (no CUDA calls then).
bool runtime_alive();

}  // namespace mx::cuda
