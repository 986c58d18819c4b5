// Quantized KV caches: KVCache and RotatingKVCache over packed quantized rows (cache.h).
#include <charconv>
#include <stdexcept>

#include "mlxcpp/lm/cache.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/quantized.h"

namespace lm {

namespace {

int parse_meta(const std::string& s, const std::string& what) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) {
    throw std::runtime_error(what + ": expected a decimal integer, got '" + s + "'");
  }
  return v;
}

// Slice [lo, hi) of the last axis of a 4-d array.
mx::array last_slice(const mx::array& a, int lo, int hi) {
  return mx::slice(a, {0, 0, 0, lo}, {a.shape(0), a.shape(1), a.shape(2), hi});
}

// (codes, scales, biases) x 2 -> the two packed arrays.
std::pair<mx::array, mx::array> join_state(KVQuantizer& q, const std::vector<mx::array>& st,
                                           const char* cls) {
  if (st.size() != 6) {
    throw std::invalid_argument(std::string(cls) +
                                ": state must hold keys and values as (codes, scales, biases) "
                                "each, 6 arrays, got " +
                                std::to_string(st.size()));
  }
  return {q.join(st[0], st[1], st[2]), q.join(st[3], st[4], st[5])};
}

std::vector<mx::array> split_state(const KVQuantizer& q, const std::vector<mx::array>& packed) {
  if (packed.empty()) return {};
  std::vector<mx::array> out = q.split(packed[0]);
  for (auto& a : q.split(packed[1])) out.push_back(a);
  return out;
}

void check_kv_spec(int group_size, int bits) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 6 && bits != 8) {
    throw std::invalid_argument("KV cache quantization: bits must be 2, 3, 4, 5, 6 or 8, got " +
                                std::to_string(bits));
  }
  if (group_size != 32 && group_size != 64 && group_size != 128) {
    throw std::invalid_argument("KV cache quantization: group size must be 32, 64 or 128, got " +
                                std::to_string(group_size));
  }
}

}  // namespace

// ---------------------------------------------------------------- KVQuantizer

KVQuantizer::KVQuantizer(int group_size, int bits) : group_size_(group_size), bits_(bits) {
  check_kv_spec(group_size, bits);
}

void KVQuantizer::learn(int head_dim, mx::Dtype dtype, const char* who) {
  if (!mx::is_floating_point(dtype) || mx::size_of(dtype) < 2) {
    throw std::invalid_argument(std::string(who) +
                                ": keys/values/scales must be a 16- or 32-bit "
                                "floating type, got " +
                                mx::dtype_name(dtype));
  }
  if (head_dim % group_size_ != 0) {
    throw std::invalid_argument(
        std::string(who) + ": the head dimension " + std::to_string(head_dim) +
        " is not a multiple of the KV group "
        "size " +
        std::to_string(group_size_) + " (choose a smaller --kv-group-size)");
  }
  if (head_dim_ == 0) {
    head_dim_ = head_dim;
    dtype_ = dtype;
  } else if (head_dim_ != head_dim) {
    throw std::invalid_argument(std::string(who) + ": head dimension " + std::to_string(head_dim) +
                                " differs from the cached " + std::to_string(head_dim_));
  }
}

mx::array KVQuantizer::pack(const mx::array& x) {
  if (x.ndim() != 4) {
    throw std::invalid_argument("quantized KV cache: keys/values must be [B, N, T, D], got " +
                                mx::shape_str(x.shape()));
  }
  learn(x.shape(3), dtype_ ? *dtype_ : x.dtype(), "quantized KV cache");
  auto parts = mx::quantize(mx::astype(x, *dtype_), group_size_, bits_, "affine");
  return join(parts[0], parts[1], parts[2]);
}

mx::array KVQuantizer::join(const mx::array& codes, const mx::array& scales,
                            const mx::array& biases) {
  const char* who = "quantized KV cache state";
  if (codes.ndim() != 4 || scales.ndim() != 4 || biases.ndim() != 4 ||
      codes.dtype() != mx::uint32 || scales.shape() != biases.shape() ||
      scales.dtype() != biases.dtype()) {
    throw std::invalid_argument(std::string(who) +
                                ": expected uint32 codes [B, N, T, D*bits/32] and equal scales and "
                                "biases [B, N, T, D/group], got codes " +
                                mx::shape_str(codes.shape()) + ", scales " +
                                mx::shape_str(scales.shape()) + ", biases " +
                                mx::shape_str(biases.shape()));
  }
  const int groups = scales.shape(3);
  const int head_dim = groups * group_size_;
  if (codes.shape(3) * 32 != head_dim * bits_ || codes.shape(0) != scales.shape(0) ||
      codes.shape(1) != scales.shape(1) || codes.shape(2) != scales.shape(2)) {
    throw std::invalid_argument(std::string(who) + ": codes " + mx::shape_str(codes.shape()) +
                                " do not match scales " + mx::shape_str(scales.shape()) + " at " +
                                std::to_string(bits_) + " bits, group size " +
                                std::to_string(group_size_));
  }
  learn(head_dim, dtype_ ? *dtype_ : scales.dtype(), who);
  // (scale, bias) pairs of each group, viewed as 32-bit words (one word per pair in 16 bits).
  auto sb = mx::stack({mx::astype(scales, *dtype_), mx::astype(biases, *dtype_)}, -1);
  mx::Shape s = scales.shape();
  s[3] = 2 * groups;
  auto words = mx::view(mx::reshape(sb, s), mx::uint32);
  return mx::concatenate({codes, words}, 3);
}

std::vector<mx::array> KVQuantizer::split(const mx::array& packed) const {
  const int wc = head_dim_ * bits_ / 32;
  const int groups = head_dim_ / group_size_;
  auto codes = last_slice(packed, 0, wc);
  auto sb = mx::view(mx::copy(last_slice(packed, wc, packed.shape(3))), *dtype_);
  mx::Shape s = packed.shape();
  s[3] = groups;
  s.push_back(2);
  sb = mx::reshape(sb, s);
  auto pick = [&](int i) {
    return mx::squeeze(mx::slice(sb, {0, 0, 0, 0, i}, {s[0], s[1], s[2], s[3], i + 1}), 4);
  };
  return {codes, pick(0), pick(1)};
}

mx::array KVQuantizer::unpack(const mx::array& packed) const {
  auto p = split(packed);
  return mx::dequantize(p[0], p[1], p[2], group_size_, bits_, "affine", *dtype_);
}

// ------------------------------------------------------------- QuantizedKVCache

QuantizedKVCache::QuantizedKVCache(int group_size, int bits) : q_(group_size, bits) {}

std::pair<mx::array, mx::array> QuantizedKVCache::update_and_fetch(const mx::array& keys,
                                                                   const mx::array& values) {
  auto [k, v] = KVCache::update_and_fetch(q_.pack(keys), q_.pack(values));
  return {q_.unpack(k), q_.unpack(v)};
}

std::vector<mx::array> QuantizedKVCache::state() const { return split_state(q_, KVCache::state()); }

void QuantizedKVCache::set_state(const std::vector<mx::array>& state) {
  if (state.empty()) {
    KVCache::set_state({});
    return;
  }
  auto [k, v] = join_state(q_, state, "QuantizedKVCache");
  if (meta_offset_ && *meta_offset_ != k.shape(2)) {
    throw std::runtime_error("QuantizedKVCache: meta state offset " +
                             std::to_string(*meta_offset_) + " but the state holds " +
                             std::to_string(k.shape(2)) + " positions");
  }
  KVCache::set_state({k, v});
}

void QuantizedKVCache::set_float_state(const std::vector<mx::array>& kv) {
  if (kv.empty()) return;
  KVCache::set_state({q_.pack(kv.at(0)), q_.pack(kv.at(1))});
}

std::vector<std::string> QuantizedKVCache::meta_state() const {
  return {std::to_string(offset()), std::to_string(q_.group_size()), std::to_string(q_.bits())};
}

void QuantizedKVCache::set_meta_state(const std::vector<std::string>& meta) {
  if (meta.size() != 3) {
    throw std::runtime_error(
        "QuantizedKVCache: meta state must hold 3 integers (offset, group_size, bits), got " +
        std::to_string(meta.size()));
  }
  int offset = parse_meta(meta[0], "QuantizedKVCache meta state offset");
  int g = parse_meta(meta[1], "QuantizedKVCache meta state group_size");
  int bits = parse_meta(meta[2], "QuantizedKVCache meta state bits");
  q_ = KVQuantizer(g, bits);
  // The offset is the number of stored positions; set_state checks it (meta is read first).
  meta_offset_ = offset;
}

// --------------------------------------------------------- QuantizedRotatingKVCache

QuantizedRotatingKVCache::QuantizedRotatingKVCache(int max_size, int keep, int group_size, int bits)
    : RotatingKVCache(max_size, keep), q_(group_size, bits) {}

std::pair<mx::array, mx::array> QuantizedRotatingKVCache::update_and_fetch(
    const mx::array& keys, const mx::array& values) {
  auto [k, v] = RotatingKVCache::update_and_fetch(q_.pack(keys), q_.pack(values));
  return {q_.unpack(k), q_.unpack(v)};
}

std::vector<mx::array> QuantizedRotatingKVCache::state() const {
  return split_state(q_, RotatingKVCache::state());
}

void QuantizedRotatingKVCache::set_state(const std::vector<mx::array>& state) {
  if (state.empty()) {
    RotatingKVCache::set_state({});
    return;
  }
  auto [k, v] = join_state(q_, state, "QuantizedRotatingKVCache");
  RotatingKVCache::set_state({k, v});
}

void QuantizedRotatingKVCache::set_float_state(const std::vector<mx::array>& kv) {
  if (kv.empty()) return;
  RotatingKVCache::set_state({q_.pack(kv.at(0)), q_.pack(kv.at(1))});
}

std::vector<std::string> QuantizedRotatingKVCache::meta_state() const {
  auto m = RotatingKVCache::meta_state();
  m.push_back(std::to_string(q_.group_size()));
  m.push_back(std::to_string(q_.bits()));
  return m;
}

void QuantizedRotatingKVCache::set_meta_state(const std::vector<std::string>& meta) {
  if (meta.size() != 6) {
    throw std::runtime_error(
        "QuantizedRotatingKVCache: meta state must hold 6 integers (keep, max_size, offset, idx, "
        "group_size, bits), got " +
        std::to_string(meta.size()));
  }
  RotatingKVCache::set_meta_state({meta[0], meta[1], meta[2], meta[3]});
  q_ = KVQuantizer(parse_meta(meta[4], "QuantizedRotatingKVCache meta state group_size"),
                   parse_meta(meta[5], "QuantizedRotatingKVCache meta state bits"));
}

// ------------------------------------------------------------------ conversion

std::shared_ptr<KVCacheBase> KVCache::to_quantized(int group_size, int bits) const {
  auto q = std::make_shared<QuantizedKVCache>(group_size, bits);
  q->set_float_state(state());
  return q;
}

std::shared_ptr<KVCacheBase> RotatingKVCache::to_quantized(int group_size, int bits) const {
  auto q = std::make_shared<QuantizedRotatingKVCache>(max_size(), keep(), group_size, bits);
  q->RotatingKVCache::set_meta_state(RotatingKVCache::meta_state());
  q->set_float_state(state());
  return q;
}

bool maybe_quantize_kv_cache(PromptCache& cache, const KVQuantization& kv) {
  if (!kv.bits) return false;
  bool any = false;
  for (auto& layer : cache) {
    if (!layer || layer->offset() < kv.start) continue;
    if (auto q = layer->to_quantized(kv.group_size, *kv.bits)) {
      layer = std::move(q);
      any = true;
    }
  }
  return any;
}

}  // namespace lm
