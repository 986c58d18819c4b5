// The parsed form of a Jinja template: expressions and statements with their source positions.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mlxcpp/lm/chat_template/value.h"

namespace lm::jinja {

struct Pos {
  int line = 1, column = 1;
};

// A template error: the message names the template line and column.
class TemplateError : public std::runtime_error {
 public:
  TemplateError(const std::string& what, Pos pos)
      : std::runtime_error("chat template line " + std::to_string(pos.line) + ", column " +
                           std::to_string(pos.column) + ": " + what),
        pos_(pos) {}
  Pos pos() const { return pos_; }

 private:
  Pos pos_;
};

// An error the template raised on purpose (raise_exception); its message is the template's.
class RaisedError : public std::runtime_error {
 public:
  explicit RaisedError(const std::string& what) : std::runtime_error(what) {}
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,  // value
    Name,     // name
    List,     // items
    Tuple,    // items
    Dict,     // items as key, value pairs (even/odd)
    Attr,     // a.name
    Item,     // a[b]
    Slice,    // a[b:c:d] (items: start, stop, step; null entries allowed)
    Call,     // a(args..., kwargs)
    Filter,   // a | name(args)
    Test,     // a is [not] name(args)
    Unary,    // op a   ("not", "-", "+")
    Binary,   // a op b
    Compare,  // a op b (==, !=, <, <=, >, >=, in, not in)
    Cond,     // b if a else c  (items: cond, then, else)
  };
  Kind kind;
  Pos pos;
  Value value;           // Literal
  std::string name;      // Name, Attr, Filter, Test, Unary/Binary/Compare operator
  bool negated = false;  // Test
  ExprPtr a, b;
  std::vector<ExprPtr> items;                           // positional args / list items
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  // keyword args
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct MacroParam {
  std::string name;
  ExprPtr default_value;
};

struct Stmt {
  enum class Kind {
    Text,         // text
    Output,       // {{ expr }}
    If,           // branches: (cond, body)...; else_body
    For,          // targets in iter [if filter]; body; else_body
    Set,          // targets = expr, or ns.attr = expr, or block set (body)
    Macro,        // name(params) body
    CallBlock,    // {% call [ (params) ] expr %} body
    FilterBlock,  // {% filter name(args) %} body
    Break,
    Continue,
  };
  Kind kind;
  Pos pos;
  std::string text;
  ExprPtr expr;                      // Output, For iter, Set value, CallBlock call, Filter
  ExprPtr filter;                    // For's inline if
  std::vector<std::string> targets;  // For / Set targets
  std::string attr;                  // Set ns.attr
  std::vector<std::pair<ExprPtr, Body>> branches;  // If
  Body body, else_body;
  std::string name;                // Macro
  std::vector<MacroParam> params;  // Macro / CallBlock
};

struct Template {
  Body body;
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Parses template source; throws TemplateError with the position of the problem.
std::shared_ptr<Template> parse_template(const std::string& source, LexOptions options = {});

}  // namespace lm::jinja
