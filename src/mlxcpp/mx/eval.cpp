// Graph evaluation: an iterative topological sort, then one task on a stream
// that runs the primitives in order and releases nodes as it goes.
#include <atomic>
#include <memory>
#include <unordered_set>

#include "mlxcpp/mx/event.h"
#include "mlxcpp/mx/primitive.h"
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

bool needs_eval(const array& a) {
  return a.status() == array::Status::unscheduled && a.has_primitive();
}

void run_node(array& node, bool keep_graph) {
  auto outputs = node.outputs();
  auto& p = node.primitive();
  if (p.stream().device.type == Device::gpu) {
    p.eval_gpu(node.inputs(), outputs);
  } else {
    p.eval_cpu(node.inputs(), outputs);
  }
  for (auto& o : outputs) o.set_status(array::Status::available);
  if (!keep_graph) node.detach();
}

std::shared_ptr<Event> schedule(std::vector<array> outputs) {
  std::vector<array> tape;
  std::vector<std::shared_ptr<Event>> waits;
  std::unordered_set<uintptr_t> seen;

  auto visit = [&](const array& a) {
    if (seen.count(a.id())) return false;
    if (a.status() == array::Status::scheduled) {
      if (a.event()) waits.push_back(a.event());
      seen.insert(a.id());
      return false;
    }
    if (!needs_eval(a)) return false;
    for (auto& o : a.outputs()) seen.insert(o.id());
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
  if (tape.empty()) {
    if (waits.empty()) return nullptr;
    auto e = std::make_shared<Event>();
    auto ws = std::move(waits);
    scheduler::enqueue(default_stream(default_device()), [e, ws]() {
      try {
        for (auto& w : ws) w->wait();
        e->signal();
      } catch (...) {
        e->signal(std::current_exception());
      }
    });
    return e;
  }

  auto event = std::make_shared<Event>();
  for (auto& a : tape) {
    for (auto& o : a.outputs()) {
      o.set_event(event);
      o.set_status(array::Status::scheduled);
    }
  }
  bool keep_graph = detail::in_tracing();
  Stream stream = tape.back().primitive().stream();
  auto shared_tape = std::make_shared<std::vector<array>>(std::move(tape));
  scheduler::enqueue(stream, [shared_tape, event, waits = std::move(waits), keep_graph]() {
    auto& t = *shared_tape;
    try {
      for (auto& w : waits) w->wait();
      for (size_t i = 0; i < t.size(); ++i) {
        if (t[i].status() != array::Status::available) run_node(t[i], keep_graph);
        // Drop the tape's reference so intermediates die once consumed.
        { array released = std::move(t[i]); }
      }
      t.clear();
      event->signal();
    } catch (...) {
      t.clear();
      event->signal(std::current_exception());
    }
  });
  return event;
}

}  // namespace

void eval(std::vector<array> outputs) {
  auto e = schedule(outputs);
  if (e) e->wait();
  for (auto& o : outputs) o.wait();
}

void async_eval(std::vector<array> outputs) { schedule(std::move(outputs)); }

}  // namespace mx
