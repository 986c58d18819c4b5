// Host-side pieces shared by the CUDA backend's files: error checks, the CUDA
// stream (and cuBLASLt handle) behind each mx gpu stream, output allocation and
// kernel registration. Compiled by both the host compiler and nvcc.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <typeinfo>
#include <vector>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/device.h"
#include "mlxcpp/mx/primitive.h"

#include "mlxcpp/mx/allocator.h"

namespace mx::cuda {

// Throws std::runtime_error naming `what` and the CUDA error.
void check(cudaError_t err, const char* what);
void check_cublas(cublasStatus_t status, const char* what);
// Checks that the last kernel launch was accepted.
void check_launch(const char* what);

// Per mx gpu stream: its CUDA stream, a cuBLASLt handle and its workspace.
struct StreamResources {
  cudaStream_t stream = nullptr;
  cublasLtHandle_t blas = nullptr;
  void* workspace = nullptr;
  size_t workspace_size = 0;
};
// The stream alone: no cuBLASLt handle or workspace yet.
StreamResources& resources(const Stream& s);
// The stream's resources with its cuBLASLt handle and workspace (loading the
// library and creating them on first use).
StreamResources& gemm_resources(const Stream& s);
inline cudaStream_t stream_of(const Primitive& p) { return resources(p.stream()).stream; }

// A buffer the host writes now (in the middle of a launch too), or reads once a kernel has
// written it: allocated as by host code, so that a small one lives in host memory that the
// device maps. A small result the host reads (a sampled token) then never moves its page.
allocator::Buffer malloc_for_host_write(size_t bytes);

// A row-contiguous buffer for `out` (unified memory; nothing is touched).
void allocate_row_contiguous(array& out);
// Keeps a temporary array alive until the stream's work so far has run.
void keep_until_done(const Stream& s, const array& a);

// `src` (any layout, any supported dtype) converted into dst's buffer and
// layout, on the stream.
void copy_into(const array& src, array& dst, const Stream& s);
// `a` itself when row-contiguous, else a row-contiguous copy made on the
// stream (kept alive until the stream has used it).
array ensure_row_contiguous(const array& a, const Stream& s);

// Prints the MLXCPP_GPU_PROFILE sums to stderr (nothing when profiling is off).
void report_device_profile();

// Dims collapsed for kernels that walk strided operands (at most kMaxDims).
constexpr int kMaxDims = 8;

// Registers `kernel` for primitive type P at load time.
template <typename P>
struct Register {
  explicit Register(GpuKernel kernel) { gpu_registry::add(typeid(P), kernel); }
};

// Blocks of 256 threads covering n elements (grid capped; kernels loop).
inline unsigned grid_for(size_t n, unsigned block = 256) {
  size_t g = (n + block - 1) / block;
  if (g > (size_t{1} << 20)) g = size_t{1} << 20;
  return static_cast<unsigned>(g == 0 ? 1 : g);
}

std::string unsupported_dtype(const char* op, Dtype d);

}  // namespace mx::cuda
