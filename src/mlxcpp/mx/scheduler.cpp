#include "mlxcpp/mx/scheduler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mlxcpp/mx/backend/gpu.h"
#include "mlxcpp/mx/event.h"

namespace mx {
namespace {

thread_local bool t_on_worker = false;

// One worker thread per stream, running its tasks in order.
class StreamWorker {
 public:
  StreamWorker() : thread_([this] { loop(); }) {}
  ~StreamWorker() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  void enqueue(std::function<void()> f) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      tasks_.push_back(std::move(f));
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    t_on_worker = true;
    for (;;) {
      std::function<void()> f;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || !tasks_.empty(); });
        if (tasks_.empty()) return;
        f = std::move(tasks_.front());
        tasks_.pop_front();
      }
      f();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stop_ = false;
  std::thread thread_;
};

void drain_gpu_at_exit();

struct StreamTable {
  std::mutex mu;
  std::vector<Stream> streams;
  std::vector<std::unique_ptr<StreamWorker>> workers;
  Device default_device{Device::cpu};
  std::vector<int> default_streams{-1, -1};  // per device type

  Stream add(Device d) {
    // A gpu stream means GPU work is coming: allocate unified memory from now.
    if (d.type == Device::gpu) {
      gpu::activate();
      // Registered after the CUDA runtime started (activate() probed the
      // device), so it runs before the runtime's own teardown at exit.
      static const bool drain_at_exit = (std::atexit(&drain_gpu_at_exit), true);
      (void)drain_at_exit;
    }
    std::lock_guard<std::mutex> lk(mu);
    int idx = static_cast<int>(streams.size());
    streams.emplace_back(idx, d);
    workers.push_back(std::make_unique<StreamWorker>());
    return streams.back();
  }
  StreamWorker& worker(const Stream& s) {
    std::lock_guard<std::mutex> lk(mu);
    if (s.index < 0 || s.index >= static_cast<int>(workers.size())) {
      throw std::invalid_argument("[scheduler] unknown stream " + std::to_string(s.index));
    }
    return *workers[s.index];
  }
};

StreamTable& table() {
  static StreamTable t;
  // As in MLX, a process starts on the GPU when one is present;
  // MLXCPP_DEFAULT_DEVICE=cpu keeps it on the CPU, =gpu insists on the GPU
  // (how the whole test suite runs there with the same assertions).
  static const bool from_env = [] {
    const char* d = std::getenv("MLXCPP_DEFAULT_DEVICE");
    const std::string want = d ? d : "";
    if (!want.empty() && want != "cpu" && want != "gpu") {
      throw std::runtime_error("MLXCPP_DEFAULT_DEVICE must be cpu or gpu, got '" + want + "'");
    }
    if (want == "cpu") return false;
    if (!gpu::is_available()) {
      if (want == "gpu") {
        throw std::runtime_error("MLXCPP_DEFAULT_DEVICE=gpu but no GPU is available");
      }
      return false;
    }
    gpu::activate();
    t.default_device = Device(Device::gpu);
    return true;
  }();
  (void)from_env;
  return t;
}

// Spins up to `budget` waiting for ready(), pausing between polls; true once
// ready. Handing work to a thread that is already running costs well under a
// microsecond, waking one from a condition variable tens of microseconds on a
// loaded machine: short spins cover the gaps between the kernels of one graph.
template <typename Ready>
bool spin_until(Ready&& ready, std::chrono::nanoseconds budget) {
  if (ready()) return true;
  auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0; i < 64; ++i) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      asm volatile("yield");
#endif
      if (ready()) return true;
    }
    auto waited = std::chrono::steady_clock::now() - t0;
    if (waited > budget) return false;
    // Past the first microseconds the thread we wait for may be waiting for
    // a core (the machine is shared): offer ours.
    if (waited > std::chrono::microseconds(5)) std::this_thread::yield();
  }
}

// How long an idle helper keeps polling for the next job before it sleeps,
// and how long the caller polls for the helpers to finish: a decode step runs
// hundreds of small parallel kernels a few microseconds to a few hundred
// apart (attention, norms). Against 20/20 us, 500/100 us decoded Gemma 3 270M
// 6-17% faster in three alternating runs on the shared 2-core machine (a
// helper asleep costs a futex wake-up per product); 3000/1000 us was no
// better. The poll yields after 5 us, so a waiting thread gives its core away.
constexpr std::chrono::microseconds kHelperSpin{500};
constexpr std::chrono::microseconds kJoinSpin{100};

// Fork-join pool: the caller takes part, every thread grabs chunks from a
// shared counter (so a thread that loses its core mid-job leaves its
// remaining chunks to the others).
class ThreadPool {
 public:
  ThreadPool() {
    unsigned n = std::thread::hardware_concurrency();
    nthreads_ = n == 0 ? 1 : static_cast<int>(n);
    for (int i = 1; i < nthreads_; ++i) helpers_.emplace_back([this] { helper_loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : helpers_) t.join();
  }
  int size() const { return nthreads_; }

  void run(size_t nchunks, const std::function<void(size_t)>& f) {
    std::unique_lock<std::mutex> job_lock(job_mu_, std::try_to_lock);
    if (!job_lock.owns_lock() || nthreads_ == 1) {  // pool busy (another stream): run here
      for (size_t i = 0; i < nchunks; ++i) f(i);
      return;
    }
    bool wake;
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = &f;
      nchunks_ = nchunks;
      next_.store(0);
      pending_.store(nchunks);
      generation_.fetch_add(1);
      wake = sleepers_ > 0;
    }
    if (wake) cv_.notify_all();
    work();
    // Every chunk is claimed: close the job before waiting, so that a helper
    // waking up late finds no job. Closing it only after the wait let a
    // helper take it between the wait and the close; that helper then read
    // next_ after the caller's next job had reset it and called this job's
    // f, a function object on the caller's stack frame that no longer exists
    // (a jump into a stack page, seen on a 16-core machine). Helpers take
    // the job and count themselves active under mu_, so once it is closed
    // active_ only falls.
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = nullptr;
    }
    auto finished = [&] { return pending_.load() == 0 && active_.load() == 0; };
    if (!spin_until(finished, kJoinSpin)) {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, finished);
    }
  }

 private:
  // Helpers count as active while they hold the job, so run() cannot return
  // (and a new job replace this one) while one of them may still call it;
  // a helper only takes a job that run() has not closed yet.
  void work() {
    size_t done = 0;
    const std::function<void(size_t)>* f;
    size_t n;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!job_) return;
      f = job_;
      n = nchunks_;
      active_.fetch_add(1);
    }
    for (;;) {
      size_t i = next_.fetch_add(1);
      if (i >= n) break;
      (*f)(i);
      ++done;
    }
    std::lock_guard<std::mutex> lk(mu_);
    pending_.fetch_sub(done);
    active_.fetch_sub(1);
    if (pending_.load() == 0 && active_.load() == 0) done_cv_.notify_all();
  }
  void helper_loop() {
    size_t seen = 0;
    for (;;) {
      if (!spin_until([&] { return generation_.load() != seen; }, kHelperSpin)) {
        std::unique_lock<std::mutex> lk(mu_);
        ++sleepers_;
        cv_.wait(lk, [&] { return stop_ || generation_.load() != seen; });
        --sleepers_;
      }
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (stop_) return;
        seen = generation_.load();
      }
      work();
    }
  }
  int nthreads_;
  std::vector<std::thread> helpers_;
  std::mutex job_mu_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(size_t)>* job_ = nullptr;
  size_t nchunks_ = 0;
  std::atomic<size_t> next_{0};
  std::atomic<size_t> pending_{0};
  std::atomic<int> active_{0};
  std::atomic<size_t> generation_{0};
  int sleepers_ = 0;
  bool stop_ = false;
};

ThreadPool& pool() {
  static ThreadPool p;
  return p;
}

}  // namespace

namespace scheduler {

void finish_queued_work_at_exit() { std::atexit(&drain_gpu_at_exit); }

void enqueue(const Stream& s, std::function<void()> task) {
  table().worker(s).enqueue(std::move(task));
}

bool on_worker_thread() { return t_on_worker; }

int num_threads() {
  static const int n = pool().size();
  return n;
}

constexpr size_t kChunksPerThread = 16;

void detail::parallel_for_impl(size_t n, size_t grain,
                               const std::function<void(size_t, size_t)>& f) {
  if (n == 0) return;
  size_t nt = static_cast<size_t>(pool().size());
  if (grain == 0) grain = 1;
  // Several chunks per thread, taken dynamically: a thread that is
  // descheduled mid-job (a shared machine) delays the job by one chunk rather
  // than by its whole static share.
  size_t nchunks = std::min(nt * kChunksPerThread, (n + grain - 1) / grain);
  if (nchunks <= 1) {
    f(0, n);
    return;
  }
  size_t per = (n + nchunks - 1) / nchunks;
  pool().run(nchunks, [&](size_t c) {
    size_t b = c * per, e = std::min(n, b + per);
    if (b < e) f(b, e);
  });
}

}  // namespace scheduler

// ---- devices and streams ----

const Device& default_device() { return table().default_device; }

void set_default_device(const Device& d) {
  if (!is_available(d)) {
    throw std::invalid_argument("[set_default_device] the gpu is not available in this build");
  }
  if (d.type == Device::gpu) gpu::activate();
  table().default_device = d;
}

bool is_available(const Device& d) { return d.type == Device::cpu || gpu::is_available(); }

Stream default_stream(Device d) {
  auto& t = table();
  int k = static_cast<int>(d.type);
  {
    std::lock_guard<std::mutex> lk(t.mu);
    if (t.default_streams[k] >= 0) return t.streams[t.default_streams[k]];
  }
  if (!is_available(d)) throw std::invalid_argument("[default_stream] the gpu is not available");
  Stream s = t.add(d);
  std::lock_guard<std::mutex> lk(t.mu);
  if (t.default_streams[k] < 0) t.default_streams[k] = s.index;
  return t.streams[t.default_streams[k]];
}

void set_default_stream(Stream s) {
  auto& t = table();
  std::lock_guard<std::mutex> lk(t.mu);
  t.default_streams[static_cast<int>(s.device.type)] = s.index;
}

Stream new_stream(Device d) {
  if (!is_available(d)) throw std::invalid_argument("[new_stream] the gpu is not available");
  return table().add(d);
}

namespace {

// Work still queued at exit (an async_eval nobody waited for) finishes
// before the CUDA runtime is torn down: on every stream, since a task on a
// cpu stream may launch kernels too. CUDA calls from later destructors are
// then skipped.
void drain_gpu_at_exit() {
  std::vector<Stream> streams;
  {
    auto& t = table();
    std::lock_guard<std::mutex> lk(t.mu);
    streams = t.streams;
  }
  for (auto& s : streams) {
    try {
      synchronize(s);
    } catch (...) {
      // An error of work nobody waited for: nothing is left to report it to.
    }
  }
  gpu::shutdown();
}

}  // namespace

void synchronize(Stream s) {
  auto e = std::make_shared<Event>();
  scheduler::enqueue(s, [e] { e->signal(); });
  e->wait();
  // The stream's tasks have launched their kernels; wait for the device too.
  if (s.device.type == Device::gpu) gpu::synchronize(s);
}

void synchronize() { synchronize(default_stream(default_device())); }

Stream to_stream(StreamOrDevice s) {
  if (std::holds_alternative<Stream>(s)) return std::get<Stream>(s);
  if (std::holds_alternative<Device>(s)) return default_stream(std::get<Device>(s));
  return default_stream(default_device());
}

std::ostream& operator<<(std::ostream& os, const Device& d) {
  return os << "Device(" << (d.type == Device::cpu ? "cpu" : "gpu") << ", " << d.index << ")";
}

std::ostream& operator<<(std::ostream& os, const Stream& s) {
  return os << "Stream(" << s.device << ", " << s.index << ")";
}

}  // namespace mx
