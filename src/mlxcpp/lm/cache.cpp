// KV caches (mlx-lm's cache.py) and prompt-cache files (formats.md §5).
#include "mlxcpp/lm/cache.h"

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/io.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/transforms.h"

namespace lm {

namespace {

// Slice [start, stop) of axis 2 of a [B, N, L, D] array.
mx::array seq_slice(const mx::array& v, int start, int stop) {
  return mx::slice(v, {0, 0, start, 0}, {v.shape(0), v.shape(1), stop, v.shape(3)});
}

// Checks the new keys/values of one update against each other and against the
// buffer they go into; returns T.
int check_update(const char* cls, const mx::array& keys, const mx::array& values,
                 const std::optional<mx::array>& buf_k, const std::optional<mx::array>& buf_v) {
  auto both = [&] {
    return "keys " + mx::shape_str(keys.shape()) + ", values " + mx::shape_str(values.shape());
  };
  if (keys.ndim() != 4 || values.ndim() != 4) {
    throw std::invalid_argument(std::string(cls) +
                                ": keys and values must be [B, Nkv, T, D], got " + both());
  }
  if (keys.shape(0) != values.shape(0) || keys.shape(1) != values.shape(1) ||
      keys.shape(2) != values.shape(2)) {
    throw std::invalid_argument(std::string(cls) +
                                ": keys and values disagree in B, Nkv or T: " + both());
  }
  if (keys.shape(2) < 1) {
    throw std::invalid_argument(std::string(cls) + ": an update needs at least one position, got " +
                                both());
  }
  if (buf_k) {
    auto mismatch = [&](const mx::array& a, const mx::array& b) {
      return a.shape(0) != b.shape(0) || a.shape(1) != b.shape(1) || a.shape(3) != b.shape(3);
    };
    if (mismatch(keys, *buf_k) || mismatch(values, *buf_v)) {
      throw std::invalid_argument(std::string(cls) + ": update " + both() +
                                  " does not match the cached keys " +
                                  mx::shape_str(buf_k->shape()) + ", values " +
                                  mx::shape_str(buf_v->shape()) + " in B, Nkv or D");
    }
  }
  return keys.shape(2);
}

// Checks a (keys, values) state pair and returns them.
std::pair<mx::array, mx::array> check_state(const char* cls, const std::vector<mx::array>& state) {
  if (state.size() != 2) {
    throw std::invalid_argument(std::string(cls) +
                                ": state must hold 2 arrays (keys, values), got " +
                                std::to_string(state.size()));
  }
  const mx::array &k = state[0], &v = state[1];
  if (k.ndim() != 4 || v.ndim() != 4 || k.shape(0) != v.shape(0) || k.shape(1) != v.shape(1) ||
      k.shape(2) != v.shape(2)) {
    throw std::invalid_argument(std::string(cls) +
                                ": state keys and values must be [B, Nkv, T, D] with equal B, Nkv "
                                "and T, got keys " +
                                mx::shape_str(k.shape()) + ", values " + mx::shape_str(v.shape()));
  }
  return {k, v};
}

// A copy of `a` in `len` positions of freshly allocated memory. Loaded tensors
// may be views of a read-only file mapping; updating them in place (buffer
// donation) would write into it, so caches never keep them directly.
mx::array own_copy(const mx::array& a, int len) {
  mx::Shape shape = a.shape();
  shape[2] = len;
  return mx::slice_update(mx::zeros(shape, a.dtype()), a, mx::Shape{0, 0, 0, 0}, a.shape());
}

int parse_int(const std::string& s, const std::string& what) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) {
    throw std::runtime_error(what + ": expected a decimal integer, got '" + s + "'");
  }
  return v;
}

}  // namespace

mx::array scaled_dot_product_attention(const mx::array& queries, const mx::array& keys,
                                       const mx::array& values, float scale,
                                       const AttentionMask& mask,
                                       const std::optional<mx::array>& sinks) {
  if (mask.mode == "array") {
    if (!mask.array) throw std::invalid_argument("AttentionMask: mode 'array' without an array");
    return mx::fast::scaled_dot_product_attention(queries, keys, values, scale, "array",
                                                  *mask.array, sinks, std::nullopt);
  }
  return mx::fast::scaled_dot_product_attention(queries, keys, values, scale, mask.mode,
                                                std::nullopt, sinks, mask.window);
}

// ---------------------------------------------------------------- KVCache

std::pair<mx::array, mx::array> KVCache::update_and_fetch(const mx::array& keys,
                                                          const mx::array& values) {
  int T = check_update("KVCache", keys, values, keys_, values_);
  int prev = offset_;
  if (!keys_ || prev + T > keys_->shape(2)) {
    // Grow by whole steps so a decode loop reallocates once per 256 tokens.
    int n_steps = (kStep + T - 1) / kStep;
    auto grow = [&](const mx::array& x, std::optional<mx::array>& buf) {
      mx::Shape shape = x.shape();
      shape[2] = n_steps * kStep;
      mx::array fresh = mx::zeros(shape, buf ? buf->dtype() : x.dtype());
      if (!buf) return fresh;
      mx::array old = prev == buf->shape(2) ? *buf : seq_slice(*buf, 0, prev);
      return mx::concatenate({old, fresh}, 2);
    };
    mx::array nk = grow(keys, keys_);
    mx::array nv = grow(values, values_);
    keys_ = nk;
    values_ = nv;
  }
  offset_ += T;
  auto put = [&](mx::array& buf, const mx::array& x) {
    mx::Shape start{0, 0, prev, 0};
    mx::Shape stop{x.shape(0), x.shape(1), offset_, x.shape(3)};
    buf = mx::slice_update(buf, mx::astype(x, buf.dtype()), start, stop);
  };
  put(*keys_, keys);
  put(*values_, values);
  return {seq_slice(*keys_, 0, offset_), seq_slice(*values_, 0, offset_)};
}

AttentionMask KVCache::make_mask(int T, std::optional<int> window) const {
  // The keys are every position so far in order, aligned to the end with the
  // queries, so the end-aligned causal + window semantics are exact.
  return AttentionMask{T > 1 ? "causal" : "", window, std::nullopt};
}

int KVCache::trim(int n) {
  if (n < 0) throw std::invalid_argument("KVCache::trim: n must be >= 0, got " + std::to_string(n));
  n = std::min(offset_, n);
  offset_ -= n;
  return n;
}

std::vector<mx::array> KVCache::state() const {
  if (!keys_) return {};
  if (offset_ == keys_->shape(2)) return {*keys_, *values_};
  return {seq_slice(*keys_, 0, offset_), seq_slice(*values_, 0, offset_)};
}

void KVCache::set_state(const std::vector<mx::array>& state) {
  if (state.empty()) {
    keys_.reset();
    values_.reset();
    offset_ = 0;
    return;
  }
  auto [k, v] = check_state("KVCache", state);
  int T = k.shape(2);
  int cap = std::max(1, (T + kStep - 1) / kStep) * kStep;
  keys_ = own_copy(k, cap);
  values_ = own_copy(v, cap);
  offset_ = T;
}

size_t KVCache::nbytes() const { return keys_ ? keys_->nbytes() + values_->nbytes() : 0; }

// ---------------------------------------------------------- RotatingKVCache
//
// The buffer follows mlx-lm's layout so that saved states interchange: slots
// [0, keep) hold the pinned positions; single-token updates write into a ring
// over [keep, max_size) at idx_; multi-token updates first put the buffer into
// temporal order, drop the oldest unpinned positions down to max_size - 1 and
// append, so the buffer is temporarily max_size - 1 + T long (bounded by the
// chunk size) and is cut back to max_size by the next single-token update.

RotatingKVCache::RotatingKVCache(int max_size, int keep) : max_size_(max_size), keep_(keep) {
  if (max_size < 1) {
    throw std::invalid_argument("RotatingKVCache: max_size must be >= 1, got " +
                                std::to_string(max_size));
  }
  if (keep < 0 || keep >= max_size) {
    throw std::invalid_argument("RotatingKVCache: keep must be in [0, max_size) = [0, " +
                                std::to_string(max_size) + "), got " + std::to_string(keep));
  }
}

// Positions currently held in temporal order (mlx-lm's _temporal_order length).
int RotatingKVCache::temporal_length() const {
  if (!keys_) return 0;
  int len = keys_->shape(2);
  if (idx_ == len || idx_ < offset_) return len;
  return idx_;
}

mx::array RotatingKVCache::temporal_order(const mx::array& v) const {
  int len = v.shape(2);
  if (idx_ == len) return v;
  if (idx_ < offset_) {
    // Pinned slots, then the ring from the oldest entry (at idx_) around.
    return mx::concatenate(
        {seq_slice(v, 0, keep_), seq_slice(v, idx_, len), seq_slice(v, keep_, idx_)}, 2);
  }
  return seq_slice(v, 0, idx_);
}

std::optional<std::pair<mx::array, mx::array>> RotatingKVCache::ordered() const {
  if (!keys_) return std::nullopt;
  const int held = temporal_length();
  return std::make_pair(seq_slice(temporal_order(*keys_), 0, held),
                        seq_slice(temporal_order(*values_), 0, held));
}

mx::array RotatingKVCache::drop_oldest(const mx::array& v, int n,
                                       const std::optional<mx::array>& append) const {
  std::vector<mx::array> parts;
  if (n > 0) {
    if (keep_ > 0) parts.push_back(seq_slice(v, 0, keep_));
    parts.push_back(seq_slice(v, n + keep_, v.shape(2)));
  } else {
    parts.push_back(v);
  }
  if (append) parts.push_back(*append);
  return parts.size() == 1 ? parts[0] : mx::concatenate(parts, 2);
}

std::pair<mx::array, mx::array> RotatingKVCache::update_concat(const mx::array& keys,
                                                               const mx::array& values) {
  if (!keys_) {
    keys_ = own_copy(keys, keys.shape(2));
    values_ = own_copy(values, values.shape(2));
  } else {
    mx::array k = temporal_order(*keys_), v = temporal_order(*values_);
    idx_ = k.shape(2);
    // Keep max_size - 1 old positions so the first new query still sees a
    // full window of max_size keys (itself included).
    int n = idx_ - max_size_ + 1;
    keys_ = drop_oldest(k, n, mx::astype(keys, k.dtype()));
    values_ = drop_oldest(v, n, mx::astype(values, v.dtype()));
  }
  offset_ += keys.shape(2);
  idx_ = keys_->shape(2);
  return {*keys_, *values_};
}

std::pair<mx::array, mx::array> RotatingKVCache::update_in_place(const mx::array& keys,
                                                                 const mx::array& values) {
  int prev = offset_;
  if (!keys_ || (prev >= keys_->shape(2) && keys_->shape(2) < max_size_)) {
    // Not full yet: grow by up to a step, never past max_size.
    int len = keys_ ? keys_->shape(2) : 0;
    int add = std::min(kStep, max_size_ - len);
    auto grow = [&](const mx::array& x, std::optional<mx::array>& buf) {
      mx::Shape shape = x.shape();
      shape[2] = add;
      mx::array fresh = mx::zeros(shape, buf ? buf->dtype() : x.dtype());
      return buf ? mx::concatenate({*buf, fresh}, 2) : fresh;
    };
    mx::array nk = grow(keys, keys_);
    mx::array nv = grow(values, values_);
    keys_ = nk;
    values_ = nv;
    idx_ = prev;
  }
  // After a multi-token update the buffer may be longer than max_size and in
  // temporal order: drop the oldest unpinned entries.
  int excess = keys_->shape(2) - max_size_;
  if (excess > 0) {
    keys_ = drop_oldest(*keys_, excess, std::nullopt);
    values_ = drop_oldest(*values_, excess, std::nullopt);
    idx_ = max_size_;
  }
  if (idx_ == max_size_) idx_ = keep_;
  auto put = [&](mx::array& buf, const mx::array& x) {
    mx::Shape start{0, 0, idx_, 0};
    mx::Shape stop{x.shape(0), x.shape(1), idx_ + 1, x.shape(3)};
    buf = mx::slice_update(buf, mx::astype(x, buf.dtype()), start, stop);
  };
  put(*keys_, keys);
  put(*values_, values);
  offset_ += 1;
  idx_ += 1;
  if (offset_ < max_size_) {
    return {seq_slice(*keys_, 0, offset_), seq_slice(*values_, 0, offset_)};
  }
  return {*keys_, *values_};
}

std::pair<mx::array, mx::array> RotatingKVCache::update_and_fetch(const mx::array& keys,
                                                                  const mx::array& values) {
  int T = check_update("RotatingKVCache", keys, values, keys_, values_);
  return T == 1 ? update_in_place(keys, values) : update_concat(keys, values);
}

AttentionMask RotatingKVCache::make_mask(int T, std::optional<int> window) const {
  if (T < 1) throw std::invalid_argument("RotatingKVCache::make_mask: T must be >= 1");
  if (window && *window < 1) {
    throw std::invalid_argument("RotatingKVCache::make_mask: window must be >= 1, got " +
                                std::to_string(*window));
  }
  const int recent = max_size_ - keep_;  // unpinned positions a query sees
  auto visible = [&](int q, int k) {
    return k <= q && (k < keep_ || k > q - recent) && (!window || k > q - *window);
  };
  // Positions of the keys update_and_fetch will return, in returned order.
  std::vector<int> pos;
  if (T > 1 && keep_ == 0) {
    // The keys come back as a contiguous run of positions ending with the
    // queries: the end-aligned causal window is exact.
    int w = std::min(window.value_or(max_size_), max_size_);
    return AttentionMask{"causal", w, std::nullopt};
  }
  if (T > 1) {
    int held = temporal_length();
    int kept = held >= max_size_ ? max_size_ - 1 : held;
    if (kept == offset_) {
      for (int k = 0; k < offset_ + T; ++k) pos.push_back(k);
    } else {
      for (int k = 0; k < keep_; ++k) pos.push_back(k);
      for (int k = offset_ - (kept - keep_); k < offset_ + T; ++k) pos.push_back(k);
    }
  } else if (offset_ + 1 < max_size_) {
    // Nothing dropped yet: positions [0, offset] in order, end-aligned.
    std::optional<int> w;
    if (window && *window < offset_ + 1) w = window;
    return AttentionMask{"", w, std::nullopt};
  } else {
    // The full ring after the write: pinned slots, then slot s of the ring
    // holds p - ((w - s) mod recent) where w is the slot p is written to.
    int len = keys_ ? keys_->shape(2) : 0;
    int w;
    if (len > max_size_) {
      w = keep_;
    } else if (!keys_ || (offset_ >= len && len < max_size_)) {
      w = offset_;
    } else {
      w = idx_;
    }
    if (w == max_size_) w = keep_;
    const int p = offset_;
    for (int s = 0; s < max_size_; ++s) {
      pos.push_back(s < keep_ ? s : p - (((w - s) % recent) + recent) % recent);
    }
  }
  const int Lk = static_cast<int>(pos.size());
  const int q0 = offset_;
  std::vector<uint8_t> m(static_cast<size_t>(T) * Lk);
  bool all = true, causal = true;
  for (int i = 0; i < T; ++i) {
    for (int j = 0; j < Lk; ++j) {
      bool vis = visible(q0 + i, pos[j]);
      m[static_cast<size_t>(i) * Lk + j] = vis;
      all = all && vis;
      causal = causal && vis == (pos[j] <= q0 + i);
    }
  }
  if (all) return AttentionMask{"", std::nullopt, std::nullopt};
  // pos ascending for T > 1, so "causal" means exactly k <= q there.
  if (causal && T > 1) return AttentionMask{"causal", std::nullopt, std::nullopt};
  return AttentionMask{"array", std::nullopt, mx::array(m.begin(), {T, Lk}, mx::bool_)};
}

int RotatingKVCache::trim(int n) {
  if (n < 0) {
    throw std::invalid_argument("RotatingKVCache::trim: n must be >= 0, got " + std::to_string(n));
  }
  // Once positions have been overwritten they cannot come back.
  if (!is_trimmable()) return 0;
  n = std::min(offset_, n);
  offset_ -= n;
  idx_ -= n;
  return n;
}

std::vector<mx::array> RotatingKVCache::state() const {
  if (!keys_) return {};
  if (offset_ < keys_->shape(2)) {
    return {seq_slice(*keys_, 0, offset_), seq_slice(*values_, 0, offset_)};
  }
  return {*keys_, *values_};
}

void RotatingKVCache::set_state(const std::vector<mx::array>& state) {
  if (state.empty()) {
    keys_.reset();
    values_.reset();
    return;
  }
  auto [k, v] = check_state("RotatingKVCache", state);
  keys_ = own_copy(k, k.shape(2));
  values_ = own_copy(v, v.shape(2));
}

std::vector<std::string> RotatingKVCache::meta_state() const {
  return {std::to_string(keep_), std::to_string(max_size_), std::to_string(offset_),
          std::to_string(idx_)};
}

void RotatingKVCache::set_meta_state(const std::vector<std::string>& meta) {
  if (meta.size() != 4) {
    throw std::runtime_error(
        "RotatingKVCache: meta state must hold 4 integers (keep, max_size, offset, idx), got " +
        std::to_string(meta.size()) + " values");
  }
  int keep = parse_int(meta[0], "RotatingKVCache meta state keep");
  int max_size = parse_int(meta[1], "RotatingKVCache meta state max_size");
  int offset = parse_int(meta[2], "RotatingKVCache meta state offset");
  int idx = parse_int(meta[3], "RotatingKVCache meta state idx");
  if (max_size < 1 || keep < 0 || keep >= max_size || offset < 0 || idx < 0) {
    throw std::runtime_error("RotatingKVCache: meta state out of range: keep " + meta[0] +
                             ", max_size " + meta[1] + ", offset " + meta[2] + ", idx " + meta[3]);
  }
  keep_ = keep;
  max_size_ = max_size;
  offset_ = offset;
  idx_ = idx;
}

void RotatingKVCache::validate() const {
  auto fail = [&](const std::string& why) {
    throw std::runtime_error("RotatingKVCache(max_size " + std::to_string(max_size_) + ", keep " +
                             std::to_string(keep_) + ", offset " + std::to_string(offset_) +
                             ", idx " + std::to_string(idx_) + "): " + why);
  };
  if (!keys_) {
    if (offset_ != 0) fail("no keys but a non-zero offset");
    return;
  }
  int len = keys_->shape(2);
  if (idx_ > len) fail("idx beyond the " + std::to_string(len) + " stored positions");
  if (offset_ < max_size_ ? len != offset_ : (len < max_size_ || len > offset_)) {
    fail(std::to_string(len) + " stored positions do not fit the offset");
  }
}

size_t RotatingKVCache::nbytes() const { return keys_ ? keys_->nbytes() + values_->nbytes() : 0; }

// ---------------------------------------------------------- prompt caches

bool can_trim_prompt_cache(const PromptCache& cache) {
  return std::all_of(cache.begin(), cache.end(), [](const auto& c) { return c->is_trimmable(); });
}

int trim_prompt_cache(PromptCache& cache, int n) {
  if (cache.empty() || !can_trim_prompt_cache(cache)) return 0;
  int trimmed = 0;
  for (size_t i = 0; i < cache.size(); ++i) {
    int t = cache[i]->trim(n);
    if (i == 0) trimmed = t;
  }
  return trimmed;
}

size_t prompt_cache_nbytes(const PromptCache& cache) {
  size_t n = 0;
  for (const auto& c : cache) n += c->nbytes();
  return n;
}

void eval_prompt_cache(const PromptCache& cache) {
  std::vector<mx::array> arrays;
  for (const auto& layer : cache) {
    for (auto& a : layer->state()) arrays.push_back(a);
  }
  mx::eval(arrays);
}

void save_prompt_cache(const std::filesystem::path& file, const PromptCache& cache,
                       const std::map<std::string, std::string>& metadata) {
  // mlx-lm flattens [states], [meta_states, metadata, class names] with dotted
  // list indices (tree_flatten); a cache without meta state has meta_state "".
  mx::ArrayMap arrays;
  mx::StringMap meta;
  for (size_t l = 0; l < cache.size(); ++l) {
    if (!cache[l])
      throw std::invalid_argument("save_prompt_cache: layer " + std::to_string(l) + " is null");
    const std::string L = std::to_string(l);
    auto st = cache[l]->state();
    const size_t g = static_cast<size_t>(cache[l]->state_group());
    for (size_t i = 0; i < st.size(); ++i) {
      std::string key = L;
      key.append(".").append(std::to_string(g > 1 ? i / g : i));
      if (g > 1) key.append(".").append(std::to_string(i % g));
      arrays.insert_or_assign(key, st[i]);
    }
    auto ms = cache[l]->meta_state();
    if (ms.empty()) {
      meta["0." + L] = "";
    } else {
      for (size_t i = 0; i < ms.size(); ++i) meta["0." + L + "." + std::to_string(i)] = ms[i];
    }
    meta["2." + L] = cache[l]->class_name();
  }
  for (const auto& [k, v] : metadata) meta["1." + k] = v;
  mx::save_safetensors(file.string(), arrays, meta);
}

namespace {

// "<int>" or "<int>.<rest>": the leading list index of a flattened key.
bool split_index(const std::string& key, int& index, std::string& rest) {
  size_t dot = key.find('.');
  std::string head = key.substr(0, dot);
  if (head.empty() || head.size() > 9 ||
      !std::all_of(head.begin(), head.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  index = std::stoi(head);
  rest = dot == std::string::npos ? "" : key.substr(dot + 1);
  return true;
}

}  // namespace

std::pair<PromptCache, std::map<std::string, std::string>> load_prompt_cache(
    const std::filesystem::path& file) {
  const std::string name = file.string();
  auto fail = [&](const std::string& why) -> void {
    throw std::runtime_error("load_prompt_cache: " + name + ": " + why);
  };
  auto [arrays, smeta] = mx::load_safetensors(name);

  std::map<int, std::string> classes;
  std::map<int, std::map<int, std::string>> metas;  // layer -> index -> value
  std::map<std::string, std::string> user;
  for (const auto& [key, value] : smeta) {
    int top = 0;
    std::string rest;
    // Keys outside the three lists (e.g. a writer's "format") are not ours.
    if (!split_index(key, top, rest)) continue;
    if (top == 1) {
      user[rest] = value;
      continue;
    }
    if (top != 0 && top != 2) fail("unexpected metadata key '" + key + "'");
    int layer = 0;
    std::string sub;
    if (!split_index(rest, layer, sub)) fail("bad metadata key '" + key + "'");
    if (top == 2) {
      if (!sub.empty()) fail("bad class-name key '" + key + "'");
      classes[layer] = value;
    } else if (sub.empty()) {
      metas[layer];  // "" meta state: none
    } else {
      int i = 0;
      std::string more;
      if (!split_index(sub, i, more) || !more.empty()) fail("bad meta-state key '" + key + "'");
      metas[layer][i] = value;
    }
  }
  const int n_layers = classes.empty() ? 0 : classes.rbegin()->first + 1;
  if (static_cast<int>(classes.size()) != n_layers) {
    for (int l = 0; l < n_layers; ++l) {
      if (!classes.count(l))
        fail("no class name (metadata '2." + std::to_string(l) + "') for layer " +
             std::to_string(l));
    }
  }
  // Plain caches save "<layer>.<i>", quantized ones "<layer>.<i>.<j>" (j: codes, scales,
  // biases); j is -1 for the plain form.
  std::map<int, std::map<std::pair<int, int>, mx::array>> tensors;
  for (const auto& [key, a] : arrays) {
    int layer = 0, i = 0, j = -1;
    std::string rest, more, last;
    if (!split_index(key, layer, rest) || !split_index(rest, i, more) ||
        (!more.empty() && (!split_index(more, j, last) || !last.empty()))) {
      fail("unexpected tensor '" + key + "' (expected <layer>.<index>[.<part>])");
    }
    if (layer >= n_layers) {
      fail("tensor '" + key + "' names layer " + std::to_string(layer) + " but the file has " +
           std::to_string(n_layers) + " layers");
    }
    tensors[layer].insert_or_assign({i, j}, a);
  }

  PromptCache cache;
  for (int l = 0; l < n_layers; ++l) {
    const std::string L = std::to_string(l);
    const std::string& cls = classes[l];
    std::vector<mx::array> state;
    const auto& ts = tensors[l];
    const bool quantized = cls == "QuantizedKVCache" || cls == "QuantizedRotatingKVCache";
    const int parts = quantized ? 3 : 1;
    const int entries = static_cast<int>(ts.size()) / parts + (ts.size() % parts ? 1 : 0);
    for (int i = 0; i < entries; ++i) {
      for (int j = quantized ? 0 : -1; j < (quantized ? parts : 0); ++j) {
        auto it = ts.find({i, j});
        std::string name = L;
        name.append(".").append(std::to_string(i));
        if (j >= 0) name.append(".").append(std::to_string(j));
        if (it == ts.end()) fail("missing tensor '" + name + "' of layer " + L + " (" + cls + ")");
        state.push_back(it->second);
      }
    }
    std::vector<std::string> meta;
    const auto& ms = metas[l];
    for (int i = 0; i < static_cast<int>(ms.size()); ++i) {
      auto it = ms.find(i);
      if (it == ms.end()) fail("missing meta state '0." + L + "." + std::to_string(i) + "'");
      meta.push_back(it->second);
    }
    try {
      if (cls == "KVCache") {
        if (!meta.empty()) fail("layer " + L + ": KVCache takes no meta state");
        if (state.size() == 1) fail("layer " + L + ": missing tensor '" + L + ".1' (values)");
        auto c = std::make_shared<KVCache>();
        c->set_state(state);
        cache.push_back(c);
      } else if (cls == "RotatingKVCache") {
        if (state.size() == 1) fail("layer " + L + ": missing tensor '" + L + ".1' (values)");
        auto c = std::make_shared<RotatingKVCache>(1, 0);
        c->set_meta_state(meta);
        c->set_state(state);
        c->validate();
        cache.push_back(c);
      } else if (cls == "QuantizedKVCache") {
        if (state.size() != 6) fail("layer " + L + ": QuantizedKVCache needs keys and values");
        auto c = std::make_shared<QuantizedKVCache>();
        c->set_meta_state(meta);
        c->set_state(state);
        cache.push_back(c);
      } else if (cls == "QuantizedRotatingKVCache") {
        if (state.size() != 6) {
          fail("layer " + L + ": QuantizedRotatingKVCache needs keys and values");
        }
        auto c = std::make_shared<QuantizedRotatingKVCache>(1, 0);
        c->set_meta_state(meta);
        c->set_state(state);
        c->validate();
        cache.push_back(c);
      } else {
        fail("layer " + L + ": unknown cache class '" + cls + "'");
      }
    } catch (const std::runtime_error& e) {
      std::string what = e.what();
      if (what.rfind("load_prompt_cache:", 0) == 0) throw;
      fail("layer " + L + ": " + what);
    } catch (const std::invalid_argument& e) {
      fail("layer " + L + ": " + e.what());
    }
  }
  return {std::move(cache), std::move(user)};
}

}  // namespace lm
