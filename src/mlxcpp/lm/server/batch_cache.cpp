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

void BatchKVCache::add_row(const mx::array& keys, const mx::array& values) {
  if (keys.ndim() != 4 || keys.shape(0) != 1 || values.shape() != keys.shape()) {
    throw std::invalid_argument(
        "BatchKVCache::add_row: keys and values must both be [1, Nkv, L, D]");
  }
  const int L = keys.shape(2);
  if (!keys_) {
    int cap = std::max(1, (L + kStep) / kStep) * kStep;
    auto fresh = [&](const mx::array& x) {
      return mx::concatenate({x, zeros_seq(x, 1, cap - L)}, 2);
    };
    keys_ = fresh(keys);
    values_ = fresh(values);
    pad_ = {0};
    length_ = L;
    return;
  }
  if (keys.shape(1) != keys_->shape(1) || keys.shape(3) != keys_->shape(3)) {
    throw std::invalid_argument(
        "BatchKVCache::add_row: the row's Nkv or D differs from the batch's");
  }
  if (L > length_) {
    // Every existing row gets more padding on the left.
    int d = L - length_;
    reserve(L + 1);
    int cap = keys_->shape(2);
    auto shift = [&](const mx::array& buf) {
      return mx::concatenate({zeros_seq(buf, buf.shape(0), d), seq(buf, 0, cap - d)}, 2);
    };
    keys_ = shift(*keys_);
    values_ = shift(*values_);
    for (int& p : pad_) p += d;
    length_ = L;
  }
  int cap = keys_->shape(2);
  auto padded = [&](const mx::array& x) {
    std::vector<mx::array> parts;
    if (length_ > L) parts.push_back(zeros_seq(x, 1, length_ - L));
    parts.push_back(mx::astype(x, keys_->dtype()));
    parts.push_back(zeros_seq(*keys_, 1, cap - length_));
    return mx::concatenate(parts, 2);
  };
  keys_ = mx::concatenate({*keys_, padded(keys)}, 0);
  values_ = mx::concatenate({*values_, padded(values)}, 0);
  pad_.push_back(length_ - L);
}

void BatchKVCache::remove_row(int b) {
  if (b < 0 || b >= rows()) {
    throw std::out_of_range("BatchKVCache::remove_row: row " + std::to_string(b) + " of " +
                            std::to_string(rows()));
  }
  if (rows() == 1) {
    keys_.reset();
    values_.reset();
    pad_.clear();
    length_ = 0;
    return;
  }
  auto drop = [&](const mx::array& buf) {
    std::vector<mx::array> parts;
    if (b > 0) parts.push_back(rows_of(buf, 0, b));
    if (b + 1 < buf.shape(0)) parts.push_back(rows_of(buf, b + 1, buf.shape(0)));
    return parts.size() == 1 ? parts[0] : mx::concatenate(parts, 0);
  };
  keys_ = drop(*keys_);
  values_ = drop(*values_);
  pad_.erase(pad_.begin() + b);
  // Padding every remaining row shares is dropped so the buffer stays short.
  int common = *std::min_element(pad_.begin(), pad_.end());
  if (common > 0) {
    int cap = keys_->shape(2);
    keys_ = seq(*keys_, common, cap);
    values_ = seq(*values_, common, cap);
    for (int& p : pad_) p -= common;
    length_ -= common;
  }
}

std::pair<mx::array, mx::array> BatchKVCache::row(int b) const {
  if (b < 0 || b >= rows()) {
    throw std::out_of_range("BatchKVCache::row: row " + std::to_string(b) + " of " +
                            std::to_string(rows()));
  }
  auto one = [&](const mx::array& buf) { return seq(rows_of(buf, b, b + 1), pad_[b], length_); };
  return {one(*keys_), one(*values_)};
}

std::pair<mx::array, mx::array> BatchKVCache::update_and_fetch(const mx::array& keys,
                                                               const mx::array& values) {
  if (!keys_) throw std::logic_error("BatchKVCache: update before any row was added");
  if (keys.ndim() != 4 || keys.shape(0) != rows() || values.shape() != keys.shape()) {
    throw std::invalid_argument("BatchKVCache: an update must be [B, Nkv, T, D] with B = " +
                                std::to_string(rows()));
  }
  const int T = keys.shape(2);
  reserve(length_ + T);
  const int prev = length_;
  length_ += T;
  auto put = [&](mx::array& buf, const mx::array& x) {
    buf = mx::slice_update(buf, mx::astype(x, buf.dtype()), mx::Shape{0, 0, prev, 0},
                           mx::Shape{x.shape(0), x.shape(1), length_, x.shape(3)});
  };
  put(*keys_, keys);
  put(*values_, values);
  return {seq(*keys_, 0, length_), seq(*values_, 0, length_)};
}

AttentionMask BatchKVCache::make_mask(int T, std::optional<int> window) const {
  bool padded = std::any_of(pad_.begin(), pad_.end(), [](int p) { return p > 0; });
  if (!padded) return AttentionMask{T > 1 ? "causal" : "", window, std::nullopt};
  const int B = rows(), Lk = length_ + T;
  std::vector<uint8_t> m(static_cast<size_t>(B) * T * Lk, 0);
  for (int b = 0; b < B; ++b) {
    for (int i = 0; i < T; ++i) {
      const int q = length_ + i;
      int lo = pad_[b];
      if (window) lo = std::max(lo, q - *window + 1);
      uint8_t* row = m.data() + (static_cast<size_t>(b) * T + i) * Lk;
      for (int j = lo; j <= q; ++j) row[j] = 1;
    }
  }
  return AttentionMask{"array", std::nullopt, mx::array(m.begin(), {B, 1, T, Lk}, mx::bool_)};
}

std::optional<mx::array> BatchKVCache::row_offsets() const {
  std::vector<int32_t> off;
  for (int p : pad_) off.push_back(length_ - p);
  return mx::array(off, {static_cast<int>(off.size())}, mx::int32);
}

std::vector<mx::array> BatchKVCache::state() const {
  if (!keys_) return {};
  return {seq(*keys_, 0, length_), seq(*values_, 0, length_)};
}

void BatchKVCache::set_state(const std::vector<mx::array>&) {
  throw std::logic_error("BatchKVCache: state is built with add_row, not set_state");
}

size_t BatchKVCache::nbytes() const { return keys_ ? keys_->nbytes() + values_->nbytes() : 0; }

}  // namespace lm::server
