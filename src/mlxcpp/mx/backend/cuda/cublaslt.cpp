#include "mlxcpp/mx/backend/cuda/cublaslt.h"

#include <dlfcn.h>

#include <stdexcept>
#include <string>

namespace mx::scheduler {
// Registers (again) the exit handler that lets work still queued on the
// streams finish (scheduler.cpp). Exit handlers run in reverse order of
// registration, together with the static destructors of libraries loaded
// later, so it is registered again after cuBLASLt is loaded.
void finish_queued_work_at_exit();
}  // namespace mx::scheduler

namespace mx::cuda {
namespace {

// The soname of the CUDA 13 cuBLASLt that the headers we compile against
// describe: another major version may change the ABI of these functions.
constexpr const char* kLibrary = "libcublasLt.so." MLXCPP_CUBLASLT_SOVERSION;

template <typename F>
void resolve(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn) {
    throw std::runtime_error(std::string("[cuda] ") + kLibrary + " has no symbol " + name);
  }
}

CublasLt load() {
  // Never closed: handles and plans made from it live until exit.
  void* lib = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* err = dlerror();
    throw std::runtime_error(
        std::string("[cuda] cannot load ") + kLibrary +
        " (needed for matrix products on the GPU): " + (err ? err : "unknown error"));
  }
  CublasLt t{};
  resolve(lib, "cublasLtCreate", t.create);
  resolve(lib, "cublasLtMatmul", t.matmul);
  resolve(lib, "cublasLtMatmulAlgoGetHeuristic", t.algo_get_heuristic);
  resolve(lib, "cublasLtMatmulDescCreate", t.desc_create);
  resolve(lib, "cublasLtMatmulDescDestroy", t.desc_destroy);
  resolve(lib, "cublasLtMatmulDescSetAttribute", t.desc_set_attribute);
  resolve(lib, "cublasLtMatmulPreferenceCreate", t.preference_create);
  resolve(lib, "cublasLtMatmulPreferenceDestroy", t.preference_destroy);
  resolve(lib, "cublasLtMatmulPreferenceSetAttribute", t.preference_set_attribute);
  resolve(lib, "cublasLtMatrixLayoutCreate", t.layout_create);
  resolve(lib, "cublasLtMatrixLayoutDestroy", t.layout_destroy);
  resolve(lib, "cublasLtMatrixLayoutSetAttribute", t.layout_set_attribute);
  // The library's static destructors, registered just now, would otherwise
  // run at exit while a queued GEMM still uses its state.
  scheduler::finish_queued_work_at_exit();
  return t;
}

}  // namespace

const CublasLt& cublaslt() {
  // A failed load throws out of the initializer, so the next call retries.
  static const CublasLt table = load();
  return table;
}

}  // namespace mx::cuda
