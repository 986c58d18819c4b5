#include "mlxcpp/lm/server/batch_sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <tuple>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"

namespace lm::server {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

mx::array neg_inf(const mx::array& like) { return mx::array(-kInf, like.dtype()); }

// The filters of sample.cpp with a parameter per row ([n, 1] arrays); each
// keeps exactly the tokens the scalar form keeps for that row's value.

// threshold = 1 - top_p per row: keep the tokens whose ascending cumulative
// probability exceeds it.
mx::array top_p_rows(const mx::array& x, const mx::array& threshold) {
  mx::array probs = mx::exp(mx::astype(x, mx::float32));
  mx::array order = mx::argsort(x, -1);
  mx::array cum = mx::cumsum(mx::take_along_axis(probs, order, -1), -1);
  mx::array keep_sorted = mx::greater(cum, threshold);
  mx::array keep = mx::put_along_axis(mx::zeros_like(keep_sorted), order, keep_sorted, -1);
  return mx::where(keep, x, neg_inf(x));
}

// log_min_p = log(min_p) per row: drop p < min_p * p_max, keeping at least min_keep.
mx::array min_p_rows(const mx::array& x, const mx::array& log_min_p, int min_keep) {
  mx::array top = mx::max(x, -1, true);
  mx::array cut = mx::add(mx::astype(top, mx::float32), log_min_p);
  mx::array remove = mx::less(mx::astype(x, mx::float32), cut);
  const int V = x.shape(-1);
  const int keep = std::min(min_keep, V);
  if (keep > 1) {
    mx::array part = mx::argpartition(x, V - keep, -1);
    mx::array top_idx = mx::slice(part, {0, V - keep}, part.shape());
    remove = mx::put_along_axis(remove, top_idx,
                                mx::broadcast_to(mx::array(false), top_idx.shape()), -1);
  }
  return mx::where(remove, neg_inf(x), x);
}

// k per row ([n, 1] int32): keep each row's k most likely tokens (by rank, so
// exactly k of them).
mx::array top_k_rows(const mx::array& x, const mx::array& k) {
  const int n = x.shape(0), V = x.shape(1);
  mx::array order = mx::argsort(mx::negative(x), -1);
  mx::array ranks = mx::put_along_axis(
      mx::zeros({n, V}, mx::int32), order,
      mx::broadcast_to(mx::reshape(mx::arange(0, V, mx::int32), {1, V}), {n, V}), -1);
  return mx::where(mx::less(ranks, k), x, neg_inf(x));
}

// Which filters a sampled row uses: rows that agree share one set of ops.
struct Filters {
  bool top_p, min_p, top_k;
  int min_keep;
  auto tie() const { return std::tie(top_p, min_p, top_k, min_keep); }
  bool operator==(const Filters& o) const { return tie() == o.tie(); }
};

Filters filters_of(const SamplerOptions& o) {
  return {o.top_p > 0 && o.top_p<1, o.min_p != 0, o.top_k> 0,
          o.min_p != 0 ? o.min_tokens_to_keep : 1};
}

}  // namespace

RowSampler::RowSampler(const SamplerOptions& options)
    : options_(options), own_(make_sampler(options)) {
  if (options_.seed) key_ = mx::random::key(*options_.seed);
}

std::optional<mx::array> RowSampler::next_key() {
  if (!key_) return std::nullopt;
  auto [a, b] = mx::random::split(*key_);
  key_ = a;
  return b;
}

mx::array sample_rows(const mx::array& logprobs, const std::vector<RowSampler*>& rows) {
  if (logprobs.ndim() != 2 || logprobs.shape(0) != static_cast<int>(rows.size())) {
    throw std::invalid_argument("sample_rows: logprobs " + mx::shape_str(logprobs.shape()) +
                                " must be [B, V] with B = " + std::to_string(rows.size()) +
                                " samplers");
  }
  const int B = logprobs.shape(0), V = logprobs.shape(1);
  if (B == 0) return mx::zeros({0}, mx::int32);
  struct Group {
    Filters filters;
    std::vector<int> seeded, unseeded;
  };
  std::vector<int> greedy, own;
  std::vector<Group> groups;
  for (int b = 0; b < B; ++b) {
    RowSampler* r = rows[b];
    if (!r)
      throw std::invalid_argument("sample_rows: row " + std::to_string(b) + " has no sampler");
    if (r->greedy()) {
      greedy.push_back(b);
    } else if (r->options_.xtc_probability > 0) {
      own.push_back(b);
    } else {
      Filters f = filters_of(r->options_);
      auto g = std::find_if(groups.begin(), groups.end(),
                            [&](const Group& x) { return x.filters == f; });
      if (g == groups.end()) g = groups.insert(groups.end(), Group{f, {}, {}});
      (r->key_ ? g->seeded : g->unseeded).push_back(b);
    }
  }
  auto subset = [&](const std::vector<int>& idx) {
    if (static_cast<int>(idx.size()) == B) return logprobs;  // every row, in order
    return mx::take(logprobs, mx::array(idx, {static_cast<int>(idx.size())}, mx::int32), 0);
  };
  std::vector<mx::array> parts;
  std::vector<int> order;
  if (!greedy.empty()) {
    parts.push_back(mx::astype(mx::argmax(subset(greedy), -1), mx::int32));
    order.insert(order.end(), greedy.begin(), greedy.end());
  }
  for (auto& g : groups) {
    // Seeded rows first, each with its own draw; the others share one draw.
    std::vector<int> idx = g.seeded;
    idx.insert(idx.end(), g.unseeded.begin(), g.unseeded.end());
    const int n = static_cast<int>(idx.size());
    auto per_row = [&](auto value) {
      std::vector<float> v;
      for (int b : idx) v.push_back(value(rows[b]->options_));
      return mx::array(v, {n, 1}, mx::float32);
    };
    mx::array x = subset(idx);
    if (g.filters.top_p) {
      x = top_p_rows(x, per_row([](const SamplerOptions& o) { return 1.0f - o.top_p; }));
    }
    if (g.filters.min_p) {
      x = min_p_rows(x, per_row([](const SamplerOptions& o) { return std::log(o.min_p); }),
                     g.filters.min_keep);
    }
    if (g.filters.top_k) {
      std::vector<int32_t> k;
      for (int b : idx) k.push_back(rows[b]->options_.top_k);
      if (std::all_of(k.begin(), k.end(), [&](int32_t v) { return v == k.front(); })) {
        x = apply_top_k(x, k.front());
      } else {
        x = top_k_rows(x, mx::array(k, {n, 1}, mx::int32));
      }
    }
    x = mx::multiply(x, per_row([](const SamplerOptions& o) { return 1.0f / o.temp; }));
    // Gumbel-max, as mx::random::categorical draws: a seeded row's noise is
    // exactly what its own key gives for a [1, V] categorical.
    std::vector<mx::array> noise;
    for (int b : g.seeded)
      noise.push_back(mx::random::gumbel({1, V}, mx::float32, rows[b]->next_key()));
    if (!g.unseeded.empty()) {
      noise.push_back(mx::random::gumbel({static_cast<int>(g.unseeded.size()), V}, mx::float32));
    }
    mx::array g_all = noise.size() == 1 ? noise[0] : mx::concatenate(noise, 0);
    parts.push_back(mx::astype(mx::argmax(mx::add(g_all, x), -1), mx::int32));
    order.insert(order.end(), idx.begin(), idx.end());
  }
  for (int b : own) {
    mx::array row = mx::slice(logprobs, {b, 0}, {b + 1, V});
    parts.push_back(mx::astype(mx::reshape(rows[b]->own_(row), {1}), mx::int32));
    order.push_back(b);
  }
  bool in_order = true;
  for (int i = 0; i < B; ++i) in_order = in_order && order[i] == i;
  if (parts.size() == 1 && in_order) return parts[0];
  mx::array all = parts.size() == 1 ? parts[0] : mx::concatenate(parts, 0);
  if (in_order) return all;
  std::vector<int32_t> inverse(B);
  for (int i = 0; i < B; ++i) inverse[order[i]] = i;
  return mx::take(all, mx::array(inverse, {B}, mx::int32), 0);
}

}  // namespace lm::server
