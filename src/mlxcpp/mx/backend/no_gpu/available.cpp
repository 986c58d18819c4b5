// Built when the CUDA backend is not: no GPU device exists, so nothing is ever
// launched, retained or waited for, and every freed buffer is free at once.
#include <stdexcept>

#include "mlxcpp/mx/backend/gpu.h"
#include "mlxcpp/mx/device_memory.h"

namespace mx::gpu {
bool is_available() { return false; }
void activate() {}
void shutdown() {}
const RawAllocator* raw_allocator() { return nullptr; }
const std::vector<array>& device_accessible(const std::vector<array>& inputs, std::vector<array>&,
                                            const Stream&, bool) {
  return inputs;
}
void retain(const Stream&, std::vector<array>) {}
void synchronize(const Stream&) {}
std::function<void()> fence(const Stream&) { return {}; }
LaunchScope::LaunchScope(const Stream&) : previous_(-1), previous_state_(nullptr) {}
LaunchScope::~LaunchScope() = default;
FreeTicket free_ticket() { return {}; }
bool reusable(const FreeTicket&) { return true; }
void poll() {}
void wait_for_all() {}
std::vector<array> to_device_memory(const std::vector<array>& arrays, const Stream&) {
  return arrays;
}
bool device_profiling() { return false; }
DeviceTimer::DeviceTimer(const Stream&, std::string, double)
    : stream_(nullptr), flops_(0), start_(nullptr) {}
DeviceTimer::~DeviceTimer() = default;
double copy_bandwidth_gbs(size_t, int) {
  throw std::invalid_argument("[copy_bandwidth] this build has no GPU backend");
}
}  // namespace mx::gpu

namespace mx {
bool in_device_memory(const array&) { return false; }
}  // namespace mx
