// CPU kernel of RandomBits: Threefry-2x32 with 20 rounds (Salmon et al.,
// "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11).
#include <cstring>

#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/primitives/random.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx {

namespace random::detail {

std::pair<uint32_t, uint32_t> threefry2x32(std::pair<uint32_t, uint32_t> key,
                                           std::pair<uint32_t, uint32_t> ctr) {
  static constexpr uint32_t kRotations[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  // The third key word makes the key schedule's parity constant (Threefish's C240).
  const uint32_t ks[3] = {key.first, key.second, key.first ^ key.second ^ 0x1BD11BDAu};
  uint32_t x0 = ctr.first + ks[0];
  uint32_t x1 = ctr.second + ks[1];
  for (uint32_t i = 0; i < 5; ++i) {
    for (uint32_t r : kRotations[i % 2]) {
      x0 += x1;
      x1 = (x1 << r) | (x1 >> (32 - r));
      x1 ^= x0;
    }
    x0 += ks[(i + 1) % 3];
    x1 += ks[(i + 2) % 3] + i + 1;
  }
  return {x0, x1};
}

}  // namespace random::detail

namespace {

// Words per task for large single-key outputs.
constexpr size_t kWordsGrain = size_t{1} << 14;

// Fills `bytes` bytes at `dst` from one key. Word j of the first half and
// word j of the second half come from the same counter (j, j + half + odd), so
// the output is a pure function of the key and the byte count; an odd middle
// word uses the counter (half, 0).
void fill_key(char* dst, size_t bytes, std::pair<uint32_t, uint32_t> key) {
  size_t words = (bytes + 3) / 4;
  size_t half = words / 2;
  bool odd = words % 2 == 1;
  auto put = [&](size_t w, uint32_t v) {
    size_t n = std::min<size_t>(4, bytes - 4 * w);
    std::memcpy(dst + 4 * w, &v, n);
  };
  size_t second = half + (odd ? 1 : 0);
  scheduler::parallel_for(half, kWordsGrain, [&](size_t b, size_t e) {
    for (size_t j = b; j < e; ++j) {
      auto [v0, v1] = random::detail::threefry2x32(
          key, {static_cast<uint32_t>(j), static_cast<uint32_t>(j + second)});
      put(j, v0);
      put(j + second, v1);
    }
  });
  if (odd) put(half, random::detail::threefry2x32(key, {static_cast<uint32_t>(half), 0}).first);
}

}  // namespace

void RandomBits::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& keys = inputs[0];
  if (keys.dtype() != uint32) {
    throw std::invalid_argument("[RandomBits] keys must be uint32, got " +
                                dtype_name(keys.dtype()));
  }
  cpu::allocate_row_contiguous(out);
  size_t num_keys = keys.size() / 2;
  if (num_keys == 0 || out.size() == 0) return;
  size_t bytes_per_key = out.nbytes() / num_keys;
  const uint32_t* kp = keys.data<uint32_t>();
  char* dst = out.data<char>();
  auto fill = [&](size_t i) {
    int64_t k0 = cpu::elem_to_loc(2 * i, keys.shape(), keys.strides());
    int64_t k1 = cpu::elem_to_loc(2 * i + 1, keys.shape(), keys.strides());
    fill_key(dst + i * bytes_per_key, bytes_per_key, {kp[k0], kp[k1]});
  };
  if (num_keys == 1) {
    fill(0);
    return;
  }
  // Many keys: split over keys; fill_key then runs inline on each worker.
  size_t grain = std::max<size_t>(1, kWordsGrain * 4 / std::max<size_t>(bytes_per_key, 1));
  scheduler::parallel_for(num_keys, grain, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) fill(i);
  });
}

}  // namespace mx
