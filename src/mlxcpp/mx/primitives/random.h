// The random-bits primitive behind mx::random: Threefry-2x32 (20 rounds)
// applied to a counter under each key, laid out as MLX lays it out so that a
// key and a shape always give the same bits.
#pragma once

#include <cstdint>
#include <utility>

#include "mlxcpp/mx/primitive.h"

namespace mx {

// inputs: keys of shape (..., 2), uint32. Output: keys.shape[:-1] + shape,
// with `width` bytes per element; each key fills its own block of the output.
class RandomBits : public UnaryPrimitive {
 public:
  RandomBits(Stream s, Shape shape, int width)
      : UnaryPrimitive(s), shape_(std::move(shape)), width_(width) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                       const std::vector<int>& axes) override;
  const char* name() const override { return "RandomBits"; }
  bool is_equivalent(const Primitive& other) const override;
  std::vector<Shape> output_shapes(const std::vector<array>& inputs) override;

  const Shape& shape() const { return shape_; }
  int width() const { return width_; }

 private:
  Shape shape_;
  int width_;
};

namespace random::detail {
// One Threefry-2x32-20 block: encrypts the counter `ctr` under `key`.
std::pair<uint32_t, uint32_t> threefry2x32(std::pair<uint32_t, uint32_t> key,
                                           std::pair<uint32_t, uint32_t> ctr);
}  // namespace random::detail

}  // namespace mx
