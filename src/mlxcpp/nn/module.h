// mx::nn::Module: a tree of named parameters and child modules (MLX's nn.Module).
// Parameter names are dotted paths from the root ("model.layers.0.mlp.up_proj.weight"),
// equal to checkpoint tensor names, so loading is a name-to-name match.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mlxcpp/mx/array.h"
#include "mlxcpp/mx/transforms.h"

namespace mx::nn {

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  // All parameters of this module and its children, by dotted name.
  ParamMap parameters() const;
  // The parameters not frozen.
  ParamMap trainable_parameters() const;
  // Replaces parameters by name. Unknown names throw unless strict is false;
  // a shape change throws naming the parameter and both shapes.
  void update(const ParamMap& params, bool strict = true);
  // Loads checkpoint weights: with strict, a missing parameter, an unexpected
  // tensor, a wrong shape or a wrong dtype each throw an error naming the
  // tensor (and both shapes / dtypes). Values are taken as they are (no cast),
  // except that a floating tensor is cast to the parameter's dtype when
  // cast_floating is true.
  void load_weights(const std::map<std::string, array>& weights, bool strict = true,
                    bool cast_floating = false);
  // Freezes (or unfreezes) parameters: all of them when keys is empty, else the
  // parameters whose dotted name equals a key or ends with "." + key.
  void freeze(const std::vector<std::string>& keys = {});
  void unfreeze(const std::vector<std::string>& keys = {});
  // Training mode (dropout etc.), propagated to children.
  void train(bool mode = true);
  bool training() const { return training_; }
  // Casts every floating parameter to dtype.
  void set_dtype(Dtype dtype);
  // Number of parameter elements (all, or trainable only).
  size_t num_parameters() const;
  size_t num_parameters(bool trainable_only) const;
  // Whether the parameter at a dotted name is frozen; throws naming it if absent.
  bool is_frozen(const std::string& dotted) const;

  // Direct access to a parameter of this module (not of children); throws naming it if absent.
  // Holders of a reference see later update()/load_weights() values (they assign in place).
  array& param(const std::string& name);
  const array& param(const std::string& name) const;
  bool has_param(const std::string& name) const;
  // A child by name (throws naming it if absent).
  Module& child(const std::string& name) const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }
  // Replaces the existing child `name` (nn::quantize swaps Linear for QuantizedLinear this way);
  // throws naming it when there is no such child. A parent that keeps its own typed pointer to
  // that child (e.g. a ModuleList's items) would not see the swap: replace only leaves that
  // their parents reach through child().
  void replace_child(const std::string& name, std::shared_ptr<Module> module);

 protected:
  array& register_parameter(const std::string& name, array value);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void collect(const std::string& prefix, bool trainable_only, ParamMap& out) const;
  array* find(const std::string& dotted);
  bool* find_frozen(const std::string& dotted);

  const array* find(const std::string& dotted) const;
  // Calls fn(dotted name, owning module, index into its params_) for every parameter of the tree.
  template <typename Fn>
  void for_each(const std::string& prefix, Fn&& fn);
  void set_frozen(const std::vector<std::string>& keys, bool frozen, const char* what);

  // A deque, so that the reference register_parameter returns stays valid while
  // later parameters are registered.
  std::deque<std::pair<std::string, array>> params_;  // registration order
  std::deque<bool> frozen_;  // parallel to params_; a deque so find_frozen can point into it
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// An ordered list of child modules named "0", "1", ... (MLX keeps lists in the tree the same way).
template <typename M>
class ModuleList : public Module {
 public:
  void push_back(std::shared_ptr<M> m) {
    items_.push_back(register_module(std::to_string(items_.size()), std::move(m)));
  }
  M& operator[](size_t i) const { return *items_.at(i); }
  size_t size() const { return items_.size(); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

}  // namespace mx::nn
