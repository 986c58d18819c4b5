// Token sampling and logits processors (mlx-lm's sample_utils.py;
// cli-and-server.md §2.3, §2.4).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "mlxcpp/mx/array.h"

namespace lm {

// logprobs [B, V] -> tokens [B] (uint32).
using Sampler = std::function<mx::array(const mx::array& logprobs)>;

struct SamplerOptions {
  float temp = 0;   // 0: argmax
  float top_p = 0;  // used when 0 < top_p < 1
  float min_p = 0;  // used when != 0
  int min_tokens_to_keep = 1;
  int top_k = 0;  // used when > 0
  float xtc_probability = 0;
  float xtc_threshold = 0.1f;
  std::vector<int> xtc_special_tokens;
  // Random numbers come from this seed's own key sequence when set, else from
  // mx::random's global sequence (reset by mx::random::seed), as mlx-lm does.
  std::optional<uint64_t> seed;
};

// Validates the options (std::invalid_argument naming the field) and returns
// argmax when temp == 0; otherwise the filters top_p -> min_p -> xtc -> top_k,
// then a categorical draw from logprobs / temp.
Sampler make_sampler(const SamplerOptions& options);

// (logprobs [B, V], key) -> tokens [B]: the same filters and draw as make_sampler, with the
// random numbers derived from `key` (a uint32 [2] array, e.g. a device buffer that a
// replayed decode graph advances) instead of a key sequence held on the host.
using KeyedSampler = std::function<mx::array(const mx::array& logprobs, const mx::array& key)>;
// Validates as make_sampler does; argmax (ignoring the key) when temp == 0.
KeyedSampler make_keyed_sampler(const SamplerOptions& options);

// The filters, each [B, V] logprobs -> logprobs with removed entries -inf.
// top_p: keep the tokens whose ascending cumulative probability exceeds 1 - top_p.
mx::array apply_top_p(const mx::array& logprobs, float top_p);
// min_p: drop tokens with p < min_p * p_max, keeping at least min_tokens_to_keep.
mx::array apply_min_p(const mx::array& logprobs, float min_p, int min_tokens_to_keep = 1);
// top_k: keep the k most likely tokens; 0 < k < V.
mx::array apply_top_k(const mx::array& logprobs, int k);
// XTC ("exclude top choices"): with probability `probability` (one draw per
// call, from `key` or the global sequence), drop every token whose probability
// exceeds `threshold` except the least likely of them; special tokens are never
// dropped.
mx::array apply_xtc(const mx::array& logprobs, float probability, float threshold,
                    const std::vector<int>& special_tokens,
                    const std::optional<mx::array>& key = std::nullopt);

// (tokens so far, logits [B, V]) -> logits.
using LogitsProcessor =
    std::function<mx::array(const std::vector<int32_t>& tokens, const mx::array& logits)>;

struct LogitsProcessorOptions {
  std::map<int32_t, float> logit_bias;
  std::optional<float> repetition_penalty;
  int repetition_context_size = 20;
  std::optional<float> presence_penalty;
  int presence_context_size = 20;
  std::optional<float> frequency_penalty;
  int frequency_context_size = 20;
};

// In order: logit bias (added), repetition penalty (CTRL: a logit < 0 is
// multiplied by the penalty, otherwise divided, once per distinct token of the
// last repetition_context_size), presence penalty (subtracted once per distinct
// recent token), frequency penalty (subtracted once per occurrence). A penalty
// that is unset or 0 adds no processor.
std::vector<LogitsProcessor> make_logits_processors(const LogitsProcessorOptions& options);

}  // namespace lm
