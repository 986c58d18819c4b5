// The primitives the transforms insert (tracer inputs, vmap stand-ins) and
// custom reverse-mode rules: custom_vjp and checkpoint, which is custom_vjp
// with a rule that recomputes the function.
#include <sstream>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/transforms.h"
#include "mlxcpp/mx/transforms.h"

namespace mx {

namespace {

void throw_vmap_read() {
  throw std::invalid_argument(
      "[vmap] the function evaluated an array that depends on a mapped input while vmap traced "
      "it; a vmapped function must not read the data of batched values");
}

}  // namespace

// ---------------------------------------------------------------- TracerInput

void TracerInput::eval_cpu(const std::vector<array>& inputs, array& out) {
  out.copy_shared_buffer(inputs[0]);
}
void TracerInput::eval_gpu(const std::vector<array>& inputs, std::vector<array>& outputs) {
  outputs[0].copy_shared_buffer(inputs[0]);
}
std::vector<array> TracerInput::jvp(const std::vector<array>&, const std::vector<array>& tangents,
                                    const std::vector<int>&) {
  return {tangents[0]};
}
std::vector<array> TracerInput::vjp(const std::vector<array>&, const std::vector<array>& cotangents,
                                    const std::vector<int>&, const std::vector<array>&) {
  return {cotangents[0]};
}
std::pair<std::vector<array>, std::vector<int>> TracerInput::vmap(const std::vector<array>& inputs,
                                                                  const std::vector<int>& axes) {
  return {{inputs[0]}, {axes[0]}};
}

// ---------------------------------------------------------------- VmapInput

void VmapInput::eval_cpu(const std::vector<array>&, array&) { throw_vmap_read(); }
void VmapInput::eval_gpu(const std::vector<array>&, std::vector<array>&) { throw_vmap_read(); }

// ---------------------------------------------------------------- CustomTransforms

void CustomTransforms::eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    outputs[i].copy_shared_buffer(inputs[num_primals_ + i]);
  }
}
void CustomTransforms::eval_gpu(const std::vector<array>& inputs, std::vector<array>& outputs) {
  eval_cpu(inputs, outputs);
}

std::vector<array> CustomTransforms::vjp(const std::vector<array>& primals,
                                         const std::vector<array>& cotangents,
                                         const std::vector<int>& argnums,
                                         const std::vector<array>& outputs) {
  std::vector<array> args(primals.begin(), primals.begin() + num_primals_);
  auto grads = vjp_fun_(args, cotangents, outputs);
  if (grads.size() != args.size()) {
    throw std::invalid_argument("[custom_vjp] the vjp function returned " +
                                std::to_string(grads.size()) + " cotangents for " +
                                std::to_string(args.size()) + " primals");
  }
  std::vector<array> out;
  for (int a : argnums) {
    if (a >= num_primals_) {
      // fun's outputs enter under stop_gradient; they carry no gradient.
      out.push_back(zeros_like(primals[a], stream()));
      continue;
    }
    if (grads[a].shape() != args[a].shape()) {
      throw std::invalid_argument("[custom_vjp] the vjp function returned a cotangent of shape " +
                                  shape_str(grads[a].shape()) + " for primal " + std::to_string(a) +
                                  " of shape " + shape_str(args[a].shape()));
    }
    out.push_back(grads[a]);
  }
  return out;
}

std::vector<array> CustomTransforms::jvp(const std::vector<array>& primals,
                                         const std::vector<array>& tangents,
                                         const std::vector<int>& argnums) {
  std::vector<array> args(primals.begin(), primals.begin() + num_primals_);
  std::vector<array> ts;
  for (auto& a : args) ts.push_back(zeros_like(a, stream()));
  for (size_t k = 0; k < argnums.size(); ++k) {
    if (argnums[k] < num_primals_) ts[argnums[k]] = tangents[k];
  }
  return mx::jvp(fun_, args, ts).second;
}

std::pair<std::vector<array>, std::vector<int>> CustomTransforms::vmap(
    const std::vector<array>& inputs, const std::vector<int>& axes) {
  int size = -1;
  for (size_t i = 0; i < inputs.size() && size < 0; ++i) {
    if (axes[i] >= 0) size = inputs[i].shape(axes[i]);
  }
  // Everything goes to batch axis 0 (unmapped primals broadcast), so the
  // batched rule is just fun and vjp_fun mapped over axis 0 of every argument;
  // the broadcast's own vjp sums the gradients of unmapped primals.
  auto to_front = [&](size_t i) {
    if (axes[i] >= 0) return moveaxis(inputs[i], axes[i], 0, stream());
    Shape shape = inputs[i].shape();
    shape.insert(shape.begin(), size);
    return broadcast_to(expand_dims(inputs[i], 0, stream()), shape, stream());
  };
  std::vector<array> args, outs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    (static_cast<int>(i) < num_primals_ ? args : outs).push_back(to_front(i));
  }
  auto vfun = mx::vmap(fun_, std::vector<int>(args.size(), 0));
  CustomVjpFn vvjp = [vjp_fun = vjp_fun_](const std::vector<array>& primals,
                                          const std::vector<array>& cotangents,
                                          const std::vector<array>& outputs) {
    size_t np = primals.size(), nc = cotangents.size();
    auto flat = [vjp_fun, np, nc](const std::vector<array>& all) {
      std::vector<array> p(all.begin(), all.begin() + np);
      std::vector<array> c(all.begin() + np, all.begin() + np + nc);
      std::vector<array> o(all.begin() + np + nc, all.end());
      return vjp_fun(p, c, o);
    };
    std::vector<array> all = primals;
    all.insert(all.end(), cotangents.begin(), cotangents.end());
    all.insert(all.end(), outputs.begin(), outputs.end());
    return mx::vmap(flat, std::vector<int>(all.size(), 0))(all);
  };
  auto results = detail::make_custom_transforms(vfun, vvjp, args, outs);
  return {results, std::vector<int>(results.size(), 0)};
}

namespace detail {

std::vector<array> make_custom_transforms(const VectorFn& fun, const CustomVjpFn& vjp_fun,
                                          const std::vector<array>& primals,
                                          std::vector<array> outputs) {
  if (outputs.empty()) {
    throw std::invalid_argument("[custom_vjp] the function returned no outputs");
  }
  std::vector<Shape> shapes;
  std::vector<Dtype> dtypes;
  std::vector<array> inputs = primals;
  for (auto& o : outputs) {
    shapes.push_back(o.shape());
    dtypes.push_back(o.dtype());
    inputs.push_back(stop_gradient(o));
  }
  Stream s = outputs[0].has_primitive() ? outputs[0].primitive().stream()
                                        : default_stream(default_device());
  return array::make_arrays(
      std::move(shapes), dtypes,
      std::make_shared<CustomTransforms>(s, static_cast<int>(primals.size()), fun, vjp_fun),
      inputs);
}

}  // namespace detail

std::function<std::vector<array>(const std::vector<array>&)> custom_vjp(
    std::function<std::vector<array>(const std::vector<array>&)> fun,
    std::function<std::vector<array>(const std::vector<array>&, const std::vector<array>&,
                                     const std::vector<array>&)>
        fun_vjp) {
  return [fun = std::move(fun), fun_vjp = std::move(fun_vjp)](const std::vector<array>& args) {
    return detail::make_custom_transforms(fun, fun_vjp, args, fun(args));
  };
}

std::function<std::vector<array>(const std::vector<array>&)> checkpoint(
    const std::function<std::vector<array>(const std::vector<array>&)>& fun) {
  // The backward pass traces fun again from the primals, so none of the
  // forward pass's intermediates need to survive until then.
  auto recompute = [fun](const std::vector<array>& primals, const std::vector<array>& cotangents,
                         const std::vector<array>&) {
    return vjp(fun, primals, cotangents).second;
  };
  return custom_vjp(fun, recompute);
}

}  // namespace mx
