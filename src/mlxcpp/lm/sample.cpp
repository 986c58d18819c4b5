// Token sampling and logits processors (mlx-lm's sample_utils.py).
#include "mlxcpp/lm/sample.h"

#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"

namespace lm {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

std::string num(float v) {
  std::string s = std::to_string(v);
  return s;
}

void check_logprobs(const mx::array& x, const char* who) {
  require(x.ndim() >= 1 && x.shape(-1) > 0,
          std::string(who) + ": expects logprobs of shape [..., V] with V > 0");
}

// A scalar in x's dtype, so bfloat16 logits stay bfloat16.
mx::array scalar(float v, const mx::array& like) { return mx::array(v, like.dtype()); }

void check_context(int size, const char* field) {
  require(size >= 1, std::string(field) + " must be >= 1, got " + std::to_string(size));
}

// The distinct tokens among the last `context` of `tokens`, with their counts.
std::map<int32_t, int> recent_counts(const std::vector<int32_t>& tokens, int context, int vocab,
                                     const char* who) {
  std::map<int32_t, int> counts;
  size_t start = tokens.size() > static_cast<size_t>(context) ? tokens.size() - context : 0;
  for (size_t i = start; i < tokens.size(); ++i) {
    int32_t t = tokens[i];
    require(t >= 0 && t < vocab, std::string(who) + ": token id " + std::to_string(t) +
                                     " is outside the vocabulary [0, " + std::to_string(vocab) +
                                     ")");
    ++counts[t];
  }
  return counts;
}

// Replaces columns `ids` of logits [..., V] by f(columns, per-column values).
template <typename F>
mx::array update_columns(const mx::array& logits, const std::vector<int32_t>& ids,
                         const std::vector<float>& per_id, F f) {
  if (ids.empty()) return logits;
  const int n = static_cast<int>(ids.size());
  mx::array idx(ids, {n}, mx::int32);
  mx::array cols = mx::take(logits, idx, -1);
  mx::array vals = mx::astype(mx::array(per_id, {n}), logits.dtype());
  mx::array updated = f(cols, vals);
  mx::Shape ishape(logits.ndim(), 1);
  ishape.back() = n;
  mx::Shape bshape = logits.shape();
  bshape.back() = n;
  mx::array bidx = mx::broadcast_to(mx::reshape(idx, ishape), bshape);
  return mx::put_along_axis(logits, bidx, updated, -1);
}

}  // namespace

mx::array apply_top_p(const mx::array& logprobs, float top_p) {
  require(top_p >= 0 && top_p <= 1, "top_p must be in [0, 1], got " + num(top_p));
  check_logprobs(logprobs, "apply_top_p");
  mx::array probs = mx::exp(mx::astype(logprobs, mx::float32));
  mx::array order = mx::argsort(logprobs, -1);  // ascending
  mx::array cum = mx::cumsum(mx::take_along_axis(probs, order, -1), -1);
  mx::array keep_sorted = mx::greater(cum, mx::array(1.0f - top_p));
  mx::array keep = mx::put_along_axis(mx::zeros_like(keep_sorted), order, keep_sorted, -1);
  return mx::where(keep, logprobs, scalar(-kInf, logprobs));
}

mx::array apply_min_p(const mx::array& logprobs, float min_p, int min_tokens_to_keep) {
  require(min_p >= 0 && min_p <= 1, "min_p must be in [0, 1], got " + num(min_p));
  require(min_tokens_to_keep >= 1,
          "min_tokens_to_keep must be >= 1, got " + std::to_string(min_tokens_to_keep));
  check_logprobs(logprobs, "apply_min_p");
  // p < min_p * p_max  <=>  logp < log(min_p) + max logp (min_p = 0 drops nothing).
  mx::array top = mx::max(logprobs, -1, true);
  mx::array cut = mx::add(mx::astype(top, mx::float32), mx::array(std::log(min_p)));
  mx::array remove = mx::less(mx::astype(logprobs, mx::float32), cut);
  const int V = logprobs.shape(-1);
  const int keep = std::min(min_tokens_to_keep, V);
  if (keep > 1) {
    mx::array part = mx::argpartition(logprobs, V - keep, -1);
    mx::Shape start(logprobs.ndim(), 0), stop = part.shape();
    start.back() = V - keep;
    mx::array top_idx = mx::slice(part, start, stop);
    remove = mx::put_along_axis(remove, top_idx,
                                mx::broadcast_to(mx::array(false), top_idx.shape()), -1);
  }
  return mx::where(remove, scalar(-kInf, logprobs), logprobs);
}

mx::array apply_top_k(const mx::array& logprobs, int k) {
  check_logprobs(logprobs, "apply_top_k");
  const int V = logprobs.shape(-1);
  require(k > 0 && k < V, "top_k must be in (0, " + std::to_string(V) + ") for a vocabulary of " +
                              std::to_string(V) + ", got " + std::to_string(k));
  mx::array part = mx::argpartition(mx::negative(logprobs), k - 1, -1);
  mx::Shape start(logprobs.ndim(), 0), stop = part.shape();
  start.back() = k;
  mx::array drop = mx::slice(part, start, stop);
  return mx::put_along_axis(logprobs, drop, mx::broadcast_to(scalar(-kInf, logprobs), drop.shape()),
                            -1);
}

mx::array apply_xtc(const mx::array& logprobs, float probability, float threshold,
                    const std::vector<int>& special_tokens, const std::optional<mx::array>& key) {
  require(threshold >= 0 && threshold <= 0.5f,
          "xtc_threshold must be in [0, 0.5], got " + num(threshold));
  require(probability >= 0 && probability <= 1,
          "xtc_probability must be in [0, 1], got " + num(probability));
  check_logprobs(logprobs, "apply_xtc");
  const int V = logprobs.shape(-1);
  mx::array probs = mx::softmax(mx::astype(logprobs, mx::float32), -1, true);
  // The least likely of the tokens above the threshold survives; the others go.
  mx::array above = mx::where(mx::greater(probs, mx::array(threshold)), probs, mx::array(kInf));
  mx::array mask = mx::greater(probs, mx::min(above, -1, true));
  if (!special_tokens.empty()) {
    std::vector<uint8_t> allowed(V, 1);
    for (int t : special_tokens) {
      require(t >= 0 && t < V, "xtc_special_tokens: token id " + std::to_string(t) +
                                   " is outside the vocabulary [0, " + std::to_string(V) + ")");
      allowed[t] = 0;
    }
    mask = mx::logical_and(mask, mx::array(allowed.begin(), {V}, mx::bool_));
  }
  mx::array skip = mx::greater(mx::random::uniform(mx::Shape{}, key), mx::array(probability));
  return mx::where(skip, logprobs, mx::where(mask, scalar(-kInf, logprobs), logprobs));
}

namespace {

void validate(const SamplerOptions& o) {
  require(std::isfinite(o.temp) && o.temp >= 0, "temp must be >= 0, got " + num(o.temp));
  require(o.top_p >= 0 && o.top_p <= 1, "top_p must be in [0, 1], got " + num(o.top_p));
  require(o.min_p >= 0 && o.min_p <= 1, "min_p must be in [0, 1], got " + num(o.min_p));
  require(o.min_tokens_to_keep >= 1,
          "min_tokens_to_keep must be >= 1, got " + std::to_string(o.min_tokens_to_keep));
  require(o.top_k >= 0, "top_k must be >= 0, got " + std::to_string(o.top_k));
  require(o.xtc_probability >= 0 && o.xtc_probability <= 1,
          "xtc_probability must be in [0, 1], got " + num(o.xtc_probability));
  require(o.xtc_threshold >= 0 && o.xtc_threshold <= 0.5f,
          "xtc_threshold must be in [0, 0.5], got " + num(o.xtc_threshold));
  for (int t : o.xtc_special_tokens) {
    require(t >= 0, "xtc_special_tokens: token ids must be >= 0, got " + std::to_string(t));
  }
}

// The filters top_p -> min_p -> xtc -> top_k, then a categorical draw from logprobs / temp.
mx::array filter_and_draw(const SamplerOptions& opt, const mx::array& logprobs,
                          const std::optional<mx::array>& xtc_key,
                          const std::optional<mx::array>& draw_key) {
  mx::array x = logprobs;
  if (opt.top_p > 0 && opt.top_p < 1) x = apply_top_p(x, opt.top_p);
  if (opt.min_p != 0) x = apply_min_p(x, opt.min_p, opt.min_tokens_to_keep);
  if (opt.xtc_probability > 0) {
    x = apply_xtc(x, opt.xtc_probability, opt.xtc_threshold, opt.xtc_special_tokens, xtc_key);
  }
  if (opt.top_k > 0) x = apply_top_k(x, opt.top_k);
  return mx::random::categorical(mx::multiply(x, scalar(1.0f / opt.temp, x)), -1, draw_key);
}

}  // namespace

Sampler make_sampler(const SamplerOptions& o) {
  validate(o);
  if (o.temp == 0) {
    return [](const mx::array& logprobs) { return mx::argmax(logprobs, -1); };
  }
  // A seeded sampler splits its own key per draw, so its sequence does not
  // depend on other users of the global generator.
  std::shared_ptr<mx::array> state;
  if (o.seed) state = std::make_shared<mx::array>(mx::random::key(*o.seed));
  auto next_key = [state]() -> std::optional<mx::array> {
    if (!state) return std::nullopt;
    auto [a, b] = mx::random::split(*state);
    *state = a;
    return b;
  };
  SamplerOptions opt = o;
  return [opt, next_key](const mx::array& logprobs) {
    std::optional<mx::array> xtc_key;
    if (opt.xtc_probability > 0) xtc_key = next_key();
    return filter_and_draw(opt, logprobs, xtc_key, next_key());
  };
}

KeyedSampler make_keyed_sampler(const SamplerOptions& o) {
  validate(o);
  if (o.temp == 0) {
    return [](const mx::array& logprobs, const mx::array&) { return mx::argmax(logprobs, -1); };
  }
  SamplerOptions opt = o;
  return [opt](const mx::array& logprobs, const mx::array& key) {
    auto [xtc_key, draw_key] = mx::random::split(key);
    return filter_and_draw(opt, logprobs, xtc_key, draw_key);
  };
}

std::vector<LogitsProcessor> make_logits_processors(const LogitsProcessorOptions& o) {
  std::vector<LogitsProcessor> out;
  if (!o.logit_bias.empty()) {
    std::vector<int32_t> ids;
    std::vector<float> bias;
    for (auto [t, b] : o.logit_bias) {
      require(t >= 0, "logit_bias: token id " + std::to_string(t) + " is negative");
      ids.push_back(t);
      bias.push_back(b);
    }
    out.push_back([ids, bias](const std::vector<int32_t>&, const mx::array& logits) {
      const int V = logits.shape(-1);
      require(ids.back() < V, "logit_bias: token id " + std::to_string(ids.back()) +
                                  " is outside the vocabulary [0, " + std::to_string(V) + ")");
      return update_columns(logits, ids, bias,
                            [](const mx::array& c, const mx::array& b) { return mx::add(c, b); });
    });
  }
  auto split = [](const std::map<int32_t, int>& counts, std::vector<int32_t>& ids,
                  std::vector<float>& n) {
    for (auto [t, c] : counts) {
      ids.push_back(t);
      n.push_back(static_cast<float>(c));
    }
  };
  if (o.repetition_penalty && *o.repetition_penalty != 0) {
    float p = *o.repetition_penalty;
    require(std::isfinite(p) && p >= 0, "repetition_penalty must be >= 0, got " + num(p));
    check_context(o.repetition_context_size, "repetition_context_size");
    int ctx = o.repetition_context_size;
    out.push_back([p, ctx, split](const std::vector<int32_t>& tokens, const mx::array& logits) {
      std::vector<int32_t> ids;
      std::vector<float> n;
      split(recent_counts(tokens, ctx, logits.shape(-1), "repetition_penalty"), ids, n);
      return update_columns(logits, ids, n, [&](const mx::array& c, const mx::array&) {
        mx::array pen = scalar(p, c);
        return mx::where(mx::less(c, scalar(0, c)), mx::multiply(c, pen), mx::divide(c, pen));
      });
    });
  }
  if (o.presence_penalty && *o.presence_penalty != 0) {
    float p = *o.presence_penalty;
    require(std::isfinite(p), "presence_penalty must be finite");
    check_context(o.presence_context_size, "presence_context_size");
    int ctx = o.presence_context_size;
    out.push_back([p, ctx, split](const std::vector<int32_t>& tokens, const mx::array& logits) {
      std::vector<int32_t> ids;
      std::vector<float> n;
      split(recent_counts(tokens, ctx, logits.shape(-1), "presence_penalty"), ids, n);
      return update_columns(logits, ids, n, [&](const mx::array& c, const mx::array&) {
        return mx::subtract(c, scalar(p, c));
      });
    });
  }
  if (o.frequency_penalty && *o.frequency_penalty != 0) {
    float p = *o.frequency_penalty;
    require(std::isfinite(p), "frequency_penalty must be finite");
    check_context(o.frequency_context_size, "frequency_context_size");
    int ctx = o.frequency_context_size;
    out.push_back([p, ctx, split](const std::vector<int32_t>& tokens, const mx::array& logits) {
      std::vector<int32_t> ids;
      std::vector<float> n;
      split(recent_counts(tokens, ctx, logits.shape(-1), "frequency_penalty"), ids, n);
      return update_columns(logits, ids, n, [&](const mx::array& c, const mx::array& count) {
        return mx::subtract(c, mx::multiply(count, scalar(p, c)));
      });
    });
  }
  return out;
}

}  // namespace lm
