// Reverse and forward mode differentiation as graph rewrites (MLX's scheme):
// trace the function on stand-ins for the primals, sort the part of the graph
// that depends on them, then call each primitive's vjp (in reverse order) or
// jvp (in order). Everything is iterative, so 100k-deep graphs are fine.
#include "mlxcpp/mx/transforms.h"

#include <optional>
#include <sstream>
#include <typeinfo>
#include <unordered_map>

#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/primitives/elementwise.h"
#include "mlxcpp/mx/primitives/transforms.h"

namespace mx {

namespace {

bool is_stop_gradient(const array& a) {
  return a.has_primitive() && typeid(a.primitive()) == typeid(StopGradient);
}

Stream stream_of(const array& a) {
  return a.has_primitive() ? a.primitive().stream() : default_stream(default_device());
}

// Fresh nodes standing in for the primals while fun is traced.
std::vector<array> make_tracers(const std::vector<array>& primals) {
  std::vector<array> tracers;
  tracers.reserve(primals.size());
  for (auto& p : primals) {
    tracers.emplace_back(p.shape(), p.dtype(), std::make_shared<TracerInput>(stream_of(p)),
                         std::vector<array>{p});
    tracers.back().set_tracer(true);
  }
  return tracers;
}

// (output index, cotangent) seeds of the backward pass.
using Seeds = std::vector<std::pair<int, array>>;

// The shared core of vjp and value_and_grad: traces fun on tracers of the
// primals, asks `seed` for the cotangents of its outputs and runs the tape
// backwards.
std::pair<std::vector<array>, std::vector<array>> vjp_impl(
    const std::function<std::vector<array>(const std::vector<array>&)>& fun,
    const std::vector<array>& primals,
    const std::function<Seeds(const std::vector<array>&)>& seed) {
  detail::TracingScope tracing;
  auto tracers = make_tracers(primals);
  auto outputs = fun(tracers);
  Seeds seeds = seed(outputs);
  auto graph = detail::dependent_graph(outputs, tracers, /*differentiable=*/true);

  std::unordered_map<uintptr_t, array> cotan;
  auto accumulate = [&](const array& target, array g) {
    // A rule may compute in a wider type; gradients keep the dtype of what
    // they are the gradient of.
    if (g.dtype() != target.dtype() && is_inexact(target.dtype())) {
      g = astype(g, target.dtype(), stream_of(g));
    }
    auto it = cotan.find(target.id());
    if (it == cotan.end()) {
      cotan.emplace(target.id(), std::move(g));
    } else {
      it->second = add(it->second, g, stream_of(g));
    }
  };
  for (auto& [i, c] : seeds) {
    const array& out = outputs[i];
    if (is_stop_gradient(out)) continue;
    accumulate(out, astype(c, out.dtype(), stream_of(out)));
  }

  for (auto it = graph.tape.rbegin(); it != graph.tape.rend(); ++it) {
    array& node = *it;
    auto outs = node.outputs();
    bool has_cotan = false;
    for (auto& o : outs) has_cotan = has_cotan || cotan.count(o.id());
    if (!has_cotan) continue;

    Stream s = node.primitive().stream();
    std::vector<array> cts;
    cts.reserve(outs.size());
    for (auto& o : outs) {
      auto c = cotan.find(o.id());
      if (c == cotan.end()) {
        cts.push_back(zeros_like(o, s));
      } else {
        cts.push_back(std::move(c->second));
        cotan.erase(c);
      }
    }
    std::vector<int> argnums;
    const auto& inputs = node.inputs();
    for (int i = 0; i < static_cast<int>(inputs.size()); ++i) {
      if (graph.depends.count(inputs[i].id())) argnums.push_back(i);
    }
    auto vjps = node.primitive().vjp(inputs, cts, argnums, outs);
    if (vjps.size() != argnums.size()) {
      throw std::logic_error(std::string("[vjp] the vjp rule of ") + node.primitive().name() +
                             " returned " + std::to_string(vjps.size()) + " cotangents for " +
                             std::to_string(argnums.size()) + " inputs");
    }
    for (size_t k = 0; k < argnums.size(); ++k) {
      const array& in = inputs[argnums[k]];
      if (vjps[k].shape() != in.shape()) {
        throw std::logic_error(std::string("[vjp] the vjp rule of ") + node.primitive().name() +
                               " returned a cotangent of shape " + shape_str(vjps[k].shape()) +
                               " for input " + std::to_string(argnums[k]) + " of shape " +
                               shape_str(in.shape()));
      }
      accumulate(in, std::move(vjps[k]));
    }
  }

  std::vector<array> grads;
  grads.reserve(primals.size());
  for (size_t i = 0; i < tracers.size(); ++i) {
    auto c = cotan.find(tracers[i].id());
    grads.push_back(c == cotan.end() ? zeros_like(primals[i], stream_of(primals[i])) : c->second);
  }
  return {std::move(outputs), std::move(grads)};
}

// Puts argnums in range (negative ones count from the end) and rejects repeats.
std::vector<int> resolve_argnums(const std::vector<int>& argnums, size_t num_inputs,
                                 const char* op) {
  std::vector<int> out;
  int n = static_cast<int>(num_inputs);
  for (int a : argnums) {
    int r = a < 0 ? a + n : a;
    if (r < 0 || r >= n) {
      throw std::invalid_argument(std::string("[") + op + "] argnum " + std::to_string(a) +
                                  " is out of range for a function called with " +
                                  std::to_string(n) + " arguments");
    }
    if (std::find(out.begin(), out.end(), r) != out.end()) {
      throw std::invalid_argument(std::string("[") + op + "] argnum " + std::to_string(r) +
                                  " is repeated");
    }
    out.push_back(r);
  }
  return out;
}

// Seeds the backward pass with d(output 0)/d(output 0) = 1, checking that the
// first output is a scalar.
Seeds scalar_seed(const std::vector<array>& outputs, const char* op) {
  if (outputs.empty()) {
    throw std::invalid_argument(std::string("[") + op +
                                "] the function returned no outputs; the first must be a scalar");
  }
  if (outputs[0].ndim() != 0) {
    throw std::invalid_argument(std::string("[") + op +
                                "] the first output of the function must be a scalar to take "
                                "its gradient, but it has shape " +
                                shape_str(outputs[0].shape()));
  }
  return {{0, array(1.0f)}};
}

}  // namespace

namespace detail {

DependentGraph dependent_graph(const std::vector<array>& outputs, const std::vector<array>& sources,
                               bool differentiable) {
  DependentGraph g;
  std::unordered_set<uintptr_t> visited;
  for (array s : sources) {
    s.set_tracer(false);
    visited.insert(s.id());
    g.depends.insert(s.id());
  }
  auto enter = [&](const array& a) {
    if (!visited.insert(a.id()).second) return false;
    if (a.has_siblings()) {
      for (auto& s : a.siblings()) {
        visited.insert(s.id());
        g.keep_alive.push_back(s);
      }
    }
    return true;
  };
  // Post-order DFS with an explicit stack of (node, next input to look at).
  std::vector<std::pair<array, size_t>> stack;
  for (auto& out : outputs) {
    if (!enter(out)) continue;
    stack.emplace_back(out, 0);
    while (!stack.empty()) {
      auto& [a, next] = stack.back();
      bool blocked = differentiable && is_stop_gradient(a);
      if (!blocked && next < a.inputs().size()) {
        const array& in = a.inputs()[next++];
        if (enter(in)) stack.emplace_back(in, 0);
        continue;
      }
      array node = std::move(a);
      stack.pop_back();
      node.set_tracer(false);
      if (blocked) continue;
      bool dep = false;
      for (auto& in : node.inputs()) dep = dep || g.depends.count(in.id());
      if (!dep) continue;
      bool any = false;
      for (auto& o : node.outputs()) {
        o.set_tracer(false);
        if (differentiable && !is_inexact(o.dtype())) continue;
        g.depends.insert(o.id());
        any = true;
      }
      if (any) g.tape.push_back(std::move(node));
    }
  }
  return g;
}

}  // namespace detail

// ---------------------------------------------------------------- vjp / jvp

std::pair<std::vector<array>, std::vector<array>> vjp(
    const std::function<std::vector<array>(const std::vector<array>&)>& fun,
    const std::vector<array>& primals, const std::vector<array>& cotangents) {
  return vjp_impl(fun, primals, [&](const std::vector<array>& outputs) {
    // Cotangents pair with the outputs one to one, or with the outputs that
    // are not under stop_gradient (MLX's convention).
    std::vector<int> targets;
    if (cotangents.size() == outputs.size()) {
      for (int i = 0; i < static_cast<int>(outputs.size()); ++i) targets.push_back(i);
    } else {
      for (int i = 0; i < static_cast<int>(outputs.size()); ++i) {
        if (!is_stop_gradient(outputs[i])) targets.push_back(i);
      }
      if (targets.size() != cotangents.size()) {
        throw std::invalid_argument("[vjp] the function has " + std::to_string(outputs.size()) +
                                    " outputs (" + std::to_string(targets.size()) +
                                    " differentiable) but " + std::to_string(cotangents.size()) +
                                    " cotangents were given");
      }
    }
    Seeds seeds;
    for (size_t k = 0; k < targets.size(); ++k) {
      const array& out = outputs[targets[k]];
      if (out.shape() != cotangents[k].shape()) {
        throw std::invalid_argument("[vjp] output " + std::to_string(targets[k]) + " has shape " +
                                    shape_str(out.shape()) + " but its cotangent has shape " +
                                    shape_str(cotangents[k].shape()));
      }
      seeds.emplace_back(targets[k], cotangents[k]);
    }
    return seeds;
  });
}

std::pair<array, array> vjp(const std::function<array(const array&)>& fun, const array& primal,
                            const array& cotangent) {
  auto [outs, grads] =
      vjp([&](const std::vector<array>& x) { return std::vector<array>{fun(x[0])}; }, {primal},
          {cotangent});
  return {outs[0], grads[0]};
}

std::pair<std::vector<array>, std::vector<array>> jvp(
    const std::function<std::vector<array>(const std::vector<array>&)>& fun,
    const std::vector<array>& primals, const std::vector<array>& tangents) {
  if (primals.size() != tangents.size()) {
    throw std::invalid_argument("[jvp] got " + std::to_string(primals.size()) + " primals but " +
                                std::to_string(tangents.size()) + " tangents");
  }
  for (size_t i = 0; i < primals.size(); ++i) {
    if (primals[i].shape() != tangents[i].shape()) {
      throw std::invalid_argument("[jvp] primal " + std::to_string(i) + " has shape " +
                                  shape_str(primals[i].shape()) + " but its tangent has shape " +
                                  shape_str(tangents[i].shape()));
    }
  }
  detail::TracingScope tracing;
  auto tracers = make_tracers(primals);
  auto outputs = fun(tracers);
  auto graph = detail::dependent_graph(outputs, tracers, /*differentiable=*/true);

  std::unordered_map<uintptr_t, array> tan;
  for (size_t i = 0; i < tracers.size(); ++i) {
    tan.emplace(tracers[i].id(), astype(tangents[i], primals[i].dtype(), stream_of(tangents[i])));
  }
  for (auto& node : graph.tape) {
    std::vector<int> argnums;
    std::vector<array> ts;
    const auto& inputs = node.inputs();
    for (int i = 0; i < static_cast<int>(inputs.size()); ++i) {
      auto t = tan.find(inputs[i].id());
      if (t != tan.end()) {
        argnums.push_back(i);
        ts.push_back(t->second);
      }
    }
    auto outs = node.outputs();
    auto jvps = node.primitive().jvp(inputs, ts, argnums);
    if (jvps.size() != outs.size()) {
      throw std::logic_error(std::string("[jvp] the jvp rule of ") + node.primitive().name() +
                             " returned " + std::to_string(jvps.size()) + " tangents for " +
                             std::to_string(outs.size()) + " outputs");
    }
    for (size_t k = 0; k < outs.size(); ++k) {
      if (jvps[k].shape() != outs[k].shape()) {
        throw std::logic_error(std::string("[jvp] the jvp rule of ") + node.primitive().name() +
                               " returned a tangent of shape " + shape_str(jvps[k].shape()) +
                               " for output " + std::to_string(k) + " of shape " +
                               shape_str(outs[k].shape()));
      }
      tan.insert_or_assign(outs[k].id(), std::move(jvps[k]));
    }
  }
  std::vector<array> out_tangents;
  out_tangents.reserve(outputs.size());
  for (auto& o : outputs) {
    auto t = tan.find(o.id());
    out_tangents.push_back(t == tan.end() ? zeros_like(o, stream_of(o)) : t->second);
  }
  return {std::move(outputs), std::move(out_tangents)};
}

std::pair<array, array> jvp(const std::function<array(const array&)>& fun, const array& primal,
                            const array& tangent) {
  auto [outs, tans] =
      jvp([&](const std::vector<array>& x) { return std::vector<array>{fun(x[0])}; }, {primal},
          {tangent});
  return {outs[0], tans[0]};
}

// ---------------------------------------------------------------- gradients

ValueAndGradFn value_and_grad(
    const std::function<std::vector<array>(const std::vector<array>&)>& fun,
    const std::vector<int>& argnums) {
  if (argnums.empty()) {
    throw std::invalid_argument("[value_and_grad] argnums must name at least one argument");
  }
  return [fun, argnums](const std::vector<array>& inputs) {
    auto args = resolve_argnums(argnums, inputs.size(), "value_and_grad");
    std::vector<array> primals;
    for (int a : args) primals.push_back(inputs[a]);
    auto gfun = [&](const std::vector<array>& g) {
      std::vector<array> in = inputs;
      for (size_t k = 0; k < args.size(); ++k) in[args[k]] = g[k];
      return fun(in);
    };
    return vjp_impl(gfun, primals, [](const std::vector<array>& outputs) {
      return scalar_seed(outputs, "value_and_grad");
    });
  };
}

SimpleValueAndGradFn value_and_grad(const std::function<array(const std::vector<array>&)>& fun,
                                    const std::vector<int>& argnums) {
  auto vg = value_and_grad(
      [fun](const std::vector<array>& x) { return std::vector<array>{fun(x)}; }, argnums);
  return [vg](const std::vector<array>& inputs) {
    auto [outs, grads] = vg(inputs);
    return std::make_pair(outs[0], std::move(grads));
  };
}

std::function<std::pair<array, array>(const array&)> value_and_grad(
    const std::function<array(const array&)>& fun) {
  auto vg =
      value_and_grad([fun](const std::vector<array>& x) { return std::vector<array>{fun(x[0])}; },
                     std::vector<int>{0});
  return [vg](const array& x) {
    auto [outs, grads] = vg({x});
    return std::make_pair(outs[0], grads[0]);
  };
}

std::function<std::vector<array>(const std::vector<array>&)> grad(
    const std::function<array(const std::vector<array>&)>& fun, const std::vector<int>& argnums) {
  auto vg = value_and_grad(fun, argnums);
  return [vg](const std::vector<array>& inputs) { return vg(inputs).second; };
}

std::function<array(const array&)> grad(const std::function<array(const array&)>& fun) {
  auto vg = value_and_grad(fun);
  return [vg](const array& x) { return vg(x).second; };
}

std::function<std::pair<std::vector<array>, ParamMap>(const ParamMap&, const std::vector<array>&)>
value_and_grad(const ParamFn& fun) {
  return [fun](const ParamMap& params, const std::vector<array>& args) {
    std::vector<std::string> names;
    std::vector<array> primals;
    for (auto& [name, value] : params) {
      names.push_back(name);
      primals.push_back(value);
    }
    auto gfun = [&](const std::vector<array>& g) {
      ParamMap traced;
      for (size_t k = 0; k < names.size(); ++k) traced.emplace(names[k], g[k]);
      return fun(traced, args);
    };
    auto [outs, grads] = vjp_impl(gfun, primals, [](const std::vector<array>& outputs) {
      return scalar_seed(outputs, "value_and_grad");
    });
    ParamMap grad_map;
    for (size_t k = 0; k < names.size(); ++k) grad_map.emplace(names[k], std::move(grads[k]));
    return std::make_pair(std::move(outs), std::move(grad_map));
  };
}

std::function<ParamMap(const ParamMap&, const std::vector<array>&)> grad(const ParamFn& fun) {
  auto vg = value_and_grad(fun);
  return [vg](const ParamMap& params, const std::vector<array>& args) {
    return vg(params, args).second;
  };
}

}  // namespace mx
