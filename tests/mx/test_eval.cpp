// Lazy evaluation, streams and the memory functions.
#include <cstdlib>
#include <string>
#include <thread>

#include "common/check.h"
#include "mlxcpp/mx/scheduler.h"

using mx::array;

TEST(Eval, OpsAreLazyUntilEvaluated) {
  array a({1.0f, 2.0f});
  array b = a + 1.0f;
  EXPECT_EQ(b.status(), array::Status::unscheduled);
  EXPECT_TRUE(b.has_primitive());
  EXPECT_EQ(b.shape(), mx::Shape{2});  // shapes are known at once
  mx::eval(b);
  EXPECT_EQ(b.status(), array::Status::available);
  EXPECT_FALSE(b.has_primitive());  // the graph is detached after evaluation
  mxtest::expect_close(b, {2, 3}, {2});
}

TEST(Eval, DeepChainDoesNotOverflowTheStack) {
  array x(0.0f);
  for (int i = 0; i < 100000; ++i) x = x + 1.0f;
  EXPECT_EQ(x.item<float>(), 100000.0f);
  // Freeing an unevaluated deep graph must not recurse either.
  array y(0.0f);
  for (int i = 0; i < 100000; ++i) y = y * 1.0f;
}

TEST(Eval, IntermediatesAreFreedDuringEvaluation) {
  mx::clear_cache();
  size_t before = mx::get_active_memory();
  array x = mx::zeros({1 << 20});  // 4 MiB
  for (int i = 0; i < 50; ++i) x = mx::exp(x * 0.5f);
  mx::reset_peak_memory();
  mx::eval(x);
  // Fifty 4 MiB intermediates would need 200 MiB; releasing them as the tape
  // runs keeps the peak to a few buffers.
  EXPECT_LT(mx::get_peak_memory() - before, size_t{16} << 20);
}

TEST(Eval, AsyncEvalThenRead) {
  array x = mx::arange(1000.0f);
  array y = mx::sqrt(x * x);
  mx::async_eval({y});
  array z = y + 1.0f;  // builds on an array whose evaluation is in flight
  mxtest::expect_close(mx::slice(z, {998}, {1000}), {999, 1000}, {2});
  EXPECT_EQ(y.status(), array::Status::available);
}

TEST(Eval, AnArrayInFlightIsNotAvailableBeforeItsKernelHasWrittenIt) {
  // A kernel gives its output a buffer before it writes it. A host thread that polls the
  // array of an async evaluation must not see it available (and read it) before then: the
  // last element of a long sequential scan is written last.
  const int n = 1 << 24;
  const mx::Device cpu(mx::Device::cpu);
  array x = mx::ones({n}, mx::int32, cpu);
  mx::eval({x});
  for (int trial = 0; trial < 3; ++trial) {
    array y = mx::cumsum(x, 0, false, true, cpu);
    mx::async_eval({y});
    int64_t seen = -1;
    while (seen < 0) {
      if (y.is_available()) seen = y.data<int32_t>()[n - 1];
    }
    EXPECT_EQ(seen, n) << "trial " << trial;
  }
}

TEST(Eval, ErrorsInKernelsReachTheCaller) {
  array x = mx::floor_divide(array({1}), array({0}));  // integer division by zero is defined (0)
  EXPECT_EQ(x.item<int>(), 0);
  size_t old = mx::set_memory_limit(size_t{1} << 20);
  array big = mx::zeros({1 << 20});
  EXPECT_THROW(big.eval(), std::runtime_error);
  EXPECT_THROW(big.eval(), std::runtime_error);  // the failure sticks to the array
  mx::set_memory_limit(old);
}

TEST(Eval, AFailedEvaluationFailsOnlyWhatItCouldNotCompute) {
  array a = mx::reshape(mx::arange(6), {2, 3});
  array b = a * 2;
  array bad = mx::take(b, array({0, 3}), 1);  // index 3 is out of bounds for axis 1
  array after = bad + 1;
  EXPECT_THROW(mx::eval(after), std::invalid_argument);
  // a and b ran before the failing node: readable, also by later evaluations.
  mxtest::expect_close(b, {0, 2, 4, 6, 8, 10}, {2, 3});
  EXPECT_EQ(mx::sum(a).item<int>(), 15);
  mxtest::expect_close(mx::take(b, array({2}), 1), {4, 10}, {2, 1});
  // The failed node and what depends on it keep the error.
  EXPECT_THROW(bad.eval(), std::invalid_argument);
  EXPECT_THROW(after.item<int>(), std::invalid_argument);
}

TEST(Eval, StreamsRunInOrderOnTheirOwnThreads) {
  auto s1 = mx::new_stream(mx::Device::cpu);
  auto s2 = mx::new_stream(mx::Device::cpu);
  EXPECT_NE(s1.index, s2.index);
  array a = mx::add(array({1.0f}), array({2.0f}), s1);
  array b = mx::multiply(a, array({3.0f}), s2);  // depends on work of another stream
  mxtest::expect_close(b, {9}, {1});
  mx::synchronize(s1);
  mx::synchronize(s2);
  if (!mx::is_available(mx::Device::gpu)) {
    // Without a GPU the CPU is the only device and asking for the GPU fails.
    EXPECT_EQ(mx::default_device(), mx::Device(mx::Device::cpu));
    EXPECT_THROW(mx::set_default_device(mx::Device::gpu), std::invalid_argument);
    return;
  }
  // With one, either device can be the default, and work on a gpu stream
  // combines with the cpu streams' results.
  const mx::Device before = mx::default_device();
  mx::set_default_device(mx::Device::gpu);
  EXPECT_EQ(mx::default_device(), mx::Device(mx::Device::gpu));
  array c = mx::add(b, array({1.0f}));
  mxtest::expect_close(c, {10}, {1});
  mx::set_default_device(mx::Device::cpu);
  EXPECT_EQ(mx::default_device(), mx::Device(mx::Device::cpu));
  mx::set_default_device(before);
}

TEST(Eval, ParallelForCoversTheRangeOnce) {
  std::vector<int> hits(100000, 0);
  mx::scheduler::parallel_for(hits.size(), 1000, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) hits[i]++;
  });
  for (int h : hits) ASSERT_EQ(h, 1);
}

TEST(Memory, CacheActivePeakAndLimits) {
  // Earlier tests' asynchronous work (a GPU stream's deferred releases) finishes first, so the
  // baseline does not drop while this test runs.
  mx::synchronize();
  mx::clear_cache();
  EXPECT_EQ(mx::get_cache_memory(), 0u);
  size_t active0 = mx::get_active_memory();
  {
    array x = mx::zeros({1 << 18});
    x.eval();
    EXPECT_GE(mx::get_active_memory(), active0 + (size_t{1} << 20));
  }
  EXPECT_GE(mx::get_cache_memory(), size_t{1} << 20);  // the freed buffer is cached
  {
    size_t cached = mx::get_cache_memory();
    array y = mx::zeros({1 << 18});  // reuses the cached buffer
    y.eval();
    EXPECT_LE(mx::get_cache_memory() + (size_t{1} << 20), cached);
  }
  mx::clear_cache();
  EXPECT_EQ(mx::get_cache_memory(), 0u);
  size_t old = mx::set_memory_limit(size_t{1} << 20);
  EXPECT_THROW(mx::zeros({1 << 20}).eval(), std::runtime_error);
  mx::set_memory_limit(old);
  mx::set_cache_limit(0);
  {
    array z = mx::zeros({1 << 10});
    z.eval();
  }
  EXPECT_EQ(mx::get_cache_memory(), 0u);
  mx::set_cache_limit(mx::get_memory_limit());
}

TEST(Eval, DefaultDeviceIsTheGpuWhenPresent) {
  // As in MLX: the GPU when one is present, unless MLXCPP_DEFAULT_DEVICE=cpu
  // keeps the process on the CPU (the tests above restore what they change).
  const char* env = std::getenv("MLXCPP_DEFAULT_DEVICE");
  const bool forced_cpu = env && std::string(env) == "cpu";
  const bool gpu = mx::is_available(mx::Device::gpu);
  EXPECT_EQ(mx::default_device(),
            mx::Device(gpu && !forced_cpu ? mx::Device::gpu : mx::Device::cpu));
}
