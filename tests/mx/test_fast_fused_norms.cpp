// mx::fast::residual_rms_norm and mx::fast::rms_norm_rope on the CPU: float64 NumPy values
// (tools/reference/fused_norm_refs.py, pasted below), the unfused graph of ops they replace
// in every float dtype (the same roundings, so 16-bit results agree to the last bit up to
// float32 summation order), and derivatives against the unfused graph's.
#include <gtest/gtest.h>

#include "common/check.h"
#include "mlxcpp/mx/fast.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"
#include "mlxcpp/mx/transforms.h"

using mx::array;

namespace {

// tools/reference/fused_norm_refs.py
const std::vector<double> kResidualH{1.46153846, -0.769230784, 0.5,          5.76923074,
                                     1.04999974, -1.59999949,  -0.700000256, 1.40000019};
const std::vector<double> kResidualNormed{0.242708698, -0.255482846, 0.24909577,   3.83224259,
                                          0.424697457, -1.29431596,  -0.849395432, 2.26505397};
const std::vector<double> kRopeFull{
    -0.354694087, -0.652490792,   0.626966889,  1.94744908,   0.14558285,  -0.152443063,
    -1.11180802,  0.929707189,    -0.594254892, -0.606859093, -2.54053602, 0.143134082,
    0.479671344,  -0.00858441955, 3.38862341,   -1.43755524,  1.28197747,  0.0219020085,
    -0.949640397, -0.269998791,   -2.62849764,  0.241210238,  2.62432759,  -0.0774265353};
const std::vector<double> kRopePartialTraditional{
    -0.805771657, 0.366613145,  0.691298424,  -1.85485102,  0.234738193, -0.156492129,
    -0.438632943, -1.18827446,  -0.574739776, -0.468107409, -2.66849707, 0.148249837,
    0.694107921,  0.0790711504, 3.33918679,   1.47322761,   1.27076032,  0,
    -0.120605119, -0.474820199, -2.59191941,  -0.980789414, 2.62906727,  -0.0547722347};
const std::vector<double> kRopeFarPosition{
    -0.558435534, -0.546131804, -0.61036738, 1.89908282,   -0.38558871, -0.209231997,
    -1.04147914,  2.46784996,   0.578200088, -0.720913481, -1.10832997, 0.198269768,
    0.628848935,  -0.955479175, -2.84335682, -1.37883961,  0.85475111,  -1.84352118,
    -0.969807903, -2.06720501,  2.17603061,  0.139541726,  1.63910283,  1.47644353};

const std::vector<float> kRopeX{1.0f,  -2.0f, 0.5f,  3.0f, 0.25f, -1.0f, 2.0f, 1.5f,
                                -0.5f, 0.75f, -3.0f, 1.0f, -1.0f, 0.5f,  2.5f, -2.0f,
                                1.25f, 0.0f,  0.5f,  0.5f, -1.5f, 1.0f,  2.0f, -0.25f};
const std::vector<float> kRopeW{1.0f, 0.5f, 2.0f, -1.0f, 1.5f, 0.25f};

constexpr float kEps = 1e-6f;

array rand(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed) {
  return mx::astype(mx::random::uniform(-3.0f, 3.0f, shape, mx::float32, mx::random::key(seed)),
                    dtype);
}

double tol_of(mx::Dtype d) { return d == mx::float32 ? 1e-5 : (d == mx::bfloat16 ? 8e-3 : 1e-3); }

// The ops fast::residual_rms_norm replaces, as Gemma 3 wrote them before it.
std::pair<array, array> unfused_residual(const array& res, const array& y, const array& wy,
                                         const array& wo) {
  array a = mx::fast::rms_norm_f32(y, wy, kEps);
  array h = mx::add(res, a);
  if (res.dtype() == mx::float16) {
    h = mx::astype(mx::clip(mx::add(mx::astype(res, mx::float32), mx::astype(a, mx::float32)),
                            array(-65504.0f), array(65504.0f)),
                   mx::float16);
  }
  return {h, mx::fast::rms_norm_f32(h, wo, kEps)};
}

TEST(FastResidualRmsNorm, MatchesNumPy) {
  array res({1.0f, -2.0f, 0.5f, 3.0f, 0.25f, 0.0f, -1.5f, 2.0f}, {2, 4});
  array y({3.0f, 4.0f, 0.0f, -12.0f, 1.0f, -1.0f, 2.0f, 0.5f}, {2, 4});
  array wy({1.0f, 2.0f, 0.5f, -1.5f});
  array wo({0.5f, 1.0f, 1.5f, 2.0f});
  auto [h, n] = mx::fast::residual_rms_norm(res, y, wy, wo, kEps);
  mxtest::expect_close(h, kResidualH, {2, 4}, 1e-6, 1e-6);
  mxtest::expect_close(n, kResidualNormed, {2, 4}, 1e-6, 1e-6);
}

TEST(FastResidualRmsNorm, EqualsTheUnfusedGraph) {
  for (mx::Dtype d : {mx::bfloat16, mx::float16, mx::float32, mx::float64}) {
    SCOPED_TRACE(mx::dtype_name(d));
    for (int dim : {2560, 77}) {
      array res = rand({2, 3, dim}, d, 1);
      array y = rand({2, 3, dim}, d, 2);
      array wy = rand({dim}, mx::float32, 3);
      array wo = rand({dim}, mx::float32, 4);
      auto [h, n] = mx::fast::residual_rms_norm(res, y, wy, wo, kEps);
      auto [wh, wn] = unfused_residual(res, y, wy, wo);
      ASSERT_EQ(h.dtype(), d);
      ASSERT_EQ(n.dtype(), d);
      mxtest::expect_close(h, mxtest::to_vector(wh), wh.shape(), 1e-6, tol_of(d));
      mxtest::expect_close(n, mxtest::to_vector(wn), wn.shape(), 1e-6, tol_of(d));
    }
  }
}

TEST(FastResidualRmsNorm, Float16SaturatesInsteadOfOverflowing) {
  // y = [1, 1] normalizes to [1, 1]; times weight 100 gives 100, and 65500 + 100 is past the
  // float16 range: the sum is 65504 (and -65504), not inf.
  array res = mx::astype(array({65500.0f, -65500.0f}, {1, 2}), mx::float16);
  array y = mx::astype(array({1.0f, -1.0f}, {1, 2}), mx::float16);
  array w({100.0f, 100.0f});
  auto [h, n] = mx::fast::residual_rms_norm(res, y, w, mx::ones({2}), kEps);
  mxtest::expect_close(h, {65504.0, -65504.0}, {1, 2}, 0, 0);
  mxtest::expect_close(n, {1.0, -1.0}, {1, 2}, 0, 1e-3);
}

TEST(FastResidualRmsNorm, GradientsMatchTheUnfusedGraph) {
  array res = rand({3, 16}, mx::float32, 5);
  array y = rand({3, 16}, mx::float32, 6);
  array wy = rand({16}, mx::float32, 7);
  array wo = rand({16}, mx::float32, 8);
  array c1 = rand({3, 16}, mx::float32, 9);
  array c2 = rand({3, 16}, mx::float32, 10);
  auto fused = mx::vjp(
      [](const std::vector<array>& in) {
        auto [h, n] = mx::fast::residual_rms_norm(in[0], in[1], in[2], in[3], kEps);
        return std::vector<array>{h, n};
      },
      {res, y, wy, wo}, {c1, c2});
  // The reference: the same function written with elementwise ops only.
  auto norm = [](const array& x, const array& w) {
    array ms = mx::mean(mx::square(x), -1, true);
    return mx::multiply(mx::multiply(x, mx::rsqrt(mx::add(ms, array(kEps)))), w);
  };
  auto plain = mx::vjp(
      [&](const std::vector<array>& in) {
        array h = mx::add(in[0], norm(in[1], in[2]));
        return std::vector<array>{h, norm(h, in[3])};
      },
      {res, y, wy, wo}, {c1, c2});
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    mxtest::expect_close(fused.second[i], mxtest::to_vector(plain.second[i]),
                         plain.second[i].shape(), 1e-5, 1e-4);
  }
}

TEST(FastResidualRmsNorm, RejectsBadArguments) {
  array x = rand({2, 8}, mx::bfloat16, 11);
  array w = rand({8}, mx::float32, 12);
  EXPECT_THROW(mx::fast::residual_rms_norm(x, rand({2, 7}, mx::bfloat16, 1), w, w, kEps),
               std::invalid_argument);
  EXPECT_THROW(mx::fast::residual_rms_norm(x, rand({2, 8}, mx::float16, 1), w, w, kEps),
               std::invalid_argument);
  EXPECT_THROW(mx::fast::residual_rms_norm(x, x, rand({8}, mx::bfloat16, 1), w, kEps),
               std::invalid_argument);
  EXPECT_THROW(mx::fast::residual_rms_norm(x, x, w, rand({9}, mx::float32, 1), kEps),
               std::invalid_argument);
  array i = mx::ones({2, 8}, mx::int32);
  EXPECT_THROW(mx::fast::residual_rms_norm(i, i, w, w, kEps), std::invalid_argument);
}

TEST(FastRmsNormRope, MatchesNumPy) {
  array x(kRopeX, {1, 2, 2, 6});
  array w(kRopeW, {6});
  struct Case {
    const std::vector<double>* want;
    int offset, dims;
    float base, scale;
    bool traditional;
  };
  for (const Case& c : {Case{&kRopeFull, 3, 6, 10000.0f, 1.0f, false},
                        Case{&kRopePartialTraditional, 7, 4, 10000.0f, 0.5f, true},
                        // Angles of ~1e5 radians: exact only when formed in double precision.
                        Case{&kRopeFarPosition, 100000, 6, 1000000.0f, 1.0f, false}}) {
    SCOPED_TRACE(c.offset);
    auto got =
        mx::fast::rms_norm_rope({x}, {w}, kEps, c.dims, c.traditional, c.base, c.scale, c.offset);
    ASSERT_EQ(got.size(), 1u);
    mxtest::expect_close(got[0], *c.want, {1, 2, 2, 6}, 2e-6, 2e-6);
    // float64 (the composed path) to float64 precision.
    auto got64 = mx::fast::rms_norm_rope({mx::astype(x, mx::float64)}, {w}, kEps, c.dims,
                                         c.traditional, c.base, c.scale, c.offset);
    mxtest::expect_close(got64[0], *c.want, {1, 2, 2, 6}, 1e-7, 1e-7);
  }
}

TEST(FastRmsNormRope, EqualsTheUnfusedGraph) {
  for (mx::Dtype d : {mx::bfloat16, mx::float16, mx::float32}) {
    SCOPED_TRACE(mx::dtype_name(d));
    // Queries and keys with different head counts, as transposed views of (B, L, H, D).
    array q = mx::transpose(rand({2, 5, 8, 64}, d, 13), {0, 2, 1, 3});
    array k = mx::transpose(rand({2, 5, 4, 64}, d, 14), {0, 2, 1, 3});
    array wq = rand({64}, mx::float32, 15);
    array wk = rand({64}, mx::float32, 16);
    array offsets(std::vector<int32_t>{3, 4000}, {2}, mx::int32);
    for (bool trad : {false, true}) {
      for (int dims : {64, 32}) {
        SCOPED_TRACE(std::to_string(dims) + (trad ? " traditional" : ""));
        auto got =
            mx::fast::rms_norm_rope({q, k}, {wq, wk}, kEps, dims, trad, 10000.0f, 1.0f, offsets);
        ASSERT_EQ(got.size(), 2u);
        for (int i = 0; i < 2; ++i) {
          const array& x = i == 0 ? q : k;
          const array& w = i == 0 ? wq : wk;
          array want = mx::fast::rope(mx::fast::rms_norm_f32(x, w, kEps), dims, trad, 10000.0f,
                                      1.0f, offsets);
          ASSERT_EQ(got[i].dtype(), d);
          ASSERT_EQ(got[i].shape(), x.shape());
          mxtest::expect_close(got[i], mxtest::to_vector(want), want.shape(), 1e-5, tol_of(d));
        }
      }
    }
    // A scalar offset far along, as a long context's decode step sees.
    auto got = mx::fast::rms_norm_rope({q}, {wq}, kEps, 64, false, 1e6f, 0.125f, 131071);
    array want =
        mx::fast::rope(mx::fast::rms_norm_f32(q, wq, kEps), 64, false, 1e6f, 0.125f, 131071);
    mxtest::expect_close(got[0], mxtest::to_vector(want), want.shape(), 1e-5, tol_of(d));
  }
}

TEST(FastRmsNormRope, GradientsMatchTheUnfusedGraph) {
  array q = rand({1, 2, 3, 8}, mx::float32, 17);
  array k = rand({1, 1, 3, 8}, mx::float32, 18);
  array wq = rand({8}, mx::float32, 19);
  array wk = rand({8}, mx::float32, 20);
  array cq = rand({1, 2, 3, 8}, mx::float32, 21);
  array ck = rand({1, 1, 3, 8}, mx::float32, 22);
  auto fused = mx::vjp(
      [](const std::vector<array>& in) {
        return mx::fast::rms_norm_rope({in[0], in[1]}, {in[2], in[3]}, kEps, 8, false, 10000.0f,
                                       1.0f, 5);
      },
      {q, k, wq, wk}, {cq, ck});
  // The reference: the norm with elementwise ops and the rotation as its own op (whose vjp is
  // tested against finite differences in test_fast_rope).
  auto norm = [](const array& x, const array& w) {
    array ms = mx::mean(mx::square(x), -1, true);
    return mx::multiply(mx::multiply(x, mx::rsqrt(mx::add(ms, array(kEps)))), w);
  };
  auto plain = mx::vjp(
      [&](const std::vector<array>& in) {
        return std::vector<array>{mx::fast::rope(norm(in[0], in[2]), 8, false, 10000.0f, 1.0f, 5),
                                  mx::fast::rope(norm(in[1], in[3]), 8, false, 10000.0f, 1.0f, 5)};
      },
      {q, k, wq, wk}, {cq, ck});
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    mxtest::expect_close(fused.second[i], mxtest::to_vector(plain.second[i]),
                         plain.second[i].shape(), 1e-5, 1e-4);
  }
}

TEST(FastRmsNormRope, RejectsBadArguments) {
  array x = rand({1, 2, 3, 8}, mx::bfloat16, 23);
  array w = rand({8}, mx::float32, 24);
  auto call = [&](std::vector<array> xs, std::vector<array> ws, int dims, const array& off) {
    return mx::fast::rms_norm_rope(xs, ws, kEps, dims, false, 10000.0f, 1.0f, off);
  };
  array zero(0, mx::int32);
  EXPECT_THROW(call({}, {}, 8, zero), std::invalid_argument);
  EXPECT_THROW(call({x}, {w, w}, 8, zero), std::invalid_argument);
  EXPECT_THROW(call({x}, {w}, 7, zero), std::invalid_argument);
  EXPECT_THROW(call({x}, {w}, 10, zero), std::invalid_argument);
  EXPECT_THROW(call({x}, {rand({8}, mx::bfloat16, 1)}, 8, zero), std::invalid_argument);
  EXPECT_THROW(call({x, rand({1, 2, 4, 8}, mx::bfloat16, 1)}, {w, w}, 8, zero),
               std::invalid_argument);
  EXPECT_THROW(call({x, rand({1, 2, 3, 8}, mx::float16, 1)}, {w, w}, 8, zero),
               std::invalid_argument);
  EXPECT_THROW(call({rand({3, 8}, mx::bfloat16, 1)}, {w}, 8, zero), std::invalid_argument);
  EXPECT_THROW(call({x}, {w}, 8, array(0.5f)), std::invalid_argument);
  EXPECT_THROW(call({x}, {w}, 8, array(std::vector<int32_t>{1, 2}, {2}, mx::int32)),
               std::invalid_argument);
}

// fast::rms_norm_rope_kv_write against what it fuses: rms_norm_rope of q and k, then the rotated
// k and v written into the caches at the slot by slice_update; the caches' buffers are the
// outputs' (written in place). The slot counts from the end if negative and is clamped, as
// slice_update places its window.
TEST(FastRmsNormRopeKVWrite, EqualsNormRopeAndSliceUpdates) {
  for (mx::Dtype d : {mx::bfloat16, mx::float32}) {
    SCOPED_TRACE(mx::dtype_name(d));
    array q = mx::transpose(rand({2, 1, 4, 16}, d, 31), {0, 2, 1, 3});
    array k = mx::transpose(rand({2, 1, 2, 16}, d, 32), {0, 2, 1, 3});
    array v = mx::transpose(rand({2, 1, 2, 16}, d, 33), {0, 2, 1, 3});
    array wq = rand({16}, mx::float32, 34);
    array wk = rand({16}, mx::float32, 35);
    array offsets(std::vector<int32_t>{5, 900}, {2}, mx::int32);
    for (int slot : {0, 3, 6, -2, 9}) {
      SCOPED_TRACE("slot " + std::to_string(slot));
      array kc = mx::copy(rand({2, 2, 7, 16}, d, 36));
      array vc = mx::copy(rand({2, 2, 7, 16}, d, 37));
      mx::eval({kc, vc});
      auto want_qk =
          mx::fast::rms_norm_rope({q, k}, {wq, wk}, kEps, 16, false, 1e4f, 1.0f, offsets);
      array slot_a(slot, mx::int32);
      array want_k = mx::slice_update(kc, want_qk[1], slot_a, {2});
      array want_v = mx::slice_update(vc, v, slot_a, {2});
      mx::eval({want_qk[0], want_k, want_v});
      const void* kbuf = kc.data<char>();
      auto got = mx::fast::rms_norm_rope_kv_write(q, k, v, wq, wk, kEps, 16, false, 1e4f, 1.0f,
                                                  offsets, kc, vc, slot_a);
      ASSERT_EQ(got.size(), 3u);
      mx::eval(got);
      EXPECT_EQ(got[1].data<char>(), kbuf);  // in place
      EXPECT_EQ(mxtest::to_vector(got[0]), mxtest::to_vector(want_qk[0]));
      EXPECT_EQ(mxtest::to_vector(got[1]), mxtest::to_vector(want_k));
      EXPECT_EQ(mxtest::to_vector(got[2]), mxtest::to_vector(want_v));
    }
  }
}

// Not in place, into the first rows of a larger buffer (a server batch's spare rows): equal to
// slice_update at [0, slot] of axes 0 and 2; a buffer still held elsewhere keeps its values, one
// nobody else holds is written in place.
TEST(FastRmsNormRopeKVWrite, IntoTheFirstRowsOfABufferAsSliceUpdate) {
  array q = rand({2, 3, 1, 8}, mx::bfloat16, 81);
  array k = rand({2, 1, 1, 8}, mx::bfloat16, 82);
  array v = rand({2, 1, 1, 8}, mx::bfloat16, 83);
  array wq = rand({8}, mx::float32, 84);
  array wk = rand({8}, mx::float32, 85);
  array offsets(std::vector<int32_t>{9, 2}, {2}, mx::int32);
  array kc = mx::copy(rand({4, 1, 6, 8}, mx::bfloat16, 86));
  array vc = mx::copy(rand({4, 1, 6, 8}, mx::bfloat16, 87));
  mx::eval({kc, vc});
  const auto kc_before = mxtest::to_vector(kc);
  array at(std::vector<int32_t>{0, 4}, {2}, mx::int32);
  auto qk = mx::fast::rms_norm_rope({q, k}, {wq, wk}, kEps, 8, false, 1e4f, 1.0f, offsets);
  array want_k = mx::slice_update(kc, qk[1], at, {0, 2});
  array want_v = mx::slice_update(vc, v, at, {0, 2});
  auto got = mx::fast::rms_norm_rope_kv_write(q, k, v, wq, wk, kEps, 8, false, 1e4f, 1.0f, offsets,
                                              kc, vc, array(4, mx::int32), false);
  mx::eval({got[0], got[1], got[2], want_k, want_v, qk[0]});
  EXPECT_EQ(mxtest::to_vector(got[0]), mxtest::to_vector(qk[0]));
  EXPECT_EQ(mxtest::to_vector(got[1]), mxtest::to_vector(want_k));
  EXPECT_EQ(mxtest::to_vector(got[2]), mxtest::to_vector(want_v));
  EXPECT_EQ(mxtest::to_vector(kc), kc_before);  // still held here: copied, not written
  EXPECT_NE(got[1].data<char>(), kc.data<char>());
  // A buffer only the op holds is donated: written in place.
  const void* buf = nullptr;
  array written = [&] {
    array fresh = mx::copy(kc);
    mx::eval(fresh);
    buf = fresh.data<char>();
    return mx::fast::rms_norm_rope_kv_write(q, k, v, wq, wk, kEps, 8, false, 1e4f, 1.0f, offsets,
                                            fresh, vc, array(4, mx::int32), false)[1];
  }();
  mx::eval(written);
  EXPECT_EQ(written.data<char>(), buf);
  EXPECT_EQ(mxtest::to_vector(written), mxtest::to_vector(want_k));
}

TEST(FastRmsNormRopeKVWrite, GradientsMatchTheUnfusedGraph) {
  std::vector<array> in{rand({1, 2, 1, 8}, mx::float32, 41), rand({1, 1, 1, 8}, mx::float32, 42),
                        rand({1, 1, 1, 8}, mx::float32, 43), rand({8}, mx::float32, 44),
                        rand({8}, mx::float32, 45),          rand({1, 1, 4, 8}, mx::float32, 46),
                        rand({1, 1, 4, 8}, mx::float32, 47)};
  std::vector<array> cts{rand({1, 2, 1, 8}, mx::float32, 48), rand({1, 1, 4, 8}, mx::float32, 49),
                         rand({1, 1, 4, 8}, mx::float32, 50)};
  array slot(2, mx::int32);
  auto fused = mx::vjp(
      [&](const std::vector<array>& x) {
        return mx::fast::rms_norm_rope_kv_write(x[0], x[1], x[2], x[3], x[4], kEps, 8, false, 1e4f,
                                                1.0f, array(3, mx::int32), x[5], x[6], slot);
      },
      in, cts);
  auto plain = mx::vjp(
      [&](const std::vector<array>& x) {
        auto qk = mx::fast::rms_norm_rope({x[0], x[1]}, {x[3], x[4]}, kEps, 8, false, 1e4f, 1.0f,
                                          array(3, mx::int32));
        return std::vector<array>{qk[0], mx::slice_update(x[5], qk[1], slot, {2}),
                                  mx::slice_update(x[6], x[2], slot, {2})};
      },
      in, cts);
  for (size_t i = 0; i < in.size(); ++i) {
    SCOPED_TRACE(i);
    mxtest::expect_close(fused.second[i], mxtest::to_vector(plain.second[i]),
                         plain.second[i].shape(), 1e-6, 1e-5);
  }
}

TEST(FastRmsNormRopeKVWrite, RejectsBadArguments) {
  array q = rand({1, 4, 1, 16}, mx::bfloat16, 51);
  array k = rand({1, 2, 1, 16}, mx::bfloat16, 52);
  array w = rand({16}, mx::float32, 53);
  array c = rand({1, 2, 8, 16}, mx::bfloat16, 54);
  array zero(0, mx::int32);
  auto call = [&](const array& q_, const array& k_, const array& v_, const array& kc,
                  const array& vc, const array& slot) {
    return mx::fast::rms_norm_rope_kv_write(q_, k_, v_, w, w, kEps, 16, false, 1e4f, 1.0f, zero, kc,
                                            vc, slot);
  };
  EXPECT_NO_THROW(call(q, k, k, c, c, zero));
  EXPECT_THROW(call(rand({1, 4, 2, 16}, mx::bfloat16, 1), k, k, c, c, zero),
               std::invalid_argument);  // two positions
  EXPECT_THROW(call(q, rand({1, 2, 1, 8}, mx::bfloat16, 1), k, c, c, zero), std::invalid_argument);
  EXPECT_THROW(call(q, k, rand({1, 3, 1, 16}, mx::bfloat16, 1), c, c, zero), std::invalid_argument);
  EXPECT_THROW(call(q, k, k, rand({1, 3, 8, 16}, mx::bfloat16, 1), c, zero), std::invalid_argument);
  EXPECT_THROW(call(q, k, k, c, rand({1, 2, 9, 16}, mx::bfloat16, 1), zero), std::invalid_argument);
  EXPECT_THROW(call(q, k, k, c, mx::astype(c, mx::float16), zero), std::invalid_argument);
  EXPECT_THROW(call(q, k, k, c, c, array(0.5f)), std::invalid_argument);
  EXPECT_THROW(call(q, k, k, c, c, array(std::vector<int32_t>{1, 2}, {2}, mx::int32)),
               std::invalid_argument);
}

}  // namespace
