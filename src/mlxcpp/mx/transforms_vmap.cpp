// vmap as a graph rewrite (MLX's scheme): trace the function on unbatched
// stand-ins for the mapped inputs, then replay the part of the graph that
// depends on them, calling each primitive's vmap with the batch axes of its
// inputs. Nodes that do not depend on a mapped input are reused as they are.
#include <sstream>
#include <unordered_map>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/transforms.h"
#include "mlxcpp/mx/transforms.h"

namespace mx {

namespace {

// The size of the mapped axis, checking in_axes against the inputs.
int mapped_size(const std::vector<array>& inputs, const std::vector<int>& axes) {
  if (axes.size() != inputs.size()) {
    throw std::invalid_argument("[vmap] the function got " + std::to_string(inputs.size()) +
                                " inputs but in_axes has " + std::to_string(axes.size()) +
                                " entries");
  }
  int size = -1;
  int first = -1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    int ax = axes[i];
    if (ax == -1) continue;
    if (ax < 0 || ax >= static_cast<int>(inputs[i].ndim())) {
      throw std::invalid_argument("[vmap] in_axes[" + std::to_string(i) +
                                  "] = " + std::to_string(ax) + " is out of bounds for input " +
                                  std::to_string(i) + " of shape " + shape_str(inputs[i].shape()) +
                                  " (-1 leaves it unmapped)");
    }
    int n = inputs[i].shape(ax);
    if (size >= 0 && n != size) {
      throw std::invalid_argument(
          "[vmap] mapped axes differ in size: input " + std::to_string(first) + " has " +
          std::to_string(size) + " along axis " + std::to_string(axes[first]) + ", input " +
          std::to_string(i) + " of shape " + shape_str(inputs[i].shape()) + " has " +
          std::to_string(n) + " along axis " + std::to_string(ax));
    }
    size = n;
    if (first < 0) first = static_cast<int>(i);
  }
  if (size < 0) {
    throw std::invalid_argument("[vmap] at least one input must be mapped (all in_axes are -1)");
  }
  return size;
}

std::vector<array> vmap_apply(
    const std::function<std::vector<array>(const std::vector<array>&)>& fun,
    const std::vector<array>& inputs, const std::vector<int>& in_axes,
    const std::vector<int>& out_axes_arg) {
  std::vector<int> in_axes_ = in_axes.empty() ? std::vector<int>(inputs.size(), 0) : in_axes;
  int size = mapped_size(inputs, in_axes_);

  std::vector<array> stand_ins;
  std::vector<array> sources;
  std::vector<array> s_outputs;
  {
    detail::TracingScope tracing;
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (in_axes_[i] == -1) {
        stand_ins.push_back(inputs[i]);
        continue;
      }
      Shape shape = inputs[i].shape();
      shape.erase(shape.begin() + in_axes_[i]);
      Stream s = inputs[i].has_primitive() ? inputs[i].primitive().stream()
                                           : default_stream(default_device());
      stand_ins.emplace_back(std::move(shape), inputs[i].dtype(), std::make_shared<VmapInput>(s),
                             std::vector<array>{});
      stand_ins.back().set_tracer(true);
      sources.push_back(stand_ins.back());
    }
    s_outputs = fun(stand_ins);
  }
  std::vector<int> out_axes =
      out_axes_arg.empty() ? std::vector<int>(s_outputs.size(), 0) : out_axes_arg;
  if (out_axes.size() != s_outputs.size()) {
    throw std::invalid_argument("[vmap] the function returned " + std::to_string(s_outputs.size()) +
                                " outputs but out_axes has " + std::to_string(out_axes.size()) +
                                " entries");
  }

  auto graph = detail::dependent_graph(s_outputs, sources, /*differentiable=*/false);
  // id of a traced node -> (its batched counterpart, batch axis or -1)
  std::unordered_map<uintptr_t, std::pair<array, int>> batched;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (in_axes_[i] != -1)
      batched.emplace(stand_ins[i].id(), std::make_pair(inputs[i], in_axes_[i]));
  }
  for (auto& node : graph.tape) {
    std::vector<array> v_inputs;
    std::vector<int> v_axes;
    for (auto& in : node.inputs()) {
      auto b = batched.find(in.id());
      if (b == batched.end()) {
        v_inputs.push_back(in);
        v_axes.push_back(-1);
      } else {
        v_inputs.push_back(b->second.first);
        v_axes.push_back(b->second.second);
      }
    }
    auto [v_outputs, v_out_axes] = node.primitive().vmap(v_inputs, v_axes);
    auto outs = node.outputs();
    if (v_outputs.size() != outs.size() || v_out_axes.size() != outs.size()) {
      throw std::logic_error(std::string("[vmap] the vmap rule of ") + node.primitive().name() +
                             " returned " + std::to_string(v_outputs.size()) + " outputs for " +
                             std::to_string(outs.size()));
    }
    for (size_t k = 0; k < outs.size(); ++k) {
      batched.insert_or_assign(outs[k].id(), std::make_pair(v_outputs[k], v_out_axes[k]));
    }
  }

  std::vector<array> results;
  for (size_t i = 0; i < s_outputs.size(); ++i) {
    int want = out_axes[i];
    auto b = batched.find(s_outputs[i].id());
    if (b != batched.end() && b->second.second >= 0) {
      auto& [out, ax] = b->second;
      if (want == -1) {
        throw std::invalid_argument("[vmap] output " + std::to_string(i) +
                                    " depends on a mapped input, so out_axes[" + std::to_string(i) +
                                    "] cannot be -1");
      }
      if (want < 0 || want >= static_cast<int>(out.ndim())) {
        throw std::invalid_argument("[vmap] out_axes[" + std::to_string(i) +
                                    "] = " + std::to_string(want) +
                                    " is out of bounds for output " + std::to_string(i) +
                                    " of batched shape " + shape_str(out.shape()));
      }
      results.push_back(ax == want ? out : moveaxis(out, ax, want));
      continue;
    }
    // Not batched: the same value for every element of the batch.
    array out = b != batched.end() ? b->second.first : s_outputs[i];
    if (want == -1) {
      results.push_back(out);
      continue;
    }
    if (want < 0 || want > static_cast<int>(out.ndim())) {
      throw std::invalid_argument("[vmap] out_axes[" + std::to_string(i) +
                                  "] = " + std::to_string(want) + " is out of bounds for output " +
                                  std::to_string(i) + " of unbatched shape " +
                                  shape_str(out.shape()));
    }
    Shape shape = out.shape();
    shape.insert(shape.begin() + want, size);
    results.push_back(broadcast_to(expand_dims(out, want), shape));
  }
  return results;
}

}  // namespace

std::function<std::vector<array>(const std::vector<array>&)> vmap(
    const std::function<std::vector<array>(const std::vector<array>&)>& fun,
    const std::vector<int>& in_axes, const std::vector<int>& out_axes) {
  return [fun, in_axes, out_axes](const std::vector<array>& inputs) {
    return vmap_apply(fun, inputs, in_axes, out_axes);
  };
}

std::function<array(const array&)> vmap(const std::function<array(const array&)>& fun, int in_axis,
                                        int out_axis) {
  auto vf = vmap([fun](const std::vector<array>& x) { return std::vector<array>{fun(x[0])}; },
                 {in_axis}, {out_axis});
  return [vf](const array& x) { return vf({x})[0]; };
}

std::function<array(const array&, const array&)> vmap(
    const std::function<array(const array&, const array&)>& fun, int in_axis_a, int in_axis_b,
    int out_axis) {
  auto vf = vmap([fun](const std::vector<array>& x) { return std::vector<array>{fun(x[0], x[1])}; },
                 {in_axis_a, in_axis_b}, {out_axis});
  return [vf](const array& a, const array& b) { return vf({a, b})[0]; };
}

}  // namespace mx
