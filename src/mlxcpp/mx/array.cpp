#include "mlxcpp/mx/array.h"

#include <cstring>
#include <sstream>

#include "mlxcpp/mx/dtype_dispatch.h"
#include "mlxcpp/mx/event.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitive.h"
#include "mlxcpp/mx/transforms.h"

namespace mx {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  if (s.size() == 1) os << ",";
  os << ")";
  return os.str();
}

namespace detail {

size_t shape_size(const Shape& shape, const char* where) {
  size_t n = 1;
  for (auto d : shape) {
    if (d < 0) {
      throw std::invalid_argument(std::string("[") + where + "] negative dimension " +
                                  std::to_string(d) + " in shape");
    }
    n *= static_cast<size_t>(d);
  }
  return n;
}

template <typename T>
void convert_from(const T* src, void* dst, size_t n, Dtype dtype) {
  dispatch_all(dtype, [&](auto tag) {
    using U = typename decltype(tag)::type;
    U* out = static_cast<U*>(dst);
    for (size_t i = 0; i < n; ++i) out[i] = cast_value<U>(src[i]);
  });
}

template <typename T>
T read_scalar(const array& a) {
  return dispatch_all(a.dtype(), [&](auto tag) -> T {
    using U = typename decltype(tag)::type;
    return cast_value<T>(*a.data<U>());
  });
}

#define MX_INSTANTIATE(T)                                        \
  template void convert_from<T>(const T*, void*, size_t, Dtype); \
  template T read_scalar<T>(const array&);
MX_INSTANTIATE(bool)
MX_INSTANTIATE(uint8_t)
MX_INSTANTIATE(uint16_t)
MX_INSTANTIATE(uint32_t)
MX_INSTANTIATE(uint64_t)
MX_INSTANTIATE(unsigned long long)
MX_INSTANTIATE(int8_t)
MX_INSTANTIATE(int16_t)
MX_INSTANTIATE(int32_t)
MX_INSTANTIATE(int64_t)
MX_INSTANTIATE(long long)
MX_INSTANTIATE(float16_t)
MX_INSTANTIATE(bfloat16_t)
MX_INSTANTIATE(float)
MX_INSTANTIATE(double)
MX_INSTANTIATE(complex64_t)
#undef MX_INSTANTIATE

}  // namespace detail

namespace {
Strides row_major_strides(const Shape& shape) {
  Strides s(shape.size(), 1);
  for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i) {
    s[i] = s[i + 1] * std::max<int64_t>(shape[i + 1], 1);
  }
  return s;
}
}  // namespace

array::ArrayDesc::ArrayDesc(Shape shape_, Dtype dtype_)
    : shape(std::move(shape_)), size(detail::shape_size(shape, "array")), dtype(dtype_) {
  strides = row_major_strides(shape);
}

array::ArrayDesc::ArrayDesc(Shape shape_, Dtype dtype_, std::shared_ptr<Primitive> p,
                            std::vector<array> in)
    : shape(std::move(shape_)),
      size(detail::shape_size(shape, "array")),
      dtype(dtype_),
      primitive(std::move(p)),
      inputs(std::move(in)) {
  strides = row_major_strides(shape);
  for (auto& i : inputs) {
    if (i.is_tracer()) is_tracer = true;
  }
}

array::ArrayDesc::~ArrayDesc() {
  // Move the inputs of nodes about to die onto an explicit stack instead of
  // letting destructors recurse through the graph.
  bool any_last = false;
  for (auto& i : inputs) any_last |= i.desc_.use_count() == 1;
  if (!any_last) return;
  std::vector<std::shared_ptr<ArrayDesc>> stack;
  for (auto& i : inputs) {
    if (i.desc_.use_count() == 1) stack.push_back(std::move(i.desc_));
  }
  inputs.clear();
  while (!stack.empty()) {
    auto d = std::move(stack.back());
    stack.pop_back();
    for (auto& i : d->inputs) {
      if (i.desc_.use_count() == 1) stack.push_back(std::move(i.desc_));
    }
    d->inputs.clear();
  }
}

array::array(std::initializer_list<float> data, Dtype dtype)
    : array(std::make_shared<ArrayDesc>(Shape{static_cast<ShapeElem>(data.size())}, dtype)) {
  init(data.begin());
}

array::array(std::initializer_list<int> data, Dtype dtype)
    : array(std::make_shared<ArrayDesc>(Shape{static_cast<ShapeElem>(data.size())}, dtype)) {
  init(data.begin());
}

array::array(allocator::Buffer data, Shape shape, Dtype dtype, Deleter deleter)
    : array(std::make_shared<ArrayDesc>(std::move(shape), dtype)) {
  set_data(data, std::move(deleter));
}

array::array(void* data, Shape shape, Dtype dtype, std::shared_ptr<void> owner)
    : array(std::make_shared<ArrayDesc>(std::move(shape), dtype)) {
  set_data(allocator::Buffer(data), Deleter{});
  desc_->data->owner = std::move(owner);
}

array::array(Shape shape, Dtype dtype, std::shared_ptr<Primitive> primitive,
             std::vector<array> inputs)
    : array(std::make_shared<ArrayDesc>(std::move(shape), dtype, std::move(primitive),
                                        std::move(inputs))) {}

std::vector<array> array::make_arrays(std::vector<Shape> shapes, const std::vector<Dtype>& dtypes,
                                      const std::shared_ptr<Primitive>& primitive,
                                      const std::vector<array>& inputs) {
  std::vector<array> outs;
  if (shapes.size() == 1) {
    outs.emplace_back(std::move(shapes[0]), dtypes[0], primitive, inputs);
    return outs;
  }
  auto group = std::make_shared<OutputGroup>();
  group->shapes = shapes;
  group->dtypes = dtypes;
  for (size_t i = 0; i < shapes.size(); ++i) {
    outs.emplace_back(std::move(shapes[i]), dtypes[i], primitive, inputs);
    outs.back().desc_->group = group;
    outs.back().desc_->position = static_cast<int>(i);
    group->members.push_back(outs.back().desc_);
  }
  return outs;
}

std::vector<array> array::outputs() const {
  if (!desc_->group) return {*this};
  std::vector<array> outs;
  auto& g = *desc_->group;
  for (size_t i = 0; i < g.members.size(); ++i) {
    if (auto d = g.members[i].lock()) {
      outs.push_back(array(d));
    } else {
      // A sibling nobody holds any more: a placeholder the kernel can write to.
      auto ph = std::make_shared<ArrayDesc>(g.shapes[i], g.dtypes[i]);
      ph->primitive = desc_->primitive;
      ph->inputs = desc_->inputs;
      ph->group = desc_->group;
      ph->position = static_cast<int>(i);
      g.members[i] = ph;
      outs.push_back(array(ph));
    }
  }
  return outs;
}

std::vector<array> array::siblings() const {
  auto outs = outputs();
  outs.erase(outs.begin() + desc_->position);
  return outs;
}

int array::shape(int dim) const {
  int nd = static_cast<int>(ndim());
  int d = dim < 0 ? dim + nd : dim;
  if (d < 0 || d >= nd) {
    throw std::out_of_range("[array::shape] axis " + std::to_string(dim) +
                            " is out of bounds for an array with " + std::to_string(nd) +
                            " dimensions");
  }
  return desc_->shape[d];
}

int64_t array::strides(int dim) const {
  int nd = static_cast<int>(ndim());
  int d = dim < 0 ? dim + nd : dim;
  if (d < 0 || d >= nd) {
    throw std::out_of_range("[array::strides] axis " + std::to_string(dim) + " is out of bounds");
  }
  return desc_->strides[d];
}

void array::eval() {
  auto st = status();
  if (st == Status::scheduled && desc_->event) {
    // Already in an evaluation (async_eval, or GPU work launched but not yet
    // waited for): waiting is enough.
    wait();
  } else if (st != Status::available) {
    mx::eval({*this});
  }
}

bool array::is_available() const { return status() == Status::available; }

void array::wait() {
  if (status() == Status::scheduled && desc_->event) {
    desc_->event->wait();
    // GPU outputs become available only once the device has run them.
    set_status(Status::available);
  }
}

void array::detach() {
  if (!desc_->group) {
    desc_->primitive = nullptr;
    desc_->inputs.clear();
    return;
  }
  for (auto& o : outputs()) {
    o.desc_->primitive = nullptr;
    o.desc_->inputs.clear();
    o.desc_->group = nullptr;
    o.desc_->position = 0;
  }
}

size_t array::buffer_size() const {
  return desc_->data ? allocator::allocation_size(desc_->data->buffer) : 0;
}

// A kernel gives its output a buffer before it has written it (a CPU kernel before it returns,
// a GPU kernel before the device has run it). An array whose evaluation is in flight (its event
// not yet signalled) stays scheduled, and its evaluation marks it when it is done: otherwise a
// host thread reading it (item(), data(), eval()) could see it available and read the buffer
// early. Arrays made from data, or given data outside an evaluation, are available at once.
namespace {
template <class Desc>
void mark_has_data(Desc& d) {
  if (d.event && !d.event->is_signaled()) return;
  d.status.store(array::Status::available, std::memory_order_release);
}
}  // namespace

void array::set_data(allocator::Buffer buffer, Deleter d) {
  desc_->data = std::make_shared<Data>(buffer, std::move(d));
  desc_->data_ptr = buffer.raw_ptr();
  desc_->data_size = size();
  desc_->strides = row_major_strides(desc_->shape);
  desc_->flags = Flags{true, true, true};
  // A row-contiguous array is column-contiguous only when at most one dim > 1.
  int big = 0;
  for (auto s : desc_->shape) big += s > 1;
  desc_->flags.col_contiguous = big <= 1;
  mark_has_data(*desc_);
}

void array::set_data(allocator::Buffer buffer, size_t data_size, Strides strides, Flags flags,
                     Deleter d) {
  desc_->data = std::make_shared<Data>(buffer, std::move(d));
  desc_->data_ptr = buffer.raw_ptr();
  desc_->data_size = data_size;
  desc_->strides = std::move(strides);
  desc_->flags = flags;
  mark_has_data(*desc_);
}

void array::copy_shared_buffer(const array& other, const Strides& strides, Flags flags,
                               size_t data_size, int64_t offset) {
  desc_->data = other.desc_->data;
  desc_->data_ptr =
      static_cast<char*>(other.desc_->data_ptr) + offset * static_cast<int64_t>(itemsize());
  desc_->strides = strides;
  desc_->flags = flags;
  desc_->data_size = data_size;
  mark_has_data(*desc_);
}

void array::copy_shared_buffer(const array& other) {
  copy_shared_buffer(other, other.strides(), other.flags(), other.data_size());
}

void array::move_shared_buffer(array other) {
  desc_->data = std::move(other.desc_->data);
  desc_->data_ptr = other.desc_->data_ptr;
  desc_->strides = other.desc_->strides;
  desc_->flags = other.desc_->flags;
  desc_->data_size = other.desc_->data_size;
  other.desc_->data_ptr = nullptr;
  mark_has_data(*desc_);
}

array::ArrayIterator array::begin() const { return ArrayIterator(*this, 0); }
array::ArrayIterator array::end() const {
  if (ndim() == 0) throw std::invalid_argument("[array] cannot iterate over a 0-d array");
  return ArrayIterator(*this, shape(0));
}

array array::ArrayIterator::operator*() const {
  Shape start(arr_.ndim(), 0), stop = arr_.shape();
  start[0] = idx_;
  stop[0] = idx_ + 1;
  return squeeze(slice(arr_, start, stop), 0);
}

}  // namespace mx
