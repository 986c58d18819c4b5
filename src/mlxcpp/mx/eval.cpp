// Graph evaluation: an iterative topological sort, then one task on a stream
// that runs the primitives in order and releases nodes as it goes.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <typeinfo>

#include "mlxcpp/mx/backend/gpu.h"
#include "mlxcpp/mx/eval_hooks.h"
#include "mlxcpp/mx/event.h"
#include "mlxcpp/mx/primitive.h"
#include "mlxcpp/mx/primitives/elementwise.h"
#include "mlxcpp/mx/primitives/fast.h"
#include "mlxcpp/mx/primitives/indexing.h"
#include "mlxcpp/mx/primitives/shape.h"
#include "mlxcpp/mx/primitives/shape_more.h"
#include "mlxcpp/mx/scheduler.h"
#include "mlxcpp/mx/transforms.h"

namespace mx {

namespace detail {
namespace {
std::atomic<int> g_tracing{0};
}
bool in_tracing() { return g_tracing.load() > 0; }
TracingScope::TracingScope() { ++g_tracing; }
TracingScope::~TracingScope() { --g_tracing; }
}  // namespace detail

namespace {

// MLXCPP_PROFILE=1: wall time per primitive (keyed by name, output shape and
// dtype) and per evaluation task, printed to stderr at exit. Off, it costs one
// predictable branch per node.
class Profile {
 public:
  static bool enabled() {
    static const bool on = [] {
      const char* v = std::getenv("MLXCPP_PROFILE");
      return v && *v && std::string(v) != "0";
    }();
    return on;
  }
  static Profile& get() {
    static Profile p;
    return p;
  }
  void add(const std::string& key, double sec) {
    std::lock_guard<std::mutex> lk(mu_);
    auto& s = stats_[key];
    s.first += 1;
    s.second += sec;
  }
  ~Profile() {
    std::vector<std::pair<std::string, std::pair<long, double>>> rows(stats_.begin(), stats_.end());
    std::sort(rows.begin(), rows.end(),
              [](const auto& a, const auto& b) { return a.second.second > b.second.second; });
    std::fprintf(stderr, "%-60s %10s %12s %10s\n", "primitive [shape dtype]", "calls", "total ms",
                 "mean us");
    for (auto& [k, v] : rows) {
      std::fprintf(stderr, "%-60s %10ld %12.3f %10.2f\n", k.c_str(), v.first, v.second * 1e3,
                   v.second / static_cast<double>(v.first) * 1e6);
    }
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::pair<long, double>> stats_;
};

using ProfileClock = std::chrono::steady_clock;

double seconds_since(ProfileClock::time_point t0) {
  return std::chrono::duration<double>(ProfileClock::now() - t0).count();
}

std::string profile_key(Primitive& p, const array& out) {
  std::string k = p.name();
  k += " [";
  for (size_t i = 0; i < out.ndim(); ++i) {
    if (i) k += ',';
    k += std::to_string(out.shape(static_cast<int>(i)));
  }
  k += ' ';
  k += dtype_name(out.dtype());
  k += ']';
  return k;
}

// MLXCPP_GPU_PROFILE's key: the primitive, its inputs' shapes and the output's
// shape and dtype (the inputs tell a GEMM's M, N, K apart).
std::string device_profile_key(Primitive& p, const std::vector<array>& inputs, const array& out) {
  std::string k = p.name();
  k += " [";
  for (size_t j = 0; j < inputs.size(); ++j) {
    if (j) k += ' ';
    for (size_t i = 0; i < inputs[j].ndim(); ++i) {
      if (i) k += 'x';
      k += std::to_string(inputs[j].shape(static_cast<int>(i)));
    }
  }
  k += " -> ";
  for (size_t i = 0; i < out.ndim(); ++i) {
    if (i) k += 'x';
    k += std::to_string(out.shape(static_cast<int>(i)));
  }
  k += ' ';
  k += dtype_name(out.dtype());
  k += ']';
  return k;
}

// 2 M N K (times the batch) for a matrix product, else 0.
double matmul_flops(Primitive& p, const std::vector<array>& inputs, const array& out) {
  const std::string name = p.name();
  if ((name != "Matmul" && name != "AddMM") || inputs.empty() || inputs[0].ndim() == 0) return 0;
  return 2.0 * static_cast<double>(out.size()) * inputs[0].shape(-1);
}

// GPU streams with kernels launched by the running task and not yet waited for.
struct PendingGpu {
  std::vector<Stream> streams;
  // Earlier evaluations whose kernels were launched on this task's gpu
  // stream and may still run: kernels this task launches on that stream are
  // ordered after them by the stream itself, so only host-side work (or
  // another stream) waits for them.
  std::vector<std::shared_ptr<Event>> launched_before;
  int launched_before_stream = -1;
  // Outputs this task launched (scheduled until the device has run them). Weak:
  // intermediates still die once consumed.
  std::vector<array::Weak> launched;
  void add(const Stream& s) {
    if (std::find(streams.begin(), streams.end(), s) == streams.end()) streams.push_back(s);
  }
  bool any() const { return !streams.empty() || !launched_before.empty(); }
  // Host-side work (a CPU kernel, or kernels on another GPU stream, which the
  // device does not order against this one) must see the results: wait.
  void synchronize_except(const Stream* keep) {
    // The common case, every node on one gpu stream: nothing to wait for
    // (checked first: this runs for every node).
    if (keep && (launched_before.empty() || keep->index == launched_before_stream) &&
        std::all_of(streams.begin(), streams.end(), [&](const Stream& s) { return s == *keep; })) {
      return;
    }
    if (!launched_before.empty() && !(keep && keep->index == launched_before_stream)) {
      for (auto& e : launched_before) e->wait();
      launched_before.clear();
    }
    std::vector<Stream> kept;
    for (auto& s : streams) {
      if (keep && s == *keep) {
        kept.push_back(s);
      } else {
        gpu::synchronize(s);
      }
    }
    streams = std::move(kept);
  }
};

enum class GpuDonation { none, slice_updates, all };

// The primitives whose GPU kernels may write their output into their first input's buffer when
// nobody else holds it (array::is_donatable at evaluation time): the slice updates, so a KV
// cache that alone holds its buffer is written in place, and a buffer someone still reads (a
// fetched view, a saved state) is copied first: copy on write. Scatters too: a server step's
// logit bias scattered into its [64, 262208] logits copied 67 MB first (230 us a step).
bool updates_in_place_on_gpu(const Primitive& p) {
  const auto& t = typeid(p);
  return t == typeid(SliceUpdate) || t == typeid(DynamicSliceUpdate) || t == typeid(Scatter) ||
         t == typeid(fast::RMSNormRoPEKVWrite);
}

// The primitives whose GPU evaluation is a view of their input (no kernel reads it): their
// inputs keep their own buffers, never device copies of small host-made ones, so the view
// shares the buffer it is a view of (gpu::device_accessible).
bool is_view_on_gpu(const Primitive& p) {
  const auto& t = typeid(p);
  return t == typeid(Broadcast) || t == typeid(Transpose) || t == typeid(Slice) ||
         t == typeid(Reshape) || t == typeid(StopGradient) || t == typeid(AsStrided) ||
         t == typeid(View) || t == typeid(Diagonal);
}

GpuDonation gpu_donation() {
  static const GpuDonation mode = [] {
    const char* v = std::getenv("MLXCPP_GPU_DONATE");
    const std::string s = v ? v : "";
    if (s == "none") return GpuDonation::none;
    if (s == "all") return GpuDonation::all;
    return GpuDonation::slice_updates;
  }();
  return mode;
}

void run_node(array& node, std::vector<array>& outputs, bool keep_graph, PendingGpu& pending) {
  outputs.clear();
  if (node.has_siblings()) {
    outputs = node.outputs();
  } else {
    outputs.push_back(node);
  }
  auto& p = node.primitive();
  const bool profile = Profile::enabled();
  ProfileClock::time_point t0;
  if (profile) t0 = ProfileClock::now();
  const Stream& stream = p.stream();
  if (stream.device.type == Device::gpu) {
    if (pending.any()) pending.synchronize_except(&stream);
    // Buffers freed from here on (the copies made for the device, inputs
    // released by detach) may still be read by the kernels just launched:
    // the allocator hands them to later kernels of this stream only, and to
    // anyone else once the stream has passed its next marker.
    gpu::LaunchScope scope(stream);
    {
      // Most kernels get a second handle to every input, so they never donate an input's
      // buffer to their output: letting every kernel donate was measured on the H100 on
      // 2026-11-27 at 48.7 against 71.3 tok/s decoding gemma3-4b, for a cause not yet found
      // (bench/RESULTS.md). The slice updates (updates_in_place_on_gpu) see the inputs
      // themselves, so a KV cache that alone holds its buffer is written in place instead of
      // copied each step. MLXCPP_GPU_DONATE=none|all overrides this, for measurements.
      std::vector<array> copies;
      const std::vector<array>* accessible =
          &gpu::device_accessible(node.inputs(), copies, stream, !is_view_on_gpu(p));
      const GpuDonation donation = gpu_donation();
      const bool donate = donation == GpuDonation::all ||
                          (donation == GpuDonation::slice_updates && updates_in_place_on_gpu(p));
      if (donate && accessible == &copies) {
        // Some input (a host-made update) needed a device copy: the node takes the copies as
        // its inputs, so the others keep one handle each and stay donatable.
        node.inputs().swap(copies);
        copies.clear();
        accessible = &node.inputs();
      }
      std::optional<std::vector<array>> second;
      if (!donate) second.emplace(*accessible);
      const std::vector<array>& used = second ? *second : *accessible;
      std::optional<gpu::DeviceTimer> timer;
      if (gpu::device_profiling()) {
        timer.emplace(stream, device_profile_key(p, used, outputs[0]),
                      matmul_flops(p, used, outputs[0]));
      }
      p.eval_gpu(used, outputs);
    }
    // The kernels are only launched. Giving an output its buffer marked it available
    // (array::set_data), which would let a host read (item(), data() after eval) skip the
    // wait for the device and read the buffer before the kernel has written it, and let later
    // evaluations treat it as finished; it stays scheduled with this evaluation's event, whose
    // wait covers the device.
    for (auto& o : outputs) {
      o.set_status(array::Status::scheduled);
      pending.launched.emplace_back(o);
    }
    pending.add(stream);
    if (profile) Profile::get().add(profile_key(p, outputs[0]), seconds_since(t0));
    if (!keep_graph) node.detach();
    outputs.clear();
    return;
  } else {
    if (pending.any()) pending.synchronize_except(nullptr);
    p.eval_cpu(node.inputs(), outputs);
    for (auto& o : outputs) o.set_status(array::Status::available);
  }
  if (profile) Profile::get().add(profile_key(p, outputs[0]), seconds_since(t0));
  if (!keep_graph) node.detach();
  outputs.clear();
}

void mark_scheduled(const array& a, const std::shared_ptr<Event>& event) {
  auto mark = [&](array o) {
    o.set_event(event);
    o.set_status(array::Status::scheduled);
  };
  if (a.has_siblings()) {
    for (auto& o : a.outputs()) mark(o);
  } else {
    mark(a);
  }
}

// `earlier`, when given, receives the arrays of earlier evaluations that the
// graph reads (scheduled, not yet waited for). Weak: a strong handle would keep
// a KV cache's previous buffer from being updated in place by this graph.
std::shared_ptr<Event> schedule(const std::vector<array>& outputs,
                                std::vector<array::Weak>* earlier = nullptr,
                                std::shared_ptr<const detail::EvalHooks> hooks = nullptr) {
  auto event = std::make_shared<Event>();
  std::vector<array> tape;
  std::vector<std::shared_ptr<Event>> waits;

  // Nodes are marked scheduled (with this evaluation's event) when first
  // seen, which doubles as the visited set. Nodes scheduled by an earlier
  // async_eval are leaves whose events the task waits for.
  auto visit = [&](const array& a) {
    auto st = a.status();
    if (st == array::Status::available) return false;
    if (st == array::Status::scheduled) {
      const auto& e = a.event();
      if (e && e != event && std::find(waits.begin(), waits.end(), e) == waits.end()) {
        waits.push_back(e);
      }
      if (e && e != event && earlier) earlier->emplace_back(a);
      return false;
    }
    if (!a.has_primitive()) return false;
    mark_scheduled(a, event);
    return true;
  };

  // Post-order DFS with an explicit stack: (node, next input to look at).
  std::vector<std::pair<array, size_t>> stack;
  for (auto& out : outputs) {
    if (!visit(out)) continue;
    stack.emplace_back(out, 0);
    while (!stack.empty()) {
      auto& [a, i] = stack.back();
      if (i < a.inputs().size()) {
        const array& in = a.inputs()[i++];
        if (visit(in)) stack.emplace_back(in, 0);
      } else {
        tape.push_back(std::move(a));
        stack.pop_back();
      }
    }
  }
  if (tape.empty() && waits.empty()) return nullptr;

  bool keep_graph = detail::in_tracing();
  Stream stream =
      tape.empty() ? default_stream(default_device()) : tape.back().primitive().stream();
  auto shared_tape = std::make_shared<std::vector<array>>(std::move(tape));
  scheduler::enqueue(stream, [shared_tape, event, waits, keep_graph, stream, hooks]() {
    auto& t = *shared_tape;
    std::vector<array> scratch;
    const bool profile = Profile::enabled();
    ProfileClock::time_point t0;
    if (profile) t0 = ProfileClock::now();
    PendingGpu pending;
    size_t i = 0;
    try {
      for (auto& w : waits) {
        // A decode step waits here for the step before it (the sampled
        // token is its input): on the same gpu stream only for the launch,
        // so the device never idles while this step's kernels are launched.
        auto on = w->wait_launched();
        const bool same_stream =
            stream.device.type == Device::gpu && !on.empty() &&
            std::all_of(on.begin(), on.end(), [&](int s) { return s == stream.index; });
        if (same_stream) {
          pending.launched_before.push_back(w);
          pending.launched_before_stream = stream.index;
        } else {
          w->wait();
        }
      }
      if (profile) {
        Profile::get().add("(task: waiting for earlier evaluations)", seconds_since(t0));
        t0 = ProfileClock::now();
      }
      if (hooks && hooks->before) hooks->before();
      for (; i < t.size(); ++i) {
        std::optional<Stream> gpu_stream;
        if (t[i].has_primitive() && t[i].primitive().stream().device.type == Device::gpu) {
          gpu_stream = t[i].primitive().stream();
        }
        if (t[i].status() != array::Status::available) {
          if (hooks && hooks->node) hooks->node(t[i]);
          run_node(t[i], scratch, keep_graph, pending);
        }
        // Drop the tape's reference so intermediates die once consumed
        // (freed in the order of the stream that last used them). Most
        // nodes are still held by their consumers: dropping those frees
        // nothing and needs no launch scope.
        if (gpu_stream && t[i].use_count() == 1) {
          gpu::LaunchScope scope(*gpu_stream);
          array released = std::move(t[i]);
        } else {
          array released = std::move(t[i]);
        }
      }
      t.clear();
      if (hooks && hooks->after) hooks->after();
      if (profile) Profile::get().add("(task: all nodes, with release)", seconds_since(t0));
      // Launched GPU work: the event is signalled now (the worker moves on
      // to the next task) and its waiters wait for the device.
      // Earlier work not covered by this task's fences (nothing launched on
      // its stream after all) is waited for before the event says done.
      if (!pending.launched_before.empty() &&
          std::none_of(pending.streams.begin(), pending.streams.end(), [&](const Stream& s) {
            return s.index == pending.launched_before_stream;
          })) {
        for (auto& e : pending.launched_before) e->wait();
      }
      pending.launched_before.clear();
      if (!pending.streams.empty()) {
        std::vector<std::function<void()>> fences;
        std::vector<int> indices;
        for (auto& s : pending.streams) {
          fences.push_back(gpu::fence(s));
          indices.push_back(s.index);
        }
        event->set_device_wait(
            [fences = std::move(fences)] {
              for (auto& f : fences) f();
            },
            std::move(indices));
      }
      event->signal();
    } catch (...) {
      if (hooks && hooks->abort) {
        try {
          hooks->abort();
        } catch (...) {
        }
      }
      // Nothing may still run on the device once the error is reported.
      bool idle = true;
      try {
        pending.synchronize_except(nullptr);
      } catch (...) {
        idle = false;
      }
      // Only the failed node and those after it carry the error: what ran before it is
      // computed (the device has finished it), so later evaluations may read it.
      if (idle) {
        for (auto& w : pending.launched) {
          if (auto a = w.lock()) a->set_status(array::Status::available);
        }
      }
      if (i < t.size()) {
        // Its kernel may have given the outputs buffers (marking them available) before failing.
        for (auto& o : t[i].has_siblings() ? t[i].outputs() : std::vector<array>{t[i]}) {
          o.set_status(array::Status::scheduled);
        }
      }
      t.clear();
      event->signal(std::current_exception());
    }
  });
  return event;
}

}  // namespace

void eval(std::vector<array> outputs) {
  std::vector<array::Weak> earlier;
  auto e = schedule(outputs, &earlier);
  if (e) e->wait();
  for (auto& o : outputs) o.wait();
  // The evaluation waited for the earlier ones it read (through the device,
  // for kernels): their arrays are available too, as on the CPU.
  for (auto& w : earlier) {
    if (auto a = w.lock()) a->wait();
  }
}

void async_eval(std::vector<array> outputs) { schedule(std::move(outputs)); }

void detail::eval_with_hooks(std::vector<array> outputs,
                             std::shared_ptr<const detail::EvalHooks> hooks) {
  std::vector<array::Weak> earlier;
  auto e = schedule(outputs, &earlier, std::move(hooks));
  if (e) e->wait();
  for (auto& o : outputs) o.wait();
  for (auto& w : earlier) {
    if (auto a = w.lock()) a->wait();
  }
}

std::vector<array> to_device_memory(std::vector<array> arrays, StreamOrDevice s) {
  eval(arrays);
  Stream stream = to_stream(s);
  if (stream.device.type != Device::gpu) return arrays;
  return gpu::to_device_memory(arrays, stream);
}

double gpu_copy_bandwidth_gbs(size_t bytes, int repeats) {
  if (!gpu::is_available()) {
    throw std::invalid_argument("[gpu_copy_bandwidth_gbs] no GPU is available");
  }
  return gpu::copy_bandwidth_gbs(bytes, repeats);
}

}  // namespace mx
