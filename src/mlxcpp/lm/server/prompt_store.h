// Prompt-cache reuse across requests: finished sequences leave their KV cache
// here under their tokens; a new request starts from the entry sharing the
// longest token prefix with its prompt (a longer entry is cut to the common
// prefix, which the server's full per-layer caches always allow). Entries are
// evicted least recently used first, to the entry and byte limits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <utility>
#include <vector>

#include "mlxcpp/mx/array.h"

namespace lm::server {

// Per layer: keys and values [1, Nkv, L, D] of the positions 0..L-1.
using LayerKV = std::vector<std::pair<mx::array, mx::array>>;

class PromptStore {
 public:
  PromptStore(size_t max_entries, size_t max_bytes)
      : max_entries_(max_entries), max_bytes_(max_bytes) {}

  struct Hit {
    int length = 0;  // tokens reused (0: no entry shares a prefix)
    LayerKV layers;  // the first `length` positions of each layer
  };
  // The entry sharing the longest prefix with `tokens`, cut to at most `limit` positions.
  Hit lookup(const std::vector<int32_t>& tokens, size_t limit);
  // Stores a copy of `layers` (L positions) as the cache of tokens[0..L).
  void insert(std::vector<int32_t> tokens, const LayerKV& layers);

  size_t entries() const { return entries_.size(); }
  size_t bytes() const { return bytes_; }
  void clear();

 private:
  struct Entry {
    std::vector<int32_t> tokens;
    LayerKV layers;
    size_t bytes = 0;
  };
  void evict();
  size_t max_entries_, max_bytes_;
  std::list<Entry> entries_;  // most recently used first
  size_t bytes_ = 0;
};

}  // namespace lm::server
