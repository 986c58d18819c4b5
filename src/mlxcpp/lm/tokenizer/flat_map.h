// Open-addressing hash tables for the tokenizer's hot lookups: token string -> id (keys are
// views of strings owned elsewhere) and token-id pair -> merge. Flat slots keep lookups to one
// or two cache lines, which matters for 100k-500k entry vocabularies and merge tables.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace lm {

inline uint64_t hash_bytes(std::string_view s) {
  // A multiply-xorshift hash over 8-byte words; fast for short tokens, good enough spread.
  const uint64_t m = 0x9E3779B97F4A7C15ull;
  uint64_t h = 0x243F6A8885A308D3ull ^ (s.size() * m);
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * m;
    h ^= h >> 29;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, s.data() + i, s.size() - i);
  h = (h ^ tail) * m;
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  return h;
}

// Maps token strings to their ids; the strings live in a vector indexed by id (the vocabulary),
// so a slot holds only a hash tag and the id.
class FlatStringMap {
 public:
  // Builds the table over tokens[id] for every id with present[id].
  void build(const std::vector<std::string>& tokens, const std::vector<bool>& present) {
    tokens_ = &tokens;
    size_t n = 0;
    for (bool p : present) n += p;
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Slot{});
    size_ = 0;
    size_t mask = cap - 1;
    for (size_t id = 0; id < tokens.size(); ++id) {
      if (!present[id]) continue;
      std::string_view key = tokens[id];
      uint64_t h = hash_bytes(key);
      uint32_t tag = static_cast<uint32_t>(h >> 32);
      for (size_t i = h & mask;; i = (i + 1) & mask) {
        Slot& s = slots_[i];
        if (s.value < 0) {
          s = {tag, static_cast<int32_t>(id)};
          ++size_;
          break;
        }
        // A repeated token string keeps its last id, as HF's map does.
        if (s.tag == tag && (*tokens_)[s.value] == key) {
          s.value = static_cast<int32_t>(id);
          break;
        }
      }
    }
  }
  // -1 when absent.
  int32_t get(std::string_view key) const {
    if (slots_.empty()) return -1;
    uint64_t h = hash_bytes(key);
    size_t mask = slots_.size() - 1;
    uint32_t tag = static_cast<uint32_t>(h >> 32);
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.value < 0) return -1;
      if (s.tag == tag && (*tokens_)[s.value] == key) return s.value;
    }
  }
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint32_t tag = 0;
    int32_t value = -1;
  };
  const std::vector<std::string>* tokens_ = nullptr;
  std::vector<Slot> slots_;
  size_t size_ = 0;
};

// Maps a pair of token ids to (rank, merged id).
class MergeMap {
 public:
  struct Entry {
    int32_t rank;
    int32_t id;
  };
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Slot{});
  }
  void set(int32_t a, int32_t b, Entry e) {
    uint64_t key = pack(a, b);
    size_t mask = slots_.size() - 1;
    for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
      if (slots_[i].key == kEmpty || slots_[i].key == key) {
        slots_[i] = {key, e};
        return;
      }
    }
  }
  const Entry* get(int32_t a, int32_t b) const {
    uint64_t key = pack(a, b);
    size_t mask = slots_.size() - 1;
    for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.entry;
      if (s.key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  static uint64_t pack(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    return k;
  }
  struct Slot {
    uint64_t key = kEmpty;
    Entry entry{0, 0};
  };
  std::vector<Slot> slots_;
};

}  // namespace lm
