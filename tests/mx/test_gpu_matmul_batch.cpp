// Batched products against one shared weight on the GPU (x [B, T, K] @ w or
// @ w^T, as a batched decode step or prefill runs its linears): the GPU runs
// these as one GEMM of B * T rows where the batches' rows are evenly spaced,
// and as a strided batch otherwise. Both must give the CPU kernel's values on
// the same inputs (the CPU kernels are tested against NumPy elsewhere). Skips
// where no GPU exists (ctest label `gpu`).
#include <string>

#include "common/check.h"
#include "mlxcpp/mx/random.h"

using mx::array;

namespace {

const mx::Device kGpu(mx::Device::gpu);
const mx::Device kCpu(mx::Device::cpu);

class GpuMatmulBatch : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
  }
};

array rand(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed) {
  array x = mx::random::uniform(-1, 1, shape, mx::float32, mx::random::key(seed), kCpu);
  return mx::astype(x, dtype, kCpu);
}

void expect_same(const array& a, const array& b, double tol, const std::string& what) {
  SCOPED_TRACE(what);
  array want = mx::matmul(a, b, kCpu);
  array got = mx::matmul(a, b, kGpu);
  mx::eval({want, got});
  ASSERT_EQ(got.shape(), want.shape());
  mxtest::expect_close(got, mxtest::to_vector(want), want.shape(), tol, tol);
}

}  // namespace

TEST_F(GpuMatmulBatch, DecodeRowsAgainstATransposedWeight) {
  for (auto dt : {mx::float32, mx::bfloat16}) {
    const double tol = dt == mx::float32 ? 1e-4 : 3e-2;
    array w = rand({96, 80}, dt, 1);  // [N, K], used as w^T like Linear
    for (int B : {1, 2, 7, 64}) {
      array x = rand({B, 1, 80}, dt, 2 + B);
      expect_same(x, mx::transpose(w), tol, "B=" + std::to_string(B) + " " + mx::dtype_name(dt));
    }
  }
}

TEST_F(GpuMatmulBatch, PrefillRowsAgainstARowMajorWeight) {
  array w = rand({48, 40}, mx::float32, 3);  // [K, N]
  for (int T : {1, 3, 16}) {
    array x = rand({5, T, 48}, mx::float32, 4 + T);
    expect_same(x, w, 1e-4, "T=" + std::to_string(T));
  }
  // Two batch dims that collapse into one.
  expect_same(rand({2, 3, 4, 48}, mx::float32, 9), w, 1e-4, "[2, 3, 4, K]");
}

TEST_F(GpuMatmulBatch, UnevenlySpacedRowsStayABatch) {
  array w = rand({32, 24}, mx::float32, 5);
  // Every other batch of a larger array: batch stride 2 * T * K.
  array big = rand({8, 3, 32}, mx::float32, 6);
  array every_other = mx::slice(big, {0, 0, 0}, {8, 3, 32}, {2, 1, 1}, kCpu);
  expect_same(every_other, w, 1e-4, "strided batches");
  // The first T rows of each batch: rows evenly spaced within a batch, not across.
  array head = mx::slice(big, {0, 0, 0}, {8, 2, 32}, kCpu);
  expect_same(head, w, 1e-4, "[:, :2, :]");
  // The batch in the rows' place: x^T per batch (a transposed a).
  array xt = mx::transpose(rand({4, 32, 3}, mx::float32, 7), {0, 2, 1});
  expect_same(xt, w, 1e-4, "transposed a");
  // A broadcast x against batched weights.
  array ws = rand({4, 32, 24}, mx::float32, 8);
  expect_same(rand({1, 3, 32}, mx::float32, 10), ws, 1e-4, "broadcast x");
  // Batched weights too (no shared weight): a strided batch as before.
  expect_same(rand({4, 3, 32}, mx::float32, 11), ws, 1e-4, "batched weights");
}
