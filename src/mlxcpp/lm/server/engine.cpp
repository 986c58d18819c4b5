#include "mlxcpp/lm/server/engine.h"

#include <algorithm>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <limits>
#include <optional>
#include <stdexcept>

#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/lm/server/batch_cache.h"
#include "mlxcpp/lm/server/prompt_store.h"
#include "mlxcpp/lm/tokenizer/streaming_detokenizer.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"
#include "mlxcpp/mx/allocator.h"
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
  Sequence(GenerationJob j, const Tokenizer& tok) : job(std::move(j)), detok(tok) {}
  GenerationJob job;
  std::shared_ptr<RequestStream> out = std::make_shared<RequestStream>();
  Sampler sampler;
  std::vector<LogitsProcessor> processors;
  PromptCache cache;            // while prefilling; the batch cache holds it afterwards
  size_t prefilled = 0;         // prompt tokens the cache holds
  int cached_tokens = 0;        // of those, reused from the prompt store
  std::vector<int32_t> tokens;  // prompt + generated
  int generated = 0;
  int32_t last_token = 0;  // sampled, not yet fed to the model
  StreamingDetokenizer detok;
  std::string pending;  // text held back as a possible stop-string prefix
  bool done = false;
  bool failed = false;  // ended by an error or a cancel: its cache is not kept
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

}  // namespace

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
    if (t >= V) {
      throw std::invalid_argument("logit_bias: token id " + std::to_string(t) +
                                  " is outside the vocabulary [0, " + std::to_string(V) + ")");
    }
  }
  if (job.sampling.top_k >= V) job.sampling.top_k = 0;  // keeping all tokens is no filter
  auto s = std::make_shared<Sequence>(std::move(job), *tokenizer_);
  s->sampler = make_sampler(s->job.sampling);
  s->processors = make_logits_processors(s->job.processors);
  s->tokens = s->job.prompt;
  auto out = s->out;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) throw std::runtime_error("the server is shutting down");
    incoming_.push_back(std::move(s));
    ++stats_.waiting;
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

Engine::Sampled Engine::sample(Sequence& s, const mx::array& logits) {
  mx::array x = mx::astype(logits, mx::float32);
  for (const auto& p : s.processors) x = p(s.tokens, x);
  if (s.job.constraint) {
    const auto& allowed = s.job.constraint->allowed();
    const int V = x.shape(-1);
    std::vector<uint8_t> mask(V, 0);
    std::copy_n(allowed.begin(), std::min<size_t>(allowed.size(), V), mask.begin());
    x = mx::where(mx::array(mask.begin(), {1, V}, mx::bool_), x,
                  mx::array(-std::numeric_limits<float>::infinity()));
  }
  mx::array logprobs = mx::subtract(x, mx::logsumexp(x, -1, true));
  mx::array token = mx::astype(s.sampler(logprobs), mx::int32);
  return {mx::reshape(token, {1}), mx::reshape(logprobs, {-1})};
}

bool Engine::handle_token(Sequence& s, int32_t token, const mx::array& logprobs) {
  s.generated += 1;
  s.tokens.push_back(token);
  s.last_token = token;
  if (s.job.constraint) s.job.constraint->accept(token);
  Event e;
  if (s.job.logprobs) {
    mx::array lp = logprobs;
    const float* p = lp.data<float>();
    e.tokens.push_back({token, p[token]});
    if (s.job.top_logprobs > 0) {
      const int V = lp.shape(0);
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

void Engine::prefill_chunk(Sequence& s) {
  const auto& prompt = s.job.prompt;
  const size_t total = prompt.size();
  // All but the last prompt token only fill the cache; the last one alone
  // gives the logits, so no chunk computes a [T, vocab] projection.
  if (total - s.prefilled > 1) {
    int n = static_cast<int>(std::min<size_t>(options_.prefill_step_size, total - 1 - s.prefilled));
    (*model_)(token_row(prompt.data() + s.prefilled, n), &s.cache);
    std::vector<mx::array> arrays;
    for (const auto& c : s.cache) {
      for (auto& a : c->state()) arrays.push_back(a);
    }
    mx::eval(arrays);
    s.prefilled += n;
    return;
  }
  auto logits = (*model_)(token_row(prompt.data() + total - 1, 1), &s.cache);
  s.prefilled = total;
  auto [token, logprobs] = sample(s, mx::reshape(logits, {1, -1}));
  mx::eval({token, logprobs});
  if (handle_token(s, token.item<int32_t>(), logprobs)) {
    store_cache(s);
    s.cache.clear();
    return;
  }
  // The sequence joins the batch (with the others prefilled this round) in run().
}

void Engine::join_batch(const std::vector<std::shared_ptr<Sequence>>& joining) {
  if (joining.empty()) return;
  if (batch_cache_.empty()) {
    for (int l = 0; l < model_->num_layers(); ++l) {
      batch_cache_.push_back(options_.kv_bits ? std::make_shared<BatchKVCache>(
                                                    options_.kv_group_size, *options_.kv_bits)
                                              : std::make_shared<BatchKVCache>());
    }
  }
  for (int l = 0; l < model_->num_layers(); ++l) {
    std::vector<std::pair<mx::array, mx::array>> rows;
    for (const auto& s : joining) {
      auto st = s->cache[l]->state();
      rows.emplace_back(st[0], st[1]);
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
  for (auto& c : batch_cache_) c->remove_rows(rows);
  for (auto it = rows.rbegin(); it != rows.rend(); ++it) batch_.erase(batch_.begin() + *it);
}

void Engine::decode_step() {
  const int B = static_cast<int>(batch_.size());
  std::vector<int32_t> last(B);
  for (int b = 0; b < B; ++b) last[b] = batch_[b]->last_token;
  PromptCache cache(batch_cache_.begin(), batch_cache_.end());
  auto logits = (*model_)(mx::array(last, {B, 1}, mx::int32), &cache);  // [B, 1, V]
  const int V = logits.shape(2);
  // A request whose own sampling fails (its processors, its grammar) ends with
  // an error; the other rows go on.
  std::vector<std::optional<Sampled>> sampled(B);
  std::vector<int> finished;
  std::vector<mx::array> outputs;
  for (int b = 0; b < B; ++b) {
    try {
      auto row = mx::reshape(mx::slice(logits, {b, 0, 0}, {b + 1, 1, V}), {1, V});
      sampled[b] = sample(*batch_[b], row);
      outputs.push_back(sampled[b]->token);
      if (batch_[b]->job.logprobs) outputs.push_back(sampled[b]->logprobs);
    } catch (const std::exception& e) {
      finish(*batch_[b], "error", std::string("sampling failed: ") + e.what());
      finished.push_back(b);
    }
  }
  mx::eval(outputs);
  for (int b = 0; b < B; ++b) {
    if (!sampled[b]) continue;
    try {
      if (handle_token(*batch_[b], sampled[b]->token.item<int32_t>(), sampled[b]->logprobs)) {
        finished.push_back(b);
      }
    } catch (const std::exception& e) {
      finish(*batch_[b], "error", std::string("generation failed: ") + e.what());
      finished.push_back(b);
    }
  }
  std::sort(finished.begin(), finished.end());
  for (int b : finished) {
    if (!batch_[b]->failed) store_cache(*batch_[b]);
  }
  remove_rows(finished);
  std::lock_guard<std::mutex> lk(mu_);
  ++stats_.steps;
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
      admit();
      auto current = prefilling_;
      std::vector<std::shared_ptr<Sequence>> joining;
      for (auto& s : current) {
        try {
          prefill_chunk(*s);
        } catch (const std::exception& e) {
          // This request's prompt failed; the others go on.
          finish(*s, "error", std::string("prefill failed: ") + e.what());
        }
        if (s->done) {
          std::erase(prefilling_, s);
        } else if (s->prefilled == s->job.prompt.size()) {
          std::erase(prefilling_, s);
          joining.push_back(s);
        }
      }
      join_batch(joining);
      if (!batch_.empty()) decode_step();
      if (batch_.empty()) batch_cache_.clear();
    } catch (const std::exception& e) {
      fail_all(std::string("generation failed: ") + e.what());
    }
    bool idle = waiting_.empty() && prefilling_.empty() && batch_.empty();
    if (idle) {
      // Between bursts, freed buffers go back to the system: the buffer cache,
      // then what the C heap keeps of them (glibc holds freed chunks otherwise,
      // and the resident size would ratchet up burst after burst).
      mx::clear_cache();
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
  batch_cache_.clear();
}

}  // namespace lm::server
