// The per-layer cache of a batch for continuous batching: sequences of
// different lengths share one [B, Nkv, L, D] buffer, each left-padded to the
// longest, so a single forward pass decodes every row. Rows join (from a
// sequence's own prefilled cache) and leave between steps. The same cache runs
// a batched prefill: prompts of different lengths are right-padded to the
// longest, which causal attention keeps invisible to every real position, and
// each row's real positions are read back with row(b, length).
#pragma once

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "mlxcpp/lm/cache.h"

namespace lm::server {

// What the per-layer caches of one batch may share: every layer holds the same
// rows with the same padding, so a step's attention mask and row offsets are
// built (and copied to the device) once for all layers instead of once per
// layer. Entries are dropped whenever the padding or length they were made for
// changes.
struct BatchStepArrays {
  std::vector<int> pad;
  int length = -1;
  int step_rows = -1;
  std::vector<std::pair<std::pair<int, int>, AttentionMask>> masks;  // (T, window or -1) -> mask
  std::optional<mx::array> row_offsets;
  // add_block's gather indices, by their values (the same for every layer).
  std::vector<int32_t> join_key;
  std::optional<std::pair<mx::array, mx::array>> join_index;
};

class BatchKVCache : public KVCacheBase {
 public:
  BatchKVCache() = default;
  // Rows kept quantized (the KV quantizer of QuantizedKVCache: packed codes,
  // scales and biases per position), dequantized when read; the padding is
  // packed zeros, which the mask hides.
  BatchKVCache(int group_size, int bits) : quantizer_(KVQuantizer(group_size, bits)) {}
  // keys/values: [B, Nkv, T, D], one new position range for every row.
  std::pair<mx::array, mx::array> update_and_fetch(const mx::array& keys,
                                                   const mx::array& values) override;
  // An array mask [B, 1, T, offset() + T] hiding each row's padding (plus the
  // causal order and the sliding window); a plain window when nothing is padded.
  AttentionMask make_mask(int T, std::optional<int> window) const override;
  // The padded length: the buffer position the next token is written at.
  int offset() const override { return length_; }
  // Row b's true position: offset() minus its padding.
  std::optional<mx::array> row_offsets() const override;
  // A decode step's position written in place of the buffer (unquantized rows, a buffer made
  // by an earlier update).
  std::optional<std::pair<mx::array, mx::array>> update_one_with(const BufferWrite& write,
                                                                 mx::Dtype dtype) override;
  bool is_trimmable() const override { return false; }
  int trim(int) override { return 0; }
  std::vector<mx::array> state() const override;
  void set_state(const std::vector<mx::array>& state) override;
  std::string class_name() const override { return "BatchKVCache"; }
  size_t nbytes() const override;

  int rows() const { return static_cast<int>(pad_.size()); }
  // Rows the buffer holds (rows() of them the batch's, the rest spare for joining rows).
  int row_capacity() const { return keys_ ? keys_->shape(0) : 0; }
  // Room for n rows the next time the buffer is made or outgrown (an existing buffer is not
  // resized): rows joining a batch in several rounds then fill spare rows in place instead of
  // each round copying the whole buffer into a new, larger one. The latest call counts, so a
  // batch that emptied after a burst is made again for the requests held then.
  void reserve_rows(int n);
  // The rows the next updates, masks and row offsets cover: rows() and, up to n in all, spare
  // rows of the buffer (never more than row_capacity()). A decode step over a batch padded to
  // a few sizes (powers of two) meets the same shapes again as rows join and leave, so its
  // buffers come from the cache and its products reuse their plans. A spare row sees every
  // position (whatever the buffer holds there: zeros or a former row's keys); its outputs
  // are not meant to be read.
  void set_step_rows(int n) { step_rows_ = n; }
  // The rows an update takes now (see set_step_rows).
  int step_rows() const { return std::max(rows(), std::min(step_rows_, row_capacity())); }
  // A joining sequence: keys/values [1, Nkv, L, D] of its positions 0..L-1, or
  // none for a sequence that holds no position yet (L = 0).
  using Row = std::optional<std::pair<mx::array, mx::array>>;
  // Appends sequences in one copy of the buffer however many join. Before the
  // buffer exists (every row so far empty), its shape comes from the first
  // non-empty row or the first update.
  void add_rows(const std::vector<Row>& rows);
  void add_rows(const std::vector<std::pair<mx::array, mx::array>>& rows) {
    add_rows(std::vector<Row>(rows.begin(), rows.end()));
  }
  void add_row(const mx::array& keys, const mx::array& values) { add_rows({{keys, values}}); }
  // Appends the rows of another batch's cache (a batched prefill's): row b of
  // `block` contributes its first lengths[b] real positions (those after its
  // left padding; anything after them, right padding, is dropped). One gather
  // and one copy of the buffer per call, however many rows join; the gather's
  // indices are built once for all layers that share step arrays.
  void add_block(const BatchKVCache& block, const std::vector<int>& lengths);
  // Removes the given rows without copying the buffer: the last remaining rows move into the
  // slots the leaving rows free below the new row count (one row copied per leaving row; an
  // update then writes in place again), so the remaining rows are reordered as
  // order_after_removal says.
  void remove_rows(std::vector<int> rows);
  void remove_row(int b) { remove_rows({b}); }
  // The row order remove_rows(rows) leaves among `batch` rows: element i is the former index
  // of the row now at i. Throws std::out_of_range for a row outside [0, batch).
  static std::vector<int> order_after_removal(int batch, std::vector<int> rows);
  // Row b without its padding, [1, Nkv, L_b, D] (a view of the buffer).
  std::pair<mx::array, mx::array> row(int b) const { return row(b, row_length(b)); }
  // The first `length` positions of row b (0 < length <= row_length(b)): a
  // right-padded prefill row without the padding after its real positions.
  std::pair<mx::array, mx::array> row(int b, int length) const;
  int row_length(int b) const { return length_ - pad_.at(b); }
  // Shares the step's mask and row offsets with the other layers' caches of
  // the same batch (which must join and lose the same rows in the same order).
  void share_step_arrays(std::shared_ptr<BatchStepArrays> shared) { step_ = std::move(shared); }

 private:
  static constexpr int kStep = 256;
  void reserve(int length);
  // Adds d positions of padding on the left of every row.
  void pad_left(int d);
  // Creates the buffer for rows() empty rows (and the rows reserved), shaped like `like`
  // ([., Nkv, ., D], stored form).
  void allocate(const mx::array& like);
  // Writes rows k, v ([n, Nkv, capacity, D], stored form) at rows [at, at + n) of the buffer:
  // into spare rows, or into a new buffer that keeps rows [0, at) and has the rows reserved.
  void put_rows(const mx::array& k, const mx::array& v, int at);
  // The first n rows of a buffer (a view when it has more).
  static mx::array active(const mx::array& buf, int n);
  // Stored form of float keys/values, and back.
  mx::array store(const mx::array& x);
  mx::array load(const mx::array& x) const { return quantizer_ ? quantizer_->unpack(x) : x; }
  std::optional<KVQuantizer> quantizer_;
  std::optional<mx::array> keys_, values_;  // [row_capacity(), Nkv, capacity, D]
  // The step arrays entry for the current padding and length (cleared when stale).
  BatchStepArrays& step_arrays() const;
  std::vector<int> pad_;
  int length_ = 0;
  int reserved_rows_ = 0;
  int step_rows_ = 0;
  std::shared_ptr<BatchStepArrays> step_ = std::make_shared<BatchStepArrays>();
};

}  // namespace lm::server
