// cuBLASLt, loaded with dlopen on the first GEMM. The library is about half a
// gigabyte: linking it made every process (CPU-only tests, `mlxcpp --help`)
// pay seconds of loading and static initialization for a GPU it never used.
// <cublasLt.h> is included for the types only; the functions are reached
// through this table.
#pragma once

#include <cublasLt.h>

namespace mx::cuda {

struct CublasLt {
  decltype(&::cublasLtCreate) create;
  decltype(&::cublasLtMatmul) matmul;
  decltype(&::cublasLtMatmulAlgoGetHeuristic) algo_get_heuristic;
  decltype(&::cublasLtMatmulDescCreate) desc_create;
  decltype(&::cublasLtMatmulDescDestroy) desc_destroy;
  decltype(&::cublasLtMatmulDescSetAttribute) desc_set_attribute;
  decltype(&::cublasLtMatmulPreferenceCreate) preference_create;
  decltype(&::cublasLtMatmulPreferenceDestroy) preference_destroy;
  decltype(&::cublasLtMatmulPreferenceSetAttribute) preference_set_attribute;
  decltype(&::cublasLtMatrixLayoutCreate) layout_create;
  decltype(&::cublasLtMatrixLayoutDestroy) layout_destroy;
  decltype(&::cublasLtMatrixLayoutSetAttribute) layout_set_attribute;
};

// Loads the library on the first call (thread-safe); throws a
// std::runtime_error naming the library or the missing symbol when it cannot.
const CublasLt& cublaslt();

}  // namespace mx::cuda
