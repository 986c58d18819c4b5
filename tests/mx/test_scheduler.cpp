// The CPU thread pool behind scheduler::parallel_for: every index of a range
// runs exactly once and has run when parallel_for returns, also for many
// small jobs back to back, where the pool's helpers still wake up for a job
// the caller has already finished alone (a helper that took such a job late
// once called it after the next job had started, through a function object
// that lived on the caller's finished stack frame: a jump into a stack page
// seen on the 16-core GPU host).
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

#include "mlxcpp/mx/scheduler.h"

namespace {

// One job of n single-index chunks; returns whether every index ran once
// before parallel_for returned. `pad` moves the job's stack frame, so that
// consecutive jobs' function objects sit at different addresses.
template <size_t kPad>
bool one_job(size_t n, std::atomic<int>* hits) {
  volatile char pad[kPad] = {};
  pad[0] = 1;
  for (size_t i = 0; i < n; ++i) hits[i].store(0);
  mx::scheduler::parallel_for(n, 1, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) hits[i].fetch_add(1);
  });
  bool ok = true;
  for (size_t i = 0; i < n; ++i) ok &= hits[i].load() == 1;
  return ok && pad[0] == 1;
}

}  // namespace

TEST(Scheduler, ParallelForCoversALargeRangeOnce) {
  std::vector<int> hits(100000, 0);
  mx::scheduler::parallel_for(hits.size(), 1000, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) hits[i]++;
  });
  for (int h : hits) ASSERT_EQ(h, 1);
}

TEST(Scheduler, SmallJobsBackToBackRunEachIndexOnceBeforeReturning) {
  if (mx::scheduler::num_threads() < 2) GTEST_SKIP() << "one CPU thread: no pool helpers";
  std::array<std::atomic<int>, 64> hits{};
  int bad = 0;
  for (int it = 0; it < 50000; ++it) {
    const size_t n = 2 + static_cast<size_t>(it % 11) * 5;  // 2 .. 52 chunks
    const bool ok = it % 2 ? one_job<64>(n, hits.data()) : one_job<4096>(n, hits.data());
    bad += ok ? 0 : 1;
  }
  EXPECT_EQ(bad, 0);
}

// Jobs from two threads at once (two streams' kernels): one gets the pool,
// the other runs its chunks inline; both cover their ranges.
TEST(Scheduler, JobsFromTwoThreadsBothComplete) {
  std::atomic<int> bad{0};
  auto loop = [&] {
    std::array<std::atomic<int>, 64> hits{};
    for (int it = 0; it < 10000; ++it) {
      if (!one_job<256>(2 + static_cast<size_t>(it % 60), hits.data())) bad.fetch_add(1);
    }
  };
  std::thread other(loop);
  loop();
  other.join();
  EXPECT_EQ(bad.load(), 0);
}
