#include "mlxcpp/lm/generate.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>

#include "mlxcpp/lm/decode_graph.h"
#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/lm/tokenizer/streaming_detokenizer.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"
#include "mlxcpp/mx/allocator.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/mx/transforms.h"

namespace lm {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

mx::array token_row(const int32_t* begin, int n) {
  return mx::array(std::vector<int32_t>(begin, begin + n), {1, n}, mx::int32);
}

void check_prompt_fits(const LanguageModel& model, const PromptCache& cache, size_t n) {
  int offset = cache.empty() ? 0 : cache.front()->offset();
  size_t total = static_cast<size_t>(offset) + n;
  if (total > static_cast<size_t>(model.max_context())) {
    throw std::invalid_argument(
        "the prompt has " + std::to_string(n) + " tokens" +
        (offset ? " after " + std::to_string(offset) + " cached ones" : std::string()) +
        ", more than the model's context of " + std::to_string(model.max_context()) +
        " tokens (max_position_embeddings)");
  }
}

}  // namespace

mx::array prefill(LanguageModel& model, const std::vector<int32_t>& prompt, PromptCache& cache,
                  int prefill_step_size, const std::function<void(int, int)>& progress,
                  const KVQuantization& kv) {
  if (prompt.empty()) throw std::invalid_argument("prefill: the prompt is empty");
  if (prefill_step_size <= 0) {
    throw std::invalid_argument("prefill_step_size must be positive, got " +
                                std::to_string(prefill_step_size));
  }
  check_prompt_fits(model, cache, prompt.size());
  const int total = static_cast<int>(prompt.size());
  int done = 0;
  if (progress) progress(0, total);
  // Full chunks while more than one chunk's worth remains only fill the cache (their logits are
  // never evaluated); the last chunk (at most prefill_step_size tokens, as mlx-lm does) gives the
  // logits of its last position only, which start generation.
  while (total - done > prefill_step_size) {
    maybe_quantize_kv_cache(cache, kv);
    model(token_row(prompt.data() + done, prefill_step_size), &cache);
    eval_prompt_cache(cache);
    done += prefill_step_size;
    if (progress) progress(done, total);
  }
  maybe_quantize_kv_cache(cache, kv);
  auto logits = model.last_logits(token_row(prompt.data() + done, total - done), &cache);
  logits = mx::squeeze(logits, 1);
  return logits;
}

void generate_step(LanguageModel& model, const std::vector<int32_t>& prompt,
                   const GenerateOptions& options,
                   const std::function<bool(int32_t, const mx::array&)>& on_token) {
  if (options.max_tokens < 0) {
    throw std::invalid_argument("max_tokens must be >= 0, got " +
                                std::to_string(options.max_tokens));
  }
  PromptCache own;
  PromptCache& cache = options.prompt_cache ? *options.prompt_cache : own;
  if (!options.prompt_cache) own = model.make_cache(options.max_kv_size);
  if (cache.size() != static_cast<size_t>(model.num_layers())) {
    throw std::invalid_argument("the prompt cache has " + std::to_string(cache.size()) +
                                " layers, the model " + std::to_string(model.num_layers()));
  }

  // Logits processors read the token history, so with processors each token is
  // read before the next step is built; without them the next step overlaps.
  const bool needs_history = !options.logits_processors.empty();
  std::vector<int32_t> history = prompt;
  auto sample = [&](mx::array logits) {
    logits = mx::astype(logits, mx::float32);
    for (const auto& p : options.logits_processors) logits = p(history, logits);
    auto logprobs = mx::subtract(logits, mx::logsumexp(logits, -1, true));
    auto token = options.sampler ? options.sampler(logprobs) : mx::argmax(logprobs, -1);
    return std::make_pair(mx::astype(token, mx::int32), mx::squeeze(logprobs, 0));
  };
  // A decode step's logits are [1, 1, V]; sample takes the [1, V] rows prefill gives.
  auto step = [&](const mx::array& token) {
    maybe_quantize_kv_cache(cache, options.kv);
    return sample(mx::squeeze(model(mx::reshape(token, {1, 1}), &cache), 1));
  };

  auto [y, logprobs] = sample(prefill(model, prompt, cache, options.prefill_step_size,
                                      options.prompt_progress_callback, options.kv));
  mx::async_eval({y, logprobs});

  // The decode step replayed as a graph: the same computation, sampled on the device.
  std::unique_ptr<DecodeGraph> graph;
  const bool graph_sampler = !options.sampler || options.sampler_options;
  if (options.decode_graph && options.max_tokens > 1 && !needs_history && graph_sampler &&
      !options.prompt_cache && !options.max_kv_size && !options.kv.bits && DecodeGraph::enabled() &&
      DecodeGraph::supports(model, cache)) {
    KeyedSampler keyed;
    std::optional<mx::array> key;
    if (options.sampler_options && options.sampler_options->temp > 0) {
      keyed = make_keyed_sampler(*options.sampler_options);
      if (options.sampler_options->seed) key = mx::random::key(*options.sampler_options->seed);
    }
    try {
      graph =
          std::make_unique<DecodeGraph>(model, cache, y, keyed, key, options.decode_graph_bucket);
    } catch (const std::exception& e) {
      // The eager cache is untouched (the graph works on copies): decode without it.
      std::fprintf(stderr, "mlxcpp: decoding without a graph: %s\n", e.what());
    }
  }
  auto graph_step = [&]() {
    auto [t, lp] = graph->step(true);
    return std::make_pair(t, *lp);
  };

  for (int n = 0; n < options.max_tokens; ++n) {
    std::optional<std::pair<mx::array, mx::array>> next;
    if (!needs_history && n + 1 < options.max_tokens) {
      if (graph) {
        next = graph_step();
      } else {
        next = step(y);
        mx::async_eval({next->first, next->second});
      }
    }
    int32_t token = y.item<int32_t>();
    if (!on_token(token, logprobs)) return;
    if (n + 1 == options.max_tokens) return;
    if (needs_history) {
      history.push_back(token);
      next = step(y);
      mx::async_eval({next->first, next->second});
    }
    y = next->first;
    logprobs = next->second;
  }
}

namespace {

// Holds back text that could be the start of a stop string.
size_t safe_prefix(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const auto& s : stops) {
    for (size_t k = std::min(s.size() - 1, text.size()); k > hold; --k) {
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  return text.size() - hold;
}

}  // namespace

void stream_generate(LanguageModel& model, const Tokenizer& tokenizer,
                     const std::vector<int32_t>& prompt, const GenerateOptions& options,
                     const std::function<bool(const GenerationResponse&)>& on_response) {
  for (const auto& s : options.stop_strings) {
    if (s.empty()) throw std::invalid_argument("stop strings must not be empty");
  }
  StreamingDetokenizer detok(tokenizer);
  std::string pending;  // text not yet handed out (a possible stop-string prefix)
  GenerationResponse r;
  r.prompt_tokens = static_cast<int>(prompt.size());
  auto t0 = Clock::now();
  Clock::time_point t_first;
  mx::reset_peak_memory();

  auto fill_stats = [&](int generated) {
    r.generation_tokens = generated;
    double gen_time = seconds_since(t_first);
    r.generation_tps = gen_time > 0 ? generated / gen_time : 0;
    r.peak_memory_gb = static_cast<double>(mx::get_peak_memory()) / 1e9;
  };
  // Moves text into r.text, cutting at a stop string; returns true when one matched.
  auto take_text = [&](const std::string& add, bool final) {
    pending += add;
    for (const auto& s : options.stop_strings) {
      auto pos = pending.find(s);
      if (pos != std::string::npos) {
        r.text = pending.substr(0, pos);
        pending.clear();
        return true;
      }
    }
    size_t n = final ? pending.size() : safe_prefix(pending, options.stop_strings);
    r.text = pending.substr(0, n);
    pending.erase(0, n);
    return false;
  };

  int n = 0;
  bool stopped = false;
  bool finished = false;
  generate_step(model, prompt, options, [&](int32_t token, const mx::array& logprobs) {
    if (n == 0) {
      double prompt_time = seconds_since(t0);
      r.prompt_tps = prompt_time > 0 ? prompt.size() / prompt_time : 0;
      t_first = Clock::now();
    }
    ++n;
    r.token = token;
    r.logprobs = logprobs;
    bool eos = std::find(options.eos_token_ids.begin(), options.eos_token_ids.end(), token) !=
               options.eos_token_ids.end();
    if (eos) {
      take_text(detok.finish(), true);
      r.finish_reason = "stop";
      finished = true;
      fill_stats(n);
      on_response(r);
      return false;
    }
    bool last = n == options.max_tokens;
    std::string seg = detok.add(token);
    if (last) seg += detok.finish();
    if (take_text(seg, last)) {
      r.finish_reason = "stop";
      finished = true;
      fill_stats(n);
      on_response(r);
      return false;
    }
    if (last) {
      r.finish_reason = "length";
      finished = true;
    }
    fill_stats(n);
    if (!on_response(r)) {
      stopped = true;
      return false;
    }
    return !last;
  });
  if (!finished && !stopped) {
    // max_tokens == 0: nothing was generated.
    r.finish_reason = "length";
    r.text.clear();
    fill_stats(0);
    on_response(r);
  }
}

GenerateResult generate(LanguageModel& model, const Tokenizer& tokenizer,
                        const std::vector<int32_t>& prompt, const GenerateOptions& options) {
  GenerateResult out;
  stream_generate(model, tokenizer, prompt, options, [&](const GenerationResponse& r) {
    out.text += r.text;
    if (r.token >= 0 && r.generation_tokens > static_cast<int>(out.tokens.size())) {
      out.tokens.push_back(r.token);
      out.logprobs.push_back(mx::take(r.logprobs, r.token).item<float>());
    }
    out.last = r;
    return true;
  });
  return out;
}

}  // namespace lm
