// The serving engine of `mlxcpp server`: one thread owns the model and runs
// continuous batching. Requests wait in a queue, are prefilled (a chunk at a
// time, interleaved with decode steps, starting from the longest cached token
// prefix; the prompts being prefilled run together, several per forward pass),
// then join the decode batch; every step decodes one token for every batched
// request in a single forward pass over a left-padded batch cache and samples
// them together. A prompt's last token is fed by the decode step that samples
// its first generated token. Requests join and leave between steps; a
// cancelled one leaves at once. A decode step is launched before the one
// before it is read (its input ids come from that step on the device), so the
// host's graph building and per-token work overlap the device.
//
// Environment: MLXCPP_SERVER_PROFILE=1 logs each decode step's phases (graph
// building, launch, wait, per-row token handling, rows leaving) and each
// prefill round to stderr; MLXCPP_SERVER_PIPELINE=0 reads every step before
// building the next (for comparison; the tokens are the same).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mlxcpp/lm/cache.h"
#include "mlxcpp/lm/sample.h"

namespace lm {
class LanguageModel;
class Tokenizer;
}  // namespace lm

namespace lm::server {

class BatchKVCache;
class RowSampler;
class PromptStore;

// Runs tokens[i] through the model on top of caches[i] for every i in one
// forward pass (rows of different cache and token lengths: the caches are
// left-padded into a BatchKVCache, the tokens right-padded to the longest);
// afterwards caches[i] holds its earlier positions plus tokens[i], as running
// each sequence alone would leave it. The caches are KVCache lists of
// model.num_layers() entries; every tokens[i] is non-empty. The logits are not
// computed.
void prefill_together(LanguageModel& model, const std::vector<PromptCache*>& caches,
                      const std::vector<std::vector<int32_t>>& tokens);

// The forward pass of prefill_together without writing the caches back: the
// pass's batch cache (one BatchKVCache per layer, evaluated), whose row b
// holds caches[b]'s positions and then tokens[b] (right-padded to the longest
// row), for joining a decode batch as one block.
std::vector<std::shared_ptr<BatchKVCache>> prefill_batch(
    LanguageModel& model, const std::vector<PromptCache*>& caches,
    const std::vector<std::vector<int32_t>>& tokens);

// Restricts the tokens a request may sample next (grammar-constrained output).
class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // The tokens allowed next: one flag per vocabulary entry (size = vocab).
  virtual const std::vector<uint8_t>& allowed() = 0;
  // Advances past a sampled token (always one that allowed() permitted).
  virtual void accept(int32_t token) = 0;
  // True once the output is complete: generation stops with "stop".
  virtual bool complete() const = 0;
};

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0;
};

struct GenerationJob {
  std::vector<int32_t> prompt;
  int max_tokens = 512;
  SamplerOptions sampling;
  LogitsProcessorOptions processors;
  std::vector<std::string> stop;  // matched on the decoded text; the match is cut
  bool logprobs = false;
  int top_logprobs = 0;
  std::shared_ptr<TokenConstraint> constraint;
};

// What the engine reports to a request's stream, in order.
struct Event {
  std::string text;                            // newly final text (may be empty)
  std::vector<TokenLogprob> tokens;            // the tokens this event adds (with logprobs)
  std::vector<std::vector<TokenLogprob>> top;  // per token, top_logprobs alternatives
  std::optional<std::string> finish_reason;    // stop | length | cancelled | error
  std::string error;
  int prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
};

// The handle an HTTP handler holds while its request runs.
class RequestStream {
 public:
  // Waits up to `timeout` for events; returns those queued (none on timeout).
  std::vector<Event> next(std::chrono::milliseconds timeout);
  // Asks the engine to stop this request and free its cache (a client left).
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  // Engine side.
  void push(Event e);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  std::atomic<bool> cancelled_{false};
};

struct EngineOptions {
  int decode_concurrency = 32;  // requests decoded together
  int prompt_concurrency = 8;   // requests prefilled at a time (a chunk each per step, together)
  int prefill_step_size = 2048;
  size_t prompt_cache_size = 10;                // entries
  size_t prompt_cache_bytes = size_t(1) << 32;  // bytes
  std::optional<int> max_kv_size;               // positions per sequence (prompt + output)
  std::optional<int> kv_bits;                   // decode batch's KV cache quantized to these bits
  int kv_group_size = 64;
  std::vector<int32_t> eos_token_ids;
  // Decode steps padded to a power of two of rows (Engine::step_rows). Unset: on when the
  // default device is the GPU, where a new row count costs fresh buffers and product plans
  // (MLXCPP_SERVER_PAD_ROWS=0 or 1 decides instead), off on the CPU, where the extra rows cost
  // compute.
  std::optional<bool> pad_step_rows;
};

struct EngineStats {
  int waiting = 0, prefilling = 0, decoding = 0;
  size_t cache_entries = 0, cache_bytes = 0;
  uint64_t completed = 0, cancelled = 0, steps = 0;
  // Prefill forward passes, and the prompt chunks they ran (more chunks than
  // passes: prompts were prefilled together).
  uint64_t prefill_passes = 0, prefill_chunks = 0;
};

class Engine {
 public:
  Engine(std::shared_ptr<LanguageModel> model, std::shared_ptr<const Tokenizer> tokenizer,
         EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Throws std::invalid_argument for a prompt that does not
  // fit the context (or is empty).
  std::shared_ptr<RequestStream> submit(GenerationJob job);
  // Queues several requests at once: the engine sees them together (all or, when one is
  // invalid, none: the exception names it by its index).
  std::vector<std::shared_ptr<RequestStream>> submit(std::vector<GenerationJob> jobs);
  // Finishes every request with "cancelled" and joins the thread.
  void shutdown();
  EngineStats stats() const;
  // Largest prompt + output, in tokens, a sequence may hold.
  int context_limit() const;
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // Logits per position (the model's vocabulary, possibly padded past the tokenizer's).
  int vocab_size() const;

 private:
  struct Sequence;
  // A sequence for the job, or std::invalid_argument / std::length_error naming what is wrong.
  std::shared_ptr<Sequence> make_sequence(GenerationJob job) const;
  void run();
  void admit();
  // One chunk of every prefilling prompt, in forward passes shared by prompts
  // of similar chunk lengths; prompts whose cache then holds all but their last
  // token join the decode batch. Returns the prompt tokens it ran.
  size_t prefill_round();
  // Admits and prefills between two decode steps: rounds of up to prompt_concurrency
  // prompts each, as long as requests wait and the batch has room, up to a token budget:
  // prefill_step_size tokens while rows are decoding (their next token waits for it), four
  // times that with none decoding. A burst of short prompts is then prefilled whole before the
  // first step, as mlx-lm's BatchGenerator does (a step per round of 8 prompts cost 64
  // concurrent requests seven extra decode steps of a growing batch), while a burst of long
  // ones still lets the first prompts start generating.
  void prefill();
  // Builds and launches a decode step of every batched row, then reads the
  // step before it (launched earlier) while this one runs: the host's graph
  // building and token handling overlap the device's work. Rows that finished
  // in the step read leave the batch; their row of the step just launched is
  // never read.
  void decode_step();
  // The step's input tokens [S, 1] for its B batch rows and S - B spare rows (step_rows):
  // rows of the pending step take the ids it samples on the device (no host read in between),
  // joining rows their own, spare rows any id.
  mx::array step_input(int S) const;
  // The rows a decode step of the batch runs: the batch padded to a power of two with spare
  // rows of the batch cache's buffer (MLXCPP_SERVER_PAD_ROWS=0: the batch alone).
  int step_rows() const;
  // Waits for the pending step, hands each live row its token, removes finished rows.
  void read_step();
  void ensure_batch_cache();
  // Tells the batch caches how many rows to make room for: the requests held (batched,
  // prefilling, waiting), up to decode_concurrency.
  void reserve_batch_rows();
  // Moves prefilled sequences into the decode batch (one buffer copy for all).
  void join_batch(const std::vector<std::shared_ptr<Sequence>>& joining);
  // Drops batch rows (ascending indices) and their caches.
  void remove_rows(const std::vector<int>& rows);
  // Handles a sampled token with its logprob and, for top_logprobs, the row's
  // logprobs over the vocabulary [V] (else null); returns true when the
  // sequence finished.
  bool handle_token(Sequence& s, int32_t token, float logprob, const float* row_logprobs);
  void finish(Sequence& s, const std::string& reason, const std::string& error = "");
  void store_cache(Sequence& s);
  void fail_all(const std::string& error);

  std::shared_ptr<LanguageModel> model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  EngineOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Sequence>> incoming_;
  bool stopping_ = false;
  EngineStats stats_;

  // Engine-thread state.
  std::deque<std::shared_ptr<Sequence>> waiting_;
  std::vector<std::shared_ptr<Sequence>> prefilling_;
  std::vector<std::shared_ptr<Sequence>> batch_;  // row b of the batch cache is batch_[b]
  std::vector<std::shared_ptr<BatchKVCache>> batch_cache_;
  // A launched decode step not yet read: its rows as they were then.
  struct Step {
    std::vector<std::shared_ptr<Sequence>> rows;
    mx::array tokens;                                // [step rows >= rows] int32
    std::optional<mx::array> chosen = {};            // [rows] logprobs of the tokens
    std::vector<std::optional<mx::array>> top = {};  // per row, [V] logprobs for top_logprobs
    std::vector<mx::array> outputs = {};
  };
  std::unique_ptr<Step> pending_;
  // Whether decode steps are padded (step_rows), decided once from the options, the
  // environment and the default device.
  bool pad_steps_ = false;
  // Samples the spare rows of a padded step (greedy: one argmax with the batch's greedy rows).
  std::unique_ptr<RowSampler> spare_sampler_;
  struct ReadTimes {
    double wait_ms = 0, tokens_ms = 0;
    int left = 0;
  } last_read_;  // MLXCPP_SERVER_PROFILE's numbers of the latest read
  std::unique_ptr<PromptStore> store_;
  std::thread thread_;
};

}  // namespace lm::server
