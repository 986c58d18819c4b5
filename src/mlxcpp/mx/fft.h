// Discrete Fourier transforms (MLX's mx::fft API). Complex results are
// complex64; real inputs of any dtype are converted. `n` pads with zeros or
// crops each transformed axis before transforming; irfft's default output
// length along the last axis is 2 * (m - 1).
#pragma once

#include <vector>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/device.h"

namespace mx::fft {

array fftn(const array& a, const Shape& n, const std::vector<int>& axes, StreamOrDevice s = {});
array fftn(const array& a, const std::vector<int>& axes, StreamOrDevice s = {});
array fftn(const array& a, StreamOrDevice s = {});

array ifftn(const array& a, const Shape& n, const std::vector<int>& axes, StreamOrDevice s = {});
array ifftn(const array& a, const std::vector<int>& axes, StreamOrDevice s = {});
array ifftn(const array& a, StreamOrDevice s = {});

inline array fft(const array& a, int n, int axis, StreamOrDevice s = {}) {
  return fftn(a, {n}, {axis}, s);
}
inline array fft(const array& a, int axis = -1, StreamOrDevice s = {}) {
  return fftn(a, std::vector<int>{axis}, s);
}
inline array ifft(const array& a, int n, int axis, StreamOrDevice s = {}) {
  return ifftn(a, {n}, {axis}, s);
}
inline array ifft(const array& a, int axis = -1, StreamOrDevice s = {}) {
  return ifftn(a, std::vector<int>{axis}, s);
}

inline array fft2(const array& a, const Shape& n, const std::vector<int>& axes,
                  StreamOrDevice s = {}) {
  return fftn(a, n, axes, s);
}
inline array fft2(const array& a, const std::vector<int>& axes = {-2, -1}, StreamOrDevice s = {}) {
  return fftn(a, axes, s);
}
inline array ifft2(const array& a, const Shape& n, const std::vector<int>& axes,
                   StreamOrDevice s = {}) {
  return ifftn(a, n, axes, s);
}
inline array ifft2(const array& a, const std::vector<int>& axes = {-2, -1}, StreamOrDevice s = {}) {
  return ifftn(a, axes, s);
}

// Transforms of real input: the last axis keeps n / 2 + 1 frequencies.
array rfftn(const array& a, const Shape& n, const std::vector<int>& axes, StreamOrDevice s = {});
array rfftn(const array& a, const std::vector<int>& axes, StreamOrDevice s = {});
array rfftn(const array& a, StreamOrDevice s = {});

// Inverse of rfftn: real float32 output; `n` gives the output lengths.
array irfftn(const array& a, const Shape& n, const std::vector<int>& axes, StreamOrDevice s = {});
array irfftn(const array& a, const std::vector<int>& axes, StreamOrDevice s = {});
array irfftn(const array& a, StreamOrDevice s = {});

inline array rfft(const array& a, int n, int axis, StreamOrDevice s = {}) {
  return rfftn(a, {n}, {axis}, s);
}
inline array rfft(const array& a, int axis = -1, StreamOrDevice s = {}) {
  return rfftn(a, std::vector<int>{axis}, s);
}
inline array irfft(const array& a, int n, int axis, StreamOrDevice s = {}) {
  return irfftn(a, {n}, {axis}, s);
}
inline array irfft(const array& a, int axis = -1, StreamOrDevice s = {}) {
  return irfftn(a, std::vector<int>{axis}, s);
}

inline array rfft2(const array& a, const Shape& n, const std::vector<int>& axes,
                   StreamOrDevice s = {}) {
  return rfftn(a, n, axes, s);
}
inline array rfft2(const array& a, const std::vector<int>& axes = {-2, -1}, StreamOrDevice s = {}) {
  return rfftn(a, axes, s);
}
inline array irfft2(const array& a, const Shape& n, const std::vector<int>& axes,
                    StreamOrDevice s = {}) {
  return irfftn(a, n, axes, s);
}
inline array irfft2(const array& a, const std::vector<int>& axes = {-2, -1},
                    StreamOrDevice s = {}) {
  return irfftn(a, axes, s);
}

// Moves the zero frequency to the centre (and back) along `axes` (all by default).
array fftshift(const array& a, StreamOrDevice s = {});
array fftshift(const array& a, const std::vector<int>& axes, StreamOrDevice s = {});
array ifftshift(const array& a, StreamOrDevice s = {});
array ifftshift(const array& a, const std::vector<int>& axes, StreamOrDevice s = {});

}  // namespace mx::fft
