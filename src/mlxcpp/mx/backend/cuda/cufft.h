// cuFFT, loaded with dlopen on the first transform, as cuBLASLt is
// (cublaslt.h). <cufft.h> is included for the types only; the functions are
// reached through this table. Plans are cached by layout.
#pragma once

#include <cuda_runtime_api.h>
#include <cufft.h>

#include <cstddef>
#include <cstdint>
#include <functional>

namespace mx::cuda {

struct Cufft {
  decltype(&::cufftCreate) create;
  decltype(&::cufftMakePlanMany64) make_plan_many64;
  decltype(&::cufftSetStream) set_stream;
  decltype(&::cufftExecC2C) exec_c2c;
  decltype(&::cufftExecR2C) exec_r2c;
  decltype(&::cufftExecC2R) exec_c2r;
  decltype(&::cufftDestroy) destroy;
};

// Loads the library on the first call (thread-safe); throws a
// std::runtime_error naming the library or the missing symbol when it cannot.
const Cufft& cufft();

// Throws std::runtime_error naming `what` and the result code.
void check_cufft(cufftResult result, const char* what);

// A batch of 1-D transforms of length n in cuFFT's advanced layout: element x
// of line b is read at b * idist + x * istride and written at
// b * odist + x * ostride.
struct FftLayout {
  cufftType type;
  int64_t n, istride, idist, ostride, odist, batch;
  bool operator==(const FftLayout&) const = default;
};

// Calls f(plan) with the plan for `layout` bound to `stream`, under the cache's
// lock (a plan must not be used from two threads at once). Plans are made on
// first use and kept for the most recently used layouts.
void with_fft_plan(const FftLayout& layout, cudaStream_t stream,
                   const std::function<void(cufftHandle)>& f);

}  // namespace mx::cuda
