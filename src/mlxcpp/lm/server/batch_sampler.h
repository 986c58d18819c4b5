// Sampling for a decode batch: one token per row of [B, V] logprobs, each row
// drawn as make_sampler would draw it alone, but with one set of array ops for
// all the rows that share a sampling configuration (per-row temperature,
// top_p, min_p and top_k as [n, 1] arrays), so a step reads B ids back at once.
#pragma once

#include <optional>
#include <vector>

#include "mlxcpp/lm/sample.h"
#include "mlxcpp/mx/array.h"

namespace lm::server {

// One request's sampler: its options and, for a seeded request, its own key
// sequence (split once per draw, as make_sampler's).
class RowSampler {
 public:
  // Validates the options as make_sampler does (std::invalid_argument naming the field).
  explicit RowSampler(const SamplerOptions& options);
  const SamplerOptions& options() const { return options_; }
  bool greedy() const { return options_.temp == 0; }

 private:
  friend mx::array sample_rows(const mx::array& logprobs, const std::vector<RowSampler*>& rows);
  std::optional<mx::array> next_key();
  SamplerOptions options_;
  std::optional<mx::array> key_;
  // Rows with XTC (one draw per row decides whether it applies) keep
  // make_sampler's own chain, row by row.
  Sampler own_;
};

// Tokens [B] int32 for logprobs [B, V], row b sampled with rows[b] (as
// make_sampler(rows[b]->options()) would sample it, seeded rows identically).
mx::array sample_rows(const mx::array& logprobs, const std::vector<RowSampler*>& rows);

}  // namespace lm::server
