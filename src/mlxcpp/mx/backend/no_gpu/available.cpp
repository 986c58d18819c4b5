// Built when the CUDA backend is not: no GPU device exists, so nothing is ever
// launched, retained or waited for.
#include "mlxcpp/mx/backend/gpu.h"

namespace mx::gpu {
bool is_available() { return false; }
void activate() {}
void shutdown() {}
const RawAllocator* raw_allocator() { return nullptr; }
std::vector<array> device_accessible(const std::vector<array>& inputs) { return inputs; }
void retain(const Stream&, std::vector<array>) {}
void synchronize(const Stream&) {}
std::function<void()> fence(const Stream&) { return {}; }
}  // namespace mx::gpu
