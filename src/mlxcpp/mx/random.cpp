// mx::random: samplers built from RandomBits and elementwise ops, following
// MLX's constructions so that the same key gives the same kind of stream.
#include "mlxcpp/mx/random.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <sstream>

#include "mlxcpp/mx/linalg.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/random.h"

namespace mx::random {

namespace {

// The global key chain used when no key is given: each draw splits the current
// key into (next chain key, key handed out).
class KeySequence {
 public:
  static KeySequence& instance() {
    static KeySequence ks;
    return ks;
  }
  void seed(uint64_t s) {
    std::lock_guard<std::mutex> lk(mu_);
    key_ = key(s);
  }
  array next() {
    std::lock_guard<std::mutex> lk(mu_);
    // Evaluating any draw evaluates the shared split node, which keeps the
    // unevaluated part of the chain one split deep.
    auto [k0, k1] = random::split(key_);
    key_ = k0;
    return k1;
  }

 private:
  KeySequence()
      : key_(key(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count()))) {}
  std::mutex mu_;
  array key_;
};

array get_key(const std::optional<array>& k) { return k ? *k : KeySequence::instance().next(); }

void check_floating(Dtype dtype, const char* op) {
  if (!is_floating_point(dtype)) {
    throw std::invalid_argument(std::string("[") + op +
                                "] needs a real floating-point dtype, got " + dtype_name(dtype));
  }
}

// The largest value below 1 in `dtype`, as a double.
double below_one(Dtype dtype) {
  switch (dtype.val) {
    case Dtype::Val::float16:
      return 1.0 - std::ldexp(1.0, -11);
    case Dtype::Val::bfloat16:
      return 1.0 - std::ldexp(1.0, -8);
    case Dtype::Val::float64:
      return std::nextafter(1.0, 0.0);
    default:
      return static_cast<double>(std::nextafter(1.0f, 0.0f));
  }
}

// Uniform in [0, 1) of `dtype`: 32 random bits over 2^32 - 1, clamped below one.
array unit_uniform(const Shape& shape, Dtype dtype, const array& key, const Stream& st) {
  Dtype work = dtype == float64 ? float64 : float32;
  array u = divide(astype(bits(shape, 4, key, st), work, st),
                   array(static_cast<double>(std::numeric_limits<uint32_t>::max()), work), st);
  u = minimum(u, array(below_one(dtype), work), st);
  return astype(u, dtype, st);
}

int checked_axis(int axis, int ndim, const char* op) {
  int ax = axis < 0 ? axis + ndim : axis;
  if (ax < 0 || ax >= ndim) {
    throw std::invalid_argument(std::string("[") + op + "] axis " + std::to_string(axis) +
                                " is out of bounds for logits with " + std::to_string(ndim) +
                                " dimensions");
  }
  return ax;
}

}  // namespace

array key(uint64_t seed) {
  return array({static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(seed)}, Shape{2}, uint32);
}

void seed(uint64_t s) { KeySequence::instance().seed(s); }

array bits(const Shape& shape, int width, const std::optional<array>& key_in, StreamOrDevice s) {
  array k = get_key(key_in);
  if (k.dtype() != uint32) {
    throw std::invalid_argument("[bits] the key must be uint32, got " + dtype_name(k.dtype()));
  }
  if (k.shape() != Shape{2}) {
    throw std::invalid_argument("[bits] the key must have shape (2,), got " + shape_str(k.shape()));
  }
  Dtype dtype = uint32;
  switch (width) {
    case 4:
      dtype = uint32;
      break;
    case 2:
      dtype = uint16;
      break;
    case 1:
      dtype = uint8;
      break;
    default:
      throw std::invalid_argument("[bits] width must be 1, 2 or 4 bytes, got " +
                                  std::to_string(width));
  }
  mx::detail::shape_size(shape, "bits");
  return array(shape, dtype, std::make_shared<RandomBits>(to_stream(s), shape, width), {k});
}

std::pair<array, array> split(const array& key, StreamOrDevice s) {
  Stream st = to_stream(s);
  array keys = random::split(key, 2, st);
  return {reshape(slice(keys, {0, 0}, {1, 2}, st), {2}, st),
          reshape(slice(keys, {1, 0}, {2, 2}, st), {2}, st)};
}

array split(const array& key, int num, StreamOrDevice s) {
  if (num < 0) {
    throw std::invalid_argument("[split] num must be non-negative, got " + std::to_string(num));
  }
  return bits({num, 2}, 4, key, s);
}

array uniform(const array& low, const array& high, const Shape& shape, Dtype dtype,
              const std::optional<array>& key, StreamOrDevice s) {
  check_floating(dtype, "uniform");
  Stream st = to_stream(s);
  array lo = astype(low, dtype, st);
  array range = subtract(astype(high, dtype, st), lo, st);
  Shape b = broadcast_shapes(shape, range.shape());
  if (b != shape) {
    throw std::invalid_argument("[uniform] cannot generate values of shape " + shape_str(shape) +
                                " from low/high broadcast to " + shape_str(b));
  }
  array u = unit_uniform(shape, dtype, get_key(key), st);
  return add(multiply(range, u, st), lo, st);
}

array uniform(const Shape& shape, Dtype dtype, const std::optional<array>& key, StreamOrDevice s) {
  check_floating(dtype, "uniform");
  return unit_uniform(shape, dtype, get_key(key), to_stream(s));
}

array normal(const Shape& shape, Dtype dtype, const std::optional<array>& loc,
             const std::optional<array>& scale, const std::optional<array>& key, StreamOrDevice s) {
  check_floating(dtype, "normal");
  Stream st = to_stream(s);
  // Inverse-CDF sampling: sqrt(2) * erfinv(U) with U uniform in (-1, 1).
  // The low end is nudged above -1 so erfinv never returns -inf.
  Dtype work = dtype == float64 ? float64 : float32;
  double lo = work == float64 ? std::nextafter(-1.0, 0.0) : std::nextafter(-1.0f, 0.0f);
  array u = uniform(array(lo, work), array(1.0, work), shape, work, key, st);
  array samples = astype(erfinv(u, st), dtype, st);
  array factor(std::sqrt(2.0), dtype);
  if (scale) factor = multiply(factor, astype(*scale, dtype, st), st);
  samples = multiply(factor, samples, st);
  if (loc) samples = add(astype(*loc, dtype, st), samples, st);
  if (samples.shape() != shape) {
    throw std::invalid_argument("[normal] loc and scale must broadcast to the shape " +
                                shape_str(shape) + ", got the shape " + shape_str(samples.shape()));
  }
  return samples;
}

array multivariate_normal(const array& mean, const array& cov, const Shape& shape, Dtype dtype,
                          const std::optional<array>& key, StreamOrDevice s) {
  if (dtype != float32) {
    throw std::invalid_argument("[multivariate_normal] dtype must be float32, got " +
                                dtype_name(dtype));
  }
  if (mean.ndim() < 1 || cov.ndim() < 2) {
    throw std::invalid_argument(
        "[multivariate_normal] mean needs >= 1 and cov >= 2 dimensions; "
        "got mean " +
        shape_str(mean.shape()) + " and cov " + shape_str(cov.shape()));
  }
  int n = mean.shape(-1);
  if (cov.shape(-1) != cov.shape(-2) || cov.shape(-1) != n) {
    throw std::invalid_argument("[multivariate_normal] mean " + shape_str(mean.shape()) +
                                " and cov " + shape_str(cov.shape()) +
                                " must end in (n,) and (n, n)");
  }
  Stream st = to_stream(s);
  Shape out_shape = broadcast_shapes(Shape(cov.shape().begin(), cov.shape().end() - 2),
                                     Shape(mean.shape().begin(), mean.shape().end() - 1));
  out_shape = broadcast_shapes(out_shape, shape);
  out_shape.push_back(n);
  // cov = U S U^T for a symmetric PSD matrix, so U sqrt(S) Vt is a square root.
  auto usv = linalg::svd(astype(cov, float32, st), true, st);
  array root = matmul(multiply(usv[0], expand_dims(sqrt(usv[1], st), -2, st), st), usv[2], st);
  array z = normal(out_shape, float32, std::nullopt, std::nullopt, key, st);
  array scaled = squeeze(matmul(expand_dims(z, -2, st), root, st), -2, st);
  return add(astype(mean, float32, st), scaled, st);
}

array randint(const array& low, const array& high, const Shape& shape, Dtype dtype,
              const std::optional<array>& key, StreamOrDevice s) {
  if (is_inexact(dtype)) {
    throw std::invalid_argument("[randint] needs an integer or bool dtype, got " +
                                dtype_name(dtype));
  }
  Stream st = to_stream(s);
  array lo = astype(low, int64, st);
  array range = subtract(astype(high, int64, st), lo, st);
  Shape b = broadcast_shapes(shape, range.shape());
  if (b != shape) {
    throw std::invalid_argument("[randint] cannot generate values of shape " + shape_str(shape) +
                                " from low/high broadcast to " + shape_str(b));
  }
  // Reducing raw bits modulo the range in unsigned 64-bit arithmetic is exact
  // for any bounds (a float draw loses integers beyond 2^24). The range's bit
  // pattern is its true unsigned width even when the int64 subtraction wraps.
  Dtype cmp = is_unsigned(dtype) && dtype != bool_ ? uint64 : int64;
  array empty = less_equal(astype(high, cmp, st), astype(low, cmp, st), st);
  array safe_range = where(empty, array(uint64_t{1}, uint64), astype(range, uint64, st), st);
  array k = get_key(key);
  array raw = astype(bits(shape, 4, k, st), uint64, st);
  if (dtype == int64 || dtype == uint64) {
    // 32 bits cannot cover a 64-bit range: combine two draws from split keys.
    auto [k1, k2] = random::split(k, st);
    array lo_bits = astype(bits(shape, 4, k1, st), uint64, st);
    array hi_bits = astype(bits(shape, 4, k2, st), uint64, st);
    raw = bitwise_or(left_shift(hi_bits, array(uint64_t{32}, uint64), st), lo_bits, st);
  }
  array offset = remainder(raw, safe_range, st);
  return astype(add(astype(lo, uint64, st), offset, st), dtype, st);
}

array bernoulli(const array& p, const Shape& shape, const std::optional<array>& key,
                StreamOrDevice s) {
  if (!is_floating_point(p.dtype())) {
    throw std::invalid_argument("[bernoulli] p must be a floating-point array, got " +
                                dtype_name(p.dtype()));
  }
  Shape b = broadcast_shapes(p.shape(), shape);
  if (b != shape) {
    throw std::invalid_argument("[bernoulli] p of shape " + shape_str(p.shape()) +
                                " does not broadcast to the shape " + shape_str(shape));
  }
  Stream st = to_stream(s);
  // Scale p to just above 2^32 - 1 so that p >= 1 is always true and p <= 0 never.
  double upper = std::nextafter(static_cast<double>(std::numeric_limits<uint32_t>::max()),
                                std::numeric_limits<double>::max());
  array scaled = multiply(astype(p, float64, st), array(upper, float64), st);
  return less(astype(bits(shape, 4, key, st), float64, st), scaled, st);
}

array bernoulli(const array& p, const std::optional<array>& key, StreamOrDevice s) {
  return bernoulli(p, p.shape(), key, s);
}

array bernoulli(const std::optional<array>& key, StreamOrDevice s) {
  return bernoulli(array(0.5f), key, s);
}

array truncated_normal(const array& lower, const array& upper, const Shape& shape, Dtype dtype,
                       const std::optional<array>& key, StreamOrDevice s) {
  check_floating(dtype, "truncated_normal");
  Stream st = to_stream(s);
  // Inverse CDF restricted to [Phi(lower), Phi(upper)], in erf's scale.
  array sqrt2(std::sqrt(2.0), dtype);
  array lo = astype(lower, dtype, st);
  array hi = astype(upper, dtype, st);
  array a = erf(divide(lo, sqrt2, st), st);
  array b = erf(divide(hi, sqrt2, st), st);
  array u = uniform(a, b, shape, dtype, key, st);
  array out = multiply(sqrt2, erfinv(u, st), st);
  // Rounding in erf/erfinv can step just outside the bounds.
  return maximum(minimum(hi, out, st), lo, st);
}

array truncated_normal(const array& lower, const array& upper, Dtype dtype,
                       const std::optional<array>& key, StreamOrDevice s) {
  return truncated_normal(lower, upper, broadcast_shapes(lower.shape(), upper.shape()), dtype, key,
                          s);
}

array gumbel(const Shape& shape, Dtype dtype, const std::optional<array>& key, StreamOrDevice s) {
  check_floating(dtype, "gumbel");
  Stream st = to_stream(s);
  return negative(log(negative(log(uniform(shape, dtype, key, st), st), st), st), st);
}

namespace {

array categorical_impl(const array& logits, int axis, const Shape& shape,
                       const std::optional<array>& key, const Stream& st) {
  Shape gshape = shape;
  int offset = axis + static_cast<int>(shape.size()) - static_cast<int>(logits.ndim()) + 1;
  gshape.insert(gshape.begin() + offset, logits.shape(axis));
  array g = gumbel(gshape, float32, key, st);
  return argmax(add(g, logits, st), offset, false, st);
}

}  // namespace

array categorical(const array& logits, int axis, const Shape& shape,
                  const std::optional<array>& key, StreamOrDevice s) {
  axis = checked_axis(axis, static_cast<int>(logits.ndim()), "categorical");
  Shape reduced = logits.shape();
  reduced.erase(reduced.begin() + axis);
  if (shape.size() < reduced.size() || broadcast_shapes(shape, reduced) != shape) {
    throw std::invalid_argument("[categorical] shape " + shape_str(shape) +
                                " does not broadcast with the logits' shape without axis " +
                                std::to_string(axis) + " " + shape_str(reduced));
  }
  return categorical_impl(logits, axis, shape, key, to_stream(s));
}

array categorical(const array& logits, int axis, int num_samples, const std::optional<array>& key,
                  StreamOrDevice s) {
  axis = checked_axis(axis, static_cast<int>(logits.ndim()), "categorical");
  if (num_samples < 0) {
    throw std::invalid_argument("[categorical] num_samples must be non-negative, got " +
                                std::to_string(num_samples));
  }
  Stream st = to_stream(s);
  array l = expand_dims(logits, -1, st);
  Shape shape = l.shape();
  shape.erase(shape.begin() + axis);
  shape.back() = num_samples;
  return categorical_impl(l, axis, shape, key, st);
}

array categorical(const array& logits, int axis, const std::optional<array>& key,
                  StreamOrDevice s) {
  axis = checked_axis(axis, static_cast<int>(logits.ndim()), "categorical");
  Shape shape = logits.shape();
  shape.erase(shape.begin() + axis);
  return categorical_impl(logits, axis, shape, key, to_stream(s));
}

array laplace(const Shape& shape, Dtype dtype, float loc, float scale,
              const std::optional<array>& key, StreamOrDevice s) {
  check_floating(dtype, "laplace");
  Stream st = to_stream(s);
  Dtype work = dtype == float64 ? float64 : float32;
  double lo = work == float64 ? std::nextafter(-1.0, 0.0) : std::nextafter(-1.0f, 0.0f);
  array u = uniform(array(lo, work), array(1.0, work), shape, work, key, st);
  // Inverse CDF of the Laplace distribution: -sign(u) log(1 - |u|).
  array x = negative(multiply(sign(u, st), log1p(negative(abs(u, st), st), st), st), st);
  x = astype(x, dtype, st);
  if (scale != 1.0f) x = multiply(array(scale, dtype), x, st);
  if (loc != 0.0f) x = add(array(loc, dtype), x, st);
  return x;
}

array permutation(const array& x, int axis, const std::optional<array>& key, StreamOrDevice s) {
  axis = normalize_axis(axis, static_cast<int>(x.ndim()), "permutation");
  return take(x, permutation(x.shape(axis), key, s), axis, s);
}

array permutation(int n, const std::optional<array>& key, StreamOrDevice s) {
  if (n < 0) {
    throw std::invalid_argument("[permutation] n must be non-negative, got " + std::to_string(n));
  }
  // Sorting random bits gives a uniform permutation up to (rare) ties.
  return argsort(bits({n}, key, s), s);
}

}  // namespace mx::random

namespace mx {

std::vector<array> RandomBits::jvp(const std::vector<array>&, const std::vector<array>&,
                                   const std::vector<int>&) {
  throw std::invalid_argument("[RandomBits] random bits are not differentiable");
}

std::vector<array> RandomBits::vjp(const std::vector<array>&, const std::vector<array>&,
                                   const std::vector<int>&, const std::vector<array>&) {
  throw std::invalid_argument("[RandomBits] random bits are not differentiable");
}

std::pair<std::vector<array>, std::vector<int>> RandomBits::vmap(const std::vector<array>& inputs,
                                                                 const std::vector<int>& axes) {
  // Batched keys are the kernel's native layout: keys (B, ..., 2) give
  // outputs (B, ..., shape).
  array keys = inputs[0];
  if (axes[0] < 0) return {{keys}, {-1}};
  // With the mapped axis in front, the key words are the last axis again.
  keys = moveaxis(keys, axes[0], 0, stream());
  Shape out_shape(keys.shape().begin(), keys.shape().end() - 1);
  out_shape.insert(out_shape.end(), shape_.begin(), shape_.end());
  Dtype d = width_ == 4 ? uint32 : (width_ == 2 ? uint16 : uint8);
  array out(out_shape, d, std::make_shared<RandomBits>(stream(), shape_, width_), {keys});
  return {{out}, {0}};
}

bool RandomBits::is_equivalent(const Primitive& other) const {
  auto* o = dynamic_cast<const RandomBits*>(&other);
  return o && o->shape_ == shape_ && o->width_ == width_;
}

std::vector<Shape> RandomBits::output_shapes(const std::vector<array>& inputs) {
  Shape out(inputs[0].shape().begin(), inputs[0].shape().end() - 1);
  out.insert(out.end(), shape_.begin(), shape_.end());
  return {out};
}

}  // namespace mx
