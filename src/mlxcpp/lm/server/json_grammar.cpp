#include "mlxcpp/lm/server/json_grammar.h"

#include <bit>
#include <cctype>
#include <climits>
#include <map>
#include <mutex>
#include <stdexcept>

#include "mlxcpp/lm/tokenizer/tokenizer.h"

namespace lm::server {

using nlohmann::json;

struct JsonGrammar::Node {
  enum Kind { Any, Seq, FreeObject, Array, String, Number, Integer, Literals, Union, Choice };
  struct Item {
    bool lit = true;
    std::string text;
    int node = -1;
  };
  Kind kind = Any;
  std::vector<Item> items;  // Seq
  int value = -1;           // FreeObject values, Array items
  int min_items = 0, max_items = INT_MAX;
  int min_len = 0, max_len = -1;      // String (characters)
  std::vector<std::string> literals;  // Literals; Choice: the leading text of each alternative
  std::vector<int> alts;              // Union; Choice: the node that follows each literal
};

namespace {

using Node = JsonGrammar::Node;

// Built-in nodes every grammar starts with.
enum : int {
  kAny = 0,
  kAnyObject,
  kAnyArray,
  kAnyString,
  kAnyNumber,
  kAnyLiteral,
  kKey,
  kBuiltins
};

constexpr int kMaxDigits = 15;
constexpr size_t kMaxLiterals = 64;

bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

void add_builtins(std::vector<Node>& nodes) {
  nodes.resize(kBuiltins);
  nodes[kAny].kind = Node::Any;
  nodes[kAnyObject].kind = Node::FreeObject;
  nodes[kAnyObject].value = kAny;
  nodes[kAnyArray].kind = Node::Array;
  nodes[kAnyArray].value = kAny;
  nodes[kAnyString].kind = Node::String;
  nodes[kAnyNumber].kind = Node::Number;
  nodes[kAnyLiteral].kind = Node::Literals;
  nodes[kAnyLiteral].literals = {"true", "false", "null"};
  nodes[kKey].kind = Node::String;
  nodes[kKey].min_len = 1;
}

class Compiler {
 public:
  Compiler(const json& root, std::vector<Node>& nodes) : root_(root), nodes_(nodes) {}

  int compile(const json& s, const std::string& path, int depth) {
    if (depth > 64) throw std::invalid_argument("json schema: nested too deeply at " + path);
    if (s.is_boolean()) {
      if (s.get<bool>()) return kAny;
      throw std::invalid_argument("json schema: 'false' at " + path + " admits no value");
    }
    if (!s.is_object()) throw std::invalid_argument("json schema: expected an object at " + path);
    if (s.contains("$ref")) return ref(s["$ref"], path, depth);
    if (s.contains("const")) return literals({s["const"]}, path);
    if (s.contains("enum")) {
      if (!s["enum"].is_array() || s["enum"].empty()) {
        throw std::invalid_argument("json schema: 'enum' at " + path + " must be a non-empty list");
      }
      return literals(s["enum"], path + ".enum");
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (s.contains(key)) {
        const json& list = s[key];
        if (!list.is_array() || list.empty()) {
          throw std::invalid_argument("json schema: '" + std::string(key) + "' at " + path +
                                      " must be a non-empty list");
        }
        Node u;
        u.kind = Node::Union;
        for (size_t i = 0; i < list.size(); ++i) {
          u.alts.push_back(
              compile(list[i], path + "." + key + "[" + std::to_string(i) + "]", depth + 1));
        }
        return add(std::move(u));
      }
    }
    if (s.contains("allOf")) {
      const json& list = s["allOf"];
      if (list.is_array() && list.size() == 1)
        return compile(list[0], path + ".allOf[0]", depth + 1);
      throw std::invalid_argument("json schema: 'allOf' with several schemas (at " + path +
                                  ") is not supported");
    }
    if (s.contains("type") && s["type"].is_array()) {
      Node u;
      u.kind = Node::Union;
      for (const auto& t : s["type"]) {
        json one = s;
        one["type"] = t;
        u.alts.push_back(compile(one, path, depth + 1));
      }
      if (u.alts.empty()) throw std::invalid_argument("json schema: empty 'type' list at " + path);
      return add(std::move(u));
    }
    std::string type;
    if (s.contains("type")) {
      if (!s["type"].is_string())
        throw std::invalid_argument("json schema: 'type' at " + path + " must be a string");
      type = s["type"].get<std::string>();
    } else if (s.contains("properties")) {
      type = "object";
    } else if (s.contains("items")) {
      type = "array";
    } else {
      return kAny;
    }
    if (type == "object") return object(s, path, depth);
    if (type == "array") {
      Node a;
      a.kind = Node::Array;
      a.value = s.contains("items") ? compile(s["items"], path + ".items", depth + 1) : kAny;
      a.min_items = count(s, "minItems", 0, path);
      a.max_items = count(s, "maxItems", INT_MAX, path);
      if (a.min_items > a.max_items)
        throw std::invalid_argument("json schema: minItems > maxItems at " + path);
      return add(std::move(a));
    }
    if (type == "string") {
      Node n;
      n.kind = Node::String;
      n.min_len = count(s, "minLength", 0, path);
      n.max_len = s.contains("maxLength") ? count(s, "maxLength", 0, path) : -1;
      if (n.max_len >= 0 && n.min_len > n.max_len) {
        throw std::invalid_argument("json schema: minLength > maxLength at " + path);
      }
      return add(std::move(n));
    }
    if (type == "number") return kAnyNumber;
    if (type == "integer") {
      Node n;
      n.kind = Node::Integer;
      return add(std::move(n));
    }
    if (type == "boolean") return literals(json::array({true, false}), path);
    if (type == "null") return literals(json::array({nullptr}), path);
    throw std::invalid_argument("json schema: unknown type '" + type + "' at " + path);
  }

  int add(Node n) {
    nodes_.push_back(std::move(n));
    return static_cast<int>(nodes_.size()) - 1;
  }

  int literals(const json& values, const std::string& path) {
    if (values.size() > kMaxLiterals) {
      throw std::invalid_argument("json schema: more than 64 enum values at " + path);
    }
    Node n;
    n.kind = Node::Literals;
    for (const auto& v : values) n.literals.push_back(v.dump());
    return add(std::move(n));
  }

 private:
  static int count(const json& s, const char* key, int def, const std::string& path) {
    if (!s.contains(key)) return def;
    const json& v = s[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT_MAX) {
      throw std::invalid_argument("json schema: '" + std::string(key) + "' at " + path +
                                  " must be a non-negative integer");
    }
    return static_cast<int>(v.get<int64_t>());
  }

  int object(const json& s, const std::string& path, int depth) {
    const json* props = s.contains("properties") ? &s["properties"] : nullptr;
    if (props && !props->is_object()) {
      throw std::invalid_argument("json schema: 'properties' at " + path + " must be an object");
    }
    if (!props || props->empty()) {
      Node n;
      n.kind = Node::FreeObject;
      n.value = kAny;
      if (s.contains("additionalProperties") && s["additionalProperties"].is_object()) {
        n.value = compile(s["additionalProperties"], path + ".additionalProperties", depth + 1);
      }
      return add(std::move(n));
    }
    if (s.contains("required") && s["required"].is_array()) {
      for (const auto& r : s["required"]) {
        if (!r.is_string() || !props->contains(r.get<std::string>())) {
          throw std::invalid_argument("json schema: required property " + r.dump() + " at " + path +
                                      " is not among its properties");
        }
      }
    }
    Node seq;
    seq.kind = Node::Seq;
    std::string lit = "{";
    bool first = true;
    for (const auto& [key, sub] : props->items()) {
      lit += (first ? "" : ",") + json(key).dump() + ":";
      first = false;
      seq.items.push_back({true, lit, -1});
      lit.clear();
      seq.items.push_back({false, "", compile(sub, path + ".properties." + key, depth + 1)});
    }
    seq.items.push_back({true, "}", -1});
    return add(std::move(seq));
  }

  int ref(const json& r, const std::string& path, int depth) {
    if (!r.is_string())
      throw std::invalid_argument("json schema: '$ref' at " + path + " must be a string");
    std::string name = r.get<std::string>();
    if (auto it = refs_.find(name); it != refs_.end()) return it->second;
    const json* target = nullptr;
    for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
      std::string p = prefix;
      if (name.rfind(p, 0) == 0) {
        std::string section = p.substr(2, p.size() - 3);
        std::string key = name.substr(p.size());
        if (root_.contains(section) && root_[section].contains(key)) target = &root_[section][key];
      }
    }
    if (name == "#") target = &root_;
    if (!target)
      throw std::invalid_argument("json schema: cannot resolve '$ref' " + name + " at " + path);
    // A one-way union stands for the reference so recursive schemas terminate.
    Node placeholder;
    placeholder.kind = Node::Union;
    int idx = add(std::move(placeholder));
    refs_[name] = idx;
    int body = compile(*target, name, depth + 1);
    nodes_[idx].alts = {body};
    return idx;
  }

  const json& root_;
  std::vector<Node>& nodes_;
  std::map<std::string, int> refs_;
};

bool can_start(const std::vector<Node>& nodes, int idx, unsigned char c, int depth = 0) {
  if (depth > 32) return false;
  const Node& n = nodes[idx];
  switch (n.kind) {
    case Node::Any:
      return c == '{' || c == '[' || c == '"' || c == '-' || is_digit(c) || c == 't' || c == 'f' ||
             c == 'n';
    case Node::Seq:
      return n.items[0].lit ? static_cast<unsigned char>(n.items[0].text[0]) == c
                            : can_start(nodes, n.items[0].node, c, depth + 1);
    case Node::FreeObject:
      return c == '{';
    case Node::Array:
      return c == '[';
    case Node::String:
      return c == '"';
    case Node::Number:
    case Node::Integer:
      return c == '-' || is_digit(c);
    case Node::Literals:
    case Node::Choice:
      for (const auto& l : n.literals) {
        if (!l.empty() && static_cast<unsigned char>(l[0]) == c) return true;
      }
      return false;
    case Node::Union:
      for (int a : n.alts) {
        if (can_start(nodes, a, c, depth + 1)) return true;
      }
      return false;
  }
  return false;
}

bool number_complete(const Node& n, int phase) {
  if (n.kind == Node::Integer) return phase == 2 || phase == 3;
  return phase == 2 || phase == 3 || phase == 5 || phase == 8;
}

}  // namespace

std::shared_ptr<const JsonGrammar> JsonGrammar::from_schema(const json& schema) {
  auto g = std::make_shared<JsonGrammar>();
  add_builtins(g->nodes);
  Compiler c(schema, g->nodes);
  g->root = c.compile(schema, "schema", 0);
  return g;
}

std::shared_ptr<const JsonGrammar> JsonGrammar::for_tool_calls(const json& tools) {
  if (!tools.is_array() || tools.empty())
    throw std::invalid_argument("tool calls need at least one tool");
  if (tools.size() > kMaxLiterals) throw std::invalid_argument("at most 64 tools can be forced");
  auto g = std::make_shared<JsonGrammar>();
  add_builtins(g->nodes);
  json root = json::object();
  Compiler c(root, g->nodes);
  Node choice;
  choice.kind = Node::Choice;
  for (const auto& t : tools) {
    const json& fn = t["function"];
    json params = fn.contains("parameters") && fn["parameters"].is_object()
                      ? fn["parameters"]
                      : json{{"type", "object"}};
    // A tool's parameters may hold $defs of their own.
    Compiler pc(params, g->nodes);
    int args = pc.compile(params, "tools." + fn["name"].get<std::string>() + ".parameters", 0);
    Node tail;
    tail.kind = Node::Seq;
    tail.items = {{true, ",\"arguments\":", -1}, {false, "", args}, {true, "}", -1}};
    choice.literals.push_back(json(fn["name"]).dump());
    choice.alts.push_back(c.add(std::move(tail)));
  }
  int choice_idx = c.add(std::move(choice));
  Node head;
  head.kind = Node::Seq;
  head.items = {{true, "{\"name\":", -1}, {false, "", choice_idx}};
  g->root = c.add(std::move(head));
  return g;
}

JsonGrammar::State::State(const JsonGrammar* g) : g_(g) { stack_.push_back(Frame{g->root}); }

bool JsonGrammar::State::feed(const std::string& s) {
  for (unsigned char c : s) {
    if (!feed(c)) return false;
  }
  return true;
}

bool JsonGrammar::State::feed(unsigned char c) {
  const auto& nodes = g_->nodes;
  for (int guard = 0; guard < 256; ++guard) {
    if (stack_.empty()) return false;
    Frame& f = stack_.back();
    const Node& n = nodes[f.node];
    switch (n.kind) {
      case Node::Any: {
        int target = c == '{'                             ? kAnyObject
                     : c == '['                           ? kAnyArray
                     : c == '"'                           ? kAnyString
                     : (c == '-' || is_digit(c))          ? kAnyNumber
                     : (c == 't' || c == 'f' || c == 'n') ? kAnyLiteral
                                                          : -1;
        if (target < 0) return false;
        f = Frame{target};
        continue;
      }
      case Node::Union: {
        int pick = -1;
        for (int a : n.alts) {
          if (can_start(nodes, a, c)) {
            pick = a;
            break;
          }
        }
        if (pick < 0) return false;
        f = Frame{pick};
        continue;
      }
      case Node::Seq: {
        const auto& it = n.items[f.phase];
        if (it.lit) {
          if (static_cast<unsigned char>(it.text[f.pos]) != c) return false;
          if (++f.pos == static_cast<int>(it.text.size())) {
            f.pos = 0;
            if (++f.phase == static_cast<int>(n.items.size())) stack_.pop_back();
          }
          return true;
        }
        int child = it.node;
        if (++f.phase == static_cast<int>(n.items.size())) stack_.pop_back();
        stack_.push_back(Frame{child});
        continue;
      }
      case Node::FreeObject: {
        switch (f.phase) {
          case 0:
            if (c != '{') return false;
            f.phase = 1;
            return true;
          case 1:
            if (c == '}') {
              stack_.pop_back();
              return true;
            }
            [[fallthrough]];
          case 5:
            if (c != '"') return false;
            f.phase = 2;
            stack_.push_back(Frame{kKey});
            continue;
          case 2:
            if (c != ':') return false;
            f.phase = 3;
            return true;
          case 3: {
            f.phase = 4;
            int v = n.value;
            stack_.push_back(Frame{v});
            continue;
          }
          case 4:
            if (c == ',') {
              f.phase = 5;
              return true;
            }
            if (c == '}') {
              stack_.pop_back();
              return true;
            }
            return false;
        }
        return false;
      }
      case Node::Array: {
        switch (f.phase) {
          case 0:
            if (c != '[') return false;
            f.phase = 1;
            return true;
          case 1:
            if (c == ']' && n.min_items == 0) {
              stack_.pop_back();
              return true;
            }
            if (n.max_items == 0) return false;
            [[fallthrough]];
          case 3: {
            f.phase = 2;
            f.count += 1;
            int v = n.value;
            stack_.push_back(Frame{v});
            continue;
          }
          case 2:
            if (c == ',' && f.count < n.max_items) {
              f.phase = 3;
              return true;
            }
            if (c == ']' && f.count >= n.min_items) {
              stack_.pop_back();
              return true;
            }
            return false;
        }
        return false;
      }
      case Node::String: {
        switch (f.phase) {
          case 0:
            if (c != '"') return false;
            f.phase = 1;
            return true;
          case 1:
            if (c == '"') {
              if (f.count < n.min_len) return false;
              stack_.pop_back();
              return true;
            }
            if (c < 0x20) return false;
            if ((c & 0xC0) == 0x80)
              return true;  // continuation byte of a character counted already
            if (n.max_len >= 0 && f.count >= n.max_len) return false;
            if (c == '\\') {
              f.phase = 2;
              return true;
            }
            f.count += 1;
            return true;
          case 2:
            if (c == 'u') {
              f.phase = 3;
              f.pos = 0;
              return true;
            }
            if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
                c == 't') {
              f.phase = 1;
              f.count += 1;
              return true;
            }
            return false;
          case 3:
            if (!std::isxdigit(c)) return false;
            if (++f.pos == 4) {
              f.phase = 1;
              f.count += 1;
            }
            return true;
        }
        return false;
      }
      case Node::Number:
      case Node::Integer: {
        const bool real = n.kind == Node::Number;
        switch (f.phase) {
          case 0:
            if (c == '-') {
              f.phase = 1;
              return true;
            }
            [[fallthrough]];
          case 1:
            if (c == '0') {
              f.phase = 3;
              f.count = 1;
              return true;
            }
            if (is_digit(c)) {
              f.phase = 2;
              f.count = 1;
              return true;
            }
            return false;
          case 2:
            if (is_digit(c) && f.count < kMaxDigits) {
              f.count += 1;
              return true;
            }
            [[fallthrough]];
          case 3:
            if (real && c == '.') {
              f.phase = 4;
              return true;
            }
            if (real && (c == 'e' || c == 'E')) {
              f.phase = 6;
              return true;
            }
            break;
          case 4:
            if (!is_digit(c)) return false;
            f.phase = 5;
            f.count += 1;
            return true;
          case 5:
            if (is_digit(c) && f.count < kMaxDigits) {
              f.count += 1;
              return true;
            }
            if (c == 'e' || c == 'E') {
              f.phase = 6;
              return true;
            }
            break;
          case 6:
            if (c == '+' || c == '-') {
              f.phase = 7;
              return true;
            }
            [[fallthrough]];
          case 7:
            if (!is_digit(c)) return false;
            f.phase = 8;
            f.pos = 1;
            return true;
          case 8:
            if (is_digit(c) && f.pos < 2) {
              f.pos += 1;
              return true;
            }
            break;
        }
        // Not part of the number: it ends here if it can, and c goes to the parent.
        if (!number_complete(n, f.phase)) return false;
        stack_.pop_back();
        continue;
      }
      case Node::Literals:
      case Node::Choice: {
        if (f.phase == 0) {
          f.cands = n.literals.size() >= 64 ? ~uint64_t(0) : (uint64_t(1) << n.literals.size()) - 1;
          f.phase = 1;
        }
        uint64_t next = 0;
        bool full = false;
        for (uint64_t m = f.cands; m; m &= m - 1) {
          int i = std::countr_zero(m);
          const std::string& l = n.literals[i];
          if (static_cast<int>(l.size()) == f.pos) {
            full = true;
          } else if (static_cast<unsigned char>(l[f.pos]) == c) {
            next |= uint64_t(1) << i;
          }
        }
        if (next) {
          f.cands = next;
          f.pos += 1;
          bool all_full = true;
          for (uint64_t m = next; m; m &= m - 1) {
            all_full &= static_cast<int>(n.literals[std::countr_zero(m)].size()) == f.pos;
          }
          if (all_full) {
            if (n.kind == Node::Choice) {
              f = Frame{n.alts[std::countr_zero(next)]};
            } else {
              stack_.pop_back();
            }
          }
          return true;
        }
        if (full && n.kind == Node::Literals) {
          stack_.pop_back();
          continue;
        }
        return false;
      }
    }
    return false;
  }
  return false;
}

// ------------------------------------------------------------------ token constraint

namespace {

// The decoded text of every token, in a trie so that a mask walks shared prefixes once.
struct TokenTrie {
  struct TrieNode {
    std::vector<std::pair<unsigned char, int>> children;
    std::vector<int32_t> ids;
  };
  std::vector<TrieNode> nodes;
  std::vector<std::string> text;  // per id ("" for ids no output may use)
  int vocab = 0;

  TokenTrie(const Tokenizer& tok, int v) : vocab(v) {
    nodes.emplace_back();
    text.resize(v);
    const int known = static_cast<int>(std::min<size_t>(tok.vocab_size(), v));
    for (int32_t id = 0; id < known; ++id) {
      if (tok.is_special(id)) continue;
      std::vector<int32_t> one{id};
      std::string s = tok.decode(one);
      // Partial UTF-8 pieces decode to U+FFFD on their own; they cannot be checked alone.
      if (s.empty() || s.find("\xEF\xBF\xBD") != std::string::npos) continue;
      text[id] = s;
      int at = 0;
      for (unsigned char c : s) {
        int child = -1;
        for (auto& [ch, idx] : nodes[at].children) {
          if (ch == c) child = idx;
        }
        if (child < 0) {
          child = static_cast<int>(nodes.size());
          nodes[at].children.emplace_back(c, child);
          nodes.emplace_back();
        }
        at = child;
      }
      nodes[at].ids.push_back(id);
    }
  }
};

std::shared_ptr<const TokenTrie> token_trie(const Tokenizer& tok, int vocab) {
  static std::mutex mu;
  static std::map<std::pair<const Tokenizer*, int>, std::shared_ptr<const TokenTrie>> tries;
  std::lock_guard<std::mutex> lk(mu);
  auto& t = tries[{&tok, vocab}];
  if (!t) t = std::make_shared<TokenTrie>(tok, vocab);
  return t;
}

class GrammarConstraint : public TokenConstraint {
 public:
  GrammarConstraint(std::shared_ptr<const JsonGrammar> g, std::shared_ptr<const TokenTrie> trie)
      : g_(std::move(g)), trie_(std::move(trie)), state_(g_->start()) {}

  const std::vector<uint8_t>& allowed() override {
    mask_.assign(trie_->vocab, 0);
    walk(0, state_);
    return mask_;
  }
  void accept(int32_t token) override {
    if (token < 0 || token >= trie_->vocab || !state_.feed(trie_->text[token])) {
      throw std::logic_error("grammar: token " + std::to_string(token) + " was not allowed");
    }
  }
  bool complete() const override { return state_.complete(); }

 private:
  void walk(int at, const JsonGrammar::State& st) {
    for (const auto& [c, child] : trie_->nodes[at].children) {
      JsonGrammar::State next = st;
      if (!next.feed(c)) continue;
      for (int32_t id : trie_->nodes[child].ids) mask_[id] = 1;
      walk(child, next);
    }
  }

  std::shared_ptr<const JsonGrammar> g_;
  std::shared_ptr<const TokenTrie> trie_;
  JsonGrammar::State state_;
  std::vector<uint8_t> mask_;
};

}  // namespace

std::shared_ptr<TokenConstraint> make_json_constraint(const Tokenizer& tokenizer, int vocab,
                                                      const json& schema) {
  return std::make_shared<GrammarConstraint>(JsonGrammar::from_schema(schema),
                                             token_trie(tokenizer, vocab));
}

std::shared_ptr<TokenConstraint> make_tool_call_constraint(const Tokenizer& tokenizer, int vocab,
                                                           const json& tools) {
  return std::make_shared<GrammarConstraint>(JsonGrammar::for_tool_calls(tools),
                                             token_trie(tokenizer, vocab));
}

}  // namespace lm::server
