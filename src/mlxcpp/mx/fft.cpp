// mx::fft ops: axis and length checks, zero-padding or cropping to the
// requested lengths, then one FFT primitive; plus the primitive's rules.
#include "mlxcpp/mx/fft.h"

#include <numeric>
#include <set>
#include <sstream>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/fft.h"

namespace mx::fft {

namespace {

// Crops or zero-pads each axis of `a` to `target`.
array fit_to(const array& a, const Shape& target, const Stream& st) {
  if (a.shape() == target) return a;
  Shape crop = a.shape();
  bool grow = false;
  for (size_t i = 0; i < crop.size(); ++i) {
    grow |= target[i] > crop[i];
    crop[i] = std::min(crop[i], target[i]);
  }
  array x = crop == a.shape() ? a : slice(a, Shape(a.ndim(), 0), crop, st);
  if (!grow) return x;
  return slice_update(zeros(target, a.dtype(), st), x, Shape(a.ndim(), 0), crop, st);
}

array fft_impl(const array& a, Shape n, std::vector<int> axes, bool inverse, bool real,
               const char* op, StreamOrDevice s) {
  Stream st = to_stream(s);
  int ndim = static_cast<int>(a.ndim());
  if (axes.empty()) {
    if (real) {
      throw std::invalid_argument(std::string("[") + op + "] needs at least one axis");
    }
    return is_complex(a.dtype()) ? a : astype(a, complex64, st);
  }
  if (n.size() != axes.size()) {
    throw std::invalid_argument(std::string("[") + op + "] got " + std::to_string(n.size()) +
                                " lengths for " + std::to_string(axes.size()) + " axes");
  }
  std::set<int> seen;
  for (int& ax : axes) {
    ax = normalize_axis(ax, ndim, op);
    if (!seen.insert(ax).second) {
      throw std::invalid_argument(std::string("[") + op + "] repeated axis " + std::to_string(ax) +
                                  " for an array of shape " + shape_str(a.shape()));
    }
  }
  for (size_t i = 0; i < n.size(); ++i) {
    if (n[i] <= 0) {
      throw std::invalid_argument(std::string("[") + op + "] length " + std::to_string(n[i]) +
                                  " requested for axis " + std::to_string(axes[i]) +
                                  " must be positive");
    }
  }
  Dtype in_dtype = complex64;
  if (real && !inverse) {
    if (is_complex(a.dtype())) {
      throw std::invalid_argument(std::string("[") + op + "] needs a real input, got complex64");
    }
    in_dtype = float32;
  }
  Shape in_shape = a.shape(), out_shape = a.shape();
  for (size_t i = 0; i < axes.size(); ++i) in_shape[axes[i]] = out_shape[axes[i]] = n[i];
  int last = axes.back();
  if (real && inverse) in_shape[last] = n.back() / 2 + 1;
  if (real && !inverse) out_shape[last] = n.back() / 2 + 1;
  array x = fit_to(astype(a, in_dtype, st), in_shape, st);
  Dtype out_dtype = real && inverse ? float32 : complex64;
  int real_length = real ? n.back() : 0;
  return array(out_shape, out_dtype, std::make_shared<FFT>(st, axes, inverse, real, real_length),
               {x});
}

Shape lengths_of(const array& a, const std::vector<int>& axes, const char* op) {
  Shape n;
  for (int ax : axes) n.push_back(a.shape(normalize_axis(ax, static_cast<int>(a.ndim()), op)));
  return n;
}

std::vector<int> all_axes(const array& a) {
  std::vector<int> axes(a.ndim());
  std::iota(axes.begin(), axes.end(), 0);
  return axes;
}

// irfft's default output length along the last axis is 2 * (m - 1).
Shape irfft_lengths(const array& a, const std::vector<int>& axes) {
  Shape n = lengths_of(a, axes, "irfftn");
  if (!n.empty()) n.back() = 2 * (n.back() - 1);
  return n;
}

}  // namespace

array fftn(const array& a, const Shape& n, const std::vector<int>& axes, StreamOrDevice s) {
  return fft_impl(a, n, axes, false, false, "fftn", s);
}
array fftn(const array& a, const std::vector<int>& axes, StreamOrDevice s) {
  return fft_impl(a, lengths_of(a, axes, "fftn"), axes, false, false, "fftn", s);
}
array fftn(const array& a, StreamOrDevice s) { return fftn(a, all_axes(a), s); }

array ifftn(const array& a, const Shape& n, const std::vector<int>& axes, StreamOrDevice s) {
  return fft_impl(a, n, axes, true, false, "ifftn", s);
}
array ifftn(const array& a, const std::vector<int>& axes, StreamOrDevice s) {
  return fft_impl(a, lengths_of(a, axes, "ifftn"), axes, true, false, "ifftn", s);
}
array ifftn(const array& a, StreamOrDevice s) { return ifftn(a, all_axes(a), s); }

array rfftn(const array& a, const Shape& n, const std::vector<int>& axes, StreamOrDevice s) {
  return fft_impl(a, n, axes, false, true, "rfftn", s);
}
array rfftn(const array& a, const std::vector<int>& axes, StreamOrDevice s) {
  return fft_impl(a, lengths_of(a, axes, "rfftn"), axes, false, true, "rfftn", s);
}
array rfftn(const array& a, StreamOrDevice s) { return rfftn(a, all_axes(a), s); }

array irfftn(const array& a, const Shape& n, const std::vector<int>& axes, StreamOrDevice s) {
  return fft_impl(a, n, axes, true, true, "irfftn", s);
}
array irfftn(const array& a, const std::vector<int>& axes, StreamOrDevice s) {
  return fft_impl(a, irfft_lengths(a, axes), axes, true, true, "irfftn", s);
}
array irfftn(const array& a, StreamOrDevice s) { return irfftn(a, all_axes(a), s); }

namespace {

array shift(const array& a, std::vector<int> axes, bool inverse, StreamOrDevice s) {
  Shape shifts;
  for (int& ax : axes) {
    ax = normalize_axis(ax, static_cast<int>(a.ndim()), inverse ? "ifftshift" : "fftshift");
    int n = a.shape(ax);
    shifts.push_back(inverse ? -(n / 2) : n / 2);
  }
  if (axes.empty()) return a;
  return roll(a, shifts, axes, s);
}

}  // namespace

array fftshift(const array& a, StreamOrDevice s) { return shift(a, all_axes(a), false, s); }
array fftshift(const array& a, const std::vector<int>& axes, StreamOrDevice s) {
  return shift(a, axes, false, s);
}
array ifftshift(const array& a, StreamOrDevice s) { return shift(a, all_axes(a), true, s); }
array ifftshift(const array& a, const std::vector<int>& axes, StreamOrDevice s) {
  return shift(a, axes, true, s);
}

}  // namespace mx::fft

namespace mx {

namespace {

// An FFT node like `p` (with `axes` and `real_length`) applied to x.
array apply_fft(const array& x, const std::vector<int>& axes, bool inverse, bool real,
                int real_length, const Stream& st) {
  Shape out_shape = x.shape();
  int last = axes.back();
  Dtype in_dtype = complex64, out_dtype = complex64;
  if (real && inverse) {
    out_shape[last] = real_length;
    out_dtype = float32;
  } else if (real) {
    out_shape[last] = real_length / 2 + 1;
    in_dtype = float32;
  }
  return array(out_shape, out_dtype, std::make_shared<FFT>(st, axes, inverse, real, real_length),
               {astype(x, in_dtype, st)});
}

}  // namespace

std::vector<array> FFT::jvp(const std::vector<array>&, const std::vector<array>& tangents,
                            const std::vector<int>&) {
  // Every variant is linear over the reals: tangents map through the same transform.
  return {apply_fft(tangents[0], axes_, inverse_, real_, real_length_, stream())};
}

std::vector<array> FFT::vjp(const std::vector<array>& primals, const std::vector<array>& cotangents,
                            const std::vector<int>&, const std::vector<array>& outputs) {
  const Stream& st = stream();
  const array& g = cotangents[0];
  if (!real_) {
    // The DFT matrix is symmetric, so each transform is its own transpose.
    return {apply_fft(g, axes_, inverse_, false, 0, st)};
  }
  int last = axes_.back();
  if (!inverse_) {
    // rfft = (keep n/2 + 1 bins) o fft o (real -> complex): transpose each step.
    array padded = fft::fftn(
        g,
        [&] {
          Shape n;
          for (int ax : axes_) n.push_back(primals[0].shape(ax));
          return n;
        }(),
        axes_, st);
    return {mx::real(padded, st)};
  }
  // irfft reads the half-spectrum X: y = (1/N) sum_k w_k Re(X_k e^{+i theta}) with
  // w = 1 for the DC and Nyquist bins and 2 otherwise. Its pullback is
  // conj(w * rfft(g)) / N.
  const array& out = outputs[0];
  double count = 1;
  for (int ax : axes_) count *= out.shape(ax);
  int h = primals[0].shape(last);
  std::vector<float> w(h, 2.0f);
  w[0] = 1.0f;
  if (real_length_ % 2 == 0) w[h - 1] = 1.0f;
  Shape wshape(out.ndim(), 1);
  wshape[last] = h;
  array weights(w, wshape, float32);
  array spec = apply_fft(g, axes_, false, true, real_length_, st);
  return {conjugate(multiply(spec, multiply(weights, array(1.0 / count, float32), st), st), st)};
}

std::pair<std::vector<array>, std::vector<int>> FFT::vmap(const std::vector<array>& inputs,
                                                          const std::vector<int>& axes) {
  if (axes[0] < 0) {
    return {{apply_fft(inputs[0], axes_, inverse_, real_, real_length_, stream())}, {-1}};
  }
  array x = moveaxis(inputs[0], axes[0], 0, stream());
  std::vector<int> shifted = axes_;
  for (int& ax : shifted) ++ax;
  return {{apply_fft(x, shifted, inverse_, real_, real_length_, stream())}, {0}};
}

bool FFT::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const FFT*>(&other);
  return o && o->axes_ == axes_ && o->inverse_ == inverse_ && o->real_ == real_ &&
         o->real_length_ == real_length_;
}

}  // namespace mx
