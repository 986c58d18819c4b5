// Decoding one sequence token by token through a CUDA graph (mx::CapturedGraph): the model's
// fixed-shape step (LanguageModel::static_decode), the log-softmax and the sampler are recorded
// once and replayed for every token, with the token, its position and the random key fed back
// on the device. The only host work per token is queuing the replay and reading the sampled
// id. The cache lives in fixed-capacity buffers sized in buckets of positions; when the next
// position no longer fits, they are copied into larger ones and the step is recorded again.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "mlxcpp/lm/cache.h"
#include "mlxcpp/lm/sample.h"
#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/graph.h"

namespace lm {

class LanguageModel;

class DecodeGraph {
 public:
  static constexpr int kDefaultBucket = 256;

  // Whether decoding may go through a graph in this process: the default device is the GPU
  // and MLXCPP_DECODE_GRAPH is not 0 (on by default; see decode_graph.cpp).
  static bool enabled();
  // Whether `model` with `cache` (as prefill left it) can: the model has a fixed-shape step,
  // and every layer is a plain full cache or a sliding-window ring with nothing pinned (the
  // default cache: no max_kv_size, no quantization), holding one sequence.
  static bool supports(const LanguageModel& model, const PromptCache& cache);

  // cache: filled by prefill with one sequence of n positions; token: the token at position
  // n ([1] or [1, 1] integer), as sampled from the prefill's logits. sampler: none for argmax;
  // key: the first random key when sampling (uint32 [2]). bucket: capacities are multiples of
  // it. capture false evaluates the same fixed-shape step on the default device each time
  // instead of replaying a recording (any device; what the CPU tests check the cache layout
  // with). Throws std::invalid_argument when supports() is false.
  DecodeGraph(LanguageModel& model, const PromptCache& cache, const mx::array& token,
              KeyedSampler sampler = nullptr, std::optional<mx::array> key = std::nullopt,
              int bucket = kDefaultBucket, bool capture = true);
  ~DecodeGraph();

  // Queues the step that feeds the last token (the one given, then each sampled one) and
  // returns the token it samples ([1] int32) and, when asked, the log-probabilities it sampled
  // from ([V] float32): arrays that become available once the step has run.
  std::pair<mx::array, std::optional<mx::array>> step(bool logprobs = true);

  // Position of the token the next step feeds.
  int position() const { return position_; }
  // Positions the current buffers hold (a multiple of the bucket).
  int capacity() const { return capacity_; }

 private:
  // Makes the step's outputs from its inputs (see decode_graph.cpp for the layout).
  std::vector<mx::array> build(const std::vector<mx::array>& in);
  void record(std::vector<mx::array> inputs);

  LanguageModel& model_;
  KeyedSampler sampler_;
  int bucket_;
  bool capture_;
  // Without capture: the inputs of the next step.
  std::vector<mx::array> state_;
  int position_ = 0;
  int capacity_ = 0;
  std::unique_ptr<mx::CapturedGraph> graph_;
  // MLXCPP_DECODE_GRAPH_STATS=1: recordings and step intervals, printed to stderr at the end.
  struct Stats {
    bool on = false;
    int recordings = 0;
    double record_s = 0;
    int steps = 0;
    double step_s = 0;
    double last = -1;
  } stats_;
};

}  // namespace lm
