#include "mlxcpp/mx/allocator.h"

#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "mlxcpp/mx/backend/gpu.h"

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

// Host blocks carry a 64-byte header in front of the user pointer holding the
// rounded size. Blocks from the GPU backend's allocator (unified memory, used
// once the process has started using the GPU) keep their sizes in a table
// instead: a header would share a page with data the device writes, and
// reading it on the host would migrate that page back. The two kinds are
// cached apart, so a host block is never handed out once the GPU is in use.
class BufferCache {
 public:
  BufferCache() : memory_limit_(physical_memory()), cache_limit_(memory_limit_) {}

  void* malloc(size_t size) {
    size_t rounded = round_size(size == 0 ? 1 : size);
    const gpu::RawAllocator* raw = gpu::raw_allocator();
    // Unified-memory blocks come in placements (gpu.h); each has its own pool.
    const int place = raw ? raw->placement(rounded) : 0;
    {
      std::lock_guard<std::mutex> lk(mu_);
      // Host blocks cached before the GPU came into use are not reused.
      if (raw && host_cache_bytes_ > 0) release_host_cached(host_cache_bytes_);
      if (active_ + rounded > memory_limit_) {
        throw std::runtime_error("[malloc] allocating " + std::to_string(size) +
                                 " bytes would exceed the memory limit of " +
                                 std::to_string(memory_limit_) + " bytes (" +
                                 std::to_string(active_) + " active)");
      }
      if (raw) {
        if (void* p = take_managed_locked(rounded, place)) {
          note_active(rounded);
          return p;
        }
      } else {
        auto it = free_.find(rounded);
        if (it != free_.end() && !it->second.empty()) {
          void* p = it->second.back();
          it->second.pop_back();
          cache_bytes_ -= rounded;
          host_cache_bytes_ -= rounded;
          note_active(rounded);
          return p;
        }
      }
      // Make room for a fresh block by returning cached ones first.
      if (active_ + cache_bytes_ + rounded > memory_limit_) release_all_cached();
    }
    void* p = raw_alloc(raw, rounded, place);
    if (!p) {
      {
        std::lock_guard<std::mutex> lk(mu_);
        release_all_cached();
      }
      p = raw_alloc(raw, rounded, place);
      if (!p) {
        throw std::runtime_error("[malloc] out of memory allocating " + std::to_string(size) +
                                 " bytes");
      }
    }
    std::lock_guard<std::mutex> lk(mu_);
    if (raw) managed_[p] = {rounded, raw, place};
    note_active(rounded);
    return p;
  }

  void free(void* p) {
    if (!p) return;
    std::lock_guard<std::mutex> lk(mu_);
    auto m = managed_.find(p);
    const bool managed = m != managed_.end();
    size_t rounded = managed ? m->second.size : block_size_locked(p);
    active_ -= rounded;
    if (cache_limit_ == 0) {
      raw_free(p);
      return;
    }
    if (managed) {
      // Kernels launched before this free may still use the block.
      managed_free_[pool_key(rounded, m->second.place)].push_back({p, gpu::free_ticket()});
    } else {
      free_[rounded].push_back(p);
      host_cache_bytes_ += rounded;
    }
    cache_bytes_ += rounded;
    if (cache_bytes_ > cache_limit_) release_some_cached(cache_bytes_ - cache_limit_);
  }

  size_t block_size(void* p) {
    std::lock_guard<std::mutex> lk(mu_);
    return block_size_locked(p);
  }
  int placement_of(const void* p) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = managed_.find(const_cast<void*>(p));
    return it == managed_.end() ? -1 : it->second.place;
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
    if (cache_bytes_ > cache_limit_) release_some_cached(cache_bytes_ - cache_limit_);
    return l;
  }
  void clear() {
    std::lock_guard<std::mutex> lk(mu_);
    release_all_cached();
  }

 private:
  size_t block_size_locked(void* p) {
    auto it = managed_.find(p);
    if (it != managed_.end()) return it->second.size;
    return *reinterpret_cast<size_t*>(static_cast<char*>(p) - kHeader);
  }
  static void* raw_alloc(const gpu::RawAllocator* raw, size_t rounded, int place) {
    if (raw) return raw->alloc(rounded, place);
    void* base = nullptr;
    if (posix_memalign(&base, kAlign, rounded + kHeader) != 0) return nullptr;
    *static_cast<size_t*>(base) = rounded;
    return static_cast<char*>(base) + kHeader;
  }
  // Called with mu_ held.
  void raw_free(void* p) {
    auto it = managed_.find(p);
    if (it != managed_.end()) {
      const gpu::RawAllocator* raw = it->second.raw;
      managed_.erase(it);
      raw->free(p);
    } else {
      std::free(static_cast<char*>(p) - kHeader);
    }
  }
  void note_active(size_t n) {
    active_ += n;
    if (active_ > peak_) peak_ = active_;
  }
  // Frees at least `bytes` of the host blocks cached, largest first; returns
  // the bytes freed. Called with mu_ held.
  size_t release_host_cached(size_t bytes) {
    size_t released = 0;
    for (auto it = free_.rbegin(); it != free_.rend() && released < bytes; ++it) {
      auto& v = it->second;
      while (!v.empty() && released < bytes) {
        raw_free(v.back());
        v.pop_back();
        released += it->first;
      }
    }
    cache_bytes_ -= released;
    host_cache_bytes_ -= released;
    return released;
  }
  // The same for unified-memory blocks. A block may still be in use by
  // kernels (its ticket not yet honoured): the device is drained first, as
  // returning memory to the driver under a running kernel is undefined.
  size_t release_managed_cached(size_t bytes) {
    size_t released = 0;
    bool drained = false;
    for (auto it = managed_free_.rbegin(); it != managed_free_.rend() && released < bytes; ++it) {
      auto& v = it->second;
      while (!v.empty() && released < bytes) {
        if (!drained && !gpu::reusable(v.back().ticket)) {
          gpu::wait_for_all();
          drained = true;
        }
        raw_free(v.back().ptr);
        v.pop_back();
        released += it->first / 2;
      }
    }
    cache_bytes_ -= released;
    return released;
  }
  static size_t pool_key(size_t rounded, int place) { return rounded * 2 + (place ? 1 : 0); }
  // A cached unified-memory block of `rounded` bytes that the caller may use
  // now (see gpu::FreeTicket), or nullptr. Called with mu_ held.
  void* take_managed_locked(size_t rounded, int place) {
    auto it = managed_free_.find(pool_key(rounded, place));
    if (it == managed_free_.end() || it->second.empty()) return nullptr;
    auto& v = it->second;
    for (int pass = 0; pass < 2; ++pass) {
      // Newest first: the block most likely still in the GPU's L2.
      for (size_t i = v.size(); i-- > 0;) {
        if (!gpu::reusable(v[i].ticket)) continue;
        void* p = v[i].ptr;
        v.erase(v.begin() + static_cast<std::ptrdiff_t>(i));
        cache_bytes_ -= rounded;
        return p;
      }
      // Learn which markers have finished since, then look once more.
      if (pass == 0) gpu::poll();
    }
    return nullptr;
  }
  void release_some_cached(size_t bytes) {
    size_t done = release_host_cached(bytes);
    if (done < bytes) release_managed_cached(bytes - done);
  }
  void release_all_cached() { release_some_cached(cache_bytes_); }

  struct ManagedBlock {
    size_t size;
    const gpu::RawAllocator* raw;
    int place;
  };
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // host blocks
  struct CachedBlock {
    void* ptr;
    gpu::FreeTicket ticket;
  };
  // Unified-memory blocks by pool_key(size, placement).
  std::map<size_t, std::vector<CachedBlock>> managed_free_;
  std::unordered_map<void*, ManagedBlock> managed_;  // live and cached ones
  size_t host_cache_bytes_ = 0;
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
  return buffer.ptr() ? cache().block_size(buffer.ptr()) : 0;
}
namespace detail {
// The placement (gpu.h) of `block` when it is a live or cached block of the GPU backend's
// unified memory (the device can read it), else -1. Declared where used (backend/cuda).
int placement_of(const void* block) { return block ? cache().placement_of(block) : -1; }
}  // namespace detail
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
