#include "mlxcpp/lm/perplexity.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "mlxcpp/lm/cache.h"
#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/transforms.h"

namespace lm {

PerplexityResult evaluate_perplexity(LanguageModel& model, const std::vector<int32_t>& tokens,
                                     int sequence_length, int prefill_step_size) {
  if (sequence_length < 2) {
    throw std::invalid_argument("sequence_length must be at least 2, got " +
                                std::to_string(sequence_length));
  }
  if (prefill_step_size < 1) {
    throw std::invalid_argument("prefill_step_size must be positive, got " +
                                std::to_string(prefill_step_size));
  }
  if (tokens.size() < 2) throw std::invalid_argument("perplexity needs at least 2 tokens");
  if (sequence_length > model.max_context()) {
    throw std::invalid_argument("sequence_length " + std::to_string(sequence_length) +
                                " exceeds the model's context of " +
                                std::to_string(model.max_context()));
  }
  for (int32_t t : tokens) {
    if (t < 0 || t >= model.vocab_size()) {
      throw std::invalid_argument("token " + std::to_string(t) +
                                  " is outside the model's vocabulary of " +
                                  std::to_string(model.vocab_size()));
    }
  }
  PerplexityResult r;
  double total = 0;
  for (size_t start = 0; start + 1 < tokens.size(); start += sequence_length) {
    size_t len = std::min(tokens.size() - start, static_cast<size_t>(sequence_length));
    if (len < 2) break;
    const int32_t* seq = tokens.data() + start;
    auto cache = model.make_cache();
    // Positions [a, b) predict tokens [a+1, b+1); the last position predicts nothing.
    for (size_t a = 0; a + 1 < len; a += prefill_step_size) {
      int n = static_cast<int>(std::min(static_cast<size_t>(prefill_step_size), len - a));
      mx::array input(std::vector<int32_t>(seq + a, seq + a + n), {1, n}, mx::int32);
      int m =
          static_cast<int>(std::min(static_cast<size_t>(n), len - 1 - a));  // predicting positions
      auto logits = mx::astype(model(input, &cache), mx::float32);
      logits = mx::slice(logits, {0, 0, 0}, {1, m, logits.shape(2)});
      mx::array targets(std::vector<int32_t>(seq + a + 1, seq + a + 1 + m), {1, m, 1}, mx::int32);
      auto nll =
          mx::subtract(mx::logsumexp(logits, -1, true), mx::take_along_axis(logits, targets, -1));
      total += mx::astype(mx::sum(nll), mx::float64).item<double>();
      r.tokens += m;
    }
    ++r.sequences;
  }
  r.nll = total / static_cast<double>(r.tokens);
  r.ppl = std::exp(r.nll);
  return r;
}

}  // namespace lm
