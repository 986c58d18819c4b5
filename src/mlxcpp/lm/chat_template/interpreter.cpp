#include "mlxcpp/lm/chat_template/interpreter.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>

namespace lm::jinja {

namespace {

enum class Flow { Normal, Break, Continue };

class Interpreter {
 public:
  explicit Interpreter(Scope* globals) : globals_(globals) {}

  Flow exec(const Body& body, Scope& scope, std::string& out) {
    for (auto& s : body) {
      Flow f = exec(*s, scope, out);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Value eval(const Expr& e, Scope& scope) {
    try {
      return eval_inner(e, scope);
    } catch (const TemplateError&) {
      throw;
    } catch (const RaisedError&) {
      throw;
    } catch (const std::exception& ex) {
      throw TemplateError(ex.what(), e.pos);
    }
  }

  Value call(const Value& fn, CallArgs& args) {
    if (!fn.is_function()) {
      throw std::runtime_error(std::string("'") + fn.type_name() + "' object is not callable");
    }
    return fn.fn()(args);
  }

 private:
  Flow exec(const Stmt& s, Scope& scope, std::string& out) {
    switch (s.kind) {
      case Stmt::Kind::Text:
        out += s.text;
        return Flow::Normal;
      case Stmt::Kind::Output: {
        Value v = eval(*s.expr, scope);
        out += v.to_str();
        return Flow::Normal;
      }
      case Stmt::Kind::If:
        for (auto& [cond, body] : s.branches) {
          if (eval(*cond, scope).truthy()) return exec(body, scope, out);
        }
        return exec(s.else_body, scope, out);
      case Stmt::Kind::For:
        return exec_for(s, scope, out);
      case Stmt::Kind::Set: {
        Value v;
        if (s.expr) {
          v = eval(*s.expr, scope);
        } else {
          std::string captured;
          exec(s.body, scope, captured);
          v = Value(captured);
        }
        if (!s.attr.empty()) {
          const Value* ns = scope.lookup(s.targets[0]);
          if (!ns || !ns->is_object() || !ns->is_namespace()) {
            throw TemplateError(
                "cannot assign attribute on non-namespace object '" + s.targets[0] + "'", s.pos);
          }
          ns->object().set(s.attr, v);
        } else {
          assign(s.targets, v, scope, s.pos);
        }
        return Flow::Normal;
      }
      case Stmt::Kind::Macro:
        scope.vars.set(s.name, make_macro(s, scope, nullptr));
        return Flow::Normal;
      case Stmt::Kind::CallBlock: {
        const Expr& c = *s.expr;
        Value fn = eval(*c.a, scope);
        CallArgs args = eval_args(c, scope);
        Value caller = make_macro(s, scope, nullptr);
        args.keyword.emplace_back("caller", caller);
        try {
          out += call(fn, args).to_str();
        } catch (const TemplateError&) {
          throw;
        } catch (const RaisedError&) {
          throw;
        } catch (const std::exception& ex) {
          throw TemplateError(ex.what(), s.pos);
        }
        return Flow::Normal;
      }
      case Stmt::Kind::FilterBlock: {
        std::string captured;
        exec(s.body, scope, captured);
        Scope inner;
        inner.parent = &scope;
        inner.vars.set("\x01filter_body", Value(captured));
        out += eval(*s.expr, inner).to_str();
        return Flow::Normal;
      }
      case Stmt::Kind::Break:
        return Flow::Break;
      case Stmt::Kind::Continue:
        return Flow::Continue;
    }
    return Flow::Normal;
  }

  void assign(const std::vector<std::string>& targets, const Value& v, Scope& scope, Pos pos) {
    if (targets.size() == 1) {
      scope.vars.set(targets[0], v);
      return;
    }
    std::vector<Value> items = iterate(v);
    if (items.size() != targets.size()) {
      throw TemplateError("cannot unpack " + std::to_string(items.size()) + " values into " +
                              std::to_string(targets.size()) + " names",
                          pos);
    }
    for (size_t k = 0; k < targets.size(); ++k) scope.vars.set(targets[k], items[k]);
  }

  Flow exec_for(const Stmt& s, Scope& scope, std::string& out) {
    Value iterable = eval(*s.expr, scope);
    std::vector<Value> all;
    if (iterable.is_object()) {
      for (auto& [k, v] : iterable.object().items()) all.push_back(Value(k));
    } else if (iterable.is_undefined() || iterable.is_none()) {
      if (iterable.is_none()) throw TemplateError("'NoneType' object is not iterable", s.pos);
    } else {
      all = iterate(iterable);
    }
    std::vector<Value> items;
    if (s.filter) {
      for (auto& v : all) {
        Scope probe;
        probe.parent = &scope;
        assign(s.targets, v, probe, s.pos);
        if (eval(*s.filter, probe).truthy()) items.push_back(v);
      }
    } else {
      items = std::move(all);
    }
    if (items.empty()) {
      return exec(s.else_body, scope, out);
    }
    const size_t n = items.size();
    for (size_t k = 0; k < n; ++k) {
      Scope inner;
      inner.parent = &scope;
      Object loop;
      loop.set("index", Value(static_cast<int64_t>(k + 1)));
      loop.set("index0", Value(static_cast<int64_t>(k)));
      loop.set("revindex", Value(static_cast<int64_t>(n - k)));
      loop.set("revindex0", Value(static_cast<int64_t>(n - k - 1)));
      loop.set("first", Value(k == 0));
      loop.set("last", Value(k + 1 == n));
      loop.set("length", Value(static_cast<int64_t>(n)));
      loop.set("depth", Value(1));
      loop.set("depth0", Value(0));
      loop.set("previtem", k > 0 ? items[k - 1] : Value());
      loop.set("nextitem", k + 1 < n ? items[k + 1] : Value());
      size_t index = k;
      loop.set("cycle", Value::function(
                            [index](CallArgs& a) -> Value {
                              if (a.positional.empty()) {
                                throw std::runtime_error("no items for cycling given");
                              }
                              return a.positional[index % a.positional.size()];
                            },
                            "loop.cycle"));
      inner.vars.set("loop", Value(std::move(loop)));
      assign(s.targets, items[k], inner, s.pos);
      Flow f = exec(s.body, inner, out);
      if (f == Flow::Break) break;
    }
    return Flow::Normal;
  }

  Value make_macro(const Stmt& s, Scope& defining, const Value* /*unused*/) {
    const Stmt* macro = &s;
    Scope* def_scope = &defining;
    Interpreter* self = this;
    return Value::function(
        [macro, def_scope, self](CallArgs& args) -> Value {
          Scope local;
          local.parent = def_scope;
          for (size_t k = 0; k < macro->params.size(); ++k) {
            const MacroParam& p = macro->params[k];
            const Value* given = args.get(k, p.name);
            if (given) {
              local.vars.set(p.name, *given);
            } else if (p.default_value) {
              local.vars.set(p.name, self->eval(*p.default_value, local));
            } else {
              local.vars.set(p.name, Value());
            }
          }
          for (auto& [k, v] : args.keyword) {
            if (k == "caller") {
              local.vars.set("caller", v);
              continue;
            }
            bool known = false;
            for (auto& p : macro->params) known = known || p.name == k;
            if (!known) {
              throw std::runtime_error("macro '" + macro->name + "' takes no keyword argument '" +
                                       k + "'");
            }
          }
          if (args.positional.size() > macro->params.size()) {
            throw std::runtime_error("macro '" + macro->name + "' takes not more than " +
                                     std::to_string(macro->params.size()) + " arguments");
          }
          std::string out;
          self->exec(macro->body, local, out);
          return Value(out);
        },
        s.name.empty() ? "caller" : s.name);
  }

  CallArgs eval_args(const Expr& e, Scope& scope) {
    CallArgs args;
    for (auto& a : e.items) args.positional.push_back(eval(*a, scope));
    for (auto& [k, v] : e.kwargs) args.keyword.emplace_back(k, eval(*v, scope));
    return args;
  }

  Value eval_inner(const Expr& e, Scope& scope) {
    switch (e.kind) {
      case Expr::Kind::Literal:
        return e.value;
      case Expr::Kind::Name: {
        const Value* v = scope.lookup(e.name);
        return v ? *v : Value();
      }
      case Expr::Kind::List:
      case Expr::Kind::Tuple: {
        Array a;
        for (auto& item : e.items) a.push_back(eval(*item, scope));
        return e.kind == Expr::Kind::Tuple ? Value::make_tuple(std::move(a)) : Value(std::move(a));
      }
      case Expr::Kind::Dict: {
        Object o;
        for (size_t k = 0; k + 1 < e.items.size(); k += 2) {
          Value key = eval(*e.items[k], scope);
          o.set(key.to_str(), eval(*e.items[k + 1], scope));
        }
        return Value(std::move(o));
      }
      case Expr::Kind::Attr: {
        Value obj = eval(*e.a, scope);
        if (obj.is_undefined()) {
          throw std::runtime_error("'" + describe_undefined(*e.a) + "' is undefined");
        }
        if (obj.is_object()) {
          if (const Value* v = obj.object().find(e.name)) return *v;
          return Value();
        }
        return Value();
      }
      case Expr::Kind::Item: {
        Value obj = eval(*e.a, scope);
        if (obj.is_undefined()) {
          throw std::runtime_error("'" + describe_undefined(*e.a) + "' is undefined");
        }
        return py_getitem(obj, eval(*e.b, scope));
      }
      case Expr::Kind::Slice:
        return eval_slice(e, scope);
      case Expr::Kind::Call:
        return eval_call(e, scope);
      case Expr::Kind::Filter: {
        Value input = eval(*e.a, scope);
        CallArgs args = eval_args(e, scope);
        return apply_filter(e.name, input, args,
                            [this](const Value& fn, CallArgs& a) { return call(fn, a); });
      }
      case Expr::Kind::Test: {
        Value input;
        // `x is defined` must not fail on undefined parents.
        try {
          input = eval(*e.a, scope);
        } catch (const TemplateError&) {
          if (e.name != "defined" && e.name != "undefined") throw;
          input = Value();
        }
        if (!has_test(e.name)) throw std::runtime_error("no test named '" + e.name + "'");
        CallArgs args = eval_args(e, scope);
        bool r = apply_test(e.name, input, args);
        return Value(e.negated ? !r : r);
      }
      case Expr::Kind::Unary: {
        if (e.name == "not") return Value(!eval(*e.a, scope).truthy());
        Value v = eval(*e.a, scope);
        if (!v.is_number()) {
          throw std::runtime_error(std::string("bad operand type for unary ") + e.name + ": '" +
                                   v.type_name() + "'");
        }
        if (e.name == "+") return v;
        if (v.kind() == Value::Kind::Float) return Value(-v.as_double());
        return Value(-v.as_int());
      }
      case Expr::Kind::Binary:
        return eval_binary(e, scope);
      case Expr::Kind::Compare: {
        Value a = eval(*e.a, scope);
        Value b = eval(*e.b, scope);
        const std::string& op = e.name;
        if (op == "==") return Value(a.equals(b));
        if (op == "!=") return Value(!a.equals(b));
        if (op == "<") return Value(a.less(b));
        if (op == ">") return Value(b.less(a));
        if (op == "<=") return Value(!b.less(a));
        if (op == ">=") return Value(!a.less(b));
        if (op == "in") return Value(py_contains(b, a));
        if (op == "not in") return Value(!py_contains(b, a));
        throw std::runtime_error("unknown comparison " + op);
      }
      case Expr::Kind::Cond: {
        if (eval(*e.items[0], scope).truthy()) return eval(*e.items[1], scope);
        if (e.items[2]) return eval(*e.items[2], scope);
        return Value();
      }
    }
    return Value();
  }

  static std::string describe_undefined(const Expr& e) {
    if (e.kind == Expr::Kind::Name) return e.name;
    if (e.kind == Expr::Kind::Attr) return describe_undefined(*e.a) + "." + e.name;
    return "value";
  }

  Value eval_call(const Expr& e, Scope& scope) {
    if (e.a->kind == Expr::Kind::Attr) {
      Value obj = eval(*e.a->a, scope);
      CallArgs args = eval_args(e, scope);
      bool found = false;
      if (!obj.is_undefined() && !obj.is_namespace()) {
        Value r = call_method(obj, e.a->name, args, found);
        if (found) return r;
      }
      if (obj.is_undefined()) {
        throw std::runtime_error("'" + describe_undefined(*e.a->a) + "' is undefined");
      }
      Value fn =
          obj.is_object() && obj.object().find(e.a->name) ? *obj.object().find(e.a->name) : Value();
      if (fn.is_undefined()) {
        // jinja2's wording: the attribute is undefined on "'list object'".
        throw std::runtime_error(std::string("'") + obj.type_name() +
                                 " object' has no attribute '" + e.a->name + "'");
      }
      return call(fn, args);
    }
    Value fn = eval(*e.a, scope);
    if (fn.is_undefined()) {
      throw std::runtime_error("'" + describe_undefined(*e.a) + "' is undefined");
    }
    CallArgs args = eval_args(e, scope);
    return call(fn, args);
  }

  Value eval_slice(const Expr& e, Scope& scope) {
    Value obj = eval(*e.a, scope);
    auto opt = [&](int k) -> std::optional<int64_t> {
      if (!e.items[k]) return std::nullopt;
      Value v = eval(*e.items[k], scope);
      if (v.is_none()) return std::nullopt;
      return v.as_int();
    };
    auto start = opt(0), stop = opt(1), step_o = opt(2);
    int64_t step = step_o.value_or(1);
    if (step == 0) throw std::runtime_error("slice step cannot be zero");
    std::vector<Value> items;
    bool is_str = obj.is_string();
    if (is_str) {
      const std::string& s = obj.str();
      for (size_t i = 0; i < s.size();) {
        size_t n = 1;
        unsigned char c = s[i];
        if (c >= 0xF0)
          n = 4;
        else if (c >= 0xE0)
          n = 3;
        else if (c >= 0xC0)
          n = 2;
        items.push_back(Value(s.substr(i, n)));
        i += n;
      }
    } else if (obj.is_array()) {
      items = obj.array();
    } else {
      throw std::runtime_error(std::string("'") + obj.type_name() +
                               "' object is not subscriptable");
    }
    int64_t len = static_cast<int64_t>(items.size());
    auto norm = [&](std::optional<int64_t> v, int64_t def) {
      if (!v) return def;
      int64_t x = *v;
      if (x < 0) x += len;
      if (step > 0) return std::clamp<int64_t>(x, 0, len);
      return std::clamp<int64_t>(x, -1, len - 1);
    };
    int64_t b = norm(start, step > 0 ? 0 : len - 1);
    int64_t en = norm(stop, step > 0 ? len : -1);
    std::vector<Value> out;
    for (int64_t i = b; step > 0 ? i < en : i > en; i += step) out.push_back(items[i]);
    if (is_str) {
      std::string s;
      for (auto& v : out) s += v.str();
      return Value(s);
    }
    return Value(std::move(out));
  }

  Value eval_binary(const Expr& e, Scope& scope) {
    const std::string& op = e.name;
    if (op == "and") {
      Value a = eval(*e.a, scope);
      return a.truthy() ? eval(*e.b, scope) : a;
    }
    if (op == "or") {
      Value a = eval(*e.a, scope);
      return a.truthy() ? a : eval(*e.b, scope);
    }
    Value a = eval(*e.a, scope);
    Value b = eval(*e.b, scope);
    if (op == "~") return Value(a.to_str() + b.to_str());
    auto type_error = [&]() -> std::runtime_error {
      return std::runtime_error(std::string("unsupported operand type(s) for ") + op + ": '" +
                                a.type_name() + "' and '" + b.type_name() + "'");
    };
    if (a.is_undefined() || b.is_undefined()) {
      throw std::runtime_error("undefined value used with operator " + op);
    }
    if (op == "+") {
      if (a.is_string() && b.is_string()) return Value(a.str() + b.str());
      if (a.is_array() && b.is_array()) {
        Array r = a.array();
        r.insert(r.end(), b.array().begin(), b.array().end());
        return Value(std::move(r));
      }
    }
    if (op == "*") {
      if ((a.is_string() || a.is_array()) && b.is_int()) std::swap(a, b);
      if (a.is_int() && (b.is_string() || b.is_array())) {
        int64_t n = std::max<int64_t>(0, a.as_int());
        if (b.is_string()) {
          std::string r;
          for (int64_t k = 0; k < n; ++k) r += b.str();
          return Value(r);
        }
        Array r;
        for (int64_t k = 0; k < n; ++k) r.insert(r.end(), b.array().begin(), b.array().end());
        return Value(std::move(r));
      }
    }
    if (op == "%" && a.is_string()) return Value(percent_format(a.str(), b));
    if (!a.is_number() || !b.is_number()) throw type_error();
    bool fl = a.kind() == Value::Kind::Float || b.kind() == Value::Kind::Float;
    if (op == "+")
      return fl ? Value(a.as_double() + b.as_double()) : Value(a.as_int() + b.as_int());
    if (op == "-")
      return fl ? Value(a.as_double() - b.as_double()) : Value(a.as_int() - b.as_int());
    if (op == "*")
      return fl ? Value(a.as_double() * b.as_double()) : Value(a.as_int() * b.as_int());
    if (op == "/") {
      if (b.as_double() == 0) throw std::runtime_error("division by zero");
      return Value(a.as_double() / b.as_double());
    }
    if (op == "//" || op == "%") {
      if (b.as_double() == 0) throw std::runtime_error("integer division or modulo by zero");
      if (fl) {
        double q = std::floor(a.as_double() / b.as_double());
        return op == "//" ? Value(q) : Value(a.as_double() - q * b.as_double());
      }
      int64_t x = a.as_int(), y = b.as_int();
      int64_t q = x / y;
      if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
      return op == "//" ? Value(q) : Value(x - q * y);
    }
    if (op == "**") {
      if (!fl && b.as_int() >= 0) {
        int64_t r = 1;
        for (int64_t k = 0; k < b.as_int(); ++k) r *= a.as_int();
        return Value(r);
      }
      return Value(std::pow(a.as_double(), b.as_double()));
    }
    throw type_error();
  }

  // Python's "fmt % args" for %s, %d, %r, %f and %%.
  static std::string percent_format(const std::string& fmt, const Value& args) {
    std::vector<Value> list = args.is_array() ? args.array() : std::vector<Value>{args};
    std::string out;
    size_t next = 0;
    for (size_t i = 0; i < fmt.size(); ++i) {
      if (fmt[i] != '%' || i + 1 >= fmt.size()) {
        out += fmt[i];
        continue;
      }
      char c = fmt[++i];
      if (c == '%') {
        out += '%';
        continue;
      }
      if (next >= list.size()) throw std::runtime_error("not enough arguments for format string");
      const Value& v = list[next++];
      if (c == 's')
        out += v.to_str();
      else if (c == 'r')
        out += v.repr();
      else if (c == 'd' || c == 'i')
        out += std::to_string(v.as_int());
      else if (c == 'f') {
        char b[64];
        std::snprintf(b, sizeof(b), "%f", v.as_double());
        out += b;
      } else {
        throw std::runtime_error(std::string("unsupported format character '") + c + "'");
      }
    }
    return out;
  }

  Scope* globals_;
};

}  // namespace

std::string render(const Template& tpl, const Object& globals) {
  Scope root;
  add_builtin_globals(root.vars);
  for (auto& [k, v] : globals.items()) root.vars.set(k, v);
  Scope top;  // template-level assignments
  top.parent = &root;
  Interpreter interp(&root);
  std::string out;
  interp.exec(tpl.body, top, out);
  return out;
}

}  // namespace lm::jinja
