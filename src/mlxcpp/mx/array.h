// mx::array: a cheap handle to a node of a lazy computation graph.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlxcpp/mx/allocator.h"
#include "mlxcpp/mx/dtype.h"

namespace mx {

using ShapeElem = int32_t;
using Shape = std::vector<ShapeElem>;
using Strides = std::vector<int64_t>;

// A shape as error messages print it, NumPy's tuple style: (2, 3), (4,), ().
std::string shape_str(const Shape& s);

class Primitive;
class Event;
using Deleter = std::function<void(allocator::Buffer)>;

class array {
 public:
  // Scalars.
  template <typename T>
  explicit array(T val, Dtype dtype = TypeToDtype<T>::value);
  // 1-D from a list; dtype from the element type.
  template <typename T>
  array(std::initializer_list<T> data);
  // 1-D from a list of floats with an explicit dtype (MLX's array({1, 2}, int32)).
  array(std::initializer_list<float> data, Dtype dtype);
  array(std::initializer_list<int> data, Dtype dtype);
  // From a list or vector with a shape; dtype from the element type unless given.
  template <typename T>
  array(std::initializer_list<T> data, Shape shape, Dtype dtype = TypeToDtype<T>::value);
  template <typename T>
  array(const std::vector<T>& data, Shape shape, Dtype dtype = TypeToDtype<T>::value);
  // From an iterator over shape-size elements.
  template <typename It>
  array(It data, Shape shape, Dtype dtype);
  // Takes ownership of an external buffer; `deleter` runs when no array uses it.
  array(
      allocator::Buffer data, Shape shape, Dtype dtype,
      Deleter deleter = [](allocator::Buffer b) { allocator::free(b); });
  // Wraps memory owned elsewhere (e.g. an mmap) with explicit strides; `owner`
  // keeps it alive.
  array(void* data, Shape shape, Dtype dtype, std::shared_ptr<void> owner);

  // A node computed by `primitive` from `inputs` (lazy).
  array(Shape shape, Dtype dtype, std::shared_ptr<Primitive> primitive, std::vector<array> inputs);
  // Several outputs of one primitive.
  static std::vector<array> make_arrays(std::vector<Shape> shapes, const std::vector<Dtype>& dtypes,
                                        const std::shared_ptr<Primitive>& primitive,
                                        const std::vector<array>& inputs);

  array(const array&) = default;
  array(array&&) = default;
  array& operator=(const array&) & = default;
  array& operator=(array&&) & = default;
  // Assigning to a temporary (e.g. `a[0] = b`) is almost always a mistake.
  array& operator=(const array&) && = delete;
  array& operator=(array&&) && = delete;

  Dtype dtype() const { return desc_->dtype; }
  size_t itemsize() const { return size_of(dtype()); }
  size_t size() const { return desc_->size; }
  size_t nbytes() const { return size() * itemsize(); }
  size_t ndim() const { return desc_->shape.size(); }
  const Shape& shape() const { return desc_->shape; }
  // Negative dims count from the end.
  int shape(int dim) const;
  const Strides& strides() const { return desc_->strides; }
  int64_t strides(int dim) const;

  void eval();
  // Evaluates and reads the single element (converted to T).
  template <typename T>
  T item();
  template <typename T>
  T item() const;

  // Pointer to the first element; the array must be evaluated (see eval()).
  template <typename T>
  T* data() {
    return static_cast<T*>(desc_->data_ptr);
  }
  template <typename T>
  const T* data() const {
    return static_cast<const T*>(desc_->data_ptr);
  }

  struct Flags {
    bool contiguous : 1;      // the elements fill a dense span (any order)
    bool row_contiguous : 1;  // C order
    bool col_contiguous : 1;  // Fortran order
  };
  Flags flags() const { return desc_->flags; }
  // Number of elements in the dense span backing the array (>= size() for broadcasts).
  size_t data_size() const { return desc_->data_size; }

  enum class Status { unscheduled, scheduled, available };
  Status status() const { return desc_->status.load(std::memory_order_acquire); }
  bool is_available() const;
  // Blocks until a scheduled (async) evaluation of this array has finished.
  void wait();

  bool has_primitive() const { return desc_->primitive != nullptr; }
  Primitive& primitive() const { return *desc_->primitive; }
  const std::shared_ptr<Primitive>& primitive_ptr() const { return desc_->primitive; }
  std::vector<array>& inputs() { return desc_->inputs; }
  const std::vector<array>& inputs() const { return desc_->inputs; }
  // The other outputs of a multi-output primitive (may include placeholders).
  std::vector<array> siblings() const;
  // All outputs of this array's primitive, in order (just {*this} for one).
  std::vector<array> outputs() const;
  bool has_siblings() const { return desc_->group != nullptr; }
  int sibling_position() const { return desc_->position; }

  // Drops the primitive and inputs (after evaluation), so the graph can be freed.
  void detach();
  bool is_tracer() const { return desc_->is_tracer; }
  void set_tracer(bool t) { desc_->is_tracer = t; }

  uintptr_t id() const { return reinterpret_cast<uintptr_t>(desc_.get()); }
  bool is_same(const array& o) const { return desc_ == o.desc_; }
  long use_count() const { return desc_.use_count(); }
  // Whether the buffer can be reused for an output (nobody else holds it, and
  // it is ours: memory owned elsewhere, such as a read-only file mapping, never is).
  // `holders`: the handles the node being evaluated keeps itself; each output of a
  // multi-output node holds its own copy of the inputs, so there it is outputs().size().
  bool is_donatable(long holders = 1) const {
    return desc_.use_count() == holders && desc_->data && desc_->data.use_count() == 1 &&
           !desc_->data->owner;
  }

  allocator::Buffer& buffer() { return desc_->data->buffer; }
  const allocator::Buffer& buffer() const { return desc_->data->buffer; }
  size_t buffer_size() const;  // bytes in the backing buffer

  // Kernel-side setters.
  void set_data(
      allocator::Buffer buffer, Deleter d = [](allocator::Buffer b) { allocator::free(b); });
  void set_data(
      allocator::Buffer buffer, size_t data_size, Strides strides, Flags flags,
      Deleter d = [](allocator::Buffer b) { allocator::free(b); });
  // Makes this array a view of `other`'s buffer with the given layout;
  // `offset` is in elements of this array's dtype.
  void copy_shared_buffer(const array& other, const Strides& strides, Flags flags, size_t data_size,
                          int64_t offset = 0);
  void copy_shared_buffer(const array& other);
  // Reuses `other`'s buffer (donation); other's layout.
  void move_shared_buffer(array other);
  void set_status(Status s) { desc_->status.store(s, std::memory_order_release); }
  void set_event(std::shared_ptr<Event> e) { desc_->event = std::move(e); }
  const std::shared_ptr<Event>& event() const { return desc_->event; }

 private:
  struct ArrayDesc;

 public:
  // A reference that does not keep the array alive: lock() returns it while
  // someone else still holds it.
  class Weak {
   public:
    explicit Weak(const array& a) : p_(a.desc_) {}
    std::optional<array> lock() const {
      std::optional<array> out;
      if (auto d = p_.lock()) out.emplace(array(std::move(d)));
      return out;
    }

   private:
    std::weak_ptr<ArrayDesc> p_;
  };

  // Iterating over the first axis (views).
  class ArrayIterator;
  ArrayIterator begin() const;
  ArrayIterator end() const;

  array() = delete;

 private:
  struct Data {
    allocator::Buffer buffer;
    Deleter deleter;
    std::shared_ptr<void> owner;
    Data(allocator::Buffer b, Deleter d) : buffer(b), deleter(std::move(d)) {}
    Data(const Data&) = delete;
    Data& operator=(const Data&) = delete;
    ~Data() {
      if (deleter) deleter(buffer);
    }
  };

  struct OutputGroup;

  struct ArrayDesc {
    Shape shape;
    Strides strides;
    size_t size;
    Dtype dtype;
    std::shared_ptr<Primitive> primitive;
    std::vector<array> inputs;
    std::shared_ptr<OutputGroup> group;  // set for multi-output primitives
    int position = 0;
    std::shared_ptr<Data> data;
    void* data_ptr = nullptr;
    size_t data_size = 0;
    Flags flags{true, true, true};
    std::atomic<Status> status{Status::unscheduled};
    std::shared_ptr<Event> event;
    bool is_tracer = false;

    ArrayDesc(Shape shape, Dtype dtype);
    ArrayDesc(Shape shape, Dtype dtype, std::shared_ptr<Primitive> p, std::vector<array> inputs);
    // Iterative, so that freeing a very deep graph does not overflow the stack.
    ~ArrayDesc();
  };

  struct OutputGroup {
    std::vector<Shape> shapes;
    std::vector<Dtype> dtypes;
    std::vector<std::weak_ptr<ArrayDesc>> members;
  };

  explicit array(std::shared_ptr<ArrayDesc> d) : desc_(std::move(d)) {}
  void init_from_bytes(const void* src);
  template <typename It>
  void init(It src);

  std::shared_ptr<ArrayDesc> desc_;
};

class array::ArrayIterator {
 public:
  ArrayIterator(const array& arr, int idx) : arr_(arr), idx_(idx) {}
  array operator*() const;
  ArrayIterator& operator++() {
    ++idx_;
    return *this;
  }
  bool operator==(const ArrayIterator& o) const { return idx_ == o.idx_; }
  bool operator!=(const ArrayIterator& o) const { return idx_ != o.idx_; }

 private:
  const array& arr_;
  int idx_;
};

// Prints like MLX: array([[1, 2],\n       [3, 4]], dtype=int32). Evaluates `a`.
std::ostream& operator<<(std::ostream& os, array a);

namespace detail {
// Converts `n` elements of type T at `src` to `dtype` at `dst`.
template <typename T>
void convert_from(const T* src, void* dst, size_t n, Dtype dtype);
// Reads element 0 of an evaluated array as T.
template <typename T>
T read_scalar(const array& a);
size_t shape_size(const Shape& shape, const char* where);
}  // namespace detail

// ---- template definitions ----

template <typename T>
array::array(T val, Dtype dtype) : array(std::make_shared<ArrayDesc>(Shape{}, dtype)) {
  init(&val);
}

template <typename T>
array::array(std::initializer_list<T> data)
    : array(std::make_shared<ArrayDesc>(Shape{static_cast<ShapeElem>(data.size())},
                                        TypeToDtype<T>::value)) {
  init(data.begin());
}

template <typename T>
array::array(std::initializer_list<T> data, Shape shape, Dtype dtype)
    : array(std::make_shared<ArrayDesc>(std::move(shape), dtype)) {
  if (data.size() != size()) {
    throw std::invalid_argument("[array] data has " + std::to_string(data.size()) +
                                " elements but the shape needs " + std::to_string(size()));
  }
  init(data.begin());
}

template <typename T>
array::array(const std::vector<T>& data, Shape shape, Dtype dtype)
    : array(std::make_shared<ArrayDesc>(std::move(shape), dtype)) {
  if (data.size() != size()) {
    throw std::invalid_argument("[array] data has " + std::to_string(data.size()) +
                                " elements but the shape needs " + std::to_string(size()));
  }
  init(data.data());
}

template <typename It>
array::array(It data, Shape shape, Dtype dtype)
    : array(std::make_shared<ArrayDesc>(std::move(shape), dtype)) {
  init(data);
}

template <typename It>
void array::init(It src) {
  using T = std::remove_cv_t<std::remove_reference_t<decltype(*src)>>;
  std::vector<T> tmp;
  const T* p;
  if constexpr (std::is_pointer_v<It>) {
    p = src;
  } else {
    tmp.assign(src, src + size());
    p = tmp.data();
  }
  set_data(allocator::malloc(std::max<size_t>(nbytes(), 1)));
  if constexpr (std::is_same_v<T, bool> || std::is_arithmetic_v<T> ||
                std::is_same_v<T, float16_t> || std::is_same_v<T, bfloat16_t> ||
                std::is_same_v<T, complex64_t>) {
    detail::convert_from<T>(p, desc_->data_ptr, size(), dtype());
  } else {
    static_assert(sizeof(T) == 0, "unsupported element type");
  }
}

template <typename T>
T array::item() {
  if (size() != 1) {
    throw std::invalid_argument("[item] only arrays of one element can be read with item(); got " +
                                std::to_string(size()) + " elements");
  }
  eval();
  return detail::read_scalar<T>(*this);
}

template <typename T>
T array::item() const {
  if (size() != 1) {
    throw std::invalid_argument("[item] only arrays of one element can be read with item(); got " +
                                std::to_string(size()) + " elements");
  }
  // An array in an evaluation (GPU kernels launched, not yet waited for)
  // only needs the wait.
  if (status() == Status::scheduled && event()) const_cast<array*>(this)->wait();
  if (status() != Status::available) {
    throw std::invalid_argument("[item] const array must be evaluated first");
  }
  return detail::read_scalar<T>(*this);
}

}  // namespace mx
