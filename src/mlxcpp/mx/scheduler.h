// Runs work on streams: each stream has a worker thread and a FIFO of tasks.
// A CPU thread pool (parallel_for) lets large kernels use every core.
#pragma once

#include <cstddef>
#include <functional>

#include "mlxcpp/mx/device.h"

namespace mx::scheduler {

void enqueue(const Stream& s, std::function<void()> task);
// Whether the calling thread is a stream worker (kernels must not block on
// other streams' work from there).
bool on_worker_thread();

int num_threads();

namespace detail {
void parallel_for_impl(size_t n, size_t grain, const std::function<void(size_t, size_t)>& f);
}  // namespace detail

// Calls f(begin, end) over [0, n) split into chunks of at least `grain`
// elements across the CPU pool; small ranges run inline without touching the
// pool (or allocating a std::function).
template <typename F>
inline void parallel_for(size_t n, size_t grain, F&& f) {
  if (n == 0) return;
  if (n <= grain || num_threads() == 1) {
    f(size_t{0}, n);
    return;
  }
  detail::parallel_for_impl(n, grain, std::function<void(size_t, size_t)>(std::forward<F>(f)));
}

}  // namespace mx::scheduler
