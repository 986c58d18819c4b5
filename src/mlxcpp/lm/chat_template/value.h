// Values of the Jinja interpreter, with Python's semantics for what chat templates do with them:
// truthiness, str() and repr(), comparison, arithmetic. Lists and dicts are shared references
// (list.append and namespace assignment mutate in place, as in Python).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lm::jinja {

class Value;
using Array = std::vector<Value>;

// Insertion-ordered string-keyed map (Python dicts keep order; tojson output depends on it).
class Object {
 public:
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  void set(const std::string& key, Value v);
  bool erase(std::string_view key);
  const std::vector<std::pair<std::string, Value>>& items() const { return items_; }
  size_t size() const { return items_.size(); }

 private:
  std::vector<std::pair<std::string, Value>> items_;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
  const Value* get(size_t index, std::string_view name) const;
};

using Function = std::function<Value(CallArgs& args)>;

class Value {
 public:
  enum class Kind { Undefined, None, Bool, Int, Float, String, Array, Object, Function };

  Value() = default;  // undefined
  static Value none() {
    Value v;
    v.kind_ = Kind::None;
    return v;
  }
  Value(bool b) : kind_(Kind::Bool), i_(b) {}
  Value(int i) : kind_(Kind::Int), i_(i) {}
  Value(int64_t i) : kind_(Kind::Int), i_(i) {}
  Value(double d) : kind_(Kind::Float), d_(d) {}
  Value(std::string s) : kind_(Kind::String), s_(std::make_shared<std::string>(std::move(s))) {}
  Value(const char* s) : Value(std::string(s)) {}
  Value(Array a) : kind_(Kind::Array), a_(std::make_shared<Array>(std::move(a))) {}
  Value(Object o) : kind_(Kind::Object), o_(std::make_shared<Object>(std::move(o))) {}
  static Value function(Function f, std::string name) {
    Value v;
    v.kind_ = Kind::Function;
    v.f_ = std::make_shared<Function>(std::move(f));
    v.s_ = std::make_shared<std::string>(std::move(name));
    return v;
  }
  // A tuple: a list that prints with parentheses (dict items, (a, b) literals).
  static Value make_tuple(Array a) {
    Value v(std::move(a));
    v.is_tuple_ = true;
    return v;
  }
  bool is_tuple() const { return is_tuple_; }
  // A namespace() object: a dict whose attributes can be assigned with {% set ns.x = ... %}.
  static Value make_namespace(Object o) {
    Value v(std::move(o));
    v.is_namespace_ = true;
    return v;
  }

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int || kind_ == Kind::Bool; }
  bool is_number() const {
    return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool;
  }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }
  bool is_function() const { return kind_ == Kind::Function; }
  bool is_namespace() const { return is_namespace_; }

  bool as_bool() const { return i_ != 0; }
  int64_t as_int() const { return kind_ == Kind::Float ? static_cast<int64_t>(d_) : i_; }
  double as_double() const { return kind_ == Kind::Float ? d_ : static_cast<double>(i_); }
  const std::string& str() const { return *s_; }
  Array& array() const { return *a_; }
  Object& object() const { return *o_; }
  const Function& fn() const { return *f_; }
  const std::string& fn_name() const { return *s_; }

  // Python truthiness.
  bool truthy() const;
  // Python str() (what {{ }} prints); undefined prints as "".
  std::string to_str() const;
  // Python repr().
  std::string repr() const;
  // Python ==.
  bool equals(const Value& o) const;
  // Python <; throws std::runtime_error for unorderable types.
  bool less(const Value& o) const;
  // Length of a string (in code points), list or dict.
  size_t length() const;
  const char* type_name() const;

  // Same object (Python `is`).
  bool same(const Value& o) const;

 private:
  Kind kind_ = Kind::Undefined;
  bool is_namespace_ = false;
  bool is_tuple_ = false;
  int64_t i_ = 0;
  double d_ = 0;
  std::shared_ptr<std::string> s_;
  std::shared_ptr<Array> a_;
  std::shared_ptr<Object> o_;
  std::shared_ptr<Function> f_;
};

// Python repr() of a float ("1.0", "1e-05", "1e+16", "inf", "nan").
std::string float_repr(double d);
// Python-quoted string literal.
std::string string_repr(std::string_view s);

// json.dumps with HF's settings: ensure_ascii=false, sort_keys=false; indent < 0 means none
// (separators ", " and ": ").
std::string to_json(const Value& v, int indent = -1, bool sort_keys = false,
                    bool ensure_ascii = false);
// Parses JSON text (objects keep their key order).
Value from_json(std::string_view json_text, const std::string& what);

}  // namespace lm::jinja
