// mx::CapturedGraph: a computation recorded once on the GPU stream and replayed, its outputs
// fed back into its inputs on the device. Expected values are worked by hand: x -> 2x + 1 per
// replay, a counter, and a GEMM (cuBLASLt inside the recording) summing x.
#include <gtest/gtest.h>

#include <vector>

#include "common/check.h"
#include "mlxcpp/mx/graph.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/transforms.h"

namespace {

const mx::Device kGpu{mx::Device::gpu};
const mx::Device kCpu{mx::Device::cpu};

class GpuCapturedGraph : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!mx::is_available(kGpu) || !mx::CapturedGraph::is_available()) {
      GTEST_SKIP() << "no GPU in this build or on this machine";
    }
  }
};

std::vector<mx::array> affine_step(const std::vector<mx::array>& in) {
  auto x = in[0];
  auto y = mx::add(mx::multiply(x, mx::array(2.0f), kGpu), mx::array(1.0f), kGpu);
  auto count = mx::add(in[1], mx::array(1, mx::int32), kGpu);
  // sum(x) through a matrix product with ones: [4, 4] @ [4, 1].
  auto sums = mx::matmul(mx::ones({4, 4}, mx::float32, kGpu), mx::reshape(x, {4, 1}, kGpu), kGpu);
  return {y, count, mx::reshape(sums, {4}, kGpu)};
}

TEST_F(GpuCapturedGraph, ReplaysWithFeedbackOnTheDevice) {
  mx::array x0(std::vector<float>{1, 2, 3, 4}, {4});
  mx::array c0(std::vector<int32_t>{0}, {1}, mx::int32);
  mx::CapturedGraph g({x0, c0}, affine_step, {{0, 0}, {1, 1}}, kGpu);
  EXPECT_EQ(g.num_outputs(), 3);
  // Three replays queued before any is read: each copy holds its own replay's values.
  auto r1 = g.replay({0, 1, 2});
  auto r2 = g.replay({0, 1, 2});
  auto r3 = g.replay({0, 1});
  mxtest::expect_close(r1[0], {3, 5, 7, 9}, {4}, 0, 0);
  mxtest::expect_close(r1[1], {1}, {1}, 0, 0);
  mxtest::expect_close(r1[2], {10, 10, 10, 10}, {4}, 1e-5, 1e-5);
  mxtest::expect_close(r2[0], {7, 11, 15, 19}, {4}, 0, 0);
  mxtest::expect_close(r2[1], {2}, {1}, 0, 0);
  mxtest::expect_close(r2[2], {24, 24, 24, 24}, {4}, 1e-5, 1e-5);
  mxtest::expect_close(r3[0], {15, 23, 31, 39}, {4}, 0, 0);
  mxtest::expect_close(r3[1], {3}, {1}, 0, 0);
  // The inputs hold what the last replay fed back; the caller's arrays are untouched.
  mx::synchronize(g.stream());
  mxtest::expect_close(g.inputs()[0], {15, 23, 31, 39}, {4}, 0, 0);
  mxtest::expect_close(x0, {1, 2, 3, 4}, {4}, 0, 0);
  // Outputs read by later eager work on the GPU.
  auto more = mx::add(g.replay({0})[0], mx::array(1.0f), kGpu);
  mxtest::expect_close(more, {32, 48, 64, 80}, {4}, 0, 0);
}

TEST_F(GpuCapturedGraph, InPlaceStateSurvivesReplays) {
  // A ring of 4 slots written at position % 4 each replay, the position fed back.
  mx::array ring0 = mx::zeros({4}, mx::float32);
  mx::array pos0(std::vector<int32_t>{0}, {1}, mx::int32);
  auto step = [](const std::vector<mx::array>& in) -> std::vector<mx::array> {
    auto value = mx::astype(mx::add(in[1], mx::array(10, mx::int32), kGpu), mx::float32, kGpu);
    auto slot = mx::remainder(in[1], mx::array(4, mx::int32), kGpu);
    auto ring = mx::slice_update_in_place(in[0], value, slot, {0}, kGpu);
    return {mx::add(in[1], mx::array(1, mx::int32), kGpu), mx::sum(ring, false, kGpu)};
  };
  mx::CapturedGraph g({ring0, pos0}, step, {{0, 1}}, kGpu);
  std::vector<double> sums;
  for (int i = 0; i < 6; ++i) sums.push_back(g.replay({1})[0].item<float>());
  // Slots after replay k hold 10..10+k-1, the ring keeping the last 4.
  std::vector<double> expected{10, 21, 33, 46, 50, 54};
  EXPECT_EQ(sums, expected);
  mx::synchronize(g.stream());
  mxtest::expect_close(g.inputs()[0], {14, 15, 12, 13}, {4}, 0, 0);
}

TEST_F(GpuCapturedGraph, RefusesANodeOffTheGraphStream) {
  mx::array x0(std::vector<float>{1, 2}, {2});
  auto on_cpu = [](const std::vector<mx::array>& in) -> std::vector<mx::array> {
    return {mx::add(in[0], mx::array(1.0f), kCpu)};
  };
  EXPECT_THROW(mx::CapturedGraph({x0}, on_cpu, {}, kGpu), std::invalid_argument);
  // The stream records nothing any more: ordinary work still runs.
  auto y = mx::add(x0, mx::array(1.0f), kGpu);
  mxtest::expect_close(y, {2, 3}, {2}, 0, 0);
  // A feedback pair whose shapes differ.
  auto widen = [](const std::vector<mx::array>& in) -> std::vector<mx::array> {
    return {mx::concatenate({in[0], in[0]}, 0, kGpu)};
  };
  EXPECT_THROW(mx::CapturedGraph({x0}, widen, {{0, 0}}, kGpu), std::invalid_argument);
}

}  // namespace
