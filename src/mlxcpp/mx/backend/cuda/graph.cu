// CapturedGraph on CUDA: the computation is evaluated by the ordinary engine while its stream
// records (cudaStreamBeginCapture in relaxed mode, so that buffers the allocator must create
// may still be made), and every array the recorded kernels address is kept alive with the
// graph. A replay is one cudaGraphLaunch queued on the stream's worker, in order with the
// other work of the stream.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "mlxcpp/mx/allocator.h"
#include "mlxcpp/mx/backend/cuda/capture.h"
#include "mlxcpp/mx/backend/cuda/device.h"
#include "mlxcpp/mx/backend/cuda/upload.h"
#include "mlxcpp/mx/backend/gpu.h"
#include "mlxcpp/mx/eval_hooks.h"
#include "mlxcpp/mx/event.h"
#include "mlxcpp/mx/graph.h"
#include "mlxcpp/mx/scheduler.h"
#include "mlxcpp/mx/transforms.h"

namespace mx {

namespace {

// Feedback and replay-output copies are kernels (cuda::copy_bytes) rather than memcpy nodes: a
// kernel node has no restrictions on managed memory, and the copies are a few bytes.

// Replay outputs up to this size are copied into host memory (see replay).
constexpr size_t kHostReadMax = 4096;

bool dense(const array& a) { return a.flags().row_contiguous && a.data_size() == a.size(); }

}  // namespace

struct CapturedGraph::Impl {
  Stream stream{0, Device(Device::gpu)};
  std::vector<array> inputs;
  std::vector<array> outputs;
  // Every node, leaf and temporary the recorded kernels address.
  std::vector<array> kept;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;

  ~Impl() {
    if (!cuda::runtime_alive()) return;
    // A replay may still run: its buffers must outlive it.
    cudaStreamSynchronize(cuda::resources(stream).stream);
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
  }
};

CapturedGraph::CapturedGraph(const std::vector<array>& inputs, const Build& build,
                             std::vector<std::pair<int, int>> feedback, StreamOrDevice s)
    : impl_(std::make_shared<Impl>()) {
  auto& im = *impl_;
  im.stream = to_stream(s);
  if (im.stream.device.type != Device::gpu || !gpu::is_available()) {
    throw std::invalid_argument("[CapturedGraph] graphs are recorded on a GPU stream");
  }
  const Stream stream = im.stream;
  cudaStream_t cs = cuda::resources(stream).stream;

  // The graph's own input buffers: device-resident copies, made on the stream.
  eval(inputs);
  {
    auto done = std::make_shared<Event>();
    done->signal();
    cuda::CaptureSink placement;  // device placement for small inputs too
    cuda::set_capture_sink(&placement);
    struct Reset {
      ~Reset() { cuda::set_capture_sink(nullptr); }
    } reset;
    gpu::LaunchScope scope(stream);
    for (size_t i = 0; i < inputs.size(); ++i) {
      const array& x = inputs[i];
      if (!dense(x)) {
        throw std::invalid_argument("[CapturedGraph] input " + std::to_string(i) +
                                    " must be row-contiguous");
      }
      array in(x.shape(), x.dtype(), nullptr, {});
      in.set_data(allocator::malloc(std::max<size_t>(x.nbytes(), 4)));
      if (x.nbytes() > 0) {
        cuda::check(
            cudaMemcpyAsync(in.data<void>(), x.data<void>(), x.nbytes(), cudaMemcpyDefault, cs),
            "copying a captured graph's input");
      }
      // Computed on the device as far as kernels can tell (they never read it on the host).
      in.set_event(done);
      im.inputs.push_back(std::move(in));
    }
  }
  gpu::retain(stream, inputs);
  gpu::synchronize(stream);

  // Once evaluated normally: weights and constants made lazily, GEMM plans and kernel
  // attributes are set up outside the recording. Every array of that evaluation is held to
  // its end and released together, so the buffer cache then has a block of each size the
  // recording allocates, placed as it will place them: the allocations during the recording
  // are reuses, not driver calls.
  {
    auto held = std::make_shared<std::vector<array>>();
    auto placement = std::make_shared<cuda::CaptureSink>();
    auto keep = std::make_shared<detail::EvalHooks>();
    keep->before = [placement] { cuda::set_capture_sink(placement.get()); };
    keep->node = [held](const array& node) {
      held->push_back(node);
      for (const auto& o : node.outputs()) held->push_back(o);
    };
    keep->after = [] { cuda::set_capture_sink(nullptr); };
    keep->abort = [] { cuda::set_capture_sink(nullptr); };
    detail::eval_with_hooks(build(im.inputs), keep);
    gpu::synchronize(stream);
  }
  im.outputs = build(im.inputs);
  for (auto& [o, i] : feedback) {
    if (o < 0 || o >= static_cast<int>(im.outputs.size()) || i < 0 ||
        i >= static_cast<int>(im.inputs.size())) {
      throw std::invalid_argument("[CapturedGraph] feedback pair (" + std::to_string(o) + ", " +
                                  std::to_string(i) + ") names no output or input");
    }
    const array& out = im.outputs[o];
    const array& in = im.inputs[i];
    if (out.shape() != in.shape() || out.dtype() != in.dtype()) {
      throw std::invalid_argument("[CapturedGraph] feedback output " + std::to_string(o) + " " +
                                  shape_str(out.shape()) + " " + dtype_name(out.dtype()) +
                                  " does not match input " + std::to_string(i) + " " +
                                  shape_str(in.shape()) + " " + dtype_name(in.dtype()));
    }
  }
  gpu::synchronize(stream);

  auto sink = std::make_shared<cuda::CaptureSink>();
  sink->recording = true;
  auto capturing = std::make_shared<std::atomic<bool>>(false);
  auto hooks = std::make_shared<detail::EvalHooks>();
  Impl* ip = impl_.get();
  hooks->before = [cs, sink, capturing] {
    cuda::check(cudaStreamBeginCapture(cs, cudaStreamCaptureModeRelaxed),
                "starting to record a graph");
    capturing->store(true);
    cuda::set_capture_sink(sink.get());
  };
  hooks->node = [sink, stream](const array& node) {
    const Stream& ns = node.primitive().stream();
    if (!(ns == stream) || ns.device.type != Device::gpu) {
      throw std::invalid_argument(
          std::string("[CapturedGraph] primitive ") + node.primitive().name() + " runs on stream " +
          std::to_string(ns.index) + ", not on the graph's GPU stream " +
          std::to_string(stream.index) + ": every node of a recorded graph must run there");
    }
    sink->kept.push_back(node);
    for (const auto& o : node.outputs()) sink->kept.push_back(o);
    for (const auto& in : node.inputs()) sink->kept.push_back(in);
  };
  hooks->after = [cs, sink, capturing, ip, feedback] {
    for (auto& [o, i] : feedback) {
      const array& out = ip->outputs[o];
      if (!dense(out)) {
        throw std::invalid_argument("[CapturedGraph] feedback output " + std::to_string(o) +
                                    " is not row-contiguous");
      }
      cuda::copy_bytes(ip->inputs[i].data<void>(), out.data<void>(), out.nbytes(), ip->stream);
    }
    cuda::set_capture_sink(nullptr);
    capturing->store(false);
    cuda::check(cudaStreamEndCapture(cs, &ip->graph), "finishing the recording of a graph");
    cuda::check(cudaGraphInstantiate(&ip->exec, ip->graph, 0), "instantiating a graph");
  };
  hooks->abort = [cs, capturing] {
    cuda::set_capture_sink(nullptr);
    if (capturing->exchange(false)) {
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(cs, &g);
      if (g) cudaGraphDestroy(g);
      cudaGetLastError();
    }
  };
  detail::eval_with_hooks(im.outputs, hooks);
  im.kept = std::move(sink->kept);
  for (auto& o : im.outputs) im.kept.push_back(o);
  if (!im.exec) throw std::runtime_error("[CapturedGraph] the recording produced no graph");
}

CapturedGraph::~CapturedGraph() = default;

std::vector<array> CapturedGraph::replay(const std::vector<int>& take) {
  auto event = std::make_shared<Event>();
  std::vector<array> copies;
  std::vector<array> sources;
  for (int i : take) {
    if (i < 0 || i >= static_cast<int>(impl_->outputs.size())) {
      throw std::invalid_argument("[CapturedGraph::replay] output " + std::to_string(i) +
                                  " does not exist; the graph has " +
                                  std::to_string(impl_->outputs.size()));
    }
    const array& o = impl_->outputs[i];
    if (!dense(o)) {
      throw std::invalid_argument("[CapturedGraph::replay] output " + std::to_string(i) +
                                  " is not row-contiguous");
    }
    array c(o.shape(), o.dtype(), nullptr, {});
    c.set_event(event);
    c.set_status(array::Status::scheduled);
    copies.push_back(c);
    sources.push_back(o);
  }
  auto impl = impl_;
  scheduler::enqueue(impl->stream, [impl, copies, sources, event]() mutable {
    try {
      const Stream& st = impl->stream;
      cudaStream_t cs = cuda::resources(st).stream;
      {
        gpu::LaunchScope scope(st);
        cuda::check(cudaGraphLaunch(impl->exec, cs), "launching a graph");
        for (size_t k = 0; k < copies.size(); ++k) {
          // Small copies (a sampled token) are for the host to read: in device memory, the
          // host's read would move the page to the host and the next replay's write back.
          const size_t n = std::max<size_t>(sources[k].nbytes(), 1);
          copies[k].set_data(n <= kHostReadMax ? cuda::malloc_for_host_write(n)
                                               : allocator::malloc(n));
          copies[k].set_status(array::Status::scheduled);
          cuda::copy_bytes(copies[k].data<void>(), sources[k].data<void>(), sources[k].nbytes(),
                           st);
        }
      }
      event->set_device_wait(gpu::fence(st), {st.index});
      event->signal();
    } catch (...) {
      event->signal(std::current_exception());
    }
  });
  return copies;
}

const std::vector<array>& CapturedGraph::inputs() const { return impl_->inputs; }
const Stream& CapturedGraph::stream() const { return impl_->stream; }
int CapturedGraph::num_outputs() const { return static_cast<int>(impl_->outputs.size()); }
bool CapturedGraph::is_available() { return gpu::is_available(); }

}  // namespace mx
