// Generation speed (mlx_lm.benchmark) and the memory-bandwidth floor it is
// measured against, in the same run: on the CPU the time to stream the
// model's weight bytes once through a read-and-sum loop on all cores; on the
// GPU (the default device) the weight bytes over the measured
// device-to-device copy bandwidth.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lm {

class LanguageModel;

struct BenchmarkTrial {
  double prompt_tps = 0;      // prompt tokens (all sequences) per second
  double generation_tps = 0;  // generated tokens (all sequences) per second
  double peak_memory_gb = 0;
  double ttft_s = 0;          // prompt submitted -> first generated token on the host
  bool decode_graph = false;  // decoded through a replayed graph (lm/decode_graph.h)
};

// Prefill `batch` random prompts of prompt_tokens, then generate_tokens greedy
// steps (no detokenization), timing both phases.
BenchmarkTrial benchmark_generation(LanguageModel& model, int prompt_tokens, int generation_tokens,
                                    int batch, int prefill_step_size, uint64_t seed);

struct BandwidthFloor {
  double weight_bytes = 0;  // bytes of all parameters (what one decode step reads)
  double read_gbs = 0;      // best read bandwidth over the weights, GB/s
  double floor_tps = 0;     // read_gbs * 1e9 / weight_bytes: decode tokens/s at the floor
  // What read_gbs measured: "host read" or "gpu device-to-device copy".
  std::string source = "host read";
};
// Streams every parameter buffer `repeats` times and keeps the fastest pass.
BandwidthFloor measure_bandwidth_floor(const LanguageModel& model, int repeats = 5);

}  // namespace lm
