#include "mlxcpp/lm/server/batch_cache.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "mlxcpp/mx/ops.h"

namespace lm::server {

namespace {

mx::array seq(const mx::array& v, int start, int stop) {
  return mx::slice(v, {0, 0, start, 0}, {v.shape(0), v.shape(1), stop, v.shape(3)});
}

mx::array rows_of(const mx::array& v, int start, int stop) {
  return mx::slice(v, {start, 0, 0, 0}, {stop, v.shape(1), v.shape(2), v.shape(3)});
}

mx::array zeros_seq(const mx::array& like, int batch, int len) {
  return mx::zeros({batch, like.shape(1), len, like.shape(3)}, like.dtype());
}

}  // namespace

void BatchKVCache::reserve(int length) {
  if (!keys_ || length <= keys_->shape(2)) return;
  int cap = ((length + kStep - 1) / kStep) * kStep;
  auto grow = [&](const mx::array& buf) {
    return mx::concatenate({buf, zeros_seq(buf, buf.shape(0), cap - buf.shape(2))}, 2);
  };
  keys_ = grow(*keys_);
  values_ = grow(*values_);
}

mx::array BatchKVCache::store(const mx::array& x) {
  if (!quantizer_) return x;
  if (x.ndim() != 4) {
    throw std::invalid_argument("BatchKVCache: keys and values must be [B, Nkv, L, D]");
  }
  return quantizer_->pack(x);
}

void BatchKVCache::allocate(const mx::array& like) {
  keys_ = mx::zeros({std::max(rows(), reserved_rows_), like.shape(1), kStep, like.shape(3)},
                    like.dtype());
  values_ = *keys_;
  length_ = 0;
}

mx::array BatchKVCache::active(const mx::array& buf, int n) {
  return buf.shape(0) == n ? buf : rows_of(buf, 0, n);
}

void BatchKVCache::put_rows(const mx::array& k, const mx::array& v, int at) {
  const int n = k.shape(0), need = at + n;
  auto zero_rows = [](const mx::array& like, int count) {
    return mx::zeros({count, like.shape(1), like.shape(2), like.shape(3)}, like.dtype());
  };
  if (keys_ && need <= keys_->shape(0)) {
    // Into spare rows: written in place when nothing else holds the buffer.
    auto put = [&](const mx::array& buf, const mx::array& x) {
      return mx::slice_update(buf, mx::astype(x, buf.dtype()), mx::Shape{at, 0, 0, 0},
                              mx::Shape{need, buf.shape(1), buf.shape(2), buf.shape(3)});
    };
    keys_ = put(*keys_, k);
    values_ = put(*values_, v);
    return;
  }
  // A new buffer with room for the rows reserved (one allocation for a burst of joins).
  const int spare = std::max(need, reserved_rows_) - need;
  auto grow = [&](const std::optional<mx::array>& buf, const mx::array& x) {
    std::vector<mx::array> parts;
    if (buf && at > 0) parts.push_back(rows_of(*buf, 0, at));
    parts.push_back(buf ? mx::astype(x, buf->dtype()) : x);
    if (spare > 0) parts.push_back(zero_rows(parts.back(), spare));
    return parts.size() == 1 ? parts[0] : mx::concatenate(parts, 0);
  };
  keys_ = grow(keys_, k);
  values_ = grow(values_, v);
}

void BatchKVCache::reserve_rows(int n) { reserved_rows_ = std::max(n, 0); }

void BatchKVCache::add_rows(const std::vector<Row>& float_rows) {
  if (float_rows.empty()) return;
  std::vector<Row> added;
  for (const auto& r : float_rows) {
    if (r) {
      added.emplace_back(std::pair{store(r->first), store(r->second)});
    } else {
      added.emplace_back(std::nullopt);
    }
  }
  int longest = 0;
  const mx::array* first = nullptr;  // the first non-empty row's keys
  for (const auto& r : added) {
    if (!r) continue;
    const auto& [k, v] = *r;
    if (k.ndim() != 4 || k.shape(0) != 1 || v.shape() != k.shape()) {
      throw std::invalid_argument(
          "BatchKVCache::add_rows: keys and values must both be [1, Nkv, L, D], got keys " +
          mx::shape_str(k.shape()) + ", values " + mx::shape_str(v.shape()));
    }
    if (!first) first = &k;
    const auto& ref = keys_ ? *keys_ : *first;
    if (k.shape(1) != ref.shape(1) || k.shape(3) != ref.shape(3)) {
      throw std::invalid_argument("BatchKVCache::add_rows: a row's keys " +
                                  mx::shape_str(k.shape()) + " differ in Nkv or D from " +
                                  mx::shape_str(ref.shape()));
    }
    longest = std::max(longest, k.shape(2));
  }
  if (!keys_) {
    if (!first) {
      // Nothing to shape a buffer from yet: the rows wait for the first update.
      pad_.insert(pad_.end(), added.size(), 0);
      return;
    }
    if (rows() > 0) allocate(*first);  // earlier empty rows get their (zero) buffer now
  }
  if (keys_ && longest > length_) {
    reserve(longest + 1);
    pad_left(longest - length_);
  }
  length_ = std::max(length_, longest);
  const mx::array& like = keys_ ? *keys_ : *first;
  const mx::Dtype dtype = like.dtype();
  const int nkv = like.shape(1), dim = like.shape(3);
  int cap = keys_ ? keys_->shape(2) : std::max(1, (length_ + kStep) / kStep) * kStep;
  const int at = rows();
  std::vector<mx::array> ks, vs;
  for (const auto& r : added) {
    const int L = r ? r->first.shape(2) : 0;
    auto padded = [&](const std::optional<mx::array>& x) {
      if (!x) return mx::zeros({1, nkv, cap, dim}, dtype);
      std::vector<mx::array> parts;
      if (length_ > L) parts.push_back(mx::zeros({1, nkv, length_ - L, dim}, dtype));
      parts.push_back(mx::astype(*x, dtype));
      if (cap > length_) parts.push_back(mx::zeros({1, nkv, cap - length_, dim}, dtype));
      return parts.size() == 1 ? parts[0] : mx::concatenate(parts, 2);
    };
    ks.push_back(padded(r ? std::optional<mx::array>(r->first) : std::nullopt));
    vs.push_back(padded(r ? std::optional<mx::array>(r->second) : std::nullopt));
    pad_.push_back(length_ - L);
  }
  put_rows(ks.size() == 1 ? ks[0] : mx::concatenate(ks, 0),
           vs.size() == 1 ? vs[0] : mx::concatenate(vs, 0), at);
}

void BatchKVCache::pad_left(int d) {
  // Every existing row gets more padding on the left (the caller reserved room).
  int cap = keys_->shape(2);
  auto shift = [&](const mx::array& buf) {
    return mx::concatenate({zeros_seq(buf, buf.shape(0), d), seq(buf, 0, cap - d)}, 2);
  };
  keys_ = shift(*keys_);
  values_ = shift(*values_);
  for (int& p : pad_) p += d;
}

void BatchKVCache::add_block(const BatchKVCache& block, const std::vector<int>& lengths) {
  const int n = block.rows();
  if (static_cast<int>(lengths.size()) != n) {
    throw std::invalid_argument("BatchKVCache::add_block: " + std::to_string(lengths.size()) +
                                " lengths for " + std::to_string(n) + " rows");
  }
  for (int b = 0; b < n; ++b) {
    if (lengths[b] < 0 || lengths[b] > block.row_length(b)) {
      throw std::out_of_range("BatchKVCache::add_block: " + std::to_string(lengths[b]) +
                              " positions of row " + std::to_string(b) + ", which holds " +
                              std::to_string(block.row_length(b)));
    }
  }
  if (n == 0) return;
  const bool empty_rows =
      std::any_of(lengths.begin(), lengths.end(), [](int len) { return len == 0; });
  // No rows yet: the joining rows make the buffer.
  const bool fresh = !keys_ && rows() == 0;
  if ((!keys_ && !fresh) || !block.keys_ || quantizer_ || block.quantizer_ || empty_rows) {
    // Rows one by one: earlier rows hold nothing yet, or rows are stored
    // quantized, or some row holds nothing.
    std::vector<Row> rows;
    for (int b = 0; b < n; ++b) {
      if (lengths[b] == 0) {
        rows.emplace_back(std::nullopt);
      } else {
        rows.emplace_back(block.row(b, lengths[b]));
      }
    }
    add_rows(rows);
    return;
  }
  const mx::array& bk = *block.keys_;
  if (!fresh && (bk.shape(1) != keys_->shape(1) || bk.shape(3) != keys_->shape(3))) {
    throw std::invalid_argument("BatchKVCache::add_block: the block's keys " +
                                mx::shape_str(bk.shape()) + " differ in Nkv or D from " +
                                mx::shape_str(keys_->shape()));
  }
  const int longest = *std::max_element(lengths.begin(), lengths.end());
  if (!fresh && longest > length_) {
    reserve(longest + 1);
    pad_left(longest - length_);
  }
  length_ = std::max(length_, longest);
  // Room for the next step's position, as reserve() leaves.
  const int cap = fresh ? ((length_ + kStep) / kStep) * kStep : keys_->shape(2);
  // Position p of joining row b reads the block's position p - (length_ -
  // lengths[b]) + start_b, where its real positions start at start_b; the
  // padding before reads position 0 (hidden by the mask).
  const int at = rows();
  std::vector<int32_t> key{n, cap, length_, block.length_};
  std::vector<int32_t> rows_idx(static_cast<size_t>(n) * cap), pos_idx(rows_idx.size(), 0);
  for (int b = 0; b < n; ++b) {
    const int start = block.pad_[b];
    const int first = length_ - lengths[b];
    key.push_back(start);
    key.push_back(lengths[b]);
    for (int p = 0; p < cap; ++p) {
      rows_idx[static_cast<size_t>(b) * cap + p] = b;
      if (p >= first && p < length_) pos_idx[static_cast<size_t>(b) * cap + p] = start + p - first;
    }
    pad_.push_back(first);
  }
  BatchStepArrays& st = *step_;
  if (!st.join_index || st.join_key != key) {
    st.join_key = key;
    st.join_index.emplace(mx::array(rows_idx, {n, cap}, mx::int32),
                          mx::array(pos_idx, {n, cap}, mx::int32));
  }
  const auto& [ri, pi] = *st.join_index;
  auto make_rows = [&](const mx::array& src) {
    const int nkv = src.shape(1), dim = src.shape(3);
    // [n, cap, 1, Nkv, 1, D] windows -> [n, Nkv, cap, D], contiguous (so that
    // slice_update can write the next positions in place).
    mx::array g = mx::gather(src, {ri, pi}, {0, 2}, {1, nkv, 1, dim});
    return mx::copy(mx::transpose(mx::reshape(g, {n, cap, nkv, dim}), {0, 2, 1, 3}));
  };
  put_rows(make_rows(bk), make_rows(*block.values_), at);
}

std::vector<int> BatchKVCache::order_after_removal(int batch, std::vector<int> rows) {
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  for (int b : rows) {
    if (b < 0 || b >= batch) {
      throw std::out_of_range("BatchKVCache::remove_rows: row " + std::to_string(b) + " of " +
                              std::to_string(batch));
    }
  }
  const int n = batch - static_cast<int>(rows.size());
  std::vector<bool> leaving(static_cast<size_t>(batch), false);
  for (int b : rows) leaving[b] = true;
  // Rows below n stay where they are; each slot a leaving row frees there takes the next
  // remaining row from n upwards.
  std::vector<int> order(static_cast<size_t>(n));
  int mover = n;
  for (int i = 0; i < n; ++i) {
    if (!leaving[i]) {
      order[i] = i;
      continue;
    }
    while (leaving[mover]) ++mover;
    order[i] = mover++;
  }
  return order;
}

void BatchKVCache::remove_rows(std::vector<int> rows) {
  const std::vector<int> order = order_after_removal(this->rows(), std::move(rows));
  const int n = static_cast<int>(order.size());
  if (n == this->rows()) return;
  std::vector<int> pads;
  for (int b : order) pads.push_back(pad_[b]);
  pad_ = pads;
  if (n == 0) {
    keys_.reset();
    values_.reset();
    length_ = 0;
    return;
  }
  if (!keys_) return;  // every row still empty: nothing stored
  std::vector<int32_t> from, to;
  for (int i = 0; i < n; ++i) {
    if (order[i] != i) {
      from.push_back(order[i]);
      to.push_back(i);
    }
  }
  auto compact = [&](mx::array buf) {
    if (!from.empty()) {
      // The moving rows are gathered into their own small array first: were they read
      // through a view of `buf`, that view would keep the buffer from being written in place.
      // Then one update per run of consecutive destination slots (a group of rows that
      // joined together and leaves together frees one run).
      mx::array moving =
          mx::take(buf, mx::array(from, {static_cast<int>(from.size())}, mx::int32), 0);
      for (size_t m = 0; m < to.size();) {
        size_t e = m + 1;
        while (e < to.size() && to[e] == to[e - 1] + 1) ++e;
        const int r0 = static_cast<int>(m), r1 = static_cast<int>(e);
        buf = mx::slice_update(
            buf, rows_of(moving, r0, r1), mx::Shape{to[m], 0, 0, 0},
            mx::Shape{to[m] + (r1 - r0), buf.shape(1), buf.shape(2), buf.shape(3)});
        m = e;
      }
    }
    // The whole buffer stays (its rows past n are spare): the next update writes it in place.
    return buf;
  };
  keys_ = compact(*keys_);
  values_ = compact(*values_);
  // Padding every remaining row shares stays: dropping it would leave a view the next update
  // copies whole. Only a large shared run (as long as a growth step) is cut, in one copy.
  int common = *std::min_element(pad_.begin(), pad_.end());
  if (common >= kStep) {
    int cap = keys_->shape(2);
    keys_ = seq(*keys_, common, cap);
    values_ = seq(*values_, common, cap);
    for (int& p : pad_) p -= common;
    length_ -= common;
  }
}

std::pair<mx::array, mx::array> BatchKVCache::row(int b, int length) const {
  if (b < 0 || b >= rows()) {
    throw std::out_of_range("BatchKVCache::row: row " + std::to_string(b) + " of " +
                            std::to_string(rows()));
  }
  if (length < 1 || length > row_length(b)) {
    throw std::out_of_range("BatchKVCache::row: " + std::to_string(length) + " positions of row " +
                            std::to_string(b) + ", which holds " + std::to_string(row_length(b)));
  }
  auto one = [&](const mx::array& buf) {
    return load(seq(rows_of(buf, b, b + 1), pad_[b], pad_[b] + length));
  };
  return {one(*keys_), one(*values_)};
}

std::pair<mx::array, mx::array> BatchKVCache::update_and_fetch(const mx::array& keys,
                                                               const mx::array& values) {
  if (rows() == 0) throw std::logic_error("BatchKVCache: update before any row was added");
  const int S = step_rows();
  if (keys.ndim() != 4 || keys.shape(0) != S || values.shape() != keys.shape()) {
    throw std::invalid_argument(
        "BatchKVCache: an update must be [B, Nkv, T, D] with B = " + std::to_string(S) + " (rows " +
        std::to_string(rows()) + ", step rows " + std::to_string(S) + "), got keys " +
        mx::shape_str(keys.shape()) + ", values " + mx::shape_str(values.shape()));
  }
  if (!keys_) allocate(store(keys));  // every row joined empty
  const int T = keys.shape(2);
  reserve(length_ + T);
  const int prev = length_;
  length_ += T;
  auto put = [&](mx::array& buf, const mx::array& x) {
    buf = mx::slice_update(buf, mx::astype(x, buf.dtype()), mx::Shape{0, 0, prev, 0},
                           mx::Shape{x.shape(0), x.shape(1), length_, x.shape(3)});
  };
  put(*keys_, store(keys));
  put(*values_, store(values));
  return {load(seq(active(*keys_, S), 0, length_)), load(seq(active(*values_, S), 0, length_))};
}

std::optional<std::pair<mx::array, mx::array>> BatchKVCache::update_one_with(
    const BufferWrite& write, mx::Dtype dtype) {
  if (quantizer_ || !keys_ || rows() == 0 || keys_->dtype() != dtype) return std::nullopt;
  const int S = step_rows();
  reserve(length_ + 1);
  const int prev = length_;
  length_ += 1;
  std::tie(*keys_, *values_) = write(*keys_, *values_, mx::array(prev, mx::int32));
  return std::pair{load(seq(active(*keys_, S), 0, length_)),
                   load(seq(active(*values_, S), 0, length_))};
}

BatchStepArrays& BatchKVCache::step_arrays() const {
  BatchStepArrays& st = *step_;
  const int S = step_rows();
  if (st.length != length_ || st.pad != pad_ || st.step_rows != S) {
    st.pad = pad_;
    st.length = length_;
    st.step_rows = S;
    st.masks.clear();
    st.row_offsets.reset();
  }
  return st;
}

AttentionMask BatchKVCache::make_mask(int T, std::optional<int> window) const {
  bool padded = std::any_of(pad_.begin(), pad_.end(), [](int p) { return p > 0; });
  if (!padded) return AttentionMask{T > 1 ? "causal" : "", window, std::nullopt};
  const int B = step_rows(), Lk = length_ + T;
  // A window as long as every key range hides nothing: the same mask as none.
  if (window && *window >= Lk) window.reset();
  BatchStepArrays& st = step_arrays();
  const std::pair<int, int> key{T, window ? *window : -1};
  for (const auto& [k, mask] : st.masks) {
    if (k == key) return mask;
  }
  std::vector<uint8_t> m(static_cast<size_t>(B) * T * Lk, 0);
  for (int b = 0; b < B; ++b) {
    for (int i = 0; i < T; ++i) {
      const int q = length_ + i;
      int lo = b < rows() ? pad_[b] : 0;  // a spare row sees every position
      if (window) lo = std::max(lo, q - *window + 1);
      uint8_t* row = m.data() + (static_cast<size_t>(b) * T + i) * Lk;
      std::fill(row + lo, row + q + 1, uint8_t{1});
    }
  }
  AttentionMask mask{"array", std::nullopt, mx::array(m.begin(), {B, 1, T, Lk}, mx::bool_)};
  st.masks.emplace_back(key, mask);
  return mask;
}

std::optional<mx::array> BatchKVCache::row_offsets() const {
  BatchStepArrays& st = step_arrays();
  if (!st.row_offsets) {
    std::vector<int32_t> off;
    for (int p : pad_) off.push_back(length_ - p);
    off.resize(static_cast<size_t>(step_rows()), length_);  // spare rows: no padding
    st.row_offsets = mx::array(off, {static_cast<int>(off.size())}, mx::int32);
  }
  return st.row_offsets;
}

std::vector<mx::array> BatchKVCache::state() const {
  if (!keys_) return {};
  return {seq(active(*keys_, rows()), 0, length_), seq(active(*values_, rows()), 0, length_)};
}

void BatchKVCache::set_state(const std::vector<mx::array>&) {
  throw std::logic_error("BatchKVCache: state is built with add_row, not set_state");
}

size_t BatchKVCache::nbytes() const { return keys_ ? keys_->nbytes() + values_->nbytes() : 0; }

}  // namespace lm::server
