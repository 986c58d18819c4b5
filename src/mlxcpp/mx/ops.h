// Array operations with MLX's names, argument order and semantics. Every op
// takes an optional StreamOrDevice last; shapes and dtypes are computed now,
// values when the result is evaluated.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/device.h"

namespace mx {

using S = StreamOrDevice;

// ---------------------------------------------------------------- creation
array arange(double start, double stop, double step, Dtype dtype, S s = {});
array arange(double start, double stop, double step, S s = {});
array arange(double start, double stop, Dtype dtype, S s = {});
array arange(double start, double stop, S s = {});
array arange(double stop, Dtype dtype, S s = {});
array arange(double stop, S s = {});
array arange(int start, int stop, int step, S s = {});
array arange(int start, int stop, S s = {});
array arange(int stop, S s = {});
array linspace(double start, double stop, int num = 50, Dtype dtype = float32, S s = {});
array astype(array a, Dtype dtype, S s = {});
// Reinterprets the bytes (the last axis scales with the size ratio).
array view(const array& a, const Dtype& dtype, S s = {});
array as_strided(array a, Shape shape, Strides strides, size_t offset, S s = {});
array copy(array a, S s = {});
array full(Shape shape, array vals, Dtype dtype, S s = {});
array full(Shape shape, array vals, S s = {});
template <typename T>
array full(Shape shape, T val, Dtype dtype, S s = {}) {
  return full(std::move(shape), array(val, dtype), dtype, s);
}
template <typename T>
array full(Shape shape, T val, S s = {}) {
  return full(std::move(shape), array(val), s);
}
array zeros(const Shape& shape, Dtype dtype, S s = {});
inline array zeros(const Shape& shape, S s = {}) { return zeros(shape, float32, s); }
array zeros_like(const array& a, S s = {});
array ones(const Shape& shape, Dtype dtype, S s = {});
inline array ones(const Shape& shape, S s = {}) { return ones(shape, float32, s); }
array ones_like(const array& a, S s = {});
array full_like(const array& a, array vals, S s = {});
array eye(int n, int m, int k, Dtype dtype = float32, S s = {});
inline array eye(int n, Dtype dtype = float32, S s = {}) { return eye(n, n, 0, dtype, s); }
inline array eye(int n, int m, S s = {}) { return eye(n, m, 0, float32, s); }
array identity(int n, Dtype dtype = float32, S s = {});
array tri(int n, int m, int k, Dtype type, S s = {});
inline array tri(int n, Dtype type, S s = {}) { return tri(n, n, 0, type, s); }
array tril(array x, int k = 0, S s = {});
array triu(array x, int k = 0, S s = {});

// ---------------------------------------------------------------- shapes and views
array reshape(const array& a, Shape shape, S s = {});
array flatten(const array& a, int start_axis, int end_axis = -1, S s = {});
array flatten(const array& a, S s = {});
array unflatten(const array& a, int axis, Shape shape, S s = {});
array squeeze(const array& a, const std::vector<int>& axes, S s = {});
array squeeze(const array& a, int axis, S s = {});
array squeeze(const array& a, S s = {});
array expand_dims(const array& a, const std::vector<int>& axes, S s = {});
array expand_dims(const array& a, int axis, S s = {});
array transpose(const array& a, std::vector<int> axes, S s = {});
array transpose(const array& a, S s = {});
array swapaxes(const array& a, int axis1, int axis2, S s = {});
array moveaxis(const array& a, int source, int destination, S s = {});
array broadcast_to(const array& a, const Shape& shape, S s = {});
std::vector<array> broadcast_arrays(const std::vector<array>& inputs, S s = {});
Shape broadcast_shapes(const Shape& s1, const Shape& s2);
array atleast_1d(const array& a, S s = {});
array atleast_2d(const array& a, S s = {});
array atleast_3d(const array& a, S s = {});

// Slicing: start/stop/strides per axis, NumPy's clamping rules.
array slice(const array& a, Shape start, Shape stop, Shape strides, S s = {});
array slice(const array& a, Shape start, Shape stop, S s = {});
// Braced lists pick the static overloads (a braced list could also build an array start).
inline array slice(const array& a, std::initializer_list<int> start,
                   std::initializer_list<int> stop, std::initializer_list<int> strides, S s = {}) {
  return slice(a, Shape(start), Shape(stop), Shape(strides), s);
}
inline array slice(const array& a, std::initializer_list<int> start,
                   std::initializer_list<int> stop, S s = {}) {
  return slice(a, Shape(start), Shape(stop), s);
}
// Slice with a start given as an array (for caches), sizes static.
array slice(const array& a, const array& start, std::vector<int> axes, Shape slice_size, S s = {});
array slice_update(const array& src, const array& update, Shape start, Shape stop, Shape strides,
                   S s = {});
array slice_update(const array& src, const array& update, Shape start, Shape stop, S s = {});
inline array slice_update(const array& src, const array& update, std::initializer_list<int> start,
                          std::initializer_list<int> stop, std::initializer_list<int> strides,
                          S s = {}) {
  return slice_update(src, update, Shape(start), Shape(stop), Shape(strides), s);
}
inline array slice_update(const array& src, const array& update, std::initializer_list<int> start,
                          std::initializer_list<int> stop, S s = {}) {
  return slice_update(src, update, Shape(start), Shape(stop), s);
}
array slice_update(const array& src, const array& update, const array& start, std::vector<int> axes,
                   S s = {});
// slice_update(src, update, start, axes) written into src's own buffer, which the result shares:
// no copy of src is made. src's old value is gone, so src may be read afterwards only as the
// result (a cache that a step updates in place, e.g. inside a CapturedGraph). src must be
// row-contiguous when the result is evaluated.
array slice_update_in_place(const array& src, const array& update, const array& start,
                            std::vector<int> axes, S s = {});

array concatenate(std::vector<array> arrays, int axis, S s = {});
array concatenate(std::vector<array> arrays, S s = {});
array stack(const std::vector<array>& arrays, int axis, S s = {});
array stack(const std::vector<array>& arrays, S s = {});
std::vector<array> split(const array& a, int num_splits, int axis, S s = {});
std::vector<array> split(const array& a, int num_splits, S s = {});
std::vector<array> split(const array& a, const Shape& indices, int axis, S s = {});
std::vector<array> split(const array& a, const Shape& indices, S s = {});
std::vector<array> meshgrid(const std::vector<array>& arrays, bool sparse = false,
                            const std::string& indexing = "xy", S s = {});
array repeat(const array& arr, int repeats, int axis, S s = {});
array repeat(const array& arr, int repeats, S s = {});
array tile(const array& arr, std::vector<int> reps, S s = {});
// mode: "constant", "edge"
array pad(const array& a, const std::vector<int>& axes, const Shape& low_pad_size,
          const Shape& high_pad_size, const array& pad_value = array(0),
          const std::string& mode = "constant", S s = {});
array pad(const array& a, const std::vector<std::pair<int, int>>& pad_width,
          const array& pad_value = array(0), const std::string& mode = "constant", S s = {});
array pad(const array& a, const std::pair<int, int>& pad_width, const array& pad_value = array(0),
          const std::string& mode = "constant", S s = {});
array pad(const array& a, int pad_width, const array& pad_value = array(0),
          const std::string& mode = "constant", S s = {});
array diag(const array& a, int k = 0, S s = {});
array diagonal(const array& a, int offset = 0, int axis1 = 0, int axis2 = 1, S s = {});
array roll(const array& a, int shift, S s = {});
array roll(const array& a, int shift, int axis, S s = {});
array roll(const array& a, const Shape& shift, const std::vector<int>& axes, S s = {});

// ---------------------------------------------------------------- elementwise unary
array abs(const array& a, S s = {});
array negative(const array& a, S s = {});
array operator-(const array& a);
array sign(const array& a, S s = {});
array logical_not(const array& a, S s = {});
array operator!(const array& a);
array bitwise_invert(const array& a, S s = {});
array operator~(const array& a);
array reciprocal(const array& a, S s = {});
array square(const array& a, S s = {});
array sqrt(const array& a, S s = {});
array rsqrt(const array& a, S s = {});
array exp(const array& a, S s = {});
array expm1(const array& a, S s = {});
array log(const array& a, S s = {});
array log2(const array& a, S s = {});
array log10(const array& a, S s = {});
array log1p(const array& a, S s = {});
array sin(const array& a, S s = {});
array cos(const array& a, S s = {});
array tan(const array& a, S s = {});
array arcsin(const array& a, S s = {});
array arccos(const array& a, S s = {});
array arctan(const array& a, S s = {});
array sinh(const array& a, S s = {});
array cosh(const array& a, S s = {});
array tanh(const array& a, S s = {});
array arcsinh(const array& a, S s = {});
array arccosh(const array& a, S s = {});
array arctanh(const array& a, S s = {});
array degrees(const array& a, S s = {});
array radians(const array& a, S s = {});
array sigmoid(const array& a, S s = {});
array erf(const array& a, S s = {});
array erfinv(const array& a, S s = {});
array floor(const array& a, S s = {});
array ceil(const array& a, S s = {});
array round(const array& a, int decimals = 0, S s = {});
array isnan(const array& a, S s = {});
array isinf(const array& a, S s = {});
array isfinite(const array& a, S s = {});
array isposinf(const array& a, S s = {});
array isneginf(const array& a, S s = {});
array nan_to_num(const array& a, float nan = 0.0f, std::optional<float> posinf = std::nullopt,
                 std::optional<float> neginf = std::nullopt, S s = {});
array conjugate(const array& a, S s = {});
array real(const array& a, S s = {});
array imag(const array& a, S s = {});
array stop_gradient(const array& a, S s = {});

// ---------------------------------------------------------------- elementwise binary
array add(const array& a, const array& b, S s = {});
array subtract(const array& a, const array& b, S s = {});
array multiply(const array& a, const array& b, S s = {});
array divide(const array& a, const array& b, S s = {});
array floor_divide(const array& a, const array& b, S s = {});
array remainder(const array& a, const array& b, S s = {});
std::vector<array> divmod(const array& a, const array& b, S s = {});
array power(const array& a, const array& b, S s = {});
array maximum(const array& a, const array& b, S s = {});
array minimum(const array& a, const array& b, S s = {});
array arctan2(const array& a, const array& b, S s = {});
array logaddexp(const array& a, const array& b, S s = {});
array equal(const array& a, const array& b, S s = {});
array not_equal(const array& a, const array& b, S s = {});
array greater(const array& a, const array& b, S s = {});
array greater_equal(const array& a, const array& b, S s = {});
array less(const array& a, const array& b, S s = {});
array less_equal(const array& a, const array& b, S s = {});
array logical_and(const array& a, const array& b, S s = {});
array logical_or(const array& a, const array& b, S s = {});
array bitwise_and(const array& a, const array& b, S s = {});
array bitwise_or(const array& a, const array& b, S s = {});
array bitwise_xor(const array& a, const array& b, S s = {});
array left_shift(const array& a, const array& b, S s = {});
array right_shift(const array& a, const array& b, S s = {});
array isclose(const array& a, const array& b, double rtol = 1e-5, double atol = 1e-8,
              bool equal_nan = false, S s = {});
array allclose(const array& a, const array& b, double rtol = 1e-5, double atol = 1e-8,
               bool equal_nan = false, S s = {});
array array_equal(const array& a, const array& b, bool equal_nan = false, S s = {});
array where(const array& condition, const array& x, const array& y, S s = {});
array clip(const array& a, const std::optional<array>& a_min, const std::optional<array>& a_max,
           S s = {});

// C++ operators; a scalar operand becomes an array of its own type (as MLX's C++ API).
template <typename T>
concept Scalar = std::is_arithmetic_v<T> || std::is_same_v<T, float16_t> ||
    std::is_same_v<T, bfloat16_t> || std::is_same_v<T, complex64_t>;
#define MX_BINARY_OPERATOR(OP, FN)                   \
  array operator OP(const array& a, const array& b); \
  template <Scalar T>                                \
  array operator OP(T a, const array& b) {           \
    return FN(array(a), b);                          \
  }                                                  \
  template <Scalar T>                                \
  array operator OP(const array& a, T b) {           \
    return FN(a, array(b));                          \
  }
MX_BINARY_OPERATOR(+, add)
MX_BINARY_OPERATOR(-, subtract)
MX_BINARY_OPERATOR(*, multiply)
MX_BINARY_OPERATOR(/, divide)
MX_BINARY_OPERATOR(%, remainder)
MX_BINARY_OPERATOR(==, equal)
MX_BINARY_OPERATOR(!=, not_equal)
MX_BINARY_OPERATOR(<, less)
MX_BINARY_OPERATOR(<=, less_equal)
MX_BINARY_OPERATOR(>, greater)
MX_BINARY_OPERATOR(>=, greater_equal)
MX_BINARY_OPERATOR(&&, logical_and)
MX_BINARY_OPERATOR(||, logical_or)
MX_BINARY_OPERATOR(&, bitwise_and)
MX_BINARY_OPERATOR(|, bitwise_or)
MX_BINARY_OPERATOR(^, bitwise_xor)
MX_BINARY_OPERATOR(<<, left_shift)
MX_BINARY_OPERATOR(>>, right_shift)
#undef MX_BINARY_OPERATOR

// ---------------------------------------------------------------- reductions
array all(const array& a, bool keepdims, S s = {});
inline array all(const array& a, S s = {}) { return all(a, false, s); }
array all(const array& a, const std::vector<int>& axes, bool keepdims = false, S s = {});
array all(const array& a, int axis, bool keepdims = false, S s = {});
array any(const array& a, bool keepdims, S s = {});
inline array any(const array& a, S s = {}) { return any(a, false, s); }
array any(const array& a, const std::vector<int>& axes, bool keepdims = false, S s = {});
array any(const array& a, int axis, bool keepdims = false, S s = {});
array sum(const array& a, bool keepdims, S s = {});
inline array sum(const array& a, S s = {}) { return sum(a, false, s); }
array sum(const array& a, const std::vector<int>& axes, bool keepdims = false, S s = {});
array sum(const array& a, int axis, bool keepdims = false, S s = {});
array mean(const array& a, bool keepdims, S s = {});
inline array mean(const array& a, S s = {}) { return mean(a, false, s); }
array mean(const array& a, const std::vector<int>& axes, bool keepdims = false, S s = {});
array mean(const array& a, int axis, bool keepdims = false, S s = {});
array var(const array& a, bool keepdims, int ddof = 0, S s = {});
inline array var(const array& a, S s = {}) { return var(a, false, 0, s); }
array var(const array& a, const std::vector<int>& axes, bool keepdims = false, int ddof = 0,
          S s = {});
array var(const array& a, int axis, bool keepdims = false, int ddof = 0, S s = {});
array std(const array& a, bool keepdims, int ddof = 0, S s = {});
inline array std(const array& a, S s = {}) { return std(a, false, 0, s); }
array std(const array& a, const std::vector<int>& axes, bool keepdims = false, int ddof = 0,
          S s = {});
array std(const array& a, int axis, bool keepdims = false, int ddof = 0, S s = {});
array prod(const array& a, bool keepdims, S s = {});
inline array prod(const array& a, S s = {}) { return prod(a, false, s); }
array prod(const array& a, const std::vector<int>& axes, bool keepdims = false, S s = {});
array prod(const array& a, int axis, bool keepdims = false, S s = {});
array max(const array& a, bool keepdims, S s = {});
inline array max(const array& a, S s = {}) { return max(a, false, s); }
array max(const array& a, const std::vector<int>& axes, bool keepdims = false, S s = {});
array max(const array& a, int axis, bool keepdims = false, S s = {});
array min(const array& a, bool keepdims, S s = {});
inline array min(const array& a, S s = {}) { return min(a, false, s); }
array min(const array& a, const std::vector<int>& axes, bool keepdims = false, S s = {});
array min(const array& a, int axis, bool keepdims = false, S s = {});
array argmin(const array& a, bool keepdims, S s = {});
inline array argmin(const array& a, S s = {}) { return argmin(a, false, s); }
array argmin(const array& a, int axis, bool keepdims = false, S s = {});
array argmax(const array& a, bool keepdims, S s = {});
inline array argmax(const array& a, S s = {}) { return argmax(a, false, s); }
array argmax(const array& a, int axis, bool keepdims = false, S s = {});
array logsumexp(const array& a, bool keepdims, S s = {});
inline array logsumexp(const array& a, S s = {}) { return logsumexp(a, false, s); }
array logsumexp(const array& a, const std::vector<int>& axes, bool keepdims = false, S s = {});
array logsumexp(const array& a, int axis, bool keepdims = false, S s = {});
array softmax(const array& a, const std::vector<int>& axes, bool precise = false, S s = {});
array softmax(const array& a, bool precise = false, S s = {});
array softmax(const array& a, int axis, bool precise = false, S s = {});
array cumsum(const array& a, int axis, bool reverse = false, bool inclusive = true, S s = {});
array cumsum(const array& a, bool reverse = false, bool inclusive = true, S s = {});  // flattened
array cumprod(const array& a, int axis, bool reverse = false, bool inclusive = true, S s = {});
array cumprod(const array& a, bool reverse = false, bool inclusive = true, S s = {});
array cummax(const array& a, int axis, bool reverse = false, bool inclusive = true, S s = {});
array cummax(const array& a, bool reverse = false, bool inclusive = true, S s = {});
array cummin(const array& a, int axis, bool reverse = false, bool inclusive = true, S s = {});
array cummin(const array& a, bool reverse = false, bool inclusive = true, S s = {});

// ---------------------------------------------------------------- linear algebra products
array matmul(const array& a, const array& b, S s = {});
// beta * c + alpha * (a @ b)
array addmm(array c, array a, array b, const float& alpha = 1.f, const float& beta = 1.f, S s = {});
array outer(const array& a, const array& b, S s = {});
array inner(const array& a, const array& b, S s = {});
array tensordot(const array& a, const array& b, int axis = 2, S s = {});
array tensordot(const array& a, const array& b, const std::vector<int>& axes_a,
                const std::vector<int>& axes_b, S s = {});
array einsum(const std::string& subscripts, const std::vector<array>& operands, S s = {});

// ---------------------------------------------------------------- indexing
array take(const array& a, const array& indices, int axis, S s = {});
array take(const array& a, int index, int axis, S s = {});
array take(const array& a, const array& indices, S s = {});  // flattened
array take(const array& a, int index, S s = {});
array take_along_axis(const array& a, const array& indices, int axis, S s = {});
array put_along_axis(const array& a, const array& indices, const array& values, int axis, S s = {});
// NumPy-style advanced indexing primitives (MLX's gather/scatter).
array gather(const array& a, const std::vector<array>& indices, const std::vector<int>& axes,
             const Shape& slice_sizes, S s = {});
array scatter(const array& a, const std::vector<array>& indices, const array& updates,
              const std::vector<int>& axes, S s = {});
array scatter_add(const array& a, const std::vector<array>& indices, const array& updates,
                  const std::vector<int>& axes, S s = {});
array scatter_prod(const array& a, const std::vector<array>& indices, const array& updates,
                   const std::vector<int>& axes, S s = {});
array scatter_max(const array& a, const std::vector<array>& indices, const array& updates,
                  const std::vector<int>& axes, S s = {});
array scatter_min(const array& a, const std::vector<array>& indices, const array& updates,
                  const std::vector<int>& axes, S s = {});
// Single index array forms (as MLX's C++ API).
array gather(const array& a, const array& indices, int axis, const Shape& slice_sizes, S s = {});
array scatter(const array& a, const array& indices, const array& updates, int axis, S s = {});
array scatter_add(const array& a, const array& indices, const array& updates, int axis, S s = {});
array scatter_prod(const array& a, const array& indices, const array& updates, int axis, S s = {});
array scatter_max(const array& a, const array& indices, const array& updates, int axis, S s = {});
array scatter_min(const array& a, const array& indices, const array& updates, int axis, S s = {});

// ---------------------------------------------------------------- sorting
array sort(const array& a, int axis, S s = {});
array sort(const array& a, S s = {});  // flattened
array argsort(const array& a, int axis, S s = {});
array argsort(const array& a, S s = {});
array partition(const array& a, int kth, int axis, S s = {});
array partition(const array& a, int kth, S s = {});
array argpartition(const array& a, int kth, int axis, S s = {});
array argpartition(const array& a, int kth, S s = {});
array topk(const array& a, int k, int axis, S s = {});
array topk(const array& a, int k, S s = {});

// ---------------------------------------------------------------- utilities
// Resolves a possibly negative axis against ndim; throws naming the op.
int normalize_axis(int axis, int ndim, const char* op);
// Number of elements along `axes` (all when empty) as an array of `dtype`.
array number_of_elements(const array& a, std::vector<int> axes, bool inverted, Dtype dtype = int32,
                         S s = {});

}  // namespace mx
