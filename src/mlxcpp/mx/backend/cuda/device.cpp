// The CUDA device: availability, unified-memory allocation, one CUDA stream per
// mx gpu stream, and keeping buffers alive until the kernels using them ran.
#include "mlxcpp/mx/backend/cuda/device.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include "mlxcpp/mx/backend/cuda/capture.h"
#include "mlxcpp/mx/backend/cuda/cublaslt.h"
#include "mlxcpp/mx/backend/cuda/indexing.h"
#include "mlxcpp/mx/backend/cuda/upload.h"
#include "mlxcpp/mx/backend/gpu.h"
#include "mlxcpp/mx/device_memory.h"
#include "mlxcpp/mx/event.h"

namespace mx {
namespace scheduler {
void finish_queued_work_at_exit();  // scheduler.cpp
}  // namespace scheduler
namespace allocator::detail {
int placement_of(const void* block);  // allocator.cpp
}  // namespace allocator::detail
namespace cuda {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("[cuda] ") + what + ": " + cudaGetErrorName(err) + " (" +
                             cudaGetErrorString(err) + ")");
  }
}

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw std::runtime_error(std::string("[cublasLt] ") + what + " failed with status " +
                             std::to_string(static_cast<int>(status)));
  }
}

void check_launch(const char* what) { check(cudaGetLastError(), what); }

std::string unsupported_dtype(const char* op, Dtype d) {
  return std::string("[") + op + "] the GPU kernel does not support dtype " + dtype_name(d);
}

// The mx stream the calling thread is launching on (gpu::LaunchScope), or -1.
int launch_stream_of_thread();

namespace {

// Set once a cuBLASLt handle exists. cuBLASLt creates state lazily inside
// its first heuristic query and GEMM, registering static destructors then:
// the exit handler that drains queued work is registered once more after the
// first task with a GEMM, so that it runs before those destructors.
std::atomic<bool> g_gemm_used{false};
std::atomic<bool> g_drain_after_gemm{false};

// Set by gpu::shutdown() at exit: the runtime is about to be torn down, and
// calling it from later destructors would fail.
std::atomic<bool> g_shutdown{false};

// A marker recorded on a stream; shared by everyone who may wait for it.
struct Marker {
  cudaEvent_t event = nullptr;
  uint64_t number = 0;  // the stream's markers are numbered 1, 2, ...
  ~Marker() {
    if (event && !g_shutdown.load(std::memory_order_acquire)) cudaEventDestroy(event);
  }
};

struct StreamState {
  StreamResources res;
  int index = 0;  // the mx stream's index
  std::mutex mu;
  std::vector<array> pending;  // used by work launched since the last marker
  std::deque<std::pair<std::shared_ptr<Marker>, std::vector<array>>> in_flight;
  // Markers recorded so far and the highest one known to have finished; work
  // launched since the last marker makes the stream dirty. Freed buffers'
  // tickets are written in these numbers.
  std::atomic<uint64_t> recorded{0};
  std::atomic<uint64_t> completed{0};
  std::atomic<bool> dirty{false};
  std::atomic<int> launching{0};        // threads inside a LaunchScope of this stream
  std::atomic<bool> gemm_ready{false};  // res.blas and the workspace exist

  // Records a marker after the work launched so far. Called with mu held.
  std::shared_ptr<Marker> mark_locked() {
    auto marker = std::make_shared<Marker>();
    check(cudaEventCreateWithFlags(&marker->event, cudaEventDisableTiming), "creating an event");
    dirty.store(false, std::memory_order_release);
    check(cudaEventRecord(marker->event, res.stream), "recording an event");
    marker->number = recorded.load(std::memory_order_relaxed) + 1;
    recorded.store(marker->number, std::memory_order_release);
    in_flight.emplace_back(marker, std::move(pending));
    pending.clear();
    return marker;
  }
  void note_completed(uint64_t n) {
    uint64_t c = completed.load(std::memory_order_acquire);
    while (c < n && !completed.compare_exchange_weak(c, n, std::memory_order_acq_rel)) {
    }
  }

  // Arrays whose work has finished, taken out under the lock and released by
  // the caller outside it (their destruction may free buffers).
  std::vector<array> take_finished() {
    std::vector<array> done;
    while (!in_flight.empty() && cudaEventQuery(in_flight.front().first->event) == cudaSuccess) {
      note_completed(in_flight.front().first->number);
      for (auto& a : in_flight.front().second) done.push_back(std::move(a));
      in_flight.pop_front();
    }
    if (!in_flight.empty()) cudaGetLastError();  // clear cudaErrorNotReady
    return done;
  }
};

struct StreamTable {
  std::mutex mu;
  std::unordered_map<int, std::unique_ptr<StreamState>> states;
  // The gpu streams in creation order, never removed: appended under `mu`,
  // read without it (every freed buffer's ticket and every allocator poll
  // walks them).
  static constexpr int kMaxGpuStreams = 1024;
  std::atomic<StreamState*> gpu_streams[kMaxGpuStreams] = {};
  std::atomic<int> num_gpu_streams{0};
  void add_gpu_stream(StreamState* st) {
    const int n = num_gpu_streams.load(std::memory_order_relaxed);
    if (n == kMaxGpuStreams) {
      throw std::runtime_error("[cuda] at most " + std::to_string(kMaxGpuStreams) +
                               " gpu streams can be made");
    }
    gpu_streams[n].store(st, std::memory_order_release);
    num_gpu_streams.store(n + 1, std::memory_order_release);
  }
  template <typename F>
  void for_each_gpu_stream(F&& f) const {
    const int n = num_gpu_streams.load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i) f(gpu_streams[i].load(std::memory_order_acquire));
  }
};

StreamTable& table() {
  // Leaked on purpose: arrays released at exit may still reach it.
  static StreamTable* t = new StreamTable();
  return *t;
}

StreamState& state(const Stream& s) {
  // Every launch asks for its stream (stream_of) several times: the last one
  // this thread used is answered without the table's lock (states are never
  // removed, so the pointer stays valid).
  thread_local int cached_index = -1;
  thread_local StreamState* cached = nullptr;
  if (s.index == cached_index && s.device.type == Device::gpu) return *cached;
  if (s.device.type != Device::gpu) {
    throw std::invalid_argument("[cuda] stream " + std::to_string(s.index) +
                                " is not a gpu stream");
  }
  auto& t = table();
  std::lock_guard<std::mutex> lk(t.mu);
  auto& st = t.states[s.index];
  if (!st) {
    auto fresh = std::make_unique<StreamState>();
    check(cudaStreamCreateWithFlags(&fresh->res.stream, cudaStreamNonBlocking),
          "creating a stream");
    fresh->index = s.index;
    t.add_gpu_stream(fresh.get());
    st = std::move(fresh);
  }
  cached_index = s.index;
  cached = st.get();
  return *st;
}

int current_device() {
  static const int dev = [] {
    int d = 0;
    check(cudaGetDevice(&d), "querying the current device");
    return d;
  }();
  return dev;
}

cudaMemLocation device_location() {
  cudaMemLocation loc{};
  loc.type = cudaMemLocationTypeDevice;
  loc.id = current_device();
  return loc;
}

// Blocks of this size or less, and blocks below kHostWrittenMax allocated
// outside a kernel launch (by host code: arrays made from host values, CPU
// kernels), live on the host and are mapped for the device (placement 1).
constexpr size_t kTinyMax = 256;
constexpr size_t kHostWrittenMax = size_t{1} << 16;

thread_local CaptureSink* t_capture_sink = nullptr;
// Set while device_accessible allocates an input's device copy.
thread_local bool t_on_device = false;

int placement(size_t bytes) {
  if (t_capture_sink || t_on_device) return 0;
  if (bytes <= kTinyMax) return 1;
  return bytes < kHostWrittenMax && launch_stream_of_thread() < 0 ? 1 : 0;
}

void* managed_alloc(size_t bytes, int place) {
  void* p = nullptr;
  if (cudaMallocManaged(&p, bytes, cudaMemAttachGlobal) != cudaSuccess) {
    cudaGetLastError();  // clear the (non-sticky) allocation error
    return nullptr;
  }
  // Placement is a hint: a failure leaves the pages to migrate on demand.
  if (place == 1) {
    cudaMemLocation host{};
    host.type = cudaMemLocationTypeHost;
    cudaMemAdvise(p, bytes, cudaMemAdviseSetPreferredLocation, host);
    cudaMemAdvise(p, bytes, cudaMemAdviseSetAccessedBy, device_location());
  } else {
    // Fresh managed pages are populated where they are first touched; a
    // kernel's first touch costs a GPU page fault per 64 KiB to 2 MiB, far
    // slower than creating them in device memory up front.
    cudaMemAdvise(p, bytes, cudaMemAdviseSetPreferredLocation, device_location());
    // Not while a graph is recorded on this thread: work on the legacy stream does not
    // belong in the capture; the first replay populates the pages instead.
    if (!t_capture_sink || !t_capture_sink->recording) {
      cudaMemPrefetchAsync(p, bytes, device_location(), 0, nullptr);
    }
  }
  cudaGetLastError();
  return p;
}

void managed_free(void* p) {
  if (!g_shutdown.load(std::memory_order_acquire)) cudaFree(p);
}

// The elements `a` addresses (any strides, negative and broadcast ones too): the first one's
// offset from a.data() (<= 0) and their count.
std::pair<int64_t, size_t> addressed_span(const array& a) {
  int64_t lo = 0, hi = 0;
  for (size_t d = 0; d < a.ndim(); ++d) {
    int64_t span = (a.shape(static_cast<int>(d)) - 1) * a.strides()[d];
    (span < 0 ? lo : hi) += span;
  }
  return {lo, static_cast<size_t>(hi - lo + 1)};
}

// `a`'s layout over a copy of its addressed span (starting at element -lo of `span`).
array view_of_span(const array& a, const array& span, int64_t lo) {
  array view(a.shape(), a.dtype(), nullptr, {});
  view.copy_shared_buffer(span, a.strides(), a.flags(), a.data_size(), -lo);
  view.set_status(array::Status::available);
  return view;
}

// The elements `a` addresses copied by the host into a managed buffer, as a view with a's
// layout.
array managed_copy(const array& a) {
  const auto [lo, n] = addressed_span(a);
  array span({static_cast<int32_t>(n)}, a.dtype(), nullptr, {});
  span.set_data(malloc_for_host_write(n * a.itemsize()));
  std::memcpy(span.data<char>(), a.data<char>() + lo * static_cast<int64_t>(a.itemsize()),
              n * a.itemsize());
  return view_of_span(a, span, lo);
}

// Small inputs the host wrote (placement 1: a scalar made from a host value, a batch's
// attention mask or row offsets) live in host memory, which a kernel reaches over the bus
// from every thread that reads them: a 64-row decode step's RMSNormRoPE took 24 us reading
// its host-made offset (6.6 us for a device one), a multiply by a host-made scalar 25 us
// (bench/RESULTS.md). Such an input is copied into device memory on the launching stream,
// and the copy serves every later kernel on that stream while the original lives: a mask
// shared by all layers of a step is copied once. MLXCPP_GPU_UPLOAD=0 leaves them on the host.
constexpr size_t kUploadMax = kHostWrittenMax;
constexpr size_t kUploadsKept = 64;

struct Upload {
  array::Weak source;       // the input copied; the entry is stale once it is gone
  const char* source_data;  // its data pointer then (stale if it has moved since)
  const char* first;        // the addressed span's first byte
  size_t bytes;             // and size
  Stream stream;            // where the copy was made and is read
  array span;               // the device copy of the span
};
// Swept of entries whose source is gone at each upload and each wait for a stream, so a
// copy outlives its source by no more than an evaluation.
std::mutex g_uploads_mu;
std::deque<Upload> g_uploads;

// A dropped copy is released once the work launched on its own stream has run: the sweep
// may run while another stream's kernels are being launched, whose frees the allocator hands
// to that stream's later kernels at once.
void drop_locked(const Upload& u) { gpu::retain(u.stream, {u.span}); }

void sweep_uploads_locked() {
  for (auto it = g_uploads.begin(); it != g_uploads.end();) {
    if (it->source.lock()) {
      ++it;
      continue;
    }
    drop_locked(*it);
    it = g_uploads.erase(it);
  }
}

void sweep_uploads() {
  std::lock_guard<std::mutex> lk(g_uploads_mu);
  sweep_uploads_locked();
}

bool uploads_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MLXCPP_GPU_UPLOAD");
    return !(v && std::string(v) == "0");
  }();
  return on;
}

// Host-made (never a primitive's output: written by the host, final), small, on the host.
bool uploadable(const array& a, int place) {
  return place == 1 && !t_capture_sink && host_made(a) && a.nbytes() <= kUploadMax &&
         uploads_enabled();
}

// What the device copy of `a` reads as: marked as computed on the device, so code that reads
// host-made inputs on the host (gather's bounds check, a dynamic slice's start) never takes
// it for one (its bytes arrive with the stream).
array upload(const array& a, const Stream& s) {
  static const std::shared_ptr<Event> on_device = [] {
    auto e = std::make_shared<Event>();
    e->signal();
    return e;
  }();
  const auto [lo, n] = addressed_span(a);
  const size_t bytes = n * a.itemsize();
  const char* first = a.data<char>() + lo * static_cast<int64_t>(a.itemsize());
  auto as_view = [&](const array& span) {
    array view = view_of_span(a, span, lo);
    view.set_event(on_device);
    return view;
  };
  std::lock_guard<std::mutex> lk(g_uploads_mu);
  sweep_uploads_locked();
  for (const Upload& u : g_uploads) {
    if (u.first != first || u.bytes != bytes || !(u.stream == s)) continue;
    auto src = u.source.lock();
    if (src && src->data<char>() == u.source_data && u.span.dtype() == a.dtype()) {
      return as_view(u.span);
    }
  }
  array span({static_cast<int32_t>(n)}, a.dtype(), nullptr, {});
  t_on_device = true;
  struct Reset {
    ~Reset() { t_on_device = false; }
  } reset;
  span.set_data(allocator::malloc(bytes));
  span.set_event(on_device);
  // A kernel reads the source where it lies (mapped host memory): queuing it never waits, where
  // the copy engine's call may wait for the stream. The source lives until the copy has run.
  copy_bytes(span.data<void>(), first, bytes, s);
  gpu::retain(s, {a});
  if (g_uploads.size() >= kUploadsKept) {
    drop_locked(g_uploads.front());
    g_uploads.pop_front();
  }
  g_uploads.push_back({array::Weak(a), a.data<char>(), first, bytes, s, span});
  return as_view(span);
}

}  // namespace

StreamResources& resources(const Stream& s) { return state(s).res; }

array device_copy(const array& a, const Stream& s) {
  if (a.data_size() == 0 || !a.data<char>()) return a;
  return uploadable(a, allocator::detail::placement_of(a.buffer().ptr())) ? upload(a, s) : a;
}

StreamResources& gemm_resources(const Stream& s) {
  auto& st = state(s);
  // Set once, under the lock, after the handle and workspace exist.
  if (st.gemm_ready.load(std::memory_order_acquire)) return st.res;
  std::lock_guard<std::mutex> lk(st.mu);
  if (!st.res.blas) {
    // cuBLASLt's recommended workspace for Hopper is 32 MiB.
    size_t size = size_t{32} << 20;
    void* workspace = nullptr;
    check(cudaMalloc(&workspace, size), "allocating the GEMM workspace");
    cublasLtHandle_t handle = nullptr;
    cublasStatus_t status = cublaslt().create(&handle);
    if (status != CUBLAS_STATUS_SUCCESS) cudaFree(workspace);
    check_cublas(status, "creating a handle");
    st.res.workspace = workspace;
    st.res.workspace_size = size;
    st.res.blas = handle;
    g_gemm_used.store(true, std::memory_order_release);
  }
  st.gemm_ready.store(true, std::memory_order_release);
  return st.res;
}

void allocate_row_contiguous(array& out) {
  out.set_data(allocator::malloc(std::max<size_t>(out.nbytes(), 1)));
}

void keep_until_done(const Stream& s, const array& a) { gpu::retain(s, {a}); }

void set_capture_sink(CaptureSink* sink) { t_capture_sink = sink; }

bool runtime_alive() { return !g_shutdown.load(std::memory_order_acquire); }

}  // namespace cuda

namespace gpu {

bool is_available() {
  static const bool available = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return n > 0;
  }();
  return available;
}

namespace {
std::atomic<bool> g_active{false};
}  // namespace

void shutdown() {
  // The device has finished: the profile's last events can be read now, while the runtime lives.
  cuda::report_device_profile();
  cuda::g_shutdown.store(true, std::memory_order_release);
}

void activate() {
  if (!g_active.load(std::memory_order_acquire) && is_available()) {
    g_active.store(true, std::memory_order_release);
  }
}

const RawAllocator* raw_allocator() {
  static const RawAllocator managed{&cuda::placement, &cuda::managed_alloc, &cuda::managed_free};
  return g_active.load(std::memory_order_acquire) ? &managed : nullptr;
}

const std::vector<array>& device_accessible(const std::vector<array>& inputs,
                                            std::vector<array>& scratch, const Stream& s,
                                            bool uploads) {
  // With HMM (or ATS) the device reads any host memory, mmap'd files too.
  static const bool pageable = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrPageableMemoryAccess, dev) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return v != 0;
  }();
  // Blocks of the buffer cache's unified memory (nearly every input) are known without asking
  // the driver, a round trip per input otherwise. Returns the input, or what the kernels
  // should read instead.
  auto accessible = [&](const array& a) -> std::optional<array> {
    if (a.data_size() == 0 || !a.data<char>()) return std::nullopt;
    const int place = allocator::detail::placement_of(a.buffer().ptr());
    if (place >= 0) {
      // Integer inputs (indices, starts) are left to the kernels that read host-made ones
      // on the host; those that want a copy ask for it (cuda::device_copy).
      if (uploads && !is_integral(a.dtype()) && cuda::uploadable(a, place)) {
        return cuda::upload(a, s);
      }
      return std::nullopt;
    }
    if (pageable) return std::nullopt;
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, a.data<char>()) != cudaSuccess) {
      cudaGetLastError();
      attr.type = cudaMemoryTypeUnregistered;
    }
    if (attr.type == cudaMemoryTypeManaged || attr.type == cudaMemoryTypeDevice ||
        (attr.type == cudaMemoryTypeHost && attr.devicePointer == a.data<char>())) {
      return std::nullopt;
    }
    return cuda::managed_copy(a);
  };
  bool copied = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto replacement = accessible(inputs[i]);
    if (!replacement) continue;
    if (!copied) scratch = inputs;
    copied = true;
    scratch[i] = std::move(*replacement);
  }
  return copied ? scratch : inputs;
}

void retain(const Stream& s, std::vector<array> arrays) {
  if (cuda::t_capture_sink) {
    cuda::t_capture_sink->kept.insert(cuda::t_capture_sink->kept.end(), arrays.begin(),
                                      arrays.end());
  }
  auto& st = cuda::state(s);
  std::lock_guard<std::mutex> lk(st.mu);
  for (auto& a : arrays) st.pending.push_back(std::move(a));
}

void synchronize(const Stream& s) {
  // Device copies whose sources are gone are dropped into their streams' retain lists first,
  // so that this wait releases them (memory accounting after a synchronize owes nothing to
  // earlier work).
  cuda::sweep_uploads();
  auto& st = cuda::state(s);
  // Everything retained before the wait was launched before it, so it has
  // finished when the wait returns.
  std::vector<array> done;
  uint64_t through = 0;
  {
    std::lock_guard<std::mutex> lk(st.mu);
    if (st.dirty.load(std::memory_order_acquire) || !st.pending.empty()) st.mark_locked();
    through = st.recorded.load(std::memory_order_acquire);
    for (auto& [m, v] : st.in_flight) {
      for (auto& a : v) done.push_back(std::move(a));
    }
    st.in_flight.clear();
  }
  cuda::check(cudaStreamSynchronize(st.res.stream), "synchronizing a stream");
  st.note_completed(through);
  cuda::sweep_uploads();
}

std::function<void()> fence(const Stream& s) {
  auto& st = cuda::state(s);
  std::shared_ptr<cuda::Marker> marker;
  std::vector<array> finished;
  {
    std::lock_guard<std::mutex> lk(st.mu);
    marker = st.mark_locked();
    finished = st.take_finished();
  }
  if (cuda::g_gemm_used.load(std::memory_order_acquire) &&
      !cuda::g_drain_after_gemm.exchange(true)) {
    scheduler::finish_queued_work_at_exit();
  }
  cuda::StreamState* sp = &st;
  return [marker, sp] {
    cuda::check(cudaEventSynchronize(marker->event), "waiting for an event");
    sp->note_completed(marker->number);
    std::vector<array> done;
    {
      std::lock_guard<std::mutex> lk(sp->mu);
      done = sp->take_finished();
    }
    cuda::sweep_uploads();
  };
}

namespace {
thread_local int t_launch_stream = -1;
thread_local void* t_launch_state = nullptr;
}  // namespace
}  // namespace gpu

namespace cuda {
int launch_stream_of_thread() { return gpu::t_launch_stream; }

allocator::Buffer malloc_for_host_write(size_t bytes) {
  // Inside a launch the allocator hands out, at once, blocks freed on the
  // same stream whose kernels may not have run yet: safe for a kernel (the
  // stream orders it after them), not for a host write, which would race
  // with them. Allocated as by host code instead: only blocks whose kernels
  // have finished, placed on the host when small (host-written).
  const int stream = gpu::t_launch_stream;
  void* state = gpu::t_launch_state;
  gpu::t_launch_stream = -1;
  gpu::t_launch_state = nullptr;
  struct Restore {
    int stream;
    void* state;
    ~Restore() {
      gpu::t_launch_stream = stream;
      gpu::t_launch_state = state;
    }
  } restore{stream, state};
  return allocator::malloc(bytes);
}
}  // namespace cuda

namespace gpu {
namespace {

template <typename F>
void for_each_gpu_stream(F&& f) {
  cuda::table().for_each_gpu_stream(std::forward<F>(f));
}
}  // namespace

LaunchScope::LaunchScope(const Stream& s)
    : previous_(t_launch_stream), previous_state_(t_launch_state) {
  // Looked up once per thread and stream: a scope is entered for every node.
  thread_local int cached_index = -1;
  thread_local cuda::StreamState* cached = nullptr;
  if (cached_index != s.index) {
    cached = &cuda::state(s);
    cached_index = s.index;
  }
  auto* st = cached;
  st->launching.fetch_add(1, std::memory_order_acq_rel);
  t_launch_stream = s.index;
  t_launch_state = st;
}
LaunchScope::~LaunchScope() {
  auto* st = static_cast<cuda::StreamState*>(t_launch_state);
  // Dirty before the scope is left: a ticket taken in between sees either.
  st->dirty.store(true, std::memory_order_release);
  st->launching.fetch_sub(1, std::memory_order_acq_rel);
  t_launch_stream = previous_;
  t_launch_state = previous_state_;
}

FreeTicket free_ticket() {
  FreeTicket t;
  t.stream = t_launch_stream;
  const auto& tab = cuda::table();
  // Outside a launch (a user thread dropping an array) with one gpu stream,
  // every kernel that used the buffer was launched on that stream.
  if (t.stream < 0 && tab.num_gpu_streams.load(std::memory_order_acquire) == 1) {
    t.stream = tab.gpu_streams[0].load(std::memory_order_acquire)->index;
  }
  tab.for_each_gpu_stream([&](cuda::StreamState* st) {
    uint64_t recorded = st->recorded.load(std::memory_order_acquire);
    // Work launched after the last marker (or being launched now) is covered
    // by the next one.
    const bool after = st->dirty.load(std::memory_order_acquire) ||
                       st->launching.load(std::memory_order_acquire) > 0;
    uint64_t need = after ? recorded + 1 : recorded;
    if (st->completed.load(std::memory_order_acquire) < need) t.add(st, need);
  });
  return t;
}

bool reusable(const FreeTicket& t) {
  if (t_launch_stream >= 0 && t_launch_stream == t.stream) return true;
  auto done = [](const FreeTicket::Wait& w) {
    return static_cast<const cuda::StreamState*>(w.first)->completed.load(
               std::memory_order_acquire) >= w.second;
  };
  for (int i = 0; i < t.nfirst; ++i) {
    if (!done(t.first[i])) return false;
  }
  return std::all_of(t.more.begin(), t.more.end(), done);
}

// Both are called by the allocator with its lock held: they note finished
// markers but release nothing (releasing arrays frees buffers, which would
// take that lock again).
void poll() {
  for_each_gpu_stream([](cuda::StreamState* st) {
    std::lock_guard<std::mutex> lk(st->mu);
    for (auto& [m, v] : st->in_flight) {
      if (m->number <= st->completed.load(std::memory_order_acquire)) continue;
      if (cudaEventQuery(m->event) != cudaSuccess) {
        cudaGetLastError();  // clear cudaErrorNotReady
        break;
      }
      st->note_completed(m->number);
    }
  });
}

void wait_for_all() {
  if (!g_active.load(std::memory_order_acquire) || cuda::g_shutdown.load()) return;
  std::vector<std::pair<cuda::StreamState*, uint64_t>> through;
  for_each_gpu_stream([&](cuda::StreamState* st) {
    std::lock_guard<std::mutex> lk(st->mu);
    if (st->dirty.load(std::memory_order_acquire)) st->mark_locked();
    through.emplace_back(st, st->recorded.load(std::memory_order_acquire));
  });
  cuda::check(cudaDeviceSynchronize(), "synchronizing the device");
  for (auto& [st, n] : through) st->note_completed(n);
}

std::vector<array> to_device_memory(const std::vector<array>& arrays, const Stream& s) {
  auto& res = cuda::resources(s);
  const cudaMemLocation loc = cuda::device_location();
  std::vector<array> out;
  LaunchScope scope(s);
  out.reserve(arrays.size());
  for (const auto& a : arrays) {
    if (a.status() != array::Status::available) {
      throw std::invalid_argument("[to_device_memory] the array is not evaluated");
    }
    const bool contiguous = a.flags().row_contiguous && a.data_size() == a.size();
    cudaPointerAttributes attr{};
    if (a.nbytes() > 0 && cudaPointerGetAttributes(&attr, a.data<char>()) != cudaSuccess) {
      cudaGetLastError();
      attr.type = cudaMemoryTypeUnregistered;
    }
    if (a.nbytes() > 0 && attr.type == cudaMemoryTypeManaged) {
      // Already unified memory (a kernel's output, such as a cast): placed
      // and advised like a copy would be.
      void* p = const_cast<char*>(a.data<char>());
      cudaMemAdvise(p, a.nbytes(), cudaMemAdviseSetPreferredLocation, loc);
      cudaMemAdvise(p, a.nbytes(), cudaMemAdviseSetReadMostly, loc);
      cudaMemPrefetchAsync(p, a.nbytes(), loc, 0, res.stream);
      cudaGetLastError();  // hints only
      out.push_back(a);
      continue;
    }
    if (a.nbytes() == 0 || !contiguous || attr.type == cudaMemoryTypeDevice) {
      // Empty, device memory already, or a view of host memory: views are
      // rare among weights; kernels read them where they are.
      out.push_back(a);
      continue;
    }
    array dst(a.shape(), a.dtype(), nullptr, {});
    dst.set_data(allocator::malloc(a.nbytes()));
    void* p = dst.data<void>();
    // Weights are read by kernels and rarely by the host: a host read makes
    // a read-only copy of the page instead of migrating it away from the GPU.
    cudaMemAdvise(p, a.nbytes(), cudaMemAdviseSetPreferredLocation, loc);
    cudaMemAdvise(p, a.nbytes(), cudaMemAdviseSetReadMostly, loc);
    cudaGetLastError();  // advice is a hint; a device without it still works
    cuda::check(cudaMemcpyAsync(p, a.data<char>(), a.nbytes(), cudaMemcpyDefault, res.stream),
                "copying an array into device memory");
    // Small blocks start on the host (placement 1): move them over too.
    cudaMemPrefetchAsync(p, a.nbytes(), loc, 0, res.stream);
    cudaGetLastError();
    out.push_back(std::move(dst));
  }
  gpu::synchronize(s);
  return out;
}

double copy_bandwidth_gbs(size_t bytes, int repeats) {
  if (bytes == 0 || repeats <= 0) {
    throw std::invalid_argument("[copy_bandwidth] bytes and repeats must be positive");
  }
  void* src = nullptr;
  void* dst = nullptr;
  cuda::check(cudaMalloc(&src, bytes), "allocating the bandwidth source");
  if (cudaMalloc(&dst, bytes) != cudaSuccess) {
    cudaFree(src);
    cuda::check(cudaGetLastError(), "allocating the bandwidth destination");
  }
  cudaStream_t st = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  double best = 0;
  cudaError_t err = cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
  if (err == cudaSuccess) err = cudaEventCreate(&e0);
  if (err == cudaSuccess) err = cudaEventCreate(&e1);
  if (err == cudaSuccess) err = cudaMemsetAsync(src, 1, bytes, st);
  for (int r = 0; r <= repeats && err == cudaSuccess; ++r) {
    err = cudaEventRecord(e0, st);
    if (err == cudaSuccess) err = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st);
    if (err == cudaSuccess) err = cudaEventRecord(e1, st);
    if (err == cudaSuccess) err = cudaEventSynchronize(e1);
    float ms = 0;
    if (err == cudaSuccess) err = cudaEventElapsedTime(&ms, e0, e1);
    // The first pass warms up; a copy reads and writes every byte.
    if (err == cudaSuccess && r > 0 && ms > 0)
      best = std::max(best, 2.0 * bytes / (ms * 1e-3) / 1e9);
  }
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  if (st) cudaStreamDestroy(st);
  cudaFree(src);
  cudaFree(dst);
  cuda::check(err, "measuring the device-to-device copy bandwidth");
  return best;
}

}  // namespace gpu

bool in_device_memory(const array& a) {
  if (!gpu::is_available() || a.nbytes() == 0) return false;
  const char* p = a.data<char>();
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  if (attr.type == cudaMemoryTypeDevice) return true;
  if (attr.type != cudaMemoryTypeManaged) return false;
  const int dev = cuda::current_device();
  for (auto what :
       {cudaMemRangeAttributePreferredLocationId, cudaMemRangeAttributeLastPrefetchLocationId}) {
    int id = -1;
    auto kind = what == cudaMemRangeAttributePreferredLocationId
                    ? cudaMemRangeAttributePreferredLocationType
                    : cudaMemRangeAttributeLastPrefetchLocationType;
    int type = 0;
    if (cudaMemRangeGetAttribute(&type, sizeof(type), kind, p, a.nbytes()) != cudaSuccess ||
        cudaMemRangeGetAttribute(&id, sizeof(id), what, p, a.nbytes()) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    if (type == cudaMemLocationTypeDevice && id == dev) return true;
  }
  return false;
}

}  // namespace mx
