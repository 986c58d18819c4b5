// The CUDA device: availability, unified-memory allocation, one CUDA stream per
// mx gpu stream, and keeping buffers alive until the kernels using them ran.
#include "mlxcpp/mx/backend/cuda/device.h"

#include <atomic>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "mlxcpp/mx/backend/cuda/cublaslt.h"
#include "mlxcpp/mx/backend/gpu.h"

namespace mx {
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

namespace {

// Set by gpu::shutdown() at exit: the runtime is about to be torn down, and
// calling it from later destructors would fail.
std::atomic<bool> g_shutdown{false};

// A marker recorded on a stream; shared by everyone who may wait for it.
struct Marker {
  cudaEvent_t event = nullptr;
  ~Marker() {
    if (event && !g_shutdown.load(std::memory_order_acquire)) cudaEventDestroy(event);
  }
};

struct StreamState {
  StreamResources res;
  std::mutex mu;
  std::vector<array> pending;  // used by work launched since the last marker
  std::deque<std::pair<std::shared_ptr<Marker>, std::vector<array>>> in_flight;

  // Arrays whose work has finished, taken out under the lock and released by
  // the caller outside it (their destruction may free buffers).
  std::vector<array> take_finished() {
    std::vector<array> done;
    while (!in_flight.empty() && cudaEventQuery(in_flight.front().first->event) == cudaSuccess) {
      for (auto& a : in_flight.front().second) done.push_back(std::move(a));
      in_flight.pop_front();
    }
    return done;
  }
};

struct StreamTable {
  std::mutex mu;
  std::unordered_map<int, std::unique_ptr<StreamState>> states;
};

StreamTable& table() {
  // Leaked on purpose: arrays released at exit may still reach it.
  static StreamTable* t = new StreamTable();
  return *t;
}

StreamState& state(const Stream& s) {
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
    st = std::move(fresh);
  }
  return *st;
}

void* managed_alloc(size_t bytes) {
  void* p = nullptr;
  if (cudaMallocManaged(&p, bytes, cudaMemAttachGlobal) != cudaSuccess) {
    cudaGetLastError();  // clear the (non-sticky) allocation error
    return nullptr;
  }
  return p;
}

void managed_free(void* p) {
  if (!g_shutdown.load(std::memory_order_acquire)) cudaFree(p);
}

// The elements `a` addresses (any strides, negative and broadcast ones too)
// copied by the host into a managed buffer, as a view with a's layout.
array managed_copy(const array& a) {
  int64_t lo = 0, hi = 0;
  for (size_t d = 0; d < a.ndim(); ++d) {
    int64_t span = (a.shape(static_cast<int>(d)) - 1) * a.strides()[d];
    (span < 0 ? lo : hi) += span;
  }
  const size_t n = static_cast<size_t>(hi - lo + 1);
  array span({static_cast<int32_t>(n)}, a.dtype(), nullptr, {});
  span.set_data(allocator::malloc(n * a.itemsize()));
  std::memcpy(span.data<char>(), a.data<char>() + lo * static_cast<int64_t>(a.itemsize()),
              n * a.itemsize());
  array view(a.shape(), a.dtype(), nullptr, {});
  view.copy_shared_buffer(span, a.strides(), a.flags(), a.data_size(), -lo);
  view.set_status(array::Status::available);
  return view;
}

}  // namespace

StreamResources& resources(const Stream& s) { return state(s).res; }

StreamResources& gemm_resources(const Stream& s) {
  auto& st = state(s);
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
  }
  return st.res;
}

void allocate_row_contiguous(array& out) {
  out.set_data(allocator::malloc(std::max<size_t>(out.nbytes(), 1)));
}

void keep_until_done(const Stream& s, const array& a) { gpu::retain(s, {a}); }

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

void shutdown() { cuda::g_shutdown.store(true, std::memory_order_release); }

void activate() {
  if (!g_active.load(std::memory_order_acquire) && is_available()) {
    g_active.store(true, std::memory_order_release);
  }
}

const RawAllocator* raw_allocator() {
  static const RawAllocator managed{&cuda::managed_alloc, &cuda::managed_free};
  return g_active.load(std::memory_order_acquire) ? &managed : nullptr;
}

std::vector<array> device_accessible(const std::vector<array>& inputs) {
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
  std::vector<array> out = inputs;
  if (pageable) return out;
  for (auto& a : out) {
    if (a.data_size() == 0 || !a.data<char>()) continue;
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, a.data<char>()) != cudaSuccess) {
      cudaGetLastError();
      attr.type = cudaMemoryTypeUnregistered;
    }
    if (attr.type == cudaMemoryTypeManaged || attr.type == cudaMemoryTypeDevice ||
        (attr.type == cudaMemoryTypeHost && attr.devicePointer == a.data<char>())) {
      continue;
    }
    a = cuda::managed_copy(a);
  }
  return out;
}

void retain(const Stream& s, std::vector<array> arrays) {
  auto& st = cuda::state(s);
  std::lock_guard<std::mutex> lk(st.mu);
  for (auto& a : arrays) st.pending.push_back(std::move(a));
}

void synchronize(const Stream& s) {
  auto& st = cuda::state(s);
  // Everything retained before the wait was launched before it, so it has
  // finished when the wait returns.
  std::vector<array> done;
  {
    std::lock_guard<std::mutex> lk(st.mu);
    done = std::move(st.pending);
    st.pending.clear();
    for (auto& [m, v] : st.in_flight) {
      for (auto& a : v) done.push_back(std::move(a));
    }
    st.in_flight.clear();
  }
  cuda::check(cudaStreamSynchronize(st.res.stream), "synchronizing a stream");
}

std::function<void()> fence(const Stream& s) {
  auto& st = cuda::state(s);
  auto marker = std::make_shared<cuda::Marker>();
  cuda::check(cudaEventCreateWithFlags(&marker->event, cudaEventDisableTiming),
              "creating an event");
  std::vector<array> finished;
  {
    std::lock_guard<std::mutex> lk(st.mu);
    cuda::check(cudaEventRecord(marker->event, st.res.stream), "recording an event");
    st.in_flight.emplace_back(marker, std::move(st.pending));
    st.pending.clear();
    finished = st.take_finished();
  }
  cuda::StreamState* sp = &st;
  return [marker, sp] {
    cuda::check(cudaEventSynchronize(marker->event), "waiting for an event");
    std::vector<array> done;
    {
      std::lock_guard<std::mutex> lk(sp->mu);
      done = sp->take_finished();
    }
  };
}

}  // namespace gpu
}  // namespace mx
