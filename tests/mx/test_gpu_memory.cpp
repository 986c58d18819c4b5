// The allocator on the GPU: freed device buffers are reused by later kernels
// (no new device allocation per op once a computation has run once), and
// intermediates are released while a graph runs. Checked through the memory
// functions: a fresh allocation raises active + cached bytes, reuse does not.
#include <gtest/gtest.h>

#include "mlxcpp/mx/allocator.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/transforms.h"

namespace {

const mx::Device kGpu{mx::Device::gpu};

class GpuMemory : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mx::is_available(kGpu)) GTEST_SKIP() << "no GPU in this build or on this machine";
    previous_ = mx::default_device();
    mx::set_default_device(kGpu);
  }
  void TearDown() override {
    if (mx::is_available(kGpu)) mx::set_default_device(previous_);
  }
  mx::Device previous_{mx::Device::cpu};
};

// One "step" of a decode-like loop: a chain of elementwise ops and a product
// on 1 MiB operands, fully evaluated and dropped.
float step(const mx::array& w, int i) {
  mx::array x = mx::full({1, 512}, static_cast<float>(i % 7), mx::float32);
  for (int k = 0; k < 8; ++k) x = mx::tanh(mx::matmul(x, w) * 0.01f);
  return mx::sum(x).item<float>();
}

TEST_F(GpuMemory, RepeatedStepsReuseCachedBuffers) {
  mx::array w = mx::ones({512, 512});
  mx::eval(w);
  for (int i = 0; i < 3; ++i) step(w, i);  // warm-up fills the cache
  const size_t total = mx::get_active_memory() + mx::get_cache_memory();
  for (int i = 3; i < 40; ++i) {
    step(w, i);
    EXPECT_EQ(mx::get_active_memory() + mx::get_cache_memory(), total) << "step " << i;
  }
}

TEST_F(GpuMemory, IntermediatesOfAChainAreReleasedWhileItRuns) {
  mx::clear_cache();
  const size_t before = mx::get_active_memory();
  mx::array x = mx::zeros({1 << 22});  // 16 MiB
  for (int i = 0; i < 40; ++i) x = mx::exp(x * 0.5f);
  mx::reset_peak_memory();
  mx::eval(x);
  // Forty 16 MiB intermediates would need 640 MiB; released as the tape
  // runs (and reused by the next kernel on the stream), a few suffice.
  EXPECT_LT(mx::get_peak_memory() - before, size_t{64} << 20);
  EXPECT_EQ(x.size(), size_t{1} << 22);
}

// Small arrays made from host values live on the host (placement 1); kernels get a device
// copy, reused while the original lives. A scalar freed and made again with another value
// (its block reused at once) must be read anew, never from an earlier copy.
TEST_F(GpuMemory, HostMadeScalarsAreReadWithTheirOwnValues) {
  mx::array x = mx::full({64, 256}, 3.0f);
  mx::eval(x);
  for (int i = 0; i < 6; ++i) {
    const float v = static_cast<float>(i) - 2.0f;
    mx::array y = x * mx::array(v);
    mx::array z = mx::sum(y, 1) + mx::array(v);
    mx::eval(y, z);
    const float* yp = y.data<float>();
    for (size_t k = 0; k < y.size(); ++k) ASSERT_EQ(yp[k], 3.0f * v) << "step " << i << " at " << k;
    const float* zp = z.data<float>();
    for (size_t r = 0; r < z.size(); ++r) ASSERT_EQ(zp[r], 256.0f * 3.0f * v + v) << "row " << r;
  }
}

// A host-made matrix read through strided views by several kernels of one evaluation and of
// the next: each view's own elements.
TEST_F(GpuMemory, HostMadeViewsReadTheirOwnElements) {
  std::vector<float> host(4 * 64);
  for (size_t k = 0; k < host.size(); ++k) host[k] = static_cast<float>(k % 97) - 40.0f;
  mx::array m(host, {4, 64});
  mx::array a = mx::slice(m, {1, 8}, {3, 40});                         // rows 1-2, columns 8-39
  mx::array b = mx::transpose(mx::slice(m, {0, 1}, {4, 64}, {1, 2}));  // odd columns, [32, 4]
  for (int round = 0; round < 2; ++round) {
    mx::array ya = a + mx::full({2, 32}, 1.0f);
    mx::array yb = b * mx::full({32, 4}, 2.0f);
    mx::array sm = mx::sum(m);
    mx::eval(ya, yb, sm);
    for (int r = 0; r < 2; ++r) {
      for (int c = 0; c < 32; ++c) {
        ASSERT_EQ(ya.data<float>()[r * 32 + c], host[(r + 1) * 64 + 8 + c] + 1.0f) << r << "," << c;
      }
    }
    for (int c = 0; c < 32; ++c) {
      for (int r = 0; r < 4; ++r) {
        ASSERT_EQ(yb.data<float>()[c * 4 + r], 2.0f * host[r * 64 + 2 * c + 1]) << c << "," << r;
      }
    }
    double total = 0;
    for (float h : host) total += h;
    EXPECT_EQ(sm.item<float>(), static_cast<float>(total));
  }
}

}  // namespace
