// Products of a few rows of x with row-major weight matrices,
// y_i[r, n] = sum_k x[r, k] * w_i[n, k] (x @ w_i^T): a decode step's
// projections and LM head. Memory-bound: each weight element is read once and
// used for every row of x, so the kernel streams the weights at close to the
// memory bandwidth. Host declarations shared by grouped_linear.cu, matmul.cpp
// and the GPU benchmark.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "mlxcpp/mx/dtype.h"

namespace mx::cuda {

// Rows of x one launch takes. With more, each weight chunk feeds more
// arithmetic than the CUDA cores keep up with at full bandwidth (4 rows: as
// slow as cuBLASLt's tensor-core GEMM, 8 rows: half its speed on an H100), so
// more rows are GEMMs.
constexpr int kGemvMaxRows = 2;
// Matrices one launch takes (q, k, v; gate, up); more take further launches.
constexpr int kGemvMaxMatrices = 8;

struct GemvMatrix {
  const void* w;  // N rows of K elements, `ldw` elements apart
  int64_t n;
  int64_t ldw;
  void* y;      // rows x N outputs, row r at y + r * ldy
  int64_t ldy;  // elements between the outputs of consecutive rows of x
};

// How a launch runs (the benchmark's knobs; -1 / 0 = the default).
struct GemvOptions {
  // Threads sharing one output's dot product: 32, 64, 128 or 256; 0 picks it
  // from the shape.
  int threads_per_row = 0;
  // Each output's weight row is requested into L2 (a bulk prefetch) as its
  // block starts, ahead of the loads that consume it.
  int prefetch = -1;
  // Launched as a programmatic dependent (sm_90): the kernel may start while
  // the previous kernel on the stream finishes, prefetching its weights; it
  // reads x and writes y only after that kernel has completed. Off with
  // MLXCPP_GEMV_PDL=0.
  int overlap = -1;
};

// y_i = x @ w_i^T for x (rows, K) row-contiguous, rows in 1..kGemvMaxRows, K >= 1,
// every operand of dtype t (float16, bfloat16, float32, float64), accumulating
// in float32 (float64 for float64). Enqueued on `s`; never synchronizes.
void gemv(Dtype t, const void* x, int rows, int K, const GemvMatrix* mats, int n_mats,
          cudaStream_t s, const GemvOptions& opt = {});

// The threads_per_row gemv picks for `total_rows` outputs of length K.
int gemv_threads_per_row(Dtype t, int64_t total_rows, int K);

}  // namespace mx::cuda
