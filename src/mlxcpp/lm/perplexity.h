// Perplexity: the mean negative log-likelihood of each next token.
#pragma once

#include <cstdint>
#include <vector>

namespace lm {

class LanguageModel;

struct PerplexityResult {
  double nll = 0;      // mean over predicted tokens, natural log
  double ppl = 0;      // exp(nll)
  int64_t tokens = 0;  // predicted tokens
  int64_t sequences = 0;
};

// Cuts `tokens` into sequences of sequence_length (the last one may be
// shorter; a sequence needs two tokens) and scores each through a fresh cache
// in chunks of prefill_step_size. The result does not depend on the chunking.
PerplexityResult evaluate_perplexity(LanguageModel& model, const std::vector<int32_t>& tokens,
                                     int sequence_length, int prefill_step_size);

}  // namespace lm
