#include "mlxcpp/mx/backend/cuda/cufft.h"

#include <dlfcn.h>

#include <list>
#include <mutex>
#include <stdexcept>
#include <string>

#include "mlxcpp/mx/backend/cuda/device.h"

namespace mx::scheduler {
// See cublaslt.cpp: registered again after the library's static destructors.
void finish_queued_work_at_exit();
}  // namespace mx::scheduler

namespace mx::cuda {
namespace {

#define MX_STR2(x) #x
#define MX_STR(x) MX_STR2(x)
// The soname of the cuFFT whose headers we compile against: another major
// version may change the ABI of these functions.
constexpr const char* kLibrary = "libcufft.so." MX_STR(CUFFT_VER_MAJOR);
#undef MX_STR
#undef MX_STR2

// Plans hold device work areas about the size of their data: a bounded number
// of recent layouts covers repeated calls without growing without limit.
constexpr size_t kMaxPlans = 32;

template <typename F>
void resolve(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn) {
    throw std::runtime_error(std::string("[cuda] ") + kLibrary + " has no symbol " + name);
  }
}

Cufft load() {
  // Never closed: plans made from it may live until exit.
  void* lib = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* err = dlerror();
    throw std::runtime_error(std::string("[cuda] cannot load ") + kLibrary +
                             " (needed for FFTs on the GPU): " + (err ? err : "unknown error"));
  }
  Cufft t{};
  resolve(lib, "cufftCreate", t.create);
  resolve(lib, "cufftMakePlanMany64", t.make_plan_many64);
  resolve(lib, "cufftSetStream", t.set_stream);
  resolve(lib, "cufftExecC2C", t.exec_c2c);
  resolve(lib, "cufftExecR2C", t.exec_r2c);
  resolve(lib, "cufftExecC2R", t.exec_c2r);
  resolve(lib, "cufftDestroy", t.destroy);
  // The library's static destructors, registered just now, would otherwise
  // run at exit while a queued transform still uses its state.
  scheduler::finish_queued_work_at_exit();
  return t;
}

struct CachedPlan {
  FftLayout layout;
  cufftHandle plan;
  cudaStream_t last_stream;
};

struct PlanCache {
  std::mutex mu;
  std::list<CachedPlan> plans;  // most recently used first
};

PlanCache& cache() {
  // Leaked on purpose: destroying plans at exit could race queued work.
  static auto* c = new PlanCache();
  return *c;
}

cufftHandle make_plan(const Cufft& lib, const FftLayout& l) {
  cufftHandle plan;
  check_cufft(lib.create(&plan), "creating a plan");
  long long n = l.n;
  // Rank 1: the embed sizes are not read, but non-null ones select the
  // advanced layout (strides and distances).
  long long in_embed = l.n, out_embed = l.n;
  size_t work = 0;
  cufftResult r = lib.make_plan_many64(plan, 1, &n, &in_embed, l.istride, l.idist, &out_embed,
                                       l.ostride, l.odist, l.type, l.batch, &work);
  if (r != CUFFT_SUCCESS) {
    lib.destroy(plan);
    check_cufft(r, ("making a plan for length " + std::to_string(l.n) + " and batch " +
                    std::to_string(l.batch))
                       .c_str());
  }
  return plan;
}

}  // namespace

const Cufft& cufft() {
  // A failed load throws out of the initializer, so the next call retries.
  static const Cufft table = load();
  return table;
}

void check_cufft(cufftResult result, const char* what) {
  if (result != CUFFT_SUCCESS) {
    throw std::runtime_error(std::string("[cufft] ") + what + " failed with result " +
                             std::to_string(static_cast<int>(result)));
  }
}

void with_fft_plan(const FftLayout& layout, cudaStream_t stream,
                   const std::function<void(cufftHandle)>& f) {
  const Cufft& lib = cufft();
  auto& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  auto it = c.plans.begin();
  while (it != c.plans.end() && !(it->layout == layout)) ++it;
  if (it != c.plans.end()) {
    c.plans.splice(c.plans.begin(), c.plans, it);
  } else {
    if (c.plans.size() >= kMaxPlans) {
      // The evicted plan's work area may still be in use by queued work.
      CachedPlan& old = c.plans.back();
      check(cudaStreamSynchronize(old.last_stream), "waiting for an FFT plan's last use");
      lib.destroy(old.plan);
      c.plans.pop_back();
    }
    c.plans.push_front({layout, make_plan(lib, layout), nullptr});
  }
  CachedPlan& p = c.plans.front();
  check_cufft(lib.set_stream(p.plan, stream), "binding a plan to its stream");
  p.last_stream = stream;
  f(p.plan);
}

}  // namespace mx::cuda
