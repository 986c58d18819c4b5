#include "mlxcpp/lm/chat_template/value.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace lm::jinja {

const Value* Object::find(std::string_view key) const {
  for (auto& [k, v] : items_) {
    if (k == key) return &v;
  }
  return nullptr;
}

Value* Object::find(std::string_view key) {
  for (auto& [k, v] : items_) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Object::set(const std::string& key, Value v) {
  if (Value* existing = find(key)) {
    *existing = std::move(v);
  } else {
    items_.emplace_back(key, std::move(v));
  }
}

bool Object::erase(std::string_view key) {
  for (auto it = items_.begin(); it != items_.end(); ++it) {
    if (it->first == key) {
      items_.erase(it);
      return true;
    }
  }
  return false;
}

const Value* CallArgs::get(size_t index, std::string_view name) const {
  for (auto& [k, v] : keyword) {
    if (k == name) return &v;
  }
  if (index < positional.size()) return &positional[index];
  return nullptr;
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None:
      return false;
    case Kind::Bool:
    case Kind::Int:
      return i_ != 0;
    case Kind::Float:
      return d_ != 0;
    case Kind::String:
      return !s_->empty();
    case Kind::Array:
      return !a_->empty();
    case Kind::Object:
      return o_->size() > 0;
    case Kind::Function:
      return true;
  }
  return false;
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  // Shortest round-trip digits, then Python's layout: fixed for 1e-4 <= |d| < 1e16.
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  int exp10 = std::stoi(sci.substr(e + 1));
  bool neg = mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant) {
    if (c != '.') digits += c;
  }
  std::string out = neg ? "-" : "";
  if (exp10 >= -5 && exp10 < 16) {
    if (exp10 < 0) {
      out += "0." + std::string(static_cast<size_t>(-exp10 - 1), '0') + digits;
    } else if (static_cast<size_t>(exp10) + 1 >= digits.size()) {
      out += digits + std::string(static_cast<size_t>(exp10) + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, exp10 + 1) + "." + digits.substr(exp10 + 1);
    }
    // Python switches to exponent form below 1e-4.
    if (exp10 < -4) {
      out = neg ? "-" : "";
      out += digits.substr(0, 1);
      if (digits.size() > 1) out += "." + digits.substr(1);
      char eb[16];
      std::snprintf(eb, sizeof(eb), "e-%02d", -exp10);
      out += eb;
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char eb[16];
  std::snprintf(eb, sizeof(eb), "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
  out += eb;
  return out;
}

std::string string_repr(std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char q = has_single && !has_double ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c == static_cast<unsigned char>(q)) {
          out += '\\';
          out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
          char b[8];
          std::snprintf(b, sizeof(b), "\\x%02x", c);
          out += b;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += q;
  return out;
}

std::string Value::to_str() const {
  switch (kind_) {
    case Kind::Undefined:
      return "";
    case Kind::None:
      return "None";
    case Kind::Bool:
      return i_ ? "True" : "False";
    case Kind::Int:
      return std::to_string(i_);
    case Kind::Float:
      return float_repr(d_);
    case Kind::String:
      return *s_;
    default:
      return repr();
  }
}

std::string Value::repr() const {
  switch (kind_) {
    case Kind::String:
      return string_repr(*s_);
    case Kind::Array: {
      std::string out = is_tuple_ ? "(" : "[";
      for (size_t k = 0; k < a_->size(); ++k) {
        if (k) out += ", ";
        out += (*a_)[k].repr();
      }
      if (is_tuple_ && a_->size() == 1) out += ",";
      return out + (is_tuple_ ? ")" : "]");
    }
    case Kind::Object: {
      if (is_namespace_) {
        std::string out = "<Namespace {";
        bool first = true;
        for (auto& [k, v] : o_->items()) {
          if (!first) out += ", ";
          first = false;
          out += string_repr(k) + ": " + v.repr();
        }
        return out + "}>";
      }
      std::string out = "{";
      bool first = true;
      for (auto& [k, v] : o_->items()) {
        if (!first) out += ", ";
        first = false;
        out += string_repr(k) + ": " + v.repr();
      }
      return out + "}";
    }
    case Kind::Function:
      return "<function " + *s_ + ">";
    default:
      return to_str();
  }
}

bool Value::equals(const Value& o) const {
  if (is_number() && o.is_number()) {
    if (kind_ == Kind::Float || o.kind_ == Kind::Float) return as_double() == o.as_double();
    return i_ == o.i_;
  }
  if (kind_ != o.kind_) return false;
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None:
      return true;
    case Kind::String:
      return *s_ == *o.s_;
    case Kind::Array: {
      if (a_->size() != o.a_->size()) return false;
      for (size_t k = 0; k < a_->size(); ++k) {
        if (!(*a_)[k].equals((*o.a_)[k])) return false;
      }
      return true;
    }
    case Kind::Object: {
      if (o_->size() != o.o_->size()) return false;
      for (auto& [k, v] : o_->items()) {
        const Value* ov = o.o_->find(k);
        if (!ov || !v.equals(*ov)) return false;
      }
      return true;
    }
    case Kind::Function:
      return f_ == o.f_;
    default:
      return false;
  }
}

bool Value::less(const Value& o) const {
  if (is_number() && o.is_number()) {
    if (kind_ == Kind::Float || o.kind_ == Kind::Float) return as_double() < o.as_double();
    return i_ < o.i_;
  }
  if (is_string() && o.is_string()) return *s_ < *o.s_;
  if (is_array() && o.is_array()) {
    size_t n = std::min(a_->size(), o.a_->size());
    for (size_t k = 0; k < n; ++k) {
      if ((*a_)[k].less((*o.a_)[k])) return true;
      if ((*o.a_)[k].less((*a_)[k])) return false;
    }
    return a_->size() < o.a_->size();
  }
  throw std::runtime_error(std::string("'<' not supported between instances of '") + type_name() +
                           "' and '" + o.type_name() + "'");
}

size_t Value::length() const {
  switch (kind_) {
    case Kind::String: {
      size_t n = 0;
      for (unsigned char c : *s_) n += (c & 0xC0) != 0x80;
      return n;
    }
    case Kind::Array:
      return a_->size();
    case Kind::Object:
      return o_->size();
    case Kind::Undefined:
      return 0;
    default:
      throw std::runtime_error(std::string("object of type '") + type_name() + "' has no len()");
  }
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined:
      return "Undefined";
    case Kind::None:
      return "NoneType";
    case Kind::Bool:
      return "bool";
    case Kind::Int:
      return "int";
    case Kind::Float:
      return "float";
    case Kind::String:
      return "str";
    case Kind::Array:
      return "list";
    case Kind::Object:
      return is_namespace_ ? "Namespace" : "dict";
    case Kind::Function:
      return "function";
  }
  return "?";
}

bool Value::same(const Value& o) const {
  if (kind_ != o.kind_) return false;
  switch (kind_) {
    case Kind::Array:
      return a_ == o.a_;
    case Kind::Object:
      return o_ == o.o_;
    case Kind::Function:
      return f_ == o.f_;
    default:
      return equals(o);
  }
}

namespace {
void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || (ensure_ascii && c == 0x7f)) {
          char b[8];
          std::snprintf(b, sizeof(b), "\\u%04x", c);
          out += b;
        } else if (c >= 0x80 && ensure_ascii) {
          // Decode the code point and write \uXXXX (surrogate pairs above the BMP).
          size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
          char32_t cp = c & (n == 4 ? 0x07 : n == 3 ? 0x0F : 0x1F);
          for (size_t k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
          i += n - 1;
          char b[16];
          if (cp >= 0x10000) {
            cp -= 0x10000;
            std::snprintf(b, sizeof(b), "\\u%04x\\u%04x", 0xD800 + (cp >> 10),
                          0xDC00 + (cp & 0x3FF));
          } else {
            std::snprintf(b, sizeof(b), "\\u%04x", static_cast<unsigned>(cp));
          }
          out += b;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void json_value(std::string& out, const Value& v, int indent, int level, bool sort_keys,
                bool ensure_ascii) {
  auto newline = [&](int lvl) {
    out += '\n';
    out.append(static_cast<size_t>(indent * lvl), ' ');
  };
  const char* item_sep = indent >= 0 ? "," : ", ";
  switch (v.kind()) {
    case Value::Kind::Undefined:
      throw std::runtime_error("Object of type Undefined is not JSON serializable");
    case Value::Kind::None:
      out += "null";
      break;
    case Value::Kind::Bool:
      out += v.as_bool() ? "true" : "false";
      break;
    case Value::Kind::Int:
      out += std::to_string(v.as_int());
      break;
    case Value::Kind::Float: {
      double d = v.as_double();
      if (std::isnan(d)) {
        out += "NaN";
      } else if (std::isinf(d)) {
        out += d > 0 ? "Infinity" : "-Infinity";
      } else {
        out += float_repr(d);
      }
      break;
    }
    case Value::Kind::String:
      json_string(out, v.str(), ensure_ascii);
      break;
    case Value::Kind::Array: {
      const Array& a = v.array();
      if (a.empty()) {
        out += "[]";
        break;
      }
      out += '[';
      for (size_t k = 0; k < a.size(); ++k) {
        if (k) out += item_sep;
        if (indent >= 0) newline(level + 1);
        json_value(out, a[k], indent, level + 1, sort_keys, ensure_ascii);
      }
      if (indent >= 0) newline(level);
      out += ']';
      break;
    }
    case Value::Kind::Object: {
      std::vector<const std::pair<std::string, Value>*> items;
      for (auto& kv : v.object().items()) items.push_back(&kv);
      if (sort_keys) {
        std::stable_sort(items.begin(), items.end(),
                         [](auto* a, auto* b) { return a->first < b->first; });
      }
      if (items.empty()) {
        out += "{}";
        break;
      }
      out += '{';
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += item_sep;
        if (indent >= 0) newline(level + 1);
        json_string(out, items[k]->first, ensure_ascii);
        out += ": ";
        json_value(out, items[k]->second, indent, level + 1, sort_keys, ensure_ascii);
      }
      if (indent >= 0) newline(level);
      out += '}';
      break;
    }
    case Value::Kind::Function:
      throw std::runtime_error("Object of type function is not JSON serializable");
  }
}

Value convert(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
    case nlohmann::ordered_json::value_t::number_unsigned:
      return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_float:
      return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      Array a;
      a.reserve(j.size());
      for (auto& e : j) a.push_back(convert(e));
      return Value(std::move(a));
    }
    case nlohmann::ordered_json::value_t::object: {
      Object o;
      for (auto& [k, e] : j.items()) o.set(k, convert(e));
      return Value(std::move(o));
    }
    default:
      return Value();
  }
}
}  // namespace

std::string to_json(const Value& v, int indent, bool sort_keys, bool ensure_ascii) {
  std::string out;
  json_value(out, v, indent, 0, sort_keys, ensure_ascii);
  return out;
}

Value from_json(std::string_view text, const std::string& what) {
  try {
    return convert(nlohmann::ordered_json::parse(text));
  } catch (const nlohmann::ordered_json::exception& e) {
    throw std::runtime_error(what + ": " + e.what());
  }
}

}  // namespace lm::jinja
