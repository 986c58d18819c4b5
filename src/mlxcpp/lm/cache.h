// Key/value caches for autoregressive decoding (mlx-lm's cache.py), and
// prompt-cache files in mlx-lm's safetensors layout (formats.md §5).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mlxcpp/mx/array.h"

namespace lm {

// How a layer must mask attention for the keys its cache just returned.
// Keys come back so that "causal" (query i sees keys j <= i + Lk - Lq) plus an
// optional sliding window (query i sees the last `window` keys up to its own
// position) is exact; mode "" means every returned key is visible to every query
// (still cut by `window` when set, aligned to the end as in mx::fast).
// Where neither can express the visibility (a ring buffer out of temporal order
// under a window smaller than the ring, or pinned `keep` positions), mode is
// "array" and `array` holds a bool [T, Lk] mask (true: visible).
// Pass it to lm::scaled_dot_product_attention below, which routes each form.
struct AttentionMask {
  std::string mode;                // "", "causal" or "array"
  std::optional<int> window;       // sliding window in keys, self included
  std::optional<mx::array> array;  // mode "array" only
};

// mx::fast::scaled_dot_product_attention under a cache's mask.
mx::array scaled_dot_product_attention(const mx::array& queries, const mx::array& keys,
                                       const mx::array& values, float scale,
                                       const AttentionMask& mask,
                                       const std::optional<mx::array>& sinks = std::nullopt);

class KVCacheBase {
 public:
  virtual ~KVCacheBase() = default;
  // keys/values: [B, Nkv, T, D] for T new positions. Returns the keys and
  // values attention must read, [B, Nkv, Lk, D].
  virtual std::pair<mx::array, mx::array> update_and_fetch(const mx::array& keys,
                                                           const mx::array& values) = 0;
  // The mask for T new queries, to be called before update_and_fetch with the
  // same T. `window` is the layer's sliding window (none for global layers).
  virtual AttentionMask make_mask(int T, std::optional<int> window) const = 0;
  // Positions seen so far (the RoPE offset of the next token).
  virtual int offset() const = 0;
  virtual bool is_trimmable() const = 0;
  // Drops the last n positions; returns how many were dropped.
  virtual int trim(int n) = 0;
  // Serialization (mlx-lm names): state arrays, meta_state strings, class name.
  virtual std::vector<mx::array> state() const = 0;
  virtual void set_state(const std::vector<mx::array>& state) = 0;
  virtual std::vector<std::string> meta_state() const { return {}; }
  virtual void set_meta_state(const std::vector<std::string>& /*meta*/) {}
  virtual std::string class_name() const = 0;
  // Bytes held by the cache's arrays.
  virtual size_t nbytes() const = 0;
  // A batch cache whose rows hold sequences of different lengths (left-padded
  // to offset()) gives each row's own RoPE position here, [B] int32; the model
  // then rotates row b at that position instead of offset().
  virtual std::optional<mx::array> row_offsets() const { return std::nullopt; }
  // One new position of every row written by a kernel that also makes it (a model's QK-norm,
  // RoPE and cache write in one, fast::rms_norm_rope_kv_write): write(k_buffer, v_buffer, slot)
  // returns the buffers with the position written at `slot` of their third axis, in `dtype`. A
  // cache whose storage is such a buffer of that dtype advances, returns what update_and_fetch
  // would have, and the caller skips update_and_fetch; the others return nullopt (and change
  // nothing).
  using BufferWrite = std::function<std::pair<mx::array, mx::array>(
      const mx::array& k_buffer, const mx::array& v_buffer, const mx::array& slot)>;
  virtual std::optional<std::pair<mx::array, mx::array>> update_one_with(
      const BufferWrite& /*write*/, mx::Dtype /*dtype*/) {
    return std::nullopt;
  }
  bool empty() const { return offset() == 0; }
  // State arrays per saved entry: 1 for plain caches (tensors "<layer>.<i>"), 3 for quantized
  // ones (codes, scales, biases: tensors "<layer>.<i>.<j>", mlx-lm's nesting).
  virtual int state_group() const { return 1; }
  // The same cache with its keys and values quantized (affine, group_size along the head
  // dimension), holding what this one holds; null when this kind cannot be quantized or
  // already is.
  virtual std::shared_ptr<KVCacheBase> to_quantized(int /*group_size*/, int /*bits*/) const {
    return nullptr;
  }
};

// Grows in steps of 256 positions; trimmable.
class KVCache : public KVCacheBase {
 public:
  static constexpr int kStep = 256;
  std::pair<mx::array, mx::array> update_and_fetch(const mx::array& keys,
                                                   const mx::array& values) override;
  AttentionMask make_mask(int T, std::optional<int> window) const override;
  int offset() const override { return offset_; }
  bool is_trimmable() const override { return true; }
  int trim(int n) override;
  std::vector<mx::array> state() const override;
  void set_state(const std::vector<mx::array>& state) override;
  std::string class_name() const override { return "KVCache"; }
  size_t nbytes() const override;
  std::shared_ptr<KVCacheBase> to_quantized(int group_size, int bits) const override;

 private:
  std::optional<mx::array> keys_, values_;  // [B, Nkv, capacity, D]
  int offset_ = 0;
};

// A ring buffer of max_size positions whose first `keep` are pinned. Exact for
// any number of tokens per call: when T > 1 arrives it returns the last
// max_size - 1 + T positions in temporal order so every query sees its full
// window. Trimmable only while offset < max_size.
//
// What a query at position p sees (the semantics make_mask makes exact):
//   keys k <= p that are pinned (k < keep) or among the most recent
//   max_size - keep positions (k > p - (max_size - keep)), and, when the layer
//   has a sliding window W, also k > p - W.
// This is what a token decoded one at a time sees in mlx-lm (the ring holds the
// pinned keys plus the recent ones, all visible). mlx-lm's own multi-token mask
// is a plain causal window of max_size over the returned keys, which hides the
// pinned keys from most queries of a chunk; here they stay visible, so the
// result does not depend on how the tokens were chunked.
class RotatingKVCache : public KVCacheBase {
 public:
  explicit RotatingKVCache(int max_size, int keep = 0);
  std::pair<mx::array, mx::array> update_and_fetch(const mx::array& keys,
                                                   const mx::array& values) override;
  AttentionMask make_mask(int T, std::optional<int> window) const override;
  int offset() const override { return offset_; }
  bool is_trimmable() const override { return offset_ < max_size_; }
  int trim(int n) override;
  std::vector<mx::array> state() const override;
  void set_state(const std::vector<mx::array>& state) override;
  std::vector<std::string> meta_state() const override;
  void set_meta_state(const std::vector<std::string>& meta) override;
  std::string class_name() const override { return "RotatingKVCache"; }
  size_t nbytes() const override;
  std::shared_ptr<KVCacheBase> to_quantized(int group_size, int bits) const override;
  int max_size() const { return max_size_; }
  int keep() const { return keep_; }
  // The positions held, in temporal order (the last ones seen): keys and values
  // [B, Nkv, L, D], or none while empty.
  std::optional<std::pair<mx::array, mx::array>> ordered() const;
  // Throws std::runtime_error when the state and meta state disagree (e.g. a
  // hand-edited file): called after set_state + set_meta_state.
  void validate() const;

 private:
  static constexpr int kStep = 256;
  int temporal_length() const;
  mx::array temporal_order(const mx::array& v) const;
  mx::array drop_oldest(const mx::array& v, int n, const std::optional<mx::array>& append) const;
  std::pair<mx::array, mx::array> update_concat(const mx::array& keys, const mx::array& values);
  std::pair<mx::array, mx::array> update_in_place(const mx::array& keys, const mx::array& values);

  int max_size_, keep_;
  std::optional<mx::array> keys_, values_;
  int offset_ = 0;
  int idx_ = 0;  // next write position in the buffer
};

// Packs one quantized key (or value) vector per position into a single uint32 row: the codes
// of the D head-dimension entries, then each group's (scale, bias) pair as words. The buffer
// logic of KVCache and RotatingKVCache (growth, rings, trimming, masks) then applies to the
// packed rows unchanged; fetching dequantizes. Attention runs on the dequantized keys and
// values (the same math as mlx-lm's quantized SDPA up to rounding), so the memory of the
// cache shrinks while the attention kernels stay the float ones.
class KVQuantizer {
 public:
  KVQuantizer(int group_size, int bits);
  // x: [B, N, T, D] floating -> [B, N, T, W] uint32.
  mx::array pack(const mx::array& x);
  mx::array unpack(const mx::array& packed) const;
  // Packed rows <-> mlx-lm's (codes, scales, biases) triple.
  std::vector<mx::array> split(const mx::array& packed) const;
  mx::array join(const mx::array& codes, const mx::array& scales, const mx::array& biases);
  int group_size() const { return group_size_; }
  int bits() const { return bits_; }

 private:
  void learn(int head_dim, mx::Dtype dtype, const char* who);
  int group_size_, bits_;
  int head_dim_ = 0;
  std::optional<mx::Dtype> dtype_;  // of the keys/values (scales and biases use it too)
};

// mlx-lm's QuantizedKVCache: a KVCache over packed rows. Saved as "QuantizedKVCache" with
// tensors <L>.0.{0,1,2} (key codes, scales, biases), <L>.1.* (values) and meta state
// (offset, group_size, bits).
class QuantizedKVCache : public KVCache {
 public:
  QuantizedKVCache(int group_size = 64, int bits = 8);
  std::pair<mx::array, mx::array> update_and_fetch(const mx::array& keys,
                                                   const mx::array& values) override;
  std::vector<mx::array> state() const override;
  void set_state(const std::vector<mx::array>& state) override;
  std::vector<std::string> meta_state() const override;
  void set_meta_state(const std::vector<std::string>& meta) override;
  std::string class_name() const override { return "QuantizedKVCache"; }
  int state_group() const override { return 3; }
  std::shared_ptr<KVCacheBase> to_quantized(int, int) const override { return nullptr; }
  // Quantizes float (keys, values) [B, N, T, D] into the cache's storage (to_quantized).
  void set_float_state(const std::vector<mx::array>& keys_values);
  int group_size() const { return q_.group_size(); }
  int bits() const { return q_.bits(); }

 private:
  KVQuantizer q_;
  std::optional<int> meta_offset_;  // from a loaded meta state, checked against the state
};

// A RotatingKVCache over packed rows: sliding-window layers keep their exact window semantics
// with quantized storage (mlx-lm cannot quantize rotating caches). Saved as
// "QuantizedRotatingKVCache" with the quantized tensor layout and meta state
// (keep, max_size, offset, idx, group_size, bits).
class QuantizedRotatingKVCache : public RotatingKVCache {
 public:
  QuantizedRotatingKVCache(int max_size, int keep = 0, int group_size = 64, int bits = 8);
  std::pair<mx::array, mx::array> update_and_fetch(const mx::array& keys,
                                                   const mx::array& values) override;
  std::vector<mx::array> state() const override;
  void set_state(const std::vector<mx::array>& state) override;
  std::vector<std::string> meta_state() const override;
  void set_meta_state(const std::vector<std::string>& meta) override;
  std::string class_name() const override { return "QuantizedRotatingKVCache"; }
  int state_group() const override { return 3; }
  std::shared_ptr<KVCacheBase> to_quantized(int, int) const override { return nullptr; }
  // Quantizes float (keys, values) [B, N, T, D] into the cache's storage (to_quantized).
  void set_float_state(const std::vector<mx::array>& keys_values);
  int group_size() const { return q_.group_size(); }
  int bits() const { return q_.bits(); }

 private:
  KVQuantizer q_;
};

using PromptCache = std::vector<std::shared_ptr<KVCacheBase>>;

// mlx-lm's --kv-bits / --kv-group-size / --quantized-kv-start.
struct KVQuantization {
  std::optional<int> bits;  // none: no KV quantization
  int group_size = 64;
  int start = 0;  // quantize once a layer holds at least this many positions
};
// mlx-lm's maybe_quantize_kv_cache: when kv.bits is set, every layer that holds at least
// kv.start positions and can be quantized is replaced by its quantized form. Returns whether
// any layer was converted.
bool maybe_quantize_kv_cache(PromptCache& cache, const KVQuantization& kv);

bool can_trim_prompt_cache(const PromptCache& cache);
// Trims every layer by n; returns n, or 0 (and trims nothing) if a layer cannot trim.
int trim_prompt_cache(PromptCache& cache, int n);
size_t prompt_cache_nbytes(const PromptCache& cache);
// Evaluates every layer's state (what a prefill chunk leaves behind) in one graph.
void eval_prompt_cache(const PromptCache& cache);

// mlx-lm's save_prompt_cache / load_prompt_cache (formats.md §5). Writes atomically.
void save_prompt_cache(const std::filesystem::path& file, const PromptCache& cache,
                       const std::map<std::string, std::string>& metadata = {});
std::pair<PromptCache, std::map<std::string, std::string>> load_prompt_cache(
    const std::filesystem::path& file);

}  // namespace lm
