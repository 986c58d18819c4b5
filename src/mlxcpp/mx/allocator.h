// The buffer allocator: a size-bucketed cache of freed buffers in front of the
// system allocator, with MLX's memory functions. Buffers are host-addressable
// ("unified memory"); a CUDA build swaps the raw allocation behind this API.
#pragma once

#include <cstddef>

namespace mx {
namespace allocator {

class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(void* ptr) : ptr_(ptr) {}
  void* raw_ptr() const { return ptr_; }
  void* ptr() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
};

// Allocates at least `size` bytes, aligned to 64 bytes. Throws std::bad_alloc
// (with a message naming the size) when the memory limit cannot be met.
Buffer malloc(size_t size);
void free(Buffer buffer);
// Size that was requested for the buffer.
size_t allocation_size(Buffer buffer);

}  // namespace allocator

// Bytes in live buffers (not counting the cache).
size_t get_active_memory();
size_t get_peak_memory();
void reset_peak_memory();
// Bytes held in the cache of freed buffers.
size_t get_cache_memory();
// Bounds the active memory; when exceeded the cache is cleared first, then the
// allocation throws. Returns the previous limit.
size_t set_memory_limit(size_t limit);
size_t get_memory_limit();
// Bounds the cache; returns the previous limit.
size_t set_cache_limit(size_t limit);
void clear_cache();

}  // namespace mx
