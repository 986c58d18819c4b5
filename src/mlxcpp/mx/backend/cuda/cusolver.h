// cuSOLVER (dense), loaded with dlopen on the first factorization, as
// cuBLASLt is (cublaslt.h): processes that never factor a matrix on the GPU
// do not pay for loading it. <cusolverDn.h> is included for the types only;
// the functions are reached through this table.
#pragma once

#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <mutex>
#include <vector>

namespace mx::cuda {

struct Cusolver {
  decltype(&::cusolverDnCreate) create;
  decltype(&::cusolverDnSetStream) set_stream;
  decltype(&::cusolverDnCreateParams) create_params;
  decltype(&::cusolverDnXpotrf_bufferSize) potrf_buffer_size;
  decltype(&::cusolverDnXpotrf) potrf;
  decltype(&::cusolverDnXgetrf_bufferSize) getrf_buffer_size;
  decltype(&::cusolverDnXgetrf) getrf;
  decltype(&::cusolverDnXgetrs) getrs;
  decltype(&::cusolverDnXgeqrf_bufferSize) geqrf_buffer_size;
  decltype(&::cusolverDnXgeqrf) geqrf;
  decltype(&::cusolverDnSorgqr_bufferSize) sorgqr_buffer_size;
  decltype(&::cusolverDnDorgqr_bufferSize) dorgqr_buffer_size;
  decltype(&::cusolverDnSorgqr) sorgqr;
  decltype(&::cusolverDnDorgqr) dorgqr;
  decltype(&::cusolverDnXgesvd_bufferSize) gesvd_buffer_size;
  decltype(&::cusolverDnXgesvd) gesvd;
  decltype(&::cusolverDnXsyevd_bufferSize) syevd_buffer_size;
  decltype(&::cusolverDnXsyevd) syevd;
  decltype(&::cusolverDnXtrtri_bufferSize) trtri_buffer_size;
  decltype(&::cusolverDnXtrtri) trtri;
};

// Loads the library on the first call (thread-safe); throws a
// std::runtime_error naming the library or the missing symbol when it cannot.
const Cusolver& cusolver();

// Throws std::runtime_error naming `what` and the status.
void check_cusolver(cusolverStatus_t status, const char* what);

// A cuSOLVER handle bound to one CUDA stream. A handle is not safe to use
// from two threads at once: hold `mu` while calling through it.
struct SolverHandle {
  cusolverDnHandle_t handle = nullptr;
  cusolverDnParams_t params = nullptr;
  std::mutex mu;
  std::vector<char> host_workspace;  // the 64-bit API's host scratch, grown as needed
};
// The handle of `stream`, created on first use (never destroyed: queued work
// may use it until exit).
SolverHandle& solver_for(cudaStream_t stream);

}  // namespace mx::cuda
