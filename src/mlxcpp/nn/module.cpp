#include "mlxcpp/nn/module.h"

#include <set>
#include <sstream>
#include <stdexcept>

#include "mlxcpp/mx/ops.h"

namespace mx::nn {

namespace {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

bool key_matches(const std::string& name, const std::string& key) {
  if (name == key) return true;
  return name.size() > key.size() && name.compare(name.size() - key.size(), key.size(), key) == 0 &&
         name[name.size() - key.size() - 1] == '.';
}

void check_name(const std::string& name, const char* what) {
  if (name.empty() || name.find('.') != std::string::npos) {
    throw std::invalid_argument(std::string("Module: ") + what + " name '" + name +
                                "' must be non-empty and contain no '.'");
  }
}

}  // namespace

template <typename Fn>
void Module::for_each(const std::string& prefix, Fn&& fn) {
  for (size_t i = 0; i < params_.size(); ++i) fn(prefix + params_[i].first, *this, i);
  for (auto& [name, child] : children_) child->for_each(prefix + name + ".", fn);
}

void Module::collect(const std::string& prefix, bool trainable_only, ParamMap& out) const {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (trainable_only && frozen_[i]) continue;
    out.insert_or_assign(prefix + params_[i].first, params_[i].second);
  }
  for (const auto& [name, child] : children_)
    child->collect(prefix + name + ".", trainable_only, out);
}

ParamMap Module::parameters() const {
  ParamMap out;
  collect("", false, out);
  return out;
}

ParamMap Module::trainable_parameters() const {
  ParamMap out;
  collect("", true, out);
  return out;
}

// A parameter name has no dots, so the part before the last dot is a path of
// child names; children are matched by prefix so that a lookup never splits a
// name in the wrong place.
array* Module::find(const std::string& dotted) {
  for (auto& [name, value] : params_) {
    if (name == dotted) return &value;
  }
  for (auto& [name, child] : children_) {
    if (dotted.size() > name.size() + 1 && dotted.compare(0, name.size(), name) == 0 &&
        dotted[name.size()] == '.') {
      if (auto* p = child->find(dotted.substr(name.size() + 1))) return p;
    }
  }
  return nullptr;
}

const array* Module::find(const std::string& dotted) const {
  return const_cast<Module*>(this)->find(dotted);
}

bool* Module::find_frozen(const std::string& dotted) {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].first == dotted) return &frozen_[i];
  }
  for (auto& [name, child] : children_) {
    if (dotted.size() > name.size() + 1 && dotted.compare(0, name.size(), name) == 0 &&
        dotted[name.size()] == '.') {
      if (auto* f = child->find_frozen(dotted.substr(name.size() + 1))) return f;
    }
  }
  return nullptr;
}

bool Module::is_frozen(const std::string& dotted) const {
  if (const bool* f = const_cast<Module*>(this)->find_frozen(dotted)) return *f;
  throw std::invalid_argument("Module: no parameter '" + dotted + "'");
}

void Module::update(const ParamMap& params, bool strict) {
  // Check everything first, so that a failed update leaves the module unchanged.
  std::vector<std::pair<array*, const array*>> todo;
  for (const auto& [name, value] : params) {
    array* p = find(name);
    if (!p) {
      if (strict) throw std::invalid_argument("update: unknown parameter '" + name + "'");
      continue;
    }
    if (p->shape() != value.shape()) {
      throw std::invalid_argument("update: '" + name + "' has shape " + shape_str(value.shape()) +
                                  ", expected " + shape_str(p->shape()));
    }
    todo.emplace_back(p, &value);
  }
  for (auto& [dst, src] : todo) *dst = *src;
}

void Module::load_weights(const std::map<std::string, array>& weights, bool strict,
                          bool cast_floating) {
  std::vector<std::string> problems;
  std::vector<std::pair<array*, array>> todo;
  std::set<std::string> known;
  for_each("", [&](const std::string& name, Module& owner, size_t i) {
    known.insert(name);
    array& p = owner.params_[i].second;
    auto it = weights.find(name);
    if (it == weights.end()) {
      if (strict) problems.push_back("missing parameter '" + name + "'");
      return;
    }
    array w = it->second;
    if (w.shape() != p.shape()) {
      // A wrong shape is an error even when not strict: the model could not run with it.
      problems.push_back("'" + name + "' has shape " + shape_str(w.shape()) + ", expected " +
                         shape_str(p.shape()));
      return;
    }
    if (w.dtype() != p.dtype()) {
      if (cast_floating && is_floating_point(w.dtype()) && is_floating_point(p.dtype())) {
        w = astype(w, p.dtype());
      } else if (strict) {
        problems.push_back("'" + name + "' has dtype " + dtype_name(w.dtype()) + ", expected " +
                           dtype_name(p.dtype()));
        return;
      }
    }
    todo.emplace_back(&p, w);
  });
  if (strict) {
    for (const auto& [name, w] : weights) {
      if (!known.count(name)) problems.push_back("unexpected tensor '" + name + "'");
    }
  }
  if (!problems.empty()) {
    std::ostringstream msg;
    msg << "load_weights: ";
    if (problems.size() == 1) {
      msg << problems[0];
    } else {
      constexpr size_t kShown = 8;
      msg << problems.size() << " problems: ";
      for (size_t i = 0; i < problems.size() && i < kShown; ++i)
        msg << (i ? "; " : "") << problems[i];
      if (problems.size() > kShown) msg << "; and " << problems.size() - kShown << " more";
    }
    throw std::invalid_argument(msg.str());
  }
  for (auto& [dst, w] : todo) *dst = w;
}

void Module::set_frozen(const std::vector<std::string>& keys, bool frozen, const char* what) {
  std::vector<bool> used(keys.size(), false);
  for_each("", [&](const std::string& name, Module& owner, size_t i) {
    bool hit = keys.empty();
    for (size_t k = 0; k < keys.size(); ++k) {
      if (key_matches(name, keys[k])) {
        hit = true;
        used[k] = true;
      }
    }
    if (hit) owner.frozen_[i] = frozen;
  });
  // A key that names nothing is almost always a typo; saying so beats silently training
  // (or not training) the wrong parameters.
  for (size_t k = 0; k < keys.size(); ++k) {
    if (!used[k])
      throw std::invalid_argument(std::string(what) + ": no parameter matches '" + keys[k] + "'");
  }
}

void Module::freeze(const std::vector<std::string>& keys) { set_frozen(keys, true, "freeze"); }
void Module::unfreeze(const std::vector<std::string>& keys) { set_frozen(keys, false, "unfreeze"); }

void Module::train(bool mode) {
  training_ = mode;
  for (auto& [name, child] : children_) child->train(mode);
}

void Module::set_dtype(Dtype dtype) {
  for_each("", [&](const std::string&, Module& owner, size_t i) {
    array& p = owner.params_[i].second;
    if (is_floating_point(p.dtype()) && p.dtype() != dtype) p = astype(p, dtype);
  });
}

size_t Module::num_parameters() const { return num_parameters(false); }

size_t Module::num_parameters(bool trainable_only) const {
  size_t n = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!trainable_only || !frozen_[i]) n += params_[i].second.size();
  }
  for (const auto& [name, child] : children_) n += child->num_parameters(trainable_only);
  return n;
}

array& Module::param(const std::string& name) {
  for (auto& [n, value] : params_) {
    if (n == name) return value;
  }
  throw std::invalid_argument("Module: no parameter '" + name + "'");
}

const array& Module::param(const std::string& name) const {
  return const_cast<Module*>(this)->param(name);
}

bool Module::has_param(const std::string& name) const {
  for (const auto& [n, value] : params_) {
    if (n == name) return true;
  }
  return false;
}

Module& Module::child(const std::string& name) const {
  for (const auto& [n, c] : children_) {
    if (n == name) return *c;
  }
  throw std::invalid_argument("Module: no child module '" + name + "'");
}

void Module::replace_child(const std::string& name, std::shared_ptr<Module> module) {
  if (!module) throw std::invalid_argument("Module: replacement for child '" + name + "' is null");
  for (auto& [n, c] : children_) {
    if (n == name) {
      c = std::move(module);
      return;
    }
  }
  throw std::invalid_argument("Module: no child module '" + name + "' to replace");
}

array& Module::register_parameter(const std::string& name, array value) {
  check_name(name, "parameter");
  for (const auto& [n, c] : children_) {
    if (n == name) throw std::invalid_argument("Module: '" + name + "' is already a child module");
  }
  for (auto& [n, v] : params_) {
    // Registering again replaces the value (a layer may re-initialise a parameter).
    if (n == name) return v = std::move(value);
  }
  params_.emplace_back(name, std::move(value));
  frozen_.push_back(false);
  return params_.back().second;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_name(name, "child module");
  if (!module) throw std::invalid_argument("Module: child module '" + name + "' is null");
  if (has_param(name)) throw std::invalid_argument("Module: '" + name + "' is already a parameter");
  for (auto& [n, c] : children_) {
    if (n == name) {
      c = std::move(module);
      return;
    }
  }
  children_.emplace_back(name, std::move(module));
}

}  // namespace mx::nn
