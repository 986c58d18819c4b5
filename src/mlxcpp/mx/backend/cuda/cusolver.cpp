#include "mlxcpp/mx/backend/cuda/cusolver.h"

#include <dlfcn.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace mx::scheduler {
// See cublaslt.cpp: registered again after the library's static destructors.
void finish_queued_work_at_exit();
}  // namespace mx::scheduler

namespace mx::cuda {
namespace {

#define MX_STR2(x) #x
#define MX_STR(x) MX_STR2(x)
// The soname of the cuSOLVER whose headers we compile against: another major
// version may change the ABI of these functions.
constexpr const char* kLibrary = "libcusolver.so." MX_STR(CUSOLVER_VER_MAJOR);
#undef MX_STR
#undef MX_STR2

template <typename F>
void resolve(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn) {
    throw std::runtime_error(std::string("[cuda] ") + kLibrary + " has no symbol " + name);
  }
}

Cusolver load() {
  // Never closed: handles made from it live until exit.
  void* lib = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* err = dlerror();
    throw std::runtime_error(
        std::string("[cuda] cannot load ") + kLibrary +
        " (needed for linear algebra on the GPU): " + (err ? err : "unknown error"));
  }
  Cusolver t{};
  resolve(lib, "cusolverDnCreate", t.create);
  resolve(lib, "cusolverDnSetStream", t.set_stream);
  resolve(lib, "cusolverDnCreateParams", t.create_params);
  resolve(lib, "cusolverDnXpotrf_bufferSize", t.potrf_buffer_size);
  resolve(lib, "cusolverDnXpotrf", t.potrf);
  resolve(lib, "cusolverDnXgetrf_bufferSize", t.getrf_buffer_size);
  resolve(lib, "cusolverDnXgetrf", t.getrf);
  resolve(lib, "cusolverDnXgetrs", t.getrs);
  resolve(lib, "cusolverDnXgeqrf_bufferSize", t.geqrf_buffer_size);
  resolve(lib, "cusolverDnXgeqrf", t.geqrf);
  resolve(lib, "cusolverDnSorgqr_bufferSize", t.sorgqr_buffer_size);
  resolve(lib, "cusolverDnDorgqr_bufferSize", t.dorgqr_buffer_size);
  resolve(lib, "cusolverDnSorgqr", t.sorgqr);
  resolve(lib, "cusolverDnDorgqr", t.dorgqr);
  resolve(lib, "cusolverDnXgesvd_bufferSize", t.gesvd_buffer_size);
  resolve(lib, "cusolverDnXgesvd", t.gesvd);
  resolve(lib, "cusolverDnXsyevd_bufferSize", t.syevd_buffer_size);
  resolve(lib, "cusolverDnXsyevd", t.syevd);
  resolve(lib, "cusolverDnXtrtri_bufferSize", t.trtri_buffer_size);
  resolve(lib, "cusolverDnXtrtri", t.trtri);
  // The library's static destructors, registered just now, would otherwise
  // run at exit while a queued factorization still uses its state.
  scheduler::finish_queued_work_at_exit();
  return t;
}

}  // namespace

const Cusolver& cusolver() {
  // A failed load throws out of the initializer, so the next call retries.
  static const Cusolver table = load();
  return table;
}

void check_cusolver(cusolverStatus_t status, const char* what) {
  if (status != CUSOLVER_STATUS_SUCCESS) {
    throw std::runtime_error(std::string("[cusolver] ") + what + " failed with status " +
                             std::to_string(static_cast<int>(status)));
  }
}

SolverHandle& solver_for(cudaStream_t stream) {
  static std::mutex mu;
  // Leaked on purpose: work queued at exit may still use the handles.
  static auto* handles = new std::unordered_map<cudaStream_t, std::unique_ptr<SolverHandle>>();
  const Cusolver& lib = cusolver();
  std::lock_guard<std::mutex> lk(mu);
  auto& h = (*handles)[stream];
  if (!h) {
    auto fresh = std::make_unique<SolverHandle>();
    check_cusolver(lib.create(&fresh->handle), "creating a handle");
    check_cusolver(lib.set_stream(fresh->handle, stream), "binding a handle to its stream");
    check_cusolver(lib.create_params(&fresh->params), "creating a parameter object");
    h = std::move(fresh);
  }
  return *h;
}

}  // namespace mx::cuda
