#include "mlxcpp/mx/allocator.h"

#include <unistd.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace mx {
namespace {

// Each block carries a 64-byte header in front of the user pointer holding
// the rounded size, so free() and allocation_size() need no lookup table.
constexpr size_t kHeader = 64;
constexpr size_t kAlign = 64;

size_t round_size(size_t n) {
  if (n <= 4096) return (n + 63) & ~size_t{63};
  if (n <= (size_t{1} << 20)) return (n + 4095) & ~size_t{4095};
  // Larger blocks: round to 1/8 of the next power of two so that similar
  // sizes share a bucket without wasting more than ~12%.
  size_t p = 1;
  while (p < n) p <<= 1;
  size_t step = p / 8;
  return (n + step - 1) / step * step;
}

size_t physical_memory() {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return size_t{1} << 34;
  return static_cast<size_t>(pages) * static_cast<size_t>(page);
}

class BufferCache {
 public:
  BufferCache() : memory_limit_(physical_memory()), cache_limit_(memory_limit_) {}

  void* malloc(size_t size) {
    size_t rounded = round_size(size == 0 ? 1 : size);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (active_ + rounded > memory_limit_) {
        throw std::runtime_error("[malloc] allocating " + std::to_string(size) +
                                 " bytes would exceed the memory limit of " +
                                 std::to_string(memory_limit_) + " bytes (" +
                                 std::to_string(active_) + " active)");
      }
      auto it = free_.find(rounded);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cache_bytes_ -= rounded;
        note_active(rounded);
        return p;
      }
      // Make room for a fresh block by returning cached ones first.
      if (active_ + cache_bytes_ + rounded > memory_limit_) release_cached(cache_bytes_);
    }
    void* base = nullptr;
    if (posix_memalign(&base, kAlign, rounded + kHeader) != 0) {
      {
        std::lock_guard<std::mutex> lk(mu_);
        release_cached(cache_bytes_);
      }
      if (posix_memalign(&base, kAlign, rounded + kHeader) != 0) {
        throw std::runtime_error("[malloc] out of memory allocating " + std::to_string(size) +
                                 " bytes");
      }
    }
    *static_cast<size_t*>(base) = rounded;
    std::lock_guard<std::mutex> lk(mu_);
    note_active(rounded);
    return static_cast<char*>(base) + kHeader;
  }

  void free(void* p) {
    if (!p) return;
    size_t rounded = block_size(p);
    std::lock_guard<std::mutex> lk(mu_);
    active_ -= rounded;
    if (cache_limit_ == 0) {
      std::free(static_cast<char*>(p) - kHeader);
      return;
    }
    free_[rounded].push_back(p);
    cache_bytes_ += rounded;
    if (cache_bytes_ > cache_limit_) release_cached(cache_bytes_ - cache_limit_);
  }

  static size_t block_size(void* p) {
    return *reinterpret_cast<size_t*>(static_cast<char*>(p) - kHeader);
  }

  size_t active() {
    std::lock_guard<std::mutex> lk(mu_);
    return active_;
  }
  size_t peak() {
    std::lock_guard<std::mutex> lk(mu_);
    return peak_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lk(mu_);
    peak_ = active_;
  }
  size_t cache() {
    std::lock_guard<std::mutex> lk(mu_);
    return cache_bytes_;
  }
  size_t set_memory_limit(size_t l) {
    std::lock_guard<std::mutex> lk(mu_);
    std::swap(l, memory_limit_);
    return l;
  }
  size_t memory_limit() {
    std::lock_guard<std::mutex> lk(mu_);
    return memory_limit_;
  }
  size_t set_cache_limit(size_t l) {
    std::lock_guard<std::mutex> lk(mu_);
    std::swap(l, cache_limit_);
    if (cache_bytes_ > cache_limit_) release_cached(cache_bytes_ - cache_limit_);
    return l;
  }
  void clear() {
    std::lock_guard<std::mutex> lk(mu_);
    release_cached(cache_bytes_);
  }

 private:
  void note_active(size_t n) {
    active_ += n;
    if (active_ > peak_) peak_ = active_;
  }
  // Frees at least `bytes` of cached blocks, largest first.
  void release_cached(size_t bytes) {
    size_t released = 0;
    for (auto it = free_.rbegin(); it != free_.rend() && released < bytes; ++it) {
      auto& v = it->second;
      while (!v.empty() && released < bytes) {
        std::free(static_cast<char*>(v.back()) - kHeader);
        v.pop_back();
        released += it->first;
      }
    }
    cache_bytes_ -= released;
  }

  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  size_t active_ = 0;
  size_t peak_ = 0;
  size_t cache_bytes_ = 0;
  size_t memory_limit_;
  size_t cache_limit_;
};

BufferCache& cache() {
  // Leaked on purpose: buffers may be freed by static destructors after main.
  static BufferCache* c = new BufferCache();
  return *c;
}

}  // namespace

namespace allocator {
Buffer malloc(size_t size) { return Buffer(cache().malloc(size)); }
void free(Buffer buffer) { cache().free(buffer.ptr()); }
size_t allocation_size(Buffer buffer) {
  return buffer.ptr() ? BufferCache::block_size(buffer.ptr()) : 0;
}
}  // namespace allocator

size_t get_active_memory() { return cache().active(); }
size_t get_peak_memory() { return cache().peak(); }
void reset_peak_memory() { cache().reset_peak(); }
size_t get_cache_memory() { return cache().cache(); }
size_t set_memory_limit(size_t limit) { return cache().set_memory_limit(limit); }
size_t get_memory_limit() { return cache().memory_limit(); }
size_t set_cache_limit(size_t limit) { return cache().set_cache_limit(limit); }
void clear_cache() { cache().clear(); }

}  // namespace mx
