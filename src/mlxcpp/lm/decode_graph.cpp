#include "mlxcpp/lm/decode_graph.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <typeinfo>

#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/mx/transforms.h"

namespace lm {

namespace {

// Graph inputs: token [1], position [1], key [2] (sampling only), then keys and values of each
// layer. Outputs: next token [1], position + 1, next key (sampling only), log-probabilities [V].
constexpr int kToken = 0;
constexpr int kPosition = 1;

int round_up(int n, int step) { return (n + step - 1) / step * step; }

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The last positions of one sequence (x: [1, N, L, D], positions n - L .. n - 1) placed at
// their slots p % capacity of a zeroed [1, N, capacity, D] buffer.
mx::array place(const mx::array& x, int n, int capacity) {
  const int L = x.shape(2);
  const int m = std::min(L, capacity);
  mx::Shape shape = x.shape();
  shape[2] = capacity;
  mx::array buf = mx::zeros(shape, x.dtype());
  if (m == 0) return buf;
  mx::array recent = mx::slice(x, {0, 0, L - m, 0}, {x.shape(0), x.shape(1), L, x.shape(3)});
  auto window = [&](const mx::array& part, int at) {
    mx::Shape start{0, 0, at, 0};
    mx::Shape stop{shape[0], shape[1], at + part.shape(2), shape[3]};
    return mx::slice_update(buf, part, start, stop);
  };
  const int first = (n - m) % capacity;
  if (first + m <= capacity) return window(recent, first);
  const int head = capacity - first;  // positions up to the end of the ring, then from slot 0
  buf = window(mx::slice(recent, {0, 0, 0, 0}, {shape[0], shape[1], head, shape[3]}), first);
  return window(mx::slice(recent, {0, 0, head, 0}, {shape[0], shape[1], m, shape[3]}), 0);
}

// A layer's cache as the fixed-shape step can take it over: (keys, values) of the positions
// held in temporal order, or none for a cache of another kind.
std::optional<std::pair<mx::array, mx::array>> held_positions(const LanguageModel& model,
                                                              const KVCacheBase& c, int layer) {
  const int unbounded = model.static_layer_capacity(layer, INT_MAX);
  if (typeid(c) == typeid(KVCache)) {
    if (unbounded != INT_MAX) return std::nullopt;
    auto st = c.state();
    if (st.size() != 2) return std::nullopt;
    return std::make_pair(st[0], st[1]);
  }
  if (typeid(c) == typeid(RotatingKVCache)) {
    const auto& ring = static_cast<const RotatingKVCache&>(c);
    if (ring.keep() != 0 || ring.max_size() != unbounded) return std::nullopt;
    return ring.ordered();
  }
  return std::nullopt;
}

}  // namespace

bool DecodeGraph::enabled() {
  static const bool env_on = [] {
    // On by default: with the step's per-capacity slots made once and the sampled token read
    // from host memory, the replay decodes gemma3-4b faster than the eager step on an H100
    // (bench/RESULTS.md, 2026-11-28). MLXCPP_DECODE_GRAPH=0 keeps decoding eager.
    const char* v = std::getenv("MLXCPP_DECODE_GRAPH");
    return !(v && std::string(v) == "0");
  }();
  return env_on && mx::CapturedGraph::is_available() &&
         mx::default_device() == mx::Device(mx::Device::gpu);
}

bool DecodeGraph::supports(const LanguageModel& model, const PromptCache& cache) {
  if (!model.supports_static_decode()) return false;
  if (cache.size() != static_cast<size_t>(model.num_layers()) || cache.empty()) return false;
  const int n = cache.front()->offset();
  if (n <= 0) return false;
  for (size_t l = 0; l < cache.size(); ++l) {
    if (!cache[l] || cache[l]->offset() != n) return false;
    auto held = held_positions(model, *cache[l], static_cast<int>(l));
    if (!held || held->first.ndim() != 4 || held->first.shape(0) != 1) return false;
  }
  return true;
}

DecodeGraph::DecodeGraph(LanguageModel& model, const PromptCache& cache, const mx::array& token,
                         KeyedSampler sampler, std::optional<mx::array> key, int bucket,
                         bool capture)
    : model_(model), sampler_(std::move(sampler)), bucket_(bucket), capture_(capture) {
  if (bucket <= 0) {
    throw std::invalid_argument("DecodeGraph: the bucket must be positive, got " +
                                std::to_string(bucket));
  }
  if (!supports(model, cache)) {
    throw std::invalid_argument(
        "DecodeGraph: model_type '" + model.model_type() +
        "' with this cache cannot decode through a graph (it needs a fixed-shape step and the "
        "default cache of one sequence, without max_kv_size or KV quantization)");
  }
  if (token.size() != 1) {
    throw std::invalid_argument("DecodeGraph: the first token must be one id, got " +
                                std::to_string(token.size()) + " values");
  }
  if (const char* v = std::getenv("MLXCPP_DECODE_GRAPH_STATS")) stats_.on = std::string(v) == "1";
  if (sampler_ && !key) key = mx::random::bits({2}, 4);
  position_ = cache.front()->offset();
  capacity_ = round_up(position_ + 1, bucket_);
  std::vector<mx::array> inputs{mx::reshape(mx::astype(token, mx::int32), {1}),
                                mx::array(std::vector<int32_t>{position_}, {1}, mx::int32)};
  if (sampler_) inputs.push_back(mx::astype(mx::reshape(*key, {2}), mx::uint32));
  for (size_t l = 0; l < cache.size(); ++l) {
    auto held = *held_positions(model, *cache[l], static_cast<int>(l));
    const int cap = model.static_layer_capacity(static_cast<int>(l), capacity_);
    inputs.push_back(place(held.first, position_, cap));
    inputs.push_back(place(held.second, position_, cap));
  }
  record(std::move(inputs));
}

DecodeGraph::~DecodeGraph() {
  if (stats_.on) {
    std::fprintf(stderr,
                 "decode graph: %d recordings, %.2f ms each; %d steps, %.3f ms apart on average "
                 "(recordings excluded); capacity %d\n",
                 stats_.recordings, 1e3 * stats_.record_s / std::max(stats_.recordings, 1),
                 stats_.steps, 1e3 * stats_.step_s / std::max(stats_.steps, 1), capacity_);
  }
}

std::vector<mx::array> DecodeGraph::build(const std::vector<mx::array>& in) {
  const int first_layer = sampler_ ? 3 : 2;
  std::vector<std::pair<mx::array, mx::array>> kv;
  for (int l = 0; l < model_.num_layers(); ++l) {
    kv.emplace_back(in[first_layer + 2 * l], in[first_layer + 2 * l + 1]);
  }
  auto logits = model_.static_decode(mx::reshape(in[kToken], {1, 1}), in[kPosition], kv);
  // As generate_step samples: float32 logits, log-softmax, then the sampler or argmax.
  logits = mx::astype(mx::squeeze(logits, 1), mx::float32);
  auto logprobs = mx::subtract(logits, mx::logsumexp(logits, -1, true));
  std::vector<mx::array> out;
  std::optional<mx::array> next_key;
  mx::array token = mx::argmax(logprobs, -1);
  if (sampler_) {
    auto [chain, draw] = mx::random::split(in[2]);
    next_key = chain;
    token = sampler_(logprobs, draw);
  }
  out.push_back(mx::reshape(mx::astype(token, mx::int32), {1}));
  out.push_back(mx::add(in[kPosition], mx::array(1, mx::int32)));
  if (next_key) out.push_back(*next_key);
  out.push_back(mx::squeeze(logprobs, 0));
  if (!capture_) {
    // The in-place cache writes must run even when nothing reads the caches' results.
    for (auto& [k, v] : kv) {
      out.push_back(k);
      out.push_back(v);
    }
  }
  return out;
}

void DecodeGraph::record(std::vector<mx::array> inputs) {
  const double t0 = now_s();
  struct Count {
    Stats& s;
    double t0;
    ~Count() {
      s.recordings += 1;
      s.record_s += now_s() - t0;
      s.last = -1;  // the next interval includes the recording
    }
  } count{stats_, t0};
  if (!capture_) {
    mx::eval(inputs);
    state_ = std::move(inputs);
    return;
  }
  std::vector<std::pair<int, int>> feedback{{0, kToken}, {1, kPosition}};
  if (sampler_) feedback.emplace_back(2, 2);
  graph_ = std::make_unique<mx::CapturedGraph>(
      inputs, [this](const std::vector<mx::array>& in) { return build(in); }, feedback);
}

std::pair<mx::array, std::optional<mx::array>> DecodeGraph::step(bool logprobs) {
  const int first_layer = sampler_ ? 3 : 2;
  if (position_ >= capacity_) {
    // The buffers are full: carry the state (as the last step left it) into larger ones.
    if (graph_) mx::synchronize(graph_->stream());
    const int grown = round_up(position_ + 1, bucket_);
    std::vector<mx::array> inputs = graph_ ? graph_->inputs() : state_;
    for (int l = 0; l < model_.num_layers(); ++l) {
      const int cap = model_.static_layer_capacity(l, grown);
      for (int j = 0; j < 2; ++j) {
        auto& a = inputs[first_layer + 2 * l + j];
        // Below the window no ring has wrapped, so the positions sit at their own slots.
        if (a.shape(2) < cap) a = mx::pad(a, {2}, {0}, {cap - a.shape(2)}, mx::array(0));
      }
    }
    graph_.reset();
    capacity_ = grown;
    record(std::move(inputs));
  }
  ++position_;
  if (stats_.on) {
    const double t = now_s();
    if (stats_.last >= 0) {
      stats_.steps += 1;
      stats_.step_s += t - stats_.last;
    }
    stats_.last = t;
  }
  if (!capture_) {
    auto out = build(state_);
    mx::async_eval(out);
    // Feedback as the graph does it: token, position and key for the next step; the caches
    // were written in place (their results share the buffers).
    state_[kToken] = out[0];
    state_[kPosition] = out[1];
    if (sampler_) state_[2] = out[2];
    for (int l = 0; l < 2 * model_.num_layers(); ++l) {
      state_[first_layer + l] = out[first_layer + 1 + l];
    }
    std::optional<mx::array> lp;
    if (logprobs) lp = out[first_layer];
    return {out[0], lp};
  }
  const int last = graph_->num_outputs() - 1;
  std::vector<int> take{0};
  if (logprobs) take.push_back(last);
  auto r = graph_->replay(take);
  std::optional<mx::array> lp;
  if (logprobs) lp = r[1];
  return {r[0], lp};
}

}  // namespace lm
