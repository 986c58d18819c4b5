// The benchmark's timings through the public ops (compiled by the host
// compiler: the mx headers are C++20 that nvcc's front end does not take).
#pragma once

#include <memory>

bool gpu_available();

// Random bfloat16 W (N, K) and x (1, K) on the GPU; milliseconds per op of
// x @ W.T through mx::matmul and through mx::quantized_matmul of W quantized
// (affine, `bits`, group `g`), each the best of 3 evals of 50 ops.
class OpTimer {
 public:
  OpTimer(int N, int K);
  ~OpTimer();
  double dense_ms();
  double quantized_ms(int bits, int g);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};
