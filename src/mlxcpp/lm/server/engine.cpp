#include "mlxcpp/lm/server/engine.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <limits>
#include <optional>
#include <stdexcept>
#include <unordered_map>

#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/lm/server/batch_cache.h"
#include "mlxcpp/lm/server/batch_sampler.h"
#include "mlxcpp/lm/server/prompt_store.h"
#include "mlxcpp/lm/tokenizer/streaming_detokenizer.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"
#include "mlxcpp/mx/allocator.h"
#include "mlxcpp/mx/device.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/transforms.h"

namespace lm::server {

// ------------------------------------------------------------------ RequestStream

std::vector<Event> RequestStream::next(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return !events_.empty(); });
  std::vector<Event> out(std::make_move_iterator(events_.begin()),
                         std::make_move_iterator(events_.end()));
  events_.clear();
  return out;
}

void RequestStream::push(Event e) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

// ------------------------------------------------------------------ Sequence

struct Engine::Sequence {
  Sequence(GenerationJob j, const Tokenizer& tok)
      : job(std::move(j)), sampler(job.sampling), detok(tok) {}
  GenerationJob job;
  std::shared_ptr<RequestStream> out = std::make_shared<RequestStream>();
  RowSampler sampler;
  // The penalties (logit_bias is applied to the whole batch at once, before them).
  std::vector<LogitsProcessor> penalties;
  PromptCache cache;            // while prefilling; the batch cache holds it afterwards
  size_t prefilled = 0;         // prompt tokens the cache holds
  int cached_tokens = 0;        // of those, reused from the prompt store
  std::vector<int32_t> tokens;  // prompt + generated
  int generated = 0;
  int32_t last_token = 0;  // sampled (or the prompt's last), not yet fed to the model
  StreamingDetokenizer detok;
  std::string pending;  // text held back as a possible stop-string prefix
  bool done = false;
  bool failed = false;  // ended by an error or a cancel: its cache is not kept
  bool joined = false;  // in the decode batch (joined with its prefill pass's block)
};

namespace {

mx::array token_row(const int32_t* begin, int n) {
  return mx::array(std::vector<int32_t>(begin, begin + n), {1, n}, mx::int32);
}

// Length of the tail of `text` that could start one of the stop strings.
size_t held_back(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const auto& s : stops) {
    for (size_t k = std::min(s.size() - 1, text.size()); k > hold; --k) {
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

// MLXCPP_SERVER_PROFILE=1 logs the host time of each decode step's phases to
// stderr, one line a step; off, it costs one branch per phase.
bool profiling() {
  static const bool on = [] {
    const char* v = std::getenv("MLXCPP_SERVER_PROFILE");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}

// MLXCPP_SERVER_PIPELINE=0 reads each decode step before building the next
// (for comparison; the pipelined order gives the same tokens).
bool pipelining() {
  static const bool on = [] {
    const char* v = std::getenv("MLXCPP_SERVER_PIPELINE");
    return !(v && std::string(v) == "0");
  }();
  return on;
}

double ms_since(std::chrono::steady_clock::time_point& t) {
  auto now = std::chrono::steady_clock::now();
  double ms = std::chrono::duration<double, std::milli>(now - t).count();
  t = now;
  return ms;
}

}  // namespace

// ------------------------------------------------------------------ prefill

namespace {

void check_prefill_args(LanguageModel& model, const std::vector<PromptCache*>& caches,
                        const std::vector<std::vector<int32_t>>& tokens) {
  const size_t B = caches.size();
  if (tokens.size() != B) {
    throw std::invalid_argument("prefill_together: " + std::to_string(B) + " caches but " +
                                std::to_string(tokens.size()) + " token lists");
  }
  for (size_t b = 0; b < B; ++b) {
    if (tokens[b].empty()) throw std::invalid_argument("prefill_together: an empty token list");
    if (static_cast<int>(caches[b]->size()) != model.num_layers()) {
      throw std::invalid_argument("prefill_together: a cache has " +
                                  std::to_string(caches[b]->size()) + " layers, the model " +
                                  std::to_string(model.num_layers()));
    }
  }
}

}  // namespace

std::vector<std::shared_ptr<BatchKVCache>> prefill_batch(
    LanguageModel& model, const std::vector<PromptCache*>& caches,
    const std::vector<std::vector<int32_t>>& tokens) {
  check_prefill_args(model, caches, tokens);
  const int B = static_cast<int>(caches.size());
  const int layers = model.num_layers();
  int T = 0;
  for (const auto& t : tokens) T = std::max(T, static_cast<int>(t.size()));
  // Right padding sits after each row's real positions, where causal attention
  // keeps it from every real query. Id 0 is a valid token of every vocabulary.
  std::vector<int32_t> flat(static_cast<size_t>(B) * T, 0);
  for (int b = 0; b < B; ++b) std::copy(tokens[b].begin(), tokens[b].end(), flat.begin() + b * T);
  std::vector<std::shared_ptr<BatchKVCache>> out;
  PromptCache batch;
  auto shared = std::make_shared<BatchStepArrays>();
  for (int l = 0; l < layers; ++l) {
    auto c = std::make_shared<BatchKVCache>();
    c->share_step_arrays(shared);
    std::vector<BatchKVCache::Row> rows;
    for (int b = 0; b < B; ++b) {
      auto st = (*caches[b])[l]->state();
      if (st.empty()) {
        rows.emplace_back(std::nullopt);
      } else if (st.size() == 2) {
        rows.emplace_back(std::pair{st[0], st[1]});
      } else {
        throw std::invalid_argument("prefill_together: layer " + std::to_string(l) +
                                    " of a cache is not a KVCache (" +
                                    (*caches[b])[l]->class_name() + ")");
      }
    }
    c->add_rows(rows);
    out.push_back(c);
    batch.push_back(c);
  }
  model(mx::array(flat, {B, T}, mx::int32), &batch);
  std::vector<mx::array> arrays;
  for (const auto& c : out) {
    for (auto& a : c->state()) arrays.push_back(a);
  }
  mx::eval(arrays);
  return out;
}

void prefill_together(LanguageModel& model, const std::vector<PromptCache*>& caches,
                      const std::vector<std::vector<int32_t>>& tokens) {
  check_prefill_args(model, caches, tokens);
  const int B = static_cast<int>(caches.size());
  std::vector<mx::array> arrays;
  auto keep_states = [&](const PromptCache& c) {
    for (const auto& l : c) {
      for (auto& a : l->state()) arrays.push_back(a);
    }
  };
  if (B == 1) {
    model(token_row(tokens[0].data(), static_cast<int>(tokens[0].size())), caches[0]);
    keep_states(*caches[0]);
    mx::eval(arrays);
    return;
  }
  std::vector<int> before(B);  // each row's positions before
  for (int b = 0; b < B; ++b) {
    auto st = (*caches[b])[0]->state();
    before[b] = st.empty() ? 0 : st[0].shape(2);
  }
  auto batch = prefill_batch(model, caches, tokens);
  for (size_t l = 0; l < batch.size(); ++l) {
    for (int b = 0; b < B; ++b) {
      // Without the right padding after the row's real positions.
      auto [k, v] = batch[l]->row(b, before[b] + static_cast<int>(tokens[b].size()));
      (*caches[b])[l]->set_state({k, v});
    }
  }
  for (int b = 0; b < B; ++b) keep_states(*caches[b]);
  mx::eval(arrays);
}

// ------------------------------------------------------------------ Engine

Engine::Engine(std::shared_ptr<LanguageModel> model, std::shared_ptr<const Tokenizer> tokenizer,
               EngineOptions options)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), options_(std::move(options)) {
  if (!model_ || !tokenizer_) throw std::invalid_argument("Engine: needs a model and a tokenizer");
  if (options_.decode_concurrency < 1)
    throw std::invalid_argument("decode_concurrency must be >= 1");
  if (options_.prompt_concurrency < 1)
    throw std::invalid_argument("prompt_concurrency must be >= 1");
  if (options_.prefill_step_size < 1) throw std::invalid_argument("prefill_step_size must be >= 1");
  if (options_.max_kv_size && *options_.max_kv_size < 2) {
    throw std::invalid_argument("max_kv_size must be >= 2");
  }
  pad_steps_ = mx::default_device().type == mx::Device::gpu;
  if (const char* v = std::getenv("MLXCPP_SERVER_PAD_ROWS"); v && *v) {
    pad_steps_ = std::string(v) != "0";
  }
  if (options_.pad_step_rows) pad_steps_ = *options_.pad_step_rows;
  store_ = std::make_unique<PromptStore>(options_.prompt_cache_size, options_.prompt_cache_bytes);
  thread_ = std::thread([this] { run(); });
}

Engine::~Engine() { shutdown(); }

int Engine::context_limit() const {
  int limit = model_->max_context();
  if (options_.max_kv_size) limit = std::min(limit, *options_.max_kv_size);
  return limit;
}

int Engine::vocab_size() const { return model_->vocab_size(); }

std::shared_ptr<RequestStream> Engine::submit(GenerationJob job) {
  std::vector<GenerationJob> one;
  one.push_back(std::move(job));
  return submit(std::move(one)).front();
}

std::shared_ptr<Engine::Sequence> Engine::make_sequence(GenerationJob job) const {
  const int V = model_->vocab_size();
  if (job.prompt.empty()) throw std::invalid_argument("the prompt is empty");
  if (static_cast<int>(job.prompt.size()) >= context_limit()) {
    throw std::length_error("the prompt has " + std::to_string(job.prompt.size()) +
                            " tokens; this server's context holds " +
                            std::to_string(context_limit()) +
                            " tokens, prompt and completion together");
  }
  for (int32_t t : job.prompt) {
    if (t < 0 || t >= V) {
      throw std::invalid_argument("prompt token id " + std::to_string(t) +
                                  " is outside the vocabulary [0, " + std::to_string(V) + ")");
    }
  }
  for (const auto& [t, b] : job.processors.logit_bias) {
    if (t < 0 || t >= V) {
      throw std::invalid_argument("logit_bias: token id " + std::to_string(t) +
                                  " is outside the vocabulary [0, " + std::to_string(V) + ")");
    }
  }
  if (job.sampling.top_k >= V) job.sampling.top_k = 0;  // keeping all tokens is no filter
  auto s = std::make_shared<Sequence>(std::move(job), *tokenizer_);
  LogitsProcessorOptions penalties = s->job.processors;
  penalties.logit_bias.clear();
  s->penalties = make_logits_processors(penalties);
  s->tokens = s->job.prompt;
  return s;
}

std::vector<std::shared_ptr<RequestStream>> Engine::submit(std::vector<GenerationJob> jobs) {
  std::vector<std::shared_ptr<Sequence>> seqs;
  for (size_t i = 0; i < jobs.size(); ++i) {
    try {
      seqs.push_back(make_sequence(std::move(jobs[i])));
    } catch (const std::length_error& e) {
      if (jobs.size() == 1) throw;
      throw std::length_error("request " + std::to_string(i) + ": " + e.what());
    } catch (const std::invalid_argument& e) {
      if (jobs.size() == 1) throw;
      throw std::invalid_argument("request " + std::to_string(i) + ": " + e.what());
    }
  }
  std::vector<std::shared_ptr<RequestStream>> out;
  for (const auto& s : seqs) out.push_back(s->out);
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) throw std::runtime_error("the server is shutting down");
    for (auto& s : seqs) incoming_.push_back(std::move(s));
    stats_.waiting += static_cast<int>(out.size());
  }
  cv_.notify_all();
  return out;
}

void Engine::shutdown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

void Engine::finish(Sequence& s, const std::string& reason, const std::string& error) {
  if (s.done) return;
  s.done = true;
  s.failed = reason == "error" || reason == "cancelled";
  Event e;
  e.finish_reason = reason;
  e.error = error;
  e.prompt_tokens = static_cast<int>(s.job.prompt.size());
  e.cached_tokens = s.cached_tokens;
  e.completion_tokens = s.generated;
  {
    // Counted before the client hears of it, so stats never lag a finished request.
    std::lock_guard<std::mutex> lk(mu_);
    if (reason == "cancelled") {
      ++stats_.cancelled;
    } else {
      ++stats_.completed;
    }
  }
  s.out->push(std::move(e));
}

void Engine::fail_all(const std::string& error) {
  for (auto& s : waiting_) finish(*s, "error", error);
  for (auto& s : prefilling_) finish(*s, "error", error);
  for (auto& s : batch_) finish(*s, "error", error);
  waiting_.clear();
  prefilling_.clear();
  batch_.clear();
  pending_.reset();
  batch_cache_.clear();
}

void Engine::admit() {
  while (!waiting_.empty() && static_cast<int>(prefilling_.size()) < options_.prompt_concurrency &&
         static_cast<int>(prefilling_.size() + batch_.size()) < options_.decode_concurrency) {
    auto s = waiting_.front();
    waiting_.pop_front();
    if (s->job.max_tokens == 0) {
      finish(*s, "length");
      continue;
    }
    // At least the prompt's last token must run to give the first logits.
    auto hit = store_->lookup(s->job.prompt, s->job.prompt.size() - 1);
    s->cache.clear();
    for (int l = 0; l < model_->num_layers(); ++l) {
      auto c = std::make_shared<KVCache>();
      if (hit.length > 0) c->set_state({hit.layers[l].first, hit.layers[l].second});
      s->cache.push_back(c);
    }
    s->prefilled = hit.length;
    s->cached_tokens = hit.length;
    prefilling_.push_back(s);
  }
}

bool Engine::handle_token(Sequence& s, int32_t token, float logprob, const float* p) {
  s.generated += 1;
  s.tokens.push_back(token);
  s.last_token = token;
  if (s.job.constraint) s.job.constraint->accept(token);
  Event e;
  if (s.job.logprobs) {
    e.tokens.push_back({token, logprob});
    if (s.job.top_logprobs > 0 && p) {
      const int V = model_->vocab_size();
      std::vector<int32_t> idx(V);
      for (int i = 0; i < V; ++i) idx[i] = i;
      int k = std::min(s.job.top_logprobs, V);
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
        return p[a] > p[b] || (p[a] == p[b] && a < b);
      });
      std::vector<TokenLogprob> top;
      for (int i = 0; i < k; ++i) top.push_back({idx[i], p[idx[i]]});
      e.top.push_back(std::move(top));
    }
  }
  const auto& eos = options_.eos_token_ids;
  bool is_eos = std::find(eos.begin(), eos.end(), token) != eos.end();
  bool last = is_eos || s.generated >= s.job.max_tokens ||
              static_cast<int>(s.tokens.size()) >= context_limit() ||
              (s.job.constraint && s.job.constraint->complete());
  std::string seg = is_eos ? std::string() : s.detok.add(token);
  if (last) seg += s.detok.finish();
  s.pending += seg;
  std::optional<std::string> reason;
  for (const auto& st : s.job.stop) {
    auto pos = s.pending.find(st);
    if (pos != std::string::npos) {
      s.pending.resize(pos);
      reason = "stop";
      last = true;
      break;
    }
  }
  size_t hold = last ? 0 : held_back(s.pending, s.job.stop);
  e.text = s.pending.substr(0, s.pending.size() - hold);
  s.pending.erase(0, s.pending.size() - hold);
  if (!last) {
    s.out->push(std::move(e));
    return false;
  }
  if (!reason) {
    bool stop = is_eos || (s.job.constraint && s.job.constraint->complete());
    reason = stop ? "stop" : "length";
  }
  if (!e.text.empty() || !e.tokens.empty()) s.out->push(std::move(e));
  finish(s, *reason);
  return true;
}

void Engine::store_cache(Sequence& s) {
  // The cache holds every token but the last sampled one (never fed back).
  LayerKV layers;
  if (!s.cache.empty()) {
    for (const auto& c : s.cache) {
      auto st = c->state();
      if (st.size() != 2) return;
      layers.emplace_back(st[0], st[1]);
    }
  } else {
    auto it =
        std::find_if(batch_.begin(), batch_.end(), [&](const auto& p) { return p.get() == &s; });
    if (it == batch_.end()) return;
    int b = static_cast<int>(it - batch_.begin());
    for (const auto& c : batch_cache_) layers.push_back(c->row(b));
  }
  if (layers.empty()) return;
  int n = layers.front().first.shape(2);
  if (n <= 0 || n > static_cast<int>(s.tokens.size())) return;
  store_->insert(std::vector<int32_t>(s.tokens.begin(), s.tokens.begin() + n), layers);
}

void Engine::prefill() {
  // Prompt tokens this call may run: rows already decoding wait for them, so one prefill step;
  // with none decoding, four (the most one pass holds), so that a burst of long prompts still
  // lets the first of them start generating before every prompt is prefilled.
  const size_t budget =
      static_cast<size_t>(options_.prefill_step_size) * (batch_.empty() ? size_t{4} : size_t{1});
  size_t tokens = 0;
  for (;;) {
    admit();
    if (prefilling_.empty()) return;
    const size_t before = prefilling_.size() + batch_.size();
    const size_t ran = prefill_round();
    tokens += ran;
    if (waiting_.empty() && prefilling_.empty()) return;
    if (tokens >= budget) return;
    // Nothing ran and nobody joined or left (all prompts in flight are waiting on room).
    if (ran == 0 && prefilling_.size() + batch_.size() == before) return;
  }
}

size_t Engine::prefill_round() {
  struct Work {
    std::shared_ptr<Sequence> s;
    int n;  // tokens this round
  };
  // A prompt's last token is left for the decode step: it gives the first logits.
  std::vector<Work> work;
  for (const auto& s : prefilling_) {
    size_t left = s->job.prompt.size() - 1 - s->prefilled;
    if (left > 0)
      work.push_back({s, static_cast<int>(std::min<size_t>(options_.prefill_step_size, left))});
  }
  // Longest chunks first; a forward pass takes the next prompt while at most
  // half of its [rows, longest] tokens would be padding (or it stays within one
  // prefill step), so short prompts share a pass and a long one does not make
  // them pad to its length; a pass holds at most four prefill steps of tokens,
  // which bounds its activations.
  std::stable_sort(work.begin(), work.end(),
                   [](const Work& a, const Work& b) { return a.n > b.n; });
  size_t ran = 0;
  for (size_t i = 0; i < work.size();) {
    const int T = work[i].n;
    size_t j = i + 1;
    long real = T;
    for (; j < work.size(); ++j) {
      long padded = static_cast<long>(j - i + 1) * T;
      long with = real + work[j].n;
      if (padded > 2 * with && padded > options_.prefill_step_size) break;
      if (padded > 4L * options_.prefill_step_size) break;
      real = with;
    }
    std::vector<PromptCache*> caches;
    std::vector<std::vector<int32_t>> tokens;
    for (size_t k = i; k < j; ++k) {
      auto& s = *work[k].s;
      caches.push_back(&s.cache);
      auto from = s.job.prompt.begin() + static_cast<std::ptrdiff_t>(s.prefilled);
      tokens.emplace_back(from, from + work[k].n);
    }
    // A pass that completes every prompt in it joins the decode batch as one
    // block (one gather and copy per layer), not as a cache per prompt that
    // the batch then copies again row by row.
    bool completes = !options_.kv_bits;
    std::vector<int> lengths;
    for (size_t k = i; k < j && completes; ++k) {
      const auto& s = *work[k].s;
      completes = s.prefilled + work[k].n + 1 == s.job.prompt.size();
      lengths.push_back(static_cast<int>(s.prefilled) + work[k].n);
    }
    std::vector<std::shared_ptr<BatchKVCache>> block;
    try {
      if (completes) {
        block = prefill_batch(*model_, caches, tokens);
      } else {
        prefill_together(*model_, caches, tokens);
      }
      for (size_t k = i; k < j; ++k) {
        work[k].s->prefilled += work[k].n;
        ran += static_cast<size_t>(work[k].n);
      }
      std::lock_guard<std::mutex> lk(mu_);
      stats_.prefill_passes += 1;
      stats_.prefill_chunks += j - i;
    } catch (const std::exception& e) {
      // These prompts failed; the others go on.
      for (size_t k = i; k < j; ++k) {
        finish(*work[k].s, "error", std::string("prefill failed: ") + e.what());
      }
      block.clear();
    }
    if (!block.empty()) {
      // Outside the try: a failure here leaves the batch inconsistent, which
      // fails every request (run's handler).
      ensure_batch_cache();
      reserve_batch_rows();
      for (size_t l = 0; l < block.size(); ++l) batch_cache_[l]->add_block(*block[l], lengths);
      for (size_t k = i; k < j; ++k) {
        auto& s = work[k].s;
        s->cache.clear();
        s->last_token = s->job.prompt.back();
        s->joined = true;
        batch_.push_back(s);
      }
    }
    i = j;
  }
  std::vector<std::shared_ptr<Sequence>> joining;
  std::erase_if(prefilling_, [&](const auto& s) {
    if (s->done || s->joined) return true;
    if (s->prefilled + 1 < s->job.prompt.size()) return false;
    s->last_token = s->job.prompt.back();
    joining.push_back(s);
    return true;
  });
  join_batch(joining);
  return ran;
}

void Engine::ensure_batch_cache() {
  if (!batch_cache_.empty()) return;
  auto shared = std::make_shared<BatchStepArrays>();
  for (int l = 0; l < model_->num_layers(); ++l) {
    batch_cache_.push_back(
        options_.kv_bits ? std::make_shared<BatchKVCache>(options_.kv_group_size, *options_.kv_bits)
                         : std::make_shared<BatchKVCache>());
    batch_cache_.back()->share_step_arrays(shared);
  }
}

void Engine::reserve_batch_rows() {
  // Every request the engine holds may be in the batch soon (up to its limit): room for them
  // all the first time the buffers are made or outgrown, not a larger copy per joining round.
  // Rounded up to a power of two (within the limit): a few buffer sizes, which the buffer
  // cache serves again, rather than a new size (a fresh allocation) at nearly every join.
  const size_t limit = static_cast<size_t>(std::max(options_.decode_concurrency, 1));
  const size_t known = batch_.size() + prefilling_.size() + waiting_.size();
  const size_t rows = std::min(std::bit_ceil(std::min(known, limit)), limit);
  for (auto& c : batch_cache_) c->reserve_rows(static_cast<int>(rows));
}

void Engine::join_batch(const std::vector<std::shared_ptr<Sequence>>& joining) {
  if (joining.empty()) return;
  ensure_batch_cache();
  reserve_batch_rows();
  for (int l = 0; l < model_->num_layers(); ++l) {
    std::vector<BatchKVCache::Row> rows;
    for (const auto& s : joining) {
      auto st = s->cache[l]->state();
      if (st.empty()) {
        rows.emplace_back(std::nullopt);  // a one-token prompt: nothing cached yet
      } else {
        rows.emplace_back(std::pair{st[0], st[1]});
      }
    }
    batch_cache_[l]->add_rows(rows);
  }
  for (const auto& s : joining) {
    s->cache.clear();
    batch_.push_back(s);
  }
}

void Engine::remove_rows(const std::vector<int>& rows) {
  if (rows.empty()) return;
  // The caches move the last rows into the freed slots (no copy of their buffers); the batch
  // follows the same order.
  const auto order = BatchKVCache::order_after_removal(static_cast<int>(batch_.size()), rows);
  for (auto& c : batch_cache_) c->remove_rows(rows);
  std::vector<std::shared_ptr<Sequence>> kept;
  kept.reserve(order.size());
  for (int b : order) kept.push_back(batch_[b]);
  batch_ = std::move(kept);
}

int Engine::step_rows() const {
  const int B = static_cast<int>(batch_.size());
  if (!pad_steps_ || batch_cache_.empty() || B == 0) return B;
  const int cap = batch_cache_.front()->row_capacity();
  return std::max(B, std::min(static_cast<int>(std::bit_ceil(static_cast<unsigned>(B))), cap));
}

mx::array Engine::step_input(int S) const {
  const int B = static_cast<int>(batch_.size());
  std::vector<int32_t> host;         // the tokens the host knows (no step of theirs pending)
  std::vector<int32_t> index(S, 0);  // spare rows read entry 0: any id will do
  const int P = pending_ ? static_cast<int>(pending_->rows.size()) : 0;
  const int sampled = pending_ ? static_cast<int>(pending_->tokens.size()) : 0;
  bool identity = B == P;
  // Leaving rows reorder the batch (the last rows fill their slots): each row's place in the
  // pending step is looked up.
  std::unordered_map<const Sequence*, int> in_pending;
  for (int k = 0; k < P; ++k) in_pending.emplace(pending_->rows[k].get(), k);
  for (int b = 0; b < B; ++b) {
    auto it = in_pending.find(batch_[b].get());
    if (it != in_pending.end()) {
      const int k = it->second;
      index[b] = k;
      identity = identity && k == b;
    } else {
      index[b] = sampled + static_cast<int>(host.size());
      host.push_back(batch_[b]->last_token);
      identity = false;
    }
  }
  const int H = static_cast<int>(host.size());
  if (P == 0 || H == B) {
    host.resize(static_cast<size_t>(S), 0);
    return mx::array(host, {S, 1}, mx::int32);
  }
  // Every row where the pending step sampled it (spare rows: whatever it sampled there).
  if (identity && sampled == S) return mx::reshape(pending_->tokens, {S, 1});
  mx::array all = H == 0 ? pending_->tokens
                         : mx::concatenate({pending_->tokens, mx::array(host, {H}, mx::int32)}, 0);
  return mx::reshape(mx::take(all, mx::array(index, {S}, mx::int32), 0), {S, 1});
}

void Engine::decode_step() {
  const bool prof = profiling();
  auto t = std::chrono::steady_clock::now();
  double read_ms = 0, build_ms = 0, submit_ms = 0;
  if (prof) last_read_ = {};
  // A row whose next logits depend on its last token on the host (penalties
  // over its history, a grammar) needs the pending step read before this one
  // is built; otherwise this step is built and launched first and the pending
  // one read while it runs.
  const bool host_dependent =
      !pipelining() || std::any_of(batch_.begin(), batch_.end(), [](const auto& s) {
        return !s->penalties.empty() || s->job.constraint;
      });
  if (pending_ && host_dependent) {
    read_step();
    if (prof) read_ms = ms_since(t);
    if (batch_.empty()) return;
  }
  const int B = static_cast<int>(batch_.size());
  const int S = step_rows();
  for (auto& c : batch_cache_) c->set_step_rows(S);
  PromptCache cache(batch_cache_.begin(), batch_cache_.end());
  auto logits = (*model_)(step_input(S), &cache);  // [S, 1, V]
  const int V = logits.shape(2);
  mx::array x = mx::astype(mx::reshape(logits, {S, V}), mx::float32);
  // Every row's logit_bias in one scatter.
  std::vector<int32_t> bias_rows, bias_cols;
  std::vector<float> bias;
  for (int b = 0; b < B; ++b) {
    for (const auto& [t, v] : batch_[b]->job.processors.logit_bias) {
      bias_rows.push_back(b);
      bias_cols.push_back(t);
      bias.push_back(v);
    }
  }
  if (!bias.empty()) {
    const int n = static_cast<int>(bias.size());
    x = mx::scatter_add(
        x, {mx::array(bias_rows, {n}, mx::int32), mx::array(bias_cols, {n}, mx::int32)},
        mx::array(bias, {n, 1, 1}, mx::float32), {0, 1});
  }
  // Penalties and grammar masks depend on each row's own history: row by row.
  // A request whose own processing fails (its grammar) ends with an error (its
  // row leaves when this step is read); the other rows go on.
  std::vector<int32_t> changed;
  std::vector<mx::array> changed_rows;
  for (int b = 0; b < B; ++b) {
    auto& s = *batch_[b];
    if (s.penalties.empty() && !s.job.constraint) continue;
    try {
      mx::array row = mx::slice(x, {b, 0}, {b + 1, V});
      for (const auto& p : s.penalties) row = p(s.tokens, row);
      if (s.job.constraint) {
        const auto& allowed = s.job.constraint->allowed();
        std::vector<uint8_t> mask(V, 0);
        std::copy_n(allowed.begin(), std::min<size_t>(allowed.size(), V), mask.begin());
        row = mx::where(mx::array(mask.begin(), {1, V}, mx::bool_), row,
                        mx::array(-std::numeric_limits<float>::infinity()));
      }
      changed.push_back(b);
      changed_rows.push_back(row);
    } catch (const std::exception& e) {
      finish(s, "error", std::string("sampling failed: ") + e.what());
    }
  }
  if (!changed.empty()) {
    const int n = static_cast<int>(changed.size());
    x = mx::scatter(x, {mx::array(changed, {n}, mx::int32)},
                    mx::reshape(mx::concatenate(changed_rows, 0), {n, 1, V}), {0});
  }
  // logprobs = x - lse, but only where needed: a batch of greedy rows takes
  // the argmax of x (the same token: x - lse is monotone in x, and ties it
  // could create need two logits closer than an ulp of |x - lse|), and the
  // chosen and top logprobs subtract lse from the few values they read, so
  // the [S, V] subtract (a 64 x 262 144 float32 pass) is skipped.
  const mx::array lse = mx::logsumexp(x, -1, true);
  std::vector<RowSampler*> samplers;
  for (auto& s : batch_) samplers.push_back(&s->sampler);
  if (S > B && !spare_sampler_) spare_sampler_ = std::make_unique<RowSampler>(SamplerOptions{});
  samplers.resize(static_cast<size_t>(S), spare_sampler_.get());
  const bool all_greedy =
      std::all_of(samplers.begin(), samplers.end(), [](RowSampler* r) { return r->greedy(); });
  mx::array tokens = all_greedy ? mx::astype(mx::argmax(x, -1), mx::int32)
                                : sample_rows(mx::subtract(x, lse), samplers);
  auto step = std::make_unique<Step>(Step{batch_, tokens});
  // One read of the B ids (and of their B logprobs when asked); whole rows
  // only for top_logprobs.
  step->outputs.push_back(step->tokens);
  step->top.resize(B);
  bool any_logprobs = false;
  for (int b = 0; b < B; ++b) {
    const auto& j = batch_[b]->job;
    any_logprobs = any_logprobs || j.logprobs;
    if (j.logprobs && j.top_logprobs > 0) {
      step->top[b] = mx::reshape(
          mx::subtract(mx::slice(x, {b, 0}, {b + 1, V}), mx::slice(lse, {b, 0}, {b + 1, 1})), {V});
      step->outputs.push_back(*step->top[b]);
    }
  }
  if (any_logprobs) {
    step->chosen = mx::reshape(
        mx::subtract(mx::take_along_axis(x, mx::reshape(step->tokens, {S, 1}), 1), lse), {S});
    step->outputs.push_back(*step->chosen);
  }
  if (prof) build_ms = ms_since(t);
  mx::async_eval(step->outputs);
  if (prof) submit_ms = ms_since(t);
  if (pending_) read_step();  // the step before this one, while this one runs
  pending_ = std::move(step);
  if (host_dependent) read_step();
  if (prof) {
    std::fprintf(stderr,
                 "[server profile] decode rows %d read-before %.2f ms build %.2f ms submit %.2f ms "
                 "read %.2f ms (wait %.2f ms, tokens %.2f ms, leave %d)\n",
                 B, read_ms, build_ms, submit_ms, ms_since(t), last_read_.wait_ms,
                 last_read_.tokens_ms, last_read_.left);
  }
  std::lock_guard<std::mutex> lk(mu_);
  ++stats_.steps;
}

void Engine::read_step() {
  if (!pending_) return;
  std::unique_ptr<Step> step = std::move(pending_);
  const bool prof = profiling();
  auto t = std::chrono::steady_clock::now();
  mx::eval(step->outputs);
  if (prof) last_read_.wait_ms = ms_since(t);
  const int32_t* ids = step->tokens.data<int32_t>();
  const float* lps = step->chosen ? step->chosen->data<float>() : nullptr;
  for (size_t i = 0; i < step->rows.size(); ++i) {
    auto& s = *step->rows[i];
    if (s.done) continue;  // finished (or cancelled) since the step was built
    try {
      handle_token(s, ids[i], lps ? lps[i] : 0.0f,
                   step->top[i] ? step->top[i]->data<float>() : nullptr);
    } catch (const std::exception& e) {
      finish(s, "error", std::string("generation failed: ") + e.what());
    }
  }
  if (prof) last_read_.tokens_ms = ms_since(t);
  std::vector<int> finished;
  for (int b = 0; b < static_cast<int>(batch_.size()); ++b) {
    if (batch_[b]->done) finished.push_back(b);
  }
  for (int b : finished) {
    if (!batch_[b]->failed) store_cache(*batch_[b]);
  }
  remove_rows(finished);
  last_read_.left = static_cast<int>(finished.size());
}

void Engine::run() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] {
        return stopping_ || !incoming_.empty() || !waiting_.empty() || !prefilling_.empty() ||
               !batch_.empty();
      });
      if (stopping_) break;
      for (auto& s : incoming_) waiting_.push_back(std::move(s));
      incoming_.clear();
    }
    try {
      // Cancelled requests leave first, freeing their rows before others join.
      std::erase_if(waiting_, [&](const auto& s) {
        if (!s->out->cancelled()) return false;
        finish(*s, "cancelled");
        return true;
      });
      std::erase_if(prefilling_, [&](const auto& s) {
        if (!s->out->cancelled()) return false;
        finish(*s, "cancelled");
        return true;
      });
      std::vector<int> gone;
      for (int b = 0; b < static_cast<int>(batch_.size()); ++b) {
        if (!batch_[b]->out->cancelled()) continue;
        finish(*batch_[b], "cancelled");
        gone.push_back(b);
      }
      remove_rows(gone);
      auto t = std::chrono::steady_clock::now();
      const size_t batched = batch_.size();
      const uint64_t passes = stats().prefill_passes;
      prefill();
      if (profiling() && stats().prefill_passes != passes) {
        std::fprintf(stderr, "[server profile] prefill %llu passes, %zu joined: %.2f ms\n",
                     static_cast<unsigned long long>(stats().prefill_passes - passes),
                     batch_.size() - batched, ms_since(t));
      }
      if (!batch_.empty()) decode_step();
      if (batch_.empty()) {
        // Every row finished: a pending step holds only results nobody reads.
        pending_.reset();
        batch_cache_.clear();
      }
    } catch (const std::exception& e) {
      fail_all(std::string("generation failed: ") + e.what());
    }
    bool idle = waiting_.empty() && prefilling_.empty() && batch_.empty();
    if (idle) {
      // Between bursts, freed buffers go back to the system: the buffer cache,
      // then what the C heap keeps of them (glibc holds freed chunks otherwise,
      // and the resident size would ratchet up burst after burst). The last
      // step's evaluation may still be running: it releases its buffers when it
      // ends, into the cache after it was cleared, so it is waited for first.
      // On the GPU the buffer cache is kept (bounded by its limit, and emptied
      // when an allocation would fail): its blocks are device memory, not the
      // process's resident host memory, and clearing them made the next burst
      // allocate, place and populate every buffer again (~1 200 cudaMallocManaged
      // with their prefetches and cudaFree, ~50 us each, and a 2.3 GB KV-cache
      // buffer for 64 rows: its first joining step took 65-150 ms, a steady step
      // 7-10; tools/gpu/timeline.py on bench/server_gpu.sh, bench/RESULTS.md).
      try {
        mx::synchronize();
      } catch (const std::exception&) {
        // An error of a step nobody reads any more.
      }
      if (mx::default_device().type != mx::Device::gpu) mx::clear_cache();
#ifdef __GLIBC__
      malloc_trim(0);
#endif
    }
    std::lock_guard<std::mutex> lk(mu_);
    stats_.waiting = static_cast<int>(waiting_.size() + incoming_.size());
    stats_.prefilling = static_cast<int>(prefilling_.size());
    stats_.decoding = static_cast<int>(batch_.size());
    stats_.cache_entries = store_->entries();
    stats_.cache_bytes = store_->bytes();
  }
  for (auto& s : incoming_) waiting_.push_back(std::move(s));
  incoming_.clear();
  for (auto& s : waiting_) finish(*s, "cancelled");
  for (auto& s : prefilling_) finish(*s, "cancelled");
  for (auto& s : batch_) finish(*s, "cancelled");
  waiting_.clear();
  prefilling_.clear();
  batch_.clear();
  pending_.reset();
  batch_cache_.clear();
}

}  // namespace lm::server
