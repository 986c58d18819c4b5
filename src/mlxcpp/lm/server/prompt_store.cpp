#include "mlxcpp/lm/server/prompt_store.h"

#include <algorithm>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/transforms.h"

namespace lm::server {

namespace {

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = std::min(a.size(), b.size()), i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

mx::array head(const mx::array& v, int n) {
  return mx::slice(v, {0, 0, 0, 0}, {v.shape(0), v.shape(1), n, v.shape(3)});
}

}  // namespace

PromptStore::Hit PromptStore::lookup(const std::vector<int32_t>& tokens, size_t limit) {
  auto best = entries_.end();
  size_t best_len = 0;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    size_t n = std::min(common_prefix(it->tokens, tokens), limit);
    if (n > best_len) {
      best_len = n;
      best = it;
    }
  }
  Hit hit;
  if (best == entries_.end()) return hit;
  entries_.splice(entries_.begin(), entries_, best);
  hit.length = static_cast<int>(best_len);
  for (const auto& [k, v] : best->layers) {
    hit.layers.emplace_back(head(k, hit.length), head(v, hit.length));
  }
  return hit;
}

void PromptStore::insert(std::vector<int32_t> tokens, const LayerKV& layers) {
  if (max_entries_ == 0 || tokens.empty() || layers.empty()) return;
  // An entry that extends this one already covers it.
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->tokens.size() >= tokens.size() &&
        std::equal(tokens.begin(), tokens.end(), it->tokens.begin())) {
      entries_.splice(entries_.begin(), entries_, it);
      return;
    }
  }
  // Entries this one extends are superseded.
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->tokens.size() < tokens.size() &&
        std::equal(it->tokens.begin(), it->tokens.end(), tokens.begin())) {
      bytes_ -= it->bytes;
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  Entry e;
  e.tokens = std::move(tokens);
  std::vector<mx::array> all;
  for (const auto& [k, v] : layers) {
    // A copy, so the entry does not keep a whole batch buffer alive through a view.
    e.layers.emplace_back(mx::copy(k), mx::copy(v));
    all.push_back(e.layers.back().first);
    all.push_back(e.layers.back().second);
  }
  // Launched, not waited for: the copies run before the next decode step, which then finds the
  // batch buffer unshared again and updates it in place.
  mx::async_eval(all);
  for (const auto& a : all) e.bytes += a.nbytes();
  if (e.bytes > max_bytes_) return;
  bytes_ += e.bytes;
  entries_.push_front(std::move(e));
  evict();
}

void PromptStore::evict() {
  while (!entries_.empty() && (entries_.size() > max_entries_ || bytes_ > max_bytes_)) {
    bytes_ -= entries_.back().bytes;
    entries_.pop_back();
  }
}

void PromptStore::clear() {
  entries_.clear();
  bytes_ = 0;
}

}  // namespace lm::server
