// Printing arrays the way MLX does.
#include <iomanip>
#include <ostream>
#include <sstream>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/backend/cpu/layout.h"
#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/ops.h"

namespace mx {
namespace {

// Arrays larger than this print their first and last kEdge items per axis.
constexpr size_t kSummarizeOver = 1000;
constexpr int kEdge = 3;

template <typename T>
void print_value(std::ostream& os, T v) {
  if constexpr (std::is_same_v<T, bool>) {
    os << (v ? "true" : "false");
  } else if constexpr (is_complex_v<T>) {
    os << v.real() << (v.imag() < 0 || std::signbit(v.imag()) ? "-" : "+") << std::abs(v.imag())
       << "j";
  } else if constexpr (is_half_v<T>) {
    os << static_cast<float>(v);
  } else if constexpr (std::is_same_v<T, int8_t> || std::is_same_v<T, uint8_t>) {
    os << static_cast<int>(v);
  } else {
    os << v;
  }
}

template <typename T>
void print_rec(std::ostream& os, const T* data, const Shape& shape, const Strides& strides,
               size_t dim, int64_t offset, int indent, bool summarize) {
  if (dim == shape.size()) {
    print_value(os, data[offset]);
    return;
  }
  os << "[";
  int n = shape[dim];
  bool cut = summarize && n > 2 * kEdge;
  for (int i = 0; i < n; ++i) {
    if (cut && i == kEdge) {
      os << "...";
      i = n - kEdge - 1;
      if (dim + 1 < shape.size()) {
        os << ",\n" << std::string(indent + 1, ' ');
      } else {
        os << ", ";
      }
      continue;
    }
    print_rec(os, data, shape, strides, dim + 1, offset + i * strides[dim], indent + 1, summarize);
    if (i + 1 < n) {
      if (dim + 1 < shape.size()) {
        os << "," << std::string(shape.size() - dim - 1, '\n') << std::string(indent + 1, ' ');
      } else {
        os << ", ";
      }
    }
  }
  os << "]";
}

}  // namespace

std::ostream& operator<<(std::ostream& os, array a) {
  a.eval();
  std::ostringstream ss;
  ss.copyfmt(os);
  ss << "array(";
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (a.ndim() == 0) {
      print_value(ss, *a.data<T>());
    } else {
      print_rec(ss, a.data<T>(), a.shape(), a.strides(), 0, 0, 6, a.size() > kSummarizeOver);
    }
  });
  ss << ", dtype=" << dtype_name(a.dtype()) << ")";
  return os << ss.str();
}

}  // namespace mx
