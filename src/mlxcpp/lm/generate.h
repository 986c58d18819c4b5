// Text generation (mlx-lm's generate.py): generate_step yields one token at a
// time, stream_generate adds detokenized text, stop conditions and timings.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mlxcpp/lm/cache.h"
#include "mlxcpp/lm/sample.h"
#include "mlxcpp/mx/array.h"

namespace lm {

class LanguageModel;
class Tokenizer;

struct GenerationResponse {
  std::string text;  // the new text segment (may be empty while a character is incomplete)
  int32_t token = -1;
  mx::array logprobs = mx::array(0.0f);  // [V] log-softmax of the processed logits
  int prompt_tokens = 0;
  double prompt_tps = 0;
  int generation_tokens = 0;
  double generation_tps = 0;
  double peak_memory_gb = 0;                 // peak bytes / 1e9
  std::optional<std::string> finish_reason;  // "stop" or "length" on the last response
};

struct GenerateOptions {
  int max_tokens = 256;
  Sampler sampler;  // empty: argmax
  // The options `sampler` was made from (make_sampler). With them (or with no sampler), a
  // decode on the GPU can sample inside a replayed graph (lm/decode_graph.h) instead of
  // calling `sampler`; a sampler given without them keeps generation on the eager path.
  std::optional<SamplerOptions> sampler_options;
  // Decode through a replayed graph when the model, device and options allow it (see
  // DecodeGraph::enabled/supports; MLXCPP_DECODE_GRAPH=0 turns it off): one sequence, no
  // logits processors, no caller-owned prompt_cache, no max_kv_size or KV quantization.
  bool decode_graph = true;
  int decode_graph_bucket = 256;
  std::vector<LogitsProcessor> logits_processors;
  std::optional<int> max_kv_size;
  // --kv-bits / --kv-group-size / --quantized-kv-start: the cache is quantized once it holds
  // kv.start positions (checked before every model call, as mlx-lm does).
  KVQuantization kv;
  // Updated in place when given (the caller's cache, e.g. a loaded prompt
  // cache or a chat session); otherwise a fresh cache is made.
  PromptCache* prompt_cache = nullptr;
  int prefill_step_size = 2048;
  std::function<void(int processed, int total)> prompt_progress_callback;
  // Generation stops when one of these ids is sampled (the id is not emitted as text).
  std::vector<int32_t> eos_token_ids;
  // Generation stops when the text ends with one of these (the stop string is cut).
  std::vector<std::string> stop_strings;
};

// Runs the prompt through the model in chunks of prefill_step_size and returns
// the logits of its last position ([1, V]); the cache then holds the prompt.
mx::array prefill(LanguageModel& model, const std::vector<int32_t>& prompt, PromptCache& cache,
                  int prefill_step_size, const std::function<void(int, int)>& progress = nullptr,
                  const KVQuantization& kv = {});

// Token-level loop. Calls on_token(token, logprobs) for each generated token
// until it returns false or max_tokens is reached. The next step is scheduled
// (async_eval) before on_token runs, so detokenizing and printing overlap the
// model's work. The prompt must be non-empty unless the cache already holds
// context and `prompt` is the next token(s).
void generate_step(LanguageModel& model, const std::vector<int32_t>& prompt,
                   const GenerateOptions& options,
                   const std::function<bool(int32_t token, const mx::array& logprobs)>& on_token);

// Text-level loop with timings; on_response returns false to stop early.
void stream_generate(LanguageModel& model, const Tokenizer& tokenizer,
                     const std::vector<int32_t>& prompt, const GenerateOptions& options,
                     const std::function<bool(const GenerationResponse&)>& on_response);

// Collects stream_generate into the full text (and the last response's stats).
struct GenerateResult {
  std::string text;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;  // of each generated token
  GenerationResponse last;
};
GenerateResult generate(LanguageModel& model, const Tokenizer& tokenizer,
                        const std::vector<int32_t>& prompt, const GenerateOptions& options);

}  // namespace lm
