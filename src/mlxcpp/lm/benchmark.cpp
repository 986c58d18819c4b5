#include "mlxcpp/lm/benchmark.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "mlxcpp/lm/cache.h"
#include "mlxcpp/lm/decode_graph.h"
#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/mx/allocator.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/mx/scheduler.h"
#include "mlxcpp/mx/transforms.h"

namespace lm {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Sums n 8-byte words at p (any alignment: safetensors data need not be 8-aligned).
uint64_t read_sum(const char* p, size_t n) {
  auto word = [p](size_t i) {
    uint64_t w;
    std::memcpy(&w, p + 8 * i, 8);
    return w;
  };
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += word(i);
    s1 += word(i + 1);
    s2 += word(i + 2);
    s3 += word(i + 3);
  }
  for (; i < n; ++i) s0 += word(i);
  return s0 + s1 + s2 + s3;
}

// A piece of one parameter's bytes, in whole 8-byte words.
struct Piece {
  const char* p;
  size_t words;
};

// Every parameter cut into pieces of at most 1 MB, streamed in one parallel
// pass: one fork-join for the whole model (as the best decode step would
// pay), pieces taken dynamically so that a thread that loses its core does
// not hold the others up.
uint64_t read_all(const std::vector<Piece>& pieces) {
  std::atomic<uint64_t> total{0};
  mx::scheduler::parallel_for(pieces.size(), 1, [&](size_t b, size_t e) {
    uint64_t s = 0;
    for (size_t i = b; i < e; ++i) s += read_sum(pieces[i].p, pieces[i].words);
    total += s;
  });
  return total.load();
}

}  // namespace

BenchmarkTrial benchmark_generation(LanguageModel& model, int prompt_tokens, int generation_tokens,
                                    int batch, int prefill_step_size, uint64_t seed) {
  if (prompt_tokens < 1 || generation_tokens < 1 || batch < 1 || prefill_step_size < 1) {
    throw std::invalid_argument(
        "benchmark: prompt tokens, generation tokens, batch size and prefill step size must be "
        "positive");
  }
  if (prompt_tokens + generation_tokens > model.max_context()) {
    throw std::invalid_argument(
        "benchmark: " + std::to_string(prompt_tokens) + " + " + std::to_string(generation_tokens) +
        " tokens exceed the model's context of " + std::to_string(model.max_context()));
  }
  auto key = mx::random::key(seed);
  auto prompt = mx::random::randint(0, model.vocab_size(), {batch, prompt_tokens}, mx::int32, key);
  mx::eval(prompt);
  auto cache = model.make_cache();
  mx::reset_peak_memory();
  BenchmarkTrial r;

  auto t0 = Clock::now();
  // As lm::prefill: full chunks, then the last chunk's last position through the LM head.
  int done = 0;
  while (prompt_tokens - done > prefill_step_size) {
    model(mx::slice(prompt, {0, done}, {batch, done + prefill_step_size}), &cache);
    eval_prompt_cache(cache);
    done += prefill_step_size;
  }
  auto logits = model.last_logits(mx::slice(prompt, {0, done}, {batch, prompt_tokens}), &cache);
  auto y = mx::argmax(logits, -1);  // [B, 1]
  mx::eval(y);
  r.ttft_s = since(t0);
  r.prompt_tps = double(batch) * prompt_tokens / r.ttft_s;

  // Decode: each step is scheduled before the previous token is read, as in generate_step.
  auto t1 = Clock::now();
  auto next = [&](const mx::array& tok) {
    auto l = model(mx::astype(tok, mx::int32), &cache);
    return mx::argmax(l, -1);
  };
  // On the GPU a single sequence decodes through a replayed graph, as generate_step does.
  std::unique_ptr<DecodeGraph> graph;
  if (batch == 1 && generation_tokens > 1 && DecodeGraph::enabled() &&
      DecodeGraph::supports(model, cache)) {
    graph = std::make_unique<DecodeGraph>(model, cache, y);
  }
  r.decode_graph = graph != nullptr;
  for (int n = 1; n < generation_tokens; ++n) {
    auto y_next = graph ? graph->step(false).first : next(y);
    if (!graph) mx::async_eval({y_next});
    y.eval();
    y = y_next;
  }
  y.eval();
  // The first token came from prefill; generation_tokens - 1 decode steps ran.
  double t = since(t1);
  r.generation_tps = generation_tokens > 1 ? double(batch) * (generation_tokens - 1) / t : 0;
  r.peak_memory_gb = static_cast<double>(mx::get_peak_memory()) / 1e9;
  return r;
}

BandwidthFloor measure_bandwidth_floor(const LanguageModel& model, int repeats) {
  std::vector<mx::array> params;
  BandwidthFloor f;
  for (auto& [name, p] : model.parameters()) {
    params.push_back(p);
    f.weight_bytes += static_cast<double>(p.nbytes());
  }
  mx::eval(params);
  if (mx::default_device() == mx::Device(mx::Device::gpu)) {
    // The weights live in GPU memory (lm::load): reading them on the host
    // would measure the bus and pull pages off the device. A decode step
    // reads each weight byte once from HBM; a device copy reads and writes
    // every byte, so its bytes moved per second is the HBM rate.
    f.source = "gpu device-to-device copy";
    f.read_gbs = mx::gpu_copy_bandwidth_gbs(size_t{1} << 30, 2 * repeats);
    f.floor_tps = f.read_gbs * 1e9 / f.weight_bytes;
    return f;
  }
  constexpr size_t kPieceWords = (size_t{1} << 20) / 8;
  std::vector<Piece> pieces;
  for (auto& p : params) {
    const char* base = p.data<char>();
    size_t words = p.nbytes() / 8;
    for (size_t w = 0; w < words; w += kPieceWords) {
      pieces.push_back({base + 8 * w, std::min(kPieceWords, words - w)});
    }
  }
  double best = 0;
  volatile uint64_t sink = 0;  // keeps the sums observable
  for (int r = 0; r < repeats; ++r) {
    auto t0 = Clock::now();
    sink = sink + read_all(pieces);
    double t = since(t0);
    if (best == 0 || t < best) best = t;
  }
  f.read_gbs = f.weight_bytes / best / 1e9;
  f.floor_tps = 1.0 / best;
  return f;
}

}  // namespace lm
