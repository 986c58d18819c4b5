// Random sampling with explicit keys (MLX's mx::random API). A key is a uint32
// array of shape (2,); the same key and shape always give the same numbers.
// Without a key, each call draws a fresh key from a global sequence that
// seed() resets. Bits come from the counter-based Threefry-2x32 generator, so
// keys split into independent streams without shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/device.h"

namespace mx::random {

// A key (uint32, shape (2,)) holding the high and low 32 bits of `seed`.
array key(uint64_t seed);
// Resets the global key sequence used when no key is passed.
void seed(uint64_t seed);

// Random bits of `width` bytes per element (1, 2 or 4 → uint8/16/32).
array bits(const Shape& shape, int width, const std::optional<array>& key = std::nullopt,
           StreamOrDevice s = {});
inline array bits(const Shape& shape, const std::optional<array>& key = std::nullopt,
                  StreamOrDevice s = {}) {
  return bits(shape, 4, key, s);
}

// Two new keys from one.
std::pair<array, array> split(const array& key, StreamOrDevice s = {});
// `num` new keys stacked into shape (num, 2).
array split(const array& key, int num, StreamOrDevice s = {});

// Uniform samples in [low, high); low and high broadcast to `shape`.
array uniform(const array& low, const array& high, const Shape& shape, Dtype dtype = float32,
              const std::optional<array>& key = std::nullopt, StreamOrDevice s = {});
template <typename T, typename U>
array uniform(T low, U high, const Shape& shape, Dtype dtype = float32,
              const std::optional<array>& key = std::nullopt, StreamOrDevice s = {}) {
  return uniform(array(low), array(high), shape, dtype, key, s);
}
array uniform(const Shape& shape, Dtype dtype, const std::optional<array>& key = std::nullopt,
              StreamOrDevice s = {});
inline array uniform(const Shape& shape, const std::optional<array>& key = std::nullopt,
                     StreamOrDevice s = {}) {
  return uniform(shape, float32, key, s);
}

// Normal samples with mean `loc` and standard deviation `scale`.
array normal(const Shape& shape, Dtype dtype, const std::optional<array>& loc,
             const std::optional<array>& scale, const std::optional<array>& key,
             StreamOrDevice s = {});
inline array normal(const Shape& shape, Dtype dtype, float loc, float scale,
                    const std::optional<array>& key = std::nullopt, StreamOrDevice s = {}) {
  auto l = loc == 0 ? std::nullopt : std::make_optional(array(loc, dtype));
  auto sc = scale == 1 ? std::nullopt : std::make_optional(array(scale, dtype));
  return normal(shape, dtype, l, sc, key, s);
}
inline array normal(const Shape& shape, float loc, float scale,
                    const std::optional<array>& key = std::nullopt, StreamOrDevice s = {}) {
  return normal(shape, float32, loc, scale, key, s);
}
inline array normal(const Shape& shape, Dtype dtype, const std::optional<array>& key = std::nullopt,
                    StreamOrDevice s = {}) {
  return normal(shape, dtype, std::nullopt, std::nullopt, key, s);
}
inline array normal(const Shape& shape, const std::optional<array>& key = std::nullopt,
                    StreamOrDevice s = {}) {
  return normal(shape, float32, std::nullopt, std::nullopt, key, s);
}

// Samples of N(mean, cov) (float32); the output shape is
// broadcast(shape, mean.shape[:-1], cov.shape[:-2]) + [n].
array multivariate_normal(const array& mean, const array& cov, const Shape& shape, Dtype dtype,
                          const std::optional<array>& key = std::nullopt, StreamOrDevice s = {});

// Integers uniform in [low, high) (all `low` where high <= low).
array randint(const array& low, const array& high, const Shape& shape, Dtype dtype = int32,
              const std::optional<array>& key = std::nullopt, StreamOrDevice s = {});
template <typename T, typename U>
array randint(T low, U high, const Shape& shape, Dtype dtype = int32,
              const std::optional<array>& key = std::nullopt, StreamOrDevice s = {}) {
  return randint(array(low), array(high), shape, dtype, key, s);
}

// Booleans that are true with probability p (p broadcasts to `shape`).
array bernoulli(const array& p, const Shape& shape, const std::optional<array>& key = std::nullopt,
                StreamOrDevice s = {});
array bernoulli(const array& p, const std::optional<array>& key = std::nullopt,
                StreamOrDevice s = {});
// Scalar probabilities (an array p takes the overloads above).
template <typename T>
requires std::is_arithmetic_v<T> array bernoulli(T p,
                                                 const std::optional<array>& key = std::nullopt,
                                                 StreamOrDevice s = {}) {
  return bernoulli(array(p), key, s);
}
template <typename T>
requires std::is_arithmetic_v<T> array bernoulli(T p, const Shape& shape,
                                                 const std::optional<array>& key = std::nullopt,
                                                 StreamOrDevice s = {}) {
  return bernoulli(array(p), shape, key, s);
}
array bernoulli(const std::optional<array>& key = std::nullopt, StreamOrDevice s = {});

// Standard normal samples restricted to [lower, upper].
array truncated_normal(const array& lower, const array& upper, const Shape& shape,
                       Dtype dtype = float32, const std::optional<array>& key = std::nullopt,
                       StreamOrDevice s = {});
array truncated_normal(const array& lower, const array& upper, Dtype dtype = float32,
                       const std::optional<array>& key = std::nullopt, StreamOrDevice s = {});

// Standard Gumbel samples: -log(-log(U)).
array gumbel(const Shape& shape, Dtype dtype = float32,
             const std::optional<array>& key = std::nullopt, StreamOrDevice s = {});

// Indices drawn from softmax(logits) along `axis` (Gumbel-max); `shape` must
// broadcast with logits' shape without `axis`.
array categorical(const array& logits, int axis, const Shape& shape,
                  const std::optional<array>& key = std::nullopt, StreamOrDevice s = {});
// `num_samples` draws per distribution, stacked on a new last axis.
array categorical(const array& logits, int axis, int num_samples,
                  const std::optional<array>& key = std::nullopt, StreamOrDevice s = {});
array categorical(const array& logits, int axis = -1,
                  const std::optional<array>& key = std::nullopt, StreamOrDevice s = {});

// Laplace samples with location `loc` and scale `scale`.
array laplace(const Shape& shape, Dtype dtype, float loc, float scale,
              const std::optional<array>& key = std::nullopt, StreamOrDevice s = {});
inline array laplace(const Shape& shape, float loc, float scale,
                     const std::optional<array>& key = std::nullopt, StreamOrDevice s = {}) {
  return laplace(shape, float32, loc, scale, key, s);
}
inline array laplace(const Shape& shape, Dtype dtype,
                     const std::optional<array>& key = std::nullopt, StreamOrDevice s = {}) {
  return laplace(shape, dtype, 0.0f, 1.0f, key, s);
}
inline array laplace(const Shape& shape, const std::optional<array>& key = std::nullopt,
                     StreamOrDevice s = {}) {
  return laplace(shape, float32, 0.0f, 1.0f, key, s);
}

// x with its entries along `axis` randomly permuted.
array permutation(const array& x, int axis = 0, const std::optional<array>& key = std::nullopt,
                  StreamOrDevice s = {});
// A random permutation of arange(n).
array permutation(int n, const std::optional<array>& key = std::nullopt, StreamOrDevice s = {});

}  // namespace mx::random
