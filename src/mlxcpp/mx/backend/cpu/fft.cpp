// CPU kernel of FFT, computed in double precision: iterative radix-2
// Cooley-Tukey for power-of-two lengths and Bluestein's chirp-z algorithm
// (a power-of-two convolution) for every other length.
#include <cmath>
#include <complex>
#include <memory>
#include <numbers>

#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/primitives/fft.h"
#include "mlxcpp/mx/scheduler.h"

namespace mx {

namespace {

using cd = std::complex<double>;

bool is_pow2(size_t n) { return n > 0 && (n & (n - 1)) == 0; }

// An unnormalized 1-D transform of length n: X_k = sum_j x_j e^{sign 2 pi i jk / n},
// sign = -1 forward and +1 inverse.
class Plan {
 public:
  Plan(size_t n, bool inverse) : n_(n), inverse_(inverse) {
    double sign = inverse ? 1.0 : -1.0;
    if (is_pow2(n)) {
      twiddle_.resize(n / 2);
      for (size_t k = 0; k < n / 2; ++k) {
        twiddle_[k] = std::polar(1.0, sign * 2.0 * std::numbers::pi * k / n);
      }
      bitrev_.resize(n);
      int bits = 0;
      while ((size_t{1} << bits) < n) ++bits;
      for (size_t i = 0; i < n; ++i) {
        size_t r = 0;
        for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
        bitrev_[i] = r;
      }
      return;
    }
    // Bluestein: jk = (j^2 + k^2 - (k - j)^2) / 2 turns the transform into a
    // convolution with the chirp c_t = e^{sign pi i t^2 / n}, done at length m.
    m_ = 1;
    while (m_ < 2 * n - 1) m_ <<= 1;
    fwd_ = std::make_unique<Plan>(m_, false);
    inv_ = std::make_unique<Plan>(m_, true);
    chirp_.resize(n);
    for (size_t t = 0; t < n; ++t) {
      // t^2 mod 2n keeps the angle small, and exact, for large t (shapes are
      // int32, so t^2 < 2^62 fits).
      uint64_t t2 = (static_cast<uint64_t>(t) * t) % (2 * static_cast<uint64_t>(n));
      chirp_[t] = std::polar(1.0, sign * std::numbers::pi * static_cast<double>(t2) / n);
    }
    kernel_.assign(m_, cd(0));
    kernel_[0] = std::conj(chirp_[0]);
    for (size_t t = 1; t < n; ++t) kernel_[t] = kernel_[m_ - t] = std::conj(chirp_[t]);
    std::vector<cd> scratch;
    fwd_->run(kernel_.data(), scratch);
  }

  size_t size() const { return n_; }

  // Transforms x (n values) in place; `scratch` is per-thread workspace.
  void run(cd* x, std::vector<cd>& scratch) const {
    if (n_ <= 1) return;
    if (!fwd_) {
      radix2(x);
      return;
    }
    scratch.assign(m_, cd(0));
    for (size_t j = 0; j < n_; ++j) scratch[j] = x[j] * chirp_[j];
    std::vector<cd> unused;
    fwd_->run(scratch.data(), unused);
    for (size_t i = 0; i < m_; ++i) scratch[i] *= kernel_[i];
    inv_->run(scratch.data(), unused);
    double scale = 1.0 / static_cast<double>(m_);
    for (size_t k = 0; k < n_; ++k) x[k] = scratch[k] * chirp_[k] * scale;
  }

 private:
  void radix2(cd* x) const {
    for (size_t i = 0; i < n_; ++i) {
      if (i < bitrev_[i]) std::swap(x[i], x[bitrev_[i]]);
    }
    for (size_t len = 2; len <= n_; len <<= 1) {
      size_t half = len / 2, step = n_ / len;
      for (size_t i = 0; i < n_; i += len) {
        for (size_t j = 0; j < half; ++j) {
          cd v = x[i + j + half] * twiddle_[j * step];
          x[i + j + half] = x[i + j] - v;
          x[i + j] += v;
        }
      }
    }
  }

  size_t n_;
  bool inverse_;
  std::vector<cd> twiddle_;
  std::vector<size_t> bitrev_;
  size_t m_ = 0;
  std::unique_ptr<Plan> fwd_, inv_;
  std::vector<cd> chirp_, kernel_;
};

// Transforms every line of `data` (row-major `shape`) along `axis`; inverse
// transforms are scaled by 1/n (NumPy's "backward" normalization).
void transform_axis(cd* data, const Shape& shape, int axis, bool inverse) {
  size_t n = shape[axis];
  if (n <= 1) return;
  size_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= shape[d];
  for (size_t d = axis + 1; d < shape.size(); ++d) inner *= shape[d];
  size_t lines = outer * inner;
  if (lines == 0) return;
  Plan plan(n, inverse);
  double scale = inverse ? 1.0 / static_cast<double>(n) : 1.0;
  size_t grain = std::max<size_t>(1, (size_t{1} << 14) / n);
  scheduler::parallel_for(lines, grain, [&](size_t b, size_t e) {
    std::vector<cd> line(n), scratch;
    for (size_t l = b; l < e; ++l) {
      size_t o = l / inner, i = l % inner;
      cd* base = data + o * n * inner + i;
      for (size_t k = 0; k < n; ++k) line[k] = base[k * inner];
      plan.run(line.data(), scratch);
      for (size_t k = 0; k < n; ++k) base[k * inner] = line[k] * scale;
    }
  });
}

// Row-major copy of `a` (complex64 or float32) as complex<double>.
std::vector<cd> load(const array& a) {
  array c = cpu::ensure_row_contiguous(a);
  std::vector<cd> out(c.size());
  if (c.dtype() == complex64) {
    const complex64_t* p = c.data<complex64_t>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = cd(p[i].real(), p[i].imag());
  } else {
    const float* p = c.data<float>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = cd(p[i], 0.0);
  }
  return out;
}

size_t row_major_index(const std::vector<int>& idx, const Shape& shape) {
  size_t r = 0;
  for (size_t d = 0; d < shape.size(); ++d) r = r * shape[d] + idx[d];
  return r;
}

// Calls f(index, flat row-major position) for every index of `shape`.
template <typename F>
void for_each_index(const Shape& shape, F&& f) {
  size_t total = 1;
  for (int s : shape) total *= s;
  std::vector<int> idx(shape.size(), 0);
  for (size_t i = 0; i < total; ++i) {
    f(idx, i);
    for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace

void FFT::eval_cpu(const std::vector<array>& inputs, array& out) {
  const array& in = inputs[0];
  cpu::allocate_row_contiguous(out);
  if (out.size() == 0) return;
  std::vector<cd> work = load(in);
  int last = axes_.back();

  if (real_ && inverse_) {
    // Inverse over the other axes, then complete the Hermitian half-spectrum
    // along the last axis and invert it to real values.
    for (size_t i = 0; i + 1 < axes_.size(); ++i) {
      transform_axis(work.data(), in.shape(), axes_[i], true);
    }
    Shape full = out.shape();
    std::vector<cd> spec(out.size());
    int n = full[last], h = in.shape(last);
    for_each_index(full, [&](const std::vector<int>& idx, size_t flat) {
      int k = idx[last];
      if (k < h) {
        spec[flat] = work[row_major_index(idx, in.shape())];
      } else {
        // Each line is now the half-spectrum of a real 1-D signal.
        std::vector<int> mirror = idx;
        mirror[last] = n - k;
        spec[flat] = std::conj(work[row_major_index(mirror, in.shape())]);
      }
    });
    // The DC and Nyquist bins of a real signal are real: drop their imaginary parts
    // like NumPy does, by taking the real part of the result.
    transform_axis(spec.data(), full, last, true);
    float* dst = out.data<float>();
    for (size_t i = 0; i < spec.size(); ++i) dst[i] = static_cast<float>(spec[i].real());
    return;
  }

  for (int ax : axes_) transform_axis(work.data(), in.shape(), ax, inverse_);
  complex64_t* dst = out.data<complex64_t>();
  if (!real_) {
    for (size_t i = 0; i < work.size(); ++i) dst[i] = complex64_t(work[i].real(), work[i].imag());
    return;
  }
  // Real forward: keep the first n / 2 + 1 frequencies of the last axis.
  for_each_index(out.shape(), [&](const std::vector<int>& idx, size_t flat) {
    const cd& v = work[row_major_index(idx, in.shape())];
    dst[flat] = complex64_t(v.real(), v.imag());
  });
}

}  // namespace mx
