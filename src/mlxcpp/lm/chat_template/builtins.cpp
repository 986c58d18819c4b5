// Jinja's builtin filters, tests and globals, and the Python str/list/dict methods chat templates
// call, with Python's results.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <set>
#include <stdexcept>

#include "mlxcpp/lm/chat_template/interpreter.h"
#include "mlxcpp/lm/tokenizer/unicode.h"

namespace lm::jinja {

namespace {

std::vector<std::string> code_points(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

bool is_py_space(unsigned char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || c == 0x1c || c == 0x1d || c == 0x1e || c == 0x1f;
}

// Python str.strip family; with no chars, strips whitespace (ASCII and the common Unicode spaces).
std::string py_strip(const std::string& s, const Value* chars, bool left, bool right) {
  auto cps = code_points(s);
  auto strip_it = [&](const std::string& cp) {
    if (chars && !chars->is_none() && !chars->is_undefined()) {
      return chars->str().find(cp) != std::string::npos;
    }
    if (cp.size() == 1) return is_py_space(static_cast<unsigned char>(cp[0]));
    static const std::set<std::string> kSpaces = {"\u0085", "\u00a0", "\u1680", "\u2000", "\u2001",
                                                  "\u2002", "\u2003", "\u2004", "\u2005", "\u2006",
                                                  "\u2007", "\u2008", "\u2009", "\u200a", "\u2028",
                                                  "\u2029", "\u202f", "\u205f", "\u3000"};
    return kSpaces.count(cp) > 0;
  };
  size_t b = 0, e = cps.size();
  if (left) {
    while (b < e && strip_it(cps[b])) ++b;
  }
  if (right) {
    while (e > b && strip_it(cps[e - 1])) --e;
  }
  std::string out;
  for (size_t k = b; k < e; ++k) out += cps[k];
  return out;
}

std::string py_upper(const std::string& s) { return lm::unicode::uppercase(s); }
std::string py_lower(const std::string& s) { return lm::unicode::lowercase(s); }

std::string py_title(const std::string& s) {
  std::string out = s;
  bool prev_cased = false;
  for (auto& c : out) {
    unsigned char u = c;
    bool alpha = std::isalpha(u);
    if (u >= 0x80) {
      prev_cased = true;  // treat non-ASCII as cased letters
      continue;
    }
    if (alpha) {
      c = static_cast<char>(prev_cased ? std::tolower(u) : std::toupper(u));
    }
    prev_cased = alpha;
  }
  return out;
}

std::string py_capitalize(const std::string& s) {
  std::string out = py_lower(s);
  if (!out.empty() && static_cast<unsigned char>(out[0]) < 0x80)
    out[0] = static_cast<char>(std::toupper(out[0]));
  return out;
}

std::vector<std::string> py_split(const std::string& s, const Value* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (!sep || sep->is_none() || sep->is_undefined()) {
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && is_py_space(static_cast<unsigned char>(s[i]))) ++i;
      if (i >= s.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t e = s.size();
        while (e > i && is_py_space(static_cast<unsigned char>(s[e - 1]))) --e;
        out.push_back(s.substr(i, e - i));
        break;
      }
      size_t j = i;
      while (j < s.size() && !is_py_space(static_cast<unsigned char>(s[j]))) ++j;
      out.push_back(s.substr(i, j - i));
      i = j;
    }
    return out;
  }
  const std::string& d = sep->str();
  if (d.empty()) throw std::runtime_error("empty separator");
  size_t start = 0;
  while (true) {
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) break;
    size_t p = s.find(d, start);
    if (p == std::string::npos) break;
    out.push_back(s.substr(start, p - start));
    start = p + d.size();
  }
  out.push_back(s.substr(start));
  return out;
}

std::string py_replace(const std::string& s, const std::string& from, const std::string& to,
                       int64_t count) {
  std::string out;
  if (from.empty()) {
    auto cps = code_points(s);
    int64_t done = 0;
    for (auto& cp : cps) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      out += cp;
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t p = s.find(from, start);
    if (p == std::string::npos) break;
    out.append(s, start, p - start);
    out += to;
    start = p + from.size();
    ++done;
  }
  out.append(s, start, std::string::npos);
  return out;
}

Value arg(CallArgs& a, size_t i, const char* name, Value fallback = Value()) {
  const Value* v = a.get(i, name);
  return v ? *v : fallback;
}

// str.format with {} / {0} / {name} fields (no format specs beyond plain conversion).
std::string py_format(const std::string& fmt, CallArgs& a) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '{') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
        out += '{';
        ++i;
        continue;
      }
      size_t close = fmt.find('}', i);
      if (close == std::string::npos)
        throw std::runtime_error("Single '{' encountered in format string");
      std::string field = fmt.substr(i + 1, close - i - 1);
      size_t colon = field.find(':');
      if (colon != std::string::npos) field = field.substr(0, colon);
      const Value* v = nullptr;
      if (field.empty()) {
        if (auto_index < a.positional.size()) v = &a.positional[auto_index++];
      } else if (std::isdigit(static_cast<unsigned char>(field[0]))) {
        size_t k = std::stoul(field);
        if (k < a.positional.size()) v = &a.positional[k];
      } else {
        for (auto& [name, val] : a.keyword) {
          if (name == field) v = &val;
        }
      }
      if (!v) throw std::runtime_error("format: missing argument for '{" + field + "}'");
      out += v->to_str();
      i = close;
    } else if (c == '}' && i + 1 < fmt.size() && fmt[i + 1] == '}') {
      out += '}';
      ++i;
    } else {
      out += c;
    }
  }
  return out;
}

// Attribute or item lookup used by map/selectattr/sort(attribute=): "a.b" walks nested keys.
Value attribute_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (cur.is_object()) {
      const Value* f = cur.object().find(part);
      cur = f ? *f : Value();
    } else if (cur.is_array() && !part.empty() &&
               std::isdigit(static_cast<unsigned char>(part[0]))) {
      cur = py_getitem(cur, Value(static_cast<int64_t>(std::stoll(part))));
    } else {
      cur = Value();
    }
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

void sort_values(std::vector<Value>& items, bool reverse, bool case_sensitive,
                 const std::string& attribute) {
  auto key = [&](const Value& v) {
    Value k = attribute.empty() ? v : attribute_path(v, attribute);
    if (!case_sensitive && k.is_string()) return Value(py_lower(k.str()));
    return k;
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    return reverse ? key(b).less(key(a)) : key(a).less(key(b));
  });
}

std::string indent_text(const std::string& s, const Value& width, bool first, bool blank) {
  std::string pad =
      width.is_string() ? width.str() : std::string(static_cast<size_t>(width.as_int()), ' ');
  std::string out;
  size_t start = 0;
  bool is_first = true;
  while (true) {
    size_t nl = s.find('\n', start);
    std::string line = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    bool add = is_first ? first : (blank || !line.empty());
    if (add) out += pad;
    out += line;
    if (nl == std::string::npos) break;
    out += '\n';
    start = nl + 1;
    is_first = false;
  }
  return out;
}

Value round_value(const Value& v, int64_t precision, const std::string& method) {
  double x = v.as_double();
  double m = std::pow(10.0, static_cast<double>(precision));
  double r;
  if (method == "ceil") {
    r = std::ceil(x * m) / m;
  } else if (method == "floor") {
    r = std::floor(x * m) / m;
  } else {
    // Python's round(): half to even.
    double y = x * m;
    double f = std::floor(y);
    double diff = y - f;
    if (diff > 0.5 || (diff == 0.5 && std::fmod(f, 2.0) != 0)) f += 1;
    r = f / m;
  }
  return Value(r);
}

}  // namespace

Value py_getitem(const Value& obj, const Value& key) {
  if (obj.is_object()) {
    const Value* v = obj.object().find(key.to_str());
    return v ? *v : Value();
  }
  if (obj.is_array()) {
    if (!key.is_int()) return Value();
    int64_t i = key.as_int();
    int64_t n = static_cast<int64_t>(obj.array().size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value();
    return obj.array()[i];
  }
  if (obj.is_string()) {
    if (!key.is_int()) return Value();
    auto cps = code_points(obj.str());
    int64_t i = key.as_int();
    int64_t n = static_cast<int64_t>(cps.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value();
    return Value(cps[i]);
  }
  return Value();
}

std::vector<Value> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Array:
      return v.array();
    case Value::Kind::Object: {
      std::vector<Value> keys;
      for (auto& [k, x] : v.object().items()) keys.push_back(Value(k));
      return keys;
    }
    case Value::Kind::String: {
      std::vector<Value> out;
      for (auto& cp : code_points(v.str())) out.push_back(Value(cp));
      return out;
    }
    case Value::Kind::Undefined:
      return {};
    default:
      throw std::runtime_error(std::string("'") + v.type_name() + "' object is not iterable");
  }
}

bool py_contains(const Value& c, const Value& item) {
  if (c.is_string()) {
    if (!item.is_string())
      throw std::runtime_error("'in <string>' requires string as left operand");
    return c.str().find(item.str()) != std::string::npos;
  }
  if (c.is_array()) {
    for (auto& v : c.array()) {
      if (v.equals(item)) return true;
    }
    return false;
  }
  if (c.is_object()) return item.is_string() && c.object().find(item.str()) != nullptr;
  if (c.is_undefined()) return false;
  throw std::runtime_error(std::string("argument of type '") + c.type_name() + "' is not iterable");
}

bool has_test(const std::string& n) {
  static const std::set<std::string> kTests = {
      "defined",     "undefined", "none",        "string",   "number",  "integer",
      "float",       "mapping",   "iterable",    "sequence", "boolean", "true",
      "false",       "eq",        "equalto",     "==",       "ne",      "!=",
      "odd",         "even",      "divisibleby", "in",       "lower",   "upper",
      "callable",    "sameas",    "gt",          "lt",       "ge",      "le",
      "greaterthan", "lessthan",  ">",           "<",        ">=",      "<="};
  return kTests.count(n) > 0;
}

bool apply_test(const std::string& n, const Value& v, CallArgs& a) {
  auto other = [&]() {
    if (a.positional.empty()) throw std::runtime_error("test '" + n + "' needs an argument");
    return a.positional[0];
  };
  if (n == "defined") return !v.is_undefined();
  if (n == "undefined") return v.is_undefined();
  if (n == "none") return v.is_none();
  if (n == "string") return v.is_string();
  if (n == "number") return v.is_number() && !v.is_bool();
  if (n == "integer") return v.kind() == Value::Kind::Int;
  if (n == "float") return v.kind() == Value::Kind::Float;
  if (n == "boolean") return v.is_bool();
  if (n == "true") return v.is_bool() && v.as_bool();
  if (n == "false") return v.is_bool() && !v.as_bool();
  if (n == "mapping") return v.is_object();
  if (n == "iterable") return v.is_array() || v.is_object() || v.is_string();
  if (n == "sequence") return v.is_array() || v.is_object() || v.is_string();
  if (n == "callable") return v.is_function();
  if (n == "eq" || n == "equalto" || n == "==") return v.equals(other());
  if (n == "ne" || n == "!=") return !v.equals(other());
  if (n == "gt" || n == "greaterthan" || n == ">") return other().less(v);
  if (n == "lt" || n == "lessthan" || n == "<") return v.less(other());
  if (n == "ge" || n == ">=") return !v.less(other());
  if (n == "le" || n == "<=") return !other().less(v);
  if (n == "odd") return v.as_int() % 2 != 0;
  if (n == "even") return v.as_int() % 2 == 0;
  if (n == "divisibleby") return other().as_int() != 0 && v.as_int() % other().as_int() == 0;
  if (n == "in") return py_contains(other(), v);
  if (n == "lower") return v.is_string() && py_lower(v.str()) == v.str();
  if (n == "upper") return v.is_string() && py_upper(v.str()) == v.str();
  if (n == "sameas") return v.same(other());
  throw std::runtime_error("no test named '" + n + "'");
}

Value apply_filter(const std::string& n, const Value& v, CallArgs& a,
                   const std::function<Value(const Value& fn, CallArgs&)>& call) {
  auto need_str = [&]() -> std::string {
    if (v.is_undefined()) return "";
    return v.to_str();
  };
  if (n == "trim") return Value(py_strip(need_str(), a.get(0, "chars"), true, true));
  if (n == "upper") return Value(py_upper(need_str()));
  if (n == "lower") return Value(py_lower(need_str()));
  if (n == "title") return Value(py_title(need_str()));
  if (n == "capitalize") return Value(py_capitalize(need_str()));
  if (n == "length" || n == "count") return Value(static_cast<int64_t>(v.length()));
  if (n == "string") return Value(v.to_str());
  if (n == "safe" || n == "e" || n == "escape") {
    if (n == "safe") return v;
    std::string out;
    for (char c : need_str()) {
      switch (c) {
        case '&':
          out += "&amp;";
          break;
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '"':
          out += "&#34;";
          break;
        case '\'':
          out += "&#39;";
          break;
        default:
          out += c;
      }
    }
    return Value(out);
  }
  if (n == "default" || n == "d") {
    Value fallback = arg(a, 0, "default_value", Value(""));
    bool boolean = arg(a, 1, "boolean", Value(false)).truthy();
    if (v.is_undefined() || (boolean && !v.truthy())) return fallback;
    return v;
  }
  if (n == "join") {
    std::string sep = arg(a, 0, "d", Value("")).to_str();
    Value attr = arg(a, 1, "attribute");
    std::string out;
    bool first = true;
    for (auto& item : iterate(v)) {
      if (!first) out += sep;
      first = false;
      out += (attr.is_undefined() ? item : attribute_path(item, attr.to_str())).to_str();
    }
    return Value(out);
  }
  if (n == "first") {
    auto items = iterate(v);
    return items.empty() ? Value() : items.front();
  }
  if (n == "last") {
    auto items = iterate(v);
    return items.empty() ? Value() : items.back();
  }
  if (n == "tojson") {
    Value indent = arg(a, 0, "indent");
    int ind = indent.is_undefined() || indent.is_none() ? -1 : static_cast<int>(indent.as_int());
    bool ensure_ascii = arg(a, 1, "ensure_ascii", Value(false)).truthy();
    bool sort_keys = arg(a, 3, "sort_keys", Value(false)).truthy();
    return Value(to_json(v, ind, sort_keys, ensure_ascii));
  }
  if (n == "items") {
    Array out;
    if (v.is_object()) {
      for (auto& [k, x] : v.object().items()) out.push_back(Value::make_tuple(Array{Value(k), x}));
    } else if (!v.is_undefined()) {
      throw std::runtime_error("items filter expects a mapping");
    }
    return Value(std::move(out));
  }
  if (n == "list") return Value(iterate(v));
  if (n == "unique") {
    Array out;
    for (auto& item : iterate(v)) {
      bool seen = false;
      for (auto& o : out) seen = seen || o.equals(item);
      if (!seen) out.push_back(item);
    }
    return Value(std::move(out));
  }
  if (n == "reverse") {
    if (v.is_string()) {
      auto cps = code_points(v.str());
      std::string out;
      for (auto it = cps.rbegin(); it != cps.rend(); ++it) out += *it;
      return Value(out);
    }
    auto items = iterate(v);
    std::reverse(items.begin(), items.end());
    return Value(std::move(items));
  }
  if (n == "sort") {
    auto items = iterate(v);
    bool reverse = arg(a, 0, "reverse", Value(false)).truthy();
    bool case_sensitive = arg(a, 1, "case_sensitive", Value(false)).truthy();
    Value attr = arg(a, 2, "attribute");
    sort_values(items, reverse, case_sensitive, attr.is_undefined() ? "" : attr.to_str());
    return Value(std::move(items));
  }
  if (n == "dictsort") {
    if (!v.is_object()) throw std::runtime_error("dictsort expects a mapping");
    bool case_sensitive = arg(a, 0, "case_sensitive", Value(false)).truthy();
    std::string by = arg(a, 1, "by", Value("key")).to_str();
    bool reverse = arg(a, 2, "reverse", Value(false)).truthy();
    Array pairs;
    for (auto& [k, x] : v.object().items()) pairs.push_back(Value::make_tuple(Array{Value(k), x}));
    sort_values(pairs, reverse, case_sensitive, by == "value" ? "1" : "0");
    return Value(std::move(pairs));
  }
  if (n == "map") {
    Array out;
    Value attr = arg(a, 99, "attribute");
    if (!attr.is_undefined()) {
      Value def = arg(a, 99, "default");
      for (auto& item : iterate(v)) {
        Value r = attribute_path(item, attr.to_str());
        out.push_back(r.is_undefined() && !def.is_undefined() ? def : r);
      }
      return Value(std::move(out));
    }
    if (a.positional.empty()) throw std::runtime_error("map needs a filter name or attribute=");
    std::string filter = a.positional[0].to_str();
    CallArgs rest;
    rest.positional.assign(a.positional.begin() + 1, a.positional.end());
    rest.keyword = a.keyword;
    for (auto& item : iterate(v)) out.push_back(apply_filter(filter, item, rest, call));
    return Value(std::move(out));
  }
  if (n == "select" || n == "reject" || n == "selectattr" || n == "rejectattr") {
    bool attr_mode = n == "selectattr" || n == "rejectattr";
    bool want = n == "select" || n == "selectattr";
    size_t at = 0;
    std::string attr;
    if (attr_mode) {
      if (a.positional.empty()) throw std::runtime_error(n + " needs an attribute name");
      attr = a.positional[at++].to_str();
    }
    std::string test = at < a.positional.size() ? a.positional[at++].to_str() : "";
    CallArgs targs;
    targs.positional.assign(a.positional.begin() + std::min(at, a.positional.size()),
                            a.positional.end());
    Array out;
    for (auto& item : iterate(v)) {
      Value x = attr_mode ? attribute_path(item, attr) : item;
      bool r = test.empty() ? x.truthy() : apply_test(test, x, targs);
      if (r == want) out.push_back(item);
    }
    return Value(std::move(out));
  }
  if (n == "replace") {
    if (a.positional.size() < 2) throw std::runtime_error("replace needs two arguments");
    int64_t count = a.positional.size() > 2 ? a.positional[2].as_int() : -1;
    return Value(py_replace(need_str(), a.positional[0].to_str(), a.positional[1].to_str(), count));
  }
  if (n == "int") {
    if (v.is_number()) return Value(v.as_int());
    try {
      return Value(static_cast<int64_t>(std::stoll(py_strip(v.to_str(), nullptr, true, true))));
    } catch (...) {
      return arg(a, 0, "default", Value(0));
    }
  }
  if (n == "float") {
    if (v.is_number()) return Value(v.as_double());
    try {
      return Value(std::stod(v.to_str()));
    } catch (...) {
      return arg(a, 0, "default", Value(0.0));
    }
  }
  if (n == "abs") {
    if (v.kind() == Value::Kind::Float) return Value(std::fabs(v.as_double()));
    return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  if (n == "round") {
    int64_t precision = arg(a, 0, "precision", Value(0)).as_int();
    std::string method = arg(a, 1, "method", Value("common")).to_str();
    return round_value(v, precision, method);
  }
  if (n == "indent") {
    Value width = arg(a, 0, "width", Value(4));
    bool first = arg(a, 1, "first", Value(false)).truthy();
    bool blank = arg(a, 2, "blank", Value(false)).truthy();
    return Value(indent_text(need_str(), width, first, blank));
  }
  if (n == "batch") {
    int64_t size = arg(a, 0, "linecount").as_int();
    if (size <= 0) throw std::runtime_error("batch size must be positive");
    Value fill = arg(a, 1, "fill_with");
    Array out, cur;
    for (auto& item : iterate(v)) {
      cur.push_back(item);
      if (static_cast<int64_t>(cur.size()) == size) {
        out.push_back(Value(cur));
        cur.clear();
      }
    }
    if (!cur.empty()) {
      if (!fill.is_undefined()) {
        while (static_cast<int64_t>(cur.size()) < size) cur.push_back(fill);
      }
      out.push_back(Value(cur));
    }
    return Value(std::move(out));
  }
  if (n == "sum") {
    Value total = arg(a, 1, "start", Value(0));
    Value attr = arg(a, 0, "attribute");
    for (auto& item : iterate(v)) {
      Value x = attr.is_undefined() ? item : attribute_path(item, attr.to_str());
      if (total.kind() == Value::Kind::Float || x.kind() == Value::Kind::Float) {
        total = Value(total.as_double() + x.as_double());
      } else {
        total = Value(total.as_int() + x.as_int());
      }
    }
    return total;
  }
  if (n == "min" || n == "max") {
    auto items = iterate(v);
    if (items.empty()) return Value();
    Value best = items[0];
    for (auto& x : items) {
      if (n == "min" ? x.less(best) : best.less(x)) best = x;
    }
    return best;
  }
  if (n == "wordcount")
    return Value(static_cast<int64_t>(py_split(need_str(), nullptr, -1).size()));
  if (n == "center") {
    int64_t width = arg(a, 0, "width", Value(80)).as_int();
    std::string s = need_str();
    int64_t len = static_cast<int64_t>(Value(s).length());
    if (len >= width) return Value(s);
    int64_t left = (width - len) / 2 + ((width - len) & width & 1);
    return Value(std::string(left, ' ') + s + std::string(width - len - left, ' '));
  }
  throw std::runtime_error("no filter named '" + n + "'");
}

Value call_method(const Value& obj, const std::string& n, CallArgs& a, bool& found) {
  found = true;
  if (obj.is_string()) {
    const std::string& s = obj.str();
    if (n == "strip") return Value(py_strip(s, a.get(0, "chars"), true, true));
    if (n == "lstrip") return Value(py_strip(s, a.get(0, "chars"), true, false));
    if (n == "rstrip") return Value(py_strip(s, a.get(0, "chars"), false, true));
    if (n == "upper") return Value(py_upper(s));
    if (n == "lower") return Value(py_lower(s));
    if (n == "title") return Value(py_title(s));
    if (n == "capitalize") return Value(py_capitalize(s));
    if (n == "split" || n == "rsplit") {
      Value maxsplit = arg(a, 1, "maxsplit", Value(-1));
      if (n == "rsplit" && maxsplit.as_int() >= 0) {
        throw std::runtime_error("rsplit with maxsplit is not supported");
      }
      Array out;
      for (auto& part : py_split(s, a.get(0, "sep"), maxsplit.as_int())) out.push_back(Value(part));
      return Value(std::move(out));
    }
    if (n == "splitlines") {
      Array out;
      size_t start = 0;
      while (start < s.size()) {
        size_t nl = s.find_first_of("\r\n", start);
        if (nl == std::string::npos) {
          out.push_back(Value(s.substr(start)));
          break;
        }
        out.push_back(Value(s.substr(start, nl - start)));
        start = nl + ((s[nl] == '\r' && nl + 1 < s.size() && s[nl + 1] == '\n') ? 2 : 1);
      }
      return Value(std::move(out));
    }
    if (n == "startswith" || n == "endswith") {
      Value p = arg(a, 0, "prefix");
      std::vector<Value> options = p.is_array() ? p.array() : std::vector<Value>{p};
      for (auto& o : options) {
        const std::string& x = o.str();
        if (x.size() > s.size()) continue;
        if (n == "startswith" ? s.compare(0, x.size(), x) == 0
                              : s.compare(s.size() - x.size(), x.size(), x) == 0) {
          return Value(true);
        }
      }
      return Value(false);
    }
    if (n == "replace") {
      if (a.positional.size() < 2) throw std::runtime_error("replace needs two arguments");
      int64_t count = a.positional.size() > 2 ? a.positional[2].as_int() : -1;
      return Value(py_replace(s, a.positional[0].to_str(), a.positional[1].to_str(), count));
    }
    if (n == "format") return Value(py_format(s, a));
    if (n == "join") {
      std::string out;
      bool first = true;
      for (auto& item : iterate(arg(a, 0, "iterable"))) {
        if (!first) out += s;
        first = false;
        out += item.to_str();
      }
      return Value(out);
    }
    if (n == "find" || n == "index" || n == "rfind") {
      std::string sub = arg(a, 0, "sub").to_str();
      size_t p = n == "rfind" ? s.rfind(sub) : s.find(sub);
      if (p == std::string::npos) {
        if (n == "index") throw std::runtime_error("substring not found");
        return Value(-1);
      }
      return Value(static_cast<int64_t>(Value(s.substr(0, p)).length()));
    }
    if (n == "count") {
      std::string sub = arg(a, 0, "sub").to_str();
      if (sub.empty()) return Value(static_cast<int64_t>(obj.length() + 1));
      int64_t c = 0;
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++c;
      return Value(c);
    }
    if (n == "isdigit" || n == "isalpha" || n == "isalnum" || n == "isspace" || n == "islower" ||
        n == "isupper") {
      if (s.empty()) return Value(false);
      bool r = true;
      bool cased = false;
      for (unsigned char c : s) {
        if (n == "isdigit") r = r && std::isdigit(c);
        if (n == "isalpha") r = r && (std::isalpha(c) || c >= 0x80);
        if (n == "isalnum") r = r && (std::isalnum(c) || c >= 0x80);
        if (n == "isspace") r = r && is_py_space(c);
        if (n == "islower") {
          r = r && !std::isupper(c);
          cased = cased || std::islower(c);
        }
        if (n == "isupper") {
          r = r && !std::islower(c);
          cased = cased || std::isupper(c);
        }
      }
      if (n == "islower" || n == "isupper") r = r && cased;
      return Value(r);
    }
  } else if (obj.is_object()) {
    Object& o = obj.object();
    if (n == "items") {
      Array out;
      for (auto& [k, x] : o.items()) out.push_back(Value::make_tuple(Array{Value(k), x}));
      return Value(std::move(out));
    }
    if (n == "keys") {
      Array out;
      for (auto& [k, x] : o.items()) out.push_back(Value(k));
      return Value(std::move(out));
    }
    if (n == "values") {
      Array out;
      for (auto& [k, x] : o.items()) out.push_back(x);
      return Value(std::move(out));
    }
    if (n == "get") {
      const Value* v = o.find(arg(a, 0, "key").to_str());
      if (v) return *v;
      Value def = arg(a, 1, "default");
      return def.is_undefined() ? Value::none() : def;
    }
    if (n == "update" || n == "pop" || n == "popitem" || n == "setdefault" || n == "clear") {
      throw std::runtime_error("access to attribute '" + n + "' of 'dict' object is unsafe.");
    }
    if (n == "update") {
      Value other = arg(a, 0, "other");
      if (other.is_object()) {
        for (auto& [k, x] : other.object().items()) o.set(k, x);
      }
      for (auto& [k, x] : a.keyword) o.set(k, x);
      return Value::none();
    }
    if (n == "pop") {
      std::string key = arg(a, 0, "key").to_str();
      const Value* v = o.find(key);
      if (!v) {
        Value def = arg(a, 1, "default");
        if (def.is_undefined()) throw std::runtime_error("KeyError: " + string_repr(key));
        return def;
      }
      Value r = *v;
      o.erase(key);
      return r;
    }
    if (n == "copy") return Value(Object(o));
  } else if (obj.is_array()) {
    Array& l = obj.array();
    // transformers renders in jinja2's ImmutableSandboxedEnvironment, which refuses methods
    // that modify lists and dicts; so do we, with its message.
    if (n == "append" || n == "extend" || n == "pop" || n == "insert" || n == "remove" ||
        n == "clear" || n == "sort" || n == "reverse") {
      throw std::runtime_error("access to attribute '" + n + "' of 'list' object is unsafe.");
    }
    if (n == "append") {
      l.push_back(arg(a, 0, "object"));
      return Value::none();
    }
    if (n == "extend") {
      for (auto& x : iterate(arg(a, 0, "iterable"))) l.push_back(x);
      return Value::none();
    }
    if (n == "pop") {
      if (l.empty()) throw std::runtime_error("pop from empty list");
      int64_t i = arg(a, 0, "index", Value(-1)).as_int();
      int64_t sz = static_cast<int64_t>(l.size());
      if (i < 0) i += sz;
      if (i < 0 || i >= sz) throw std::runtime_error("pop index out of range");
      Value r = l[i];
      l.erase(l.begin() + i);
      return r;
    }
    if (n == "index") {
      Value x = arg(a, 0, "value");
      for (size_t k = 0; k < l.size(); ++k) {
        if (l[k].equals(x)) return Value(static_cast<int64_t>(k));
      }
      throw std::runtime_error(x.repr() + " is not in list");
    }
    if (n == "count") {
      Value x = arg(a, 0, "value");
      int64_t c = 0;
      for (auto& y : l) c += y.equals(x);
      return Value(c);
    }
    if (n == "copy") return Value(Array(l));
  }
  found = false;
  return Value();
}

void add_builtin_globals(Object& g) {
  g.set("raise_exception", Value::function(
                               [](CallArgs& a) -> Value {
                                 std::string msg =
                                     a.positional.empty() ? "" : a.positional[0].to_str();
                                 throw RaisedError(msg);
                               },
                               "raise_exception"));
  g.set("strftime_now", Value::function(
                            [](CallArgs& a) -> Value {
                              std::string fmt = arg(a, 0, "format").to_str();
                              std::time_t t = std::time(nullptr);
                              std::tm tm{};
                              localtime_r(&t, &tm);
                              char buf[256];
                              size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &tm);
                              return Value(std::string(buf, n));
                            },
                            "strftime_now"));
  g.set("range", Value::function(
                     [](CallArgs& a) -> Value {
                       int64_t start = 0, stop = 0, step = 1;
                       if (a.positional.size() == 1) {
                         stop = a.positional[0].as_int();
                       } else if (a.positional.size() >= 2) {
                         start = a.positional[0].as_int();
                         stop = a.positional[1].as_int();
                         if (a.positional.size() > 2) step = a.positional[2].as_int();
                       } else {
                         throw std::runtime_error("range expected at least 1 argument");
                       }
                       if (step == 0) throw std::runtime_error("range() arg 3 must not be zero");
                       Array out;
                       for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
                         out.push_back(Value(i));
                         if (out.size() > 10000000) throw std::runtime_error("range too large");
                       }
                       return Value(std::move(out));
                     },
                     "range"));
  g.set("dict", Value::function(
                    [](CallArgs& a) -> Value {
                      Object o;
                      if (!a.positional.empty() && a.positional[0].is_object())
                        o = a.positional[0].object();
                      for (auto& [k, v] : a.keyword) o.set(k, v);
                      return Value(std::move(o));
                    },
                    "dict"));
  g.set("namespace", Value::function(
                         [](CallArgs& a) -> Value {
                           Object o;
                           if (!a.positional.empty() && a.positional[0].is_object()) {
                             o = a.positional[0].object();
                           }
                           for (auto& [k, v] : a.keyword) o.set(k, v);
                           return Value::make_namespace(std::move(o));
                         },
                         "namespace"));
}

}  // namespace lm::jinja
