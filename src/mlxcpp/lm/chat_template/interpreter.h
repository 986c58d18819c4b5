// Evaluates a parsed template against a context of values. Internal to chat_template/.
#pragma once

#include <memory>
#include <string>

#include "mlxcpp/lm/chat_template/ast.h"
#include "mlxcpp/lm/chat_template/value.h"

namespace lm::jinja {

// A variable scope; lookups fall back to the parent.
struct Scope {
  Object vars;
  Scope* parent = nullptr;
  const Value* lookup(std::string_view name) const {
    for (const Scope* s = this; s; s = s->parent) {
      if (const Value* v = s->vars.find(name)) return v;
    }
    return nullptr;
  }
};

// Renders `tpl` with the given global variables (the builtin globals are added).
std::string render(const Template& tpl, const Object& globals);

// Builtins, defined in builtins.cpp. Each throws std::runtime_error on bad arguments; the
// interpreter adds the template position.
Value apply_filter(const std::string& name, const Value& input, CallArgs& args,
                   const std::function<Value(const Value& fn, CallArgs&)>& call);
bool apply_test(const std::string& name, const Value& input, CallArgs& args);
bool has_test(const std::string& name);
// Method call on a string, list or dict (obj.name(args)); sets `found` false when there is no
// such method.
Value call_method(const Value& obj, const std::string& name, CallArgs& args, bool& found);
void add_builtin_globals(Object& globals);

// Python-style helpers shared by builtins and the interpreter.
Value py_getitem(const Value& obj, const Value& key);
std::vector<Value> iterate(const Value& v);  // list items, dict keys, string characters
bool py_contains(const Value& container, const Value& item);

}  // namespace lm::jinja
