// The discrete Fourier transform primitive: complex-to-complex over `axes`
// (forward or inverse), or real-to-complex / complex-to-real with the
// half-spectrum on the last of `axes`. Padding and cropping happen in the ops.
#pragma once

#include "mlxcpp/mx/primitive.h"

namespace mx {

// For real transforms, `real_length` is the length of the real signal along the
// last axis (the half-spectrum has real_length / 2 + 1 entries).
class FFT : public UnaryPrimitive {
 public:
  FFT(Stream s, std::vector<int> axes, bool inverse, bool real, int real_length = 0)
      : UnaryPrimitive(s),
        axes_(std::move(axes)),
        inverse_(inverse),
        real_(real),
        real_length_(real_length) {}

  void eval_cpu(const std::vector<array>& inputs, array& out) override;
  std::vector<array> jvp(const std::vector<array>& primals, const std::vector<array>& tangents,
                         const std::vector<int>& argnums) override;
  // Complex cotangents follow JAX's convention (dL/dRe z - i dL/dIm z), the
  // one Multiply's vjp implies: linear maps pull back by their transpose.
  std::vector<array> vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<array>& outputs) override;
  std::pair<std::vector<array>, std::vector<int>> vmap(const std::vector<array>& inputs,
                                                       const std::vector<int>& axes) override;
  const char* name() const override { return "FFT"; }
  bool is_equivalent(const Primitive& other) const override;

  const std::vector<int>& axes() const { return axes_; }
  bool inverse() const { return inverse_; }
  bool real() const { return real_; }
  int real_length() const { return real_length_; }

 private:
  std::vector<int> axes_;
  bool inverse_, real_;
  int real_length_;
};

}  // namespace mx
