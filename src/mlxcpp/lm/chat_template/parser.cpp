// Lexer and parser for the Jinja subset chat templates use, with Jinja's whitespace rules
// (-/+ markers, trim_blocks, lstrip_blocks).
#include <cstring>
#include <stdexcept>

#include "mlxcpp/lm/chat_template/ast.h"

namespace lm::jinja {

namespace {

struct Token {
  enum class Type {
    Text,
    VarOpen,
    VarClose,
    BlockOpen,
    BlockClose,
    Name,
    String,
    Int,
    Float,
    Op,
    End
  };
  Type type;
  std::string text;
  Pos pos;
  int64_t i = 0;
  double d = 0;
};

class Lexer {
 public:
  Lexer(const std::string& src, LexOptions opt) : src_(src), opt_(opt) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  std::vector<Token> run() {
    size_t pos = 0;
    bool lstrip_next = false, trim_newline = false;
    while (pos <= src_.size()) {
      size_t open = find_open(pos);
      size_t text_end = open == std::string::npos ? src_.size() : open;
      // Text before the tag, with the previous tag's right-side whitespace rules.
      size_t tb = pos;
      if (lstrip_next) {
        while (tb < text_end && std::strchr(" \t\r\n\f\v", src_[tb])) ++tb;
      } else if (trim_newline) {
        if (tb < text_end && src_[tb] == '\n') {
          ++tb;
        } else if (tb + 1 < text_end && src_[tb] == '\r' && src_[tb + 1] == '\n') {
          tb += 2;
        }
      }
      std::string text = src_.substr(tb, text_end - tb);
      if (open == std::string::npos) {
        if (!text.empty()) push(Token::Type::Text, text, tb);
        break;
      }
      char kind = src_[open + 1];  // '{', '%' or '#'
      char marker = open + 2 < src_.size() ? src_[open + 2] : '\0';
      if (marker == '-') {
        size_t e = text.size();
        while (e > 0 && std::strchr(" \t\r\n\f\v", text[e - 1])) --e;
        text.resize(e);
      } else if (marker != '+' && kind != '{' && opt_.lstrip_blocks) {
        size_t nl = text.rfind('\n');
        size_t from = nl == std::string::npos ? 0 : nl + 1;
        bool line_start = nl != std::string::npos || tb == 0 || src_[tb - 1] == '\n';
        bool blank = true;
        for (size_t k = from; k < text.size(); ++k)
          blank = blank && (text[k] == ' ' || text[k] == '\t');
        if (line_start && blank) text.resize(from);
      }
      if (!text.empty()) push(Token::Type::Text, text, tb);
      size_t inner = open + 2 + ((marker == '-' || marker == '+') ? 1 : 0);
      lstrip_next = trim_newline = false;
      if (kind == '#') {
        size_t close = src_.find("#}", inner);
        if (close == std::string::npos) fail("unclosed comment", open);
        bool minus = close > inner && src_[close - 1] == '-';
        bool plus = close > inner && src_[close - 1] == '+';
        lstrip_next = minus;
        trim_newline = !minus && !plus && opt_.trim_blocks;
        pos = close + 2;
        continue;
      }
      bool block = kind == '%';
      if (block && is_raw(inner)) {
        pos = lex_raw(open, inner, lstrip_next, trim_newline);
        continue;
      }
      push(block ? Token::Type::BlockOpen : Token::Type::VarOpen, "", open);
      pos = lex_tag(inner, block, lstrip_next, trim_newline);
    }
    push(Token::Type::End, "", src_.size());
    return std::move(tokens_);
  }

 private:
  Pos pos_of(size_t offset) const {
    size_t lo = 0, hi = line_starts_.size();
    while (hi - lo > 1) {
      size_t mid = (lo + hi) / 2;
      if (line_starts_[mid] <= offset) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    return {static_cast<int>(lo + 1), static_cast<int>(offset - line_starts_[lo] + 1)};
  }
  [[noreturn]] void fail(const std::string& what, size_t offset) const {
    throw TemplateError(what, pos_of(offset));
  }
  void push(Token::Type t, std::string text, size_t offset) {
    tokens_.push_back({t, std::move(text), pos_of(offset)});
  }
  size_t find_open(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return std::string::npos;
  }
  bool is_raw(size_t inner) const {
    size_t i = inner;
    while (i < src_.size() && std::isspace(static_cast<unsigned char>(src_[i]))) ++i;
    if (src_.compare(i, 3, "raw") != 0) return false;
    i += 3;
    while (i < src_.size() && std::isspace(static_cast<unsigned char>(src_[i]))) ++i;
    return src_.compare(i, 2, "%}") == 0 || src_.compare(i, 3, "-%}") == 0 ||
           src_.compare(i, 3, "+%}") == 0;
  }
  // {% raw %}...{% endraw %}: the content is text, verbatim.
  size_t lex_raw(size_t open, size_t inner, bool& lstrip_next, bool& trim_newline) {
    size_t close = src_.find("%}", inner);
    bool minus = src_[close - 1] == '-';
    size_t body = close + 2;
    if (!minus && src_[close - 1] != '+' && opt_.trim_blocks && body < src_.size() &&
        src_[body] == '\n') {
      ++body;
    }
    if (minus) {
      while (body < src_.size() && std::isspace(static_cast<unsigned char>(src_[body]))) ++body;
    }
    for (size_t i = src_.find("{%", body); i != std::string::npos; i = src_.find("{%", i + 2)) {
      size_t j = i + 2;
      bool end_minus = j < src_.size() && src_[j] == '-';
      if (end_minus || (j < src_.size() && src_[j] == '+')) ++j;
      while (j < src_.size() && std::isspace(static_cast<unsigned char>(src_[j]))) ++j;
      if (src_.compare(j, 6, "endraw") != 0) continue;
      j += 6;
      while (j < src_.size() && std::isspace(static_cast<unsigned char>(src_[j]))) ++j;
      bool close_minus = src_.compare(j, 3, "-%}") == 0;
      bool close_plus = src_.compare(j, 3, "+%}") == 0;
      if (!close_minus && !close_plus && src_.compare(j, 2, "%}") != 0) continue;
      std::string text = src_.substr(body, i - body);
      if (end_minus) {
        while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
          text.pop_back();
      }
      if (!text.empty()) push(Token::Type::Text, text, body);
      lstrip_next = close_minus;
      trim_newline = !close_minus && !close_plus && opt_.trim_blocks;
      return j + (close_minus || close_plus ? 3 : 2);
    }
    fail("missing {% endraw %}", open);
  }

  size_t lex_tag(size_t i, bool block, bool& lstrip_next, bool& trim_newline) {
    int depth = 0;  // brackets opened inside the tag
    while (true) {
      while (i < src_.size() && std::strchr(" \t\r\n\f\v", src_[i]) && src_[i] != '\0') ++i;
      if (i >= src_.size()) fail(block ? "unclosed block tag" : "unclosed expression", i);
      const char* closer = block ? "%}" : "}}";
      // Closers, with their whitespace markers.
      if (depth == 0 || block) {
        for (char m : {'-', '+'}) {
          if (src_[i] == m && src_.compare(i + 1, 2, closer) == 0) {
            push(block ? Token::Type::BlockClose : Token::Type::VarClose, "", i);
            lstrip_next = m == '-';
            trim_newline = false;
            return i + 3;
          }
        }
        if (src_.compare(i, 2, closer) == 0 && (block || depth == 0)) {
          push(block ? Token::Type::BlockClose : Token::Type::VarClose, "", i);
          trim_newline = block && opt_.trim_blocks;
          return i + 2;
        }
      }
      char c = src_[i];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t s = i;
        while (i < src_.size() &&
               (std::isalnum(static_cast<unsigned char>(src_[i])) || src_[i] == '_'))
          ++i;
        push(Token::Type::Name, src_.substr(s, i - s), s);
        continue;
      }
      if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t s = i;
        bool is_float = false;
        while (i < src_.size() &&
               (std::isdigit(static_cast<unsigned char>(src_[i])) || src_[i] == '_'))
          ++i;
        if (i + 1 < src_.size() && src_[i] == '.' &&
            std::isdigit(static_cast<unsigned char>(src_[i + 1]))) {
          is_float = true;
          ++i;
          while (i < src_.size() &&
                 (std::isdigit(static_cast<unsigned char>(src_[i])) || src_[i] == '_'))
            ++i;
        }
        if (i < src_.size() && (src_[i] == 'e' || src_[i] == 'E')) {
          size_t k = i + 1;
          if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
          if (k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]))) {
            is_float = true;
            i = k;
            while (i < src_.size() && std::isdigit(static_cast<unsigned char>(src_[i]))) ++i;
          }
        }
        std::string num;
        for (size_t k = s; k < i; ++k) {
          if (src_[k] != '_') num += src_[k];
        }
        Token t{is_float ? Token::Type::Float : Token::Type::Int, num, pos_of(s)};
        if (is_float) {
          t.d = std::stod(num);
        } else {
          t.i = std::stoll(num);
        }
        tokens_.push_back(t);
        continue;
      }
      if (c == '\'' || c == '"') {
        size_t s = i++;
        std::string out;
        while (i < src_.size() && src_[i] != c) {
          if (src_[i] == '\\' && i + 1 < src_.size()) {
            char e = src_[i + 1];
            i += 2;
            switch (e) {
              case 'n':
                out += '\n';
                break;
              case 't':
                out += '\t';
                break;
              case 'r':
                out += '\r';
                break;
              case '\\':
                out += '\\';
                break;
              case '\'':
                out += '\'';
                break;
              case '"':
                out += '"';
                break;
              case '\n':
                break;
              default:
                out += '\\';
                out += e;
            }
            continue;
          }
          out += src_[i++];
        }
        if (i >= src_.size()) fail("unterminated string literal", s);
        ++i;
        push(Token::Type::String, out, s);
        continue;
      }
      static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                   "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                   "]",  "{",  "}",  ",",  ".",  ":",  "|"};
      bool matched = false;
      for (const char* op : kOps) {
        size_t n = std::strlen(op);
        if (src_.compare(i, n, op) == 0) {
          if (op[0] == '(' || op[0] == '[' || op[0] == '{') ++depth;
          if (op[0] == ')' || op[0] == ']' || op[0] == '}') --depth;
          push(Token::Type::Op, op, i);
          i += n;
          matched = true;
          break;
        }
      }
      if (!matched) fail(std::string("unexpected character '") + c + "'", i);
    }
  }

  const std::string& src_;
  LexOptions opt_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  std::shared_ptr<Template> run() {
    auto tpl = std::make_shared<Template>();
    std::string end;
    tpl->body = parse_body({}, end);
    return tpl;
  }

 private:
  const Token& peek(size_t k = 0) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  const Token& next() { return t_[std::min(i_++, t_.size() - 1)]; }
  [[noreturn]] void fail(const std::string& what, const Token& at) const {
    throw TemplateError(what, at.pos);
  }
  bool is_op(const char* op, size_t k = 0) const {
    return peek(k).type == Token::Type::Op && peek(k).text == op;
  }
  bool is_name(const char* name, size_t k = 0) const {
    return peek(k).type == Token::Type::Name && peek(k).text == name;
  }
  void expect_op(const char* op) {
    if (!is_op(op)) fail(std::string("expected '") + op + "', got " + describe(peek()), peek());
    ++i_;
  }
  std::string expect_name() {
    if (peek().type != Token::Type::Name) fail("expected a name, got " + describe(peek()), peek());
    return next().text;
  }
  void expect_block_close() {
    if (peek().type != Token::Type::BlockClose)
      fail("expected '%}', got " + describe(peek()), peek());
    ++i_;
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Token::Type::End:
        return "end of template";
      case Token::Type::BlockClose:
        return "'%}'";
      case Token::Type::VarClose:
        return "'}}'";
      case Token::Type::Text:
        return "text";
      default:
        return "'" + t.text + "'";
    }
  }

  // Parses statements until a block tag whose keyword is in `ends`; returns that keyword in
  // `end` (the tag's remaining tokens are left for the caller).
  Body parse_body(const std::vector<std::string>& ends, std::string& end) {
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.type == Token::Type::End) {
        if (!ends.empty()) fail("unexpected end of template, expected '" + ends[0] + "'", t);
        return body;
      }
      if (t.type == Token::Type::Text) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::Text;
        s->pos = t.pos;
        s->text = t.text;
        body.push_back(std::move(s));
        ++i_;
        continue;
      }
      if (t.type == Token::Type::VarOpen) {
        ++i_;
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::Output;
        s->pos = t.pos;
        s->expr = parse_expression();
        if (peek().type != Token::Type::VarClose)
          fail("expected '}}', got " + describe(peek()), peek());
        ++i_;
        body.push_back(std::move(s));
        continue;
      }
      if (t.type != Token::Type::BlockOpen) fail("unexpected " + describe(t), t);
      const Token& kw = peek(1);
      if (kw.type != Token::Type::Name) fail("expected a tag name", kw);
      for (auto& e : ends) {
        if (kw.text == e) {
          i_ += 2;
          end = e;
          return body;
        }
      }
      i_ += 2;
      if (auto s = parse_statement(kw)) body.push_back(std::move(s));
    }
  }

  StmtPtr make(Stmt::Kind k, const Token& at) {
    auto s = std::make_unique<Stmt>();
    s->kind = k;
    s->pos = at.pos;
    return s;
  }

  StmtPtr parse_statement(const Token& kw) {
    const std::string& k = kw.text;
    if (k == "if") {
      auto s = make(Stmt::Kind::If, kw);
      auto cond = parse_expression();
      expect_block_close();
      while (true) {
        std::string end;
        Body body = parse_body({"elif", "else", "endif"}, end);
        s->branches.emplace_back(std::move(cond), std::move(body));
        if (end == "elif") {
          cond = parse_expression();
          expect_block_close();
          continue;
        }
        expect_block_close();
        if (end == "else") {
          s->else_body = parse_body({"endif"}, end);
          expect_block_close();
        }
        return s;
      }
    }
    if (k == "for") {
      auto s = make(Stmt::Kind::For, kw);
      s->targets = parse_targets();
      if (!is_name("in")) fail("expected 'in' in for loop", peek());
      ++i_;
      s->expr = parse_or_tuple(/*allow_cond=*/false);
      if (is_name("if")) {
        ++i_;
        s->filter = parse_expression();
      }
      if (is_name("recursive")) fail("recursive loops are not supported", peek());
      expect_block_close();
      std::string end;
      s->body = parse_body({"else", "endfor"}, end);
      expect_block_close();
      if (end == "else") {
        s->else_body = parse_body({"endfor"}, end);
        expect_block_close();
      }
      return s;
    }
    if (k == "set") {
      auto s = make(Stmt::Kind::Set, kw);
      if (peek().type == Token::Type::Name && is_op(".", 1)) {
        s->targets.push_back(next().text);
        ++i_;
        s->attr = expect_name();
      } else {
        s->targets = parse_targets();
      }
      if (is_op("=")) {
        ++i_;
        s->expr = parse_or_tuple(true);
        expect_block_close();
      } else {
        // Block set: {% set x %}...{% endset %}
        if (is_op("|")) fail("filtered block set is not supported", peek());
        expect_block_close();
        std::string end;
        s->body = parse_body({"endset"}, end);
        expect_block_close();
      }
      return s;
    }
    if (k == "macro") {
      auto s = make(Stmt::Kind::Macro, kw);
      s->name = expect_name();
      s->params = parse_params();
      expect_block_close();
      std::string end;
      s->body = parse_body({"endmacro"}, end);
      if (peek().type == Token::Type::Name) ++i_;  // {% endmacro name %}
      expect_block_close();
      return s;
    }
    if (k == "call") {
      auto s = make(Stmt::Kind::CallBlock, kw);
      if (is_op("(")) s->params = parse_params();
      s->expr = parse_expression();
      if (s->expr->kind != Expr::Kind::Call) fail("expected a macro call", kw);
      expect_block_close();
      std::string end;
      s->body = parse_body({"endcall"}, end);
      expect_block_close();
      return s;
    }
    if (k == "filter") {
      auto s = make(Stmt::Kind::FilterBlock, kw);
      // The filter chain is parsed as filters applied to a placeholder name.
      auto placeholder = std::make_unique<Expr>();
      placeholder->kind = Expr::Kind::Name;
      placeholder->name = "\x01filter_body";
      placeholder->pos = kw.pos;
      s->expr = parse_filter_chain(std::move(placeholder), /*first_without_bar=*/true);
      expect_block_close();
      std::string end;
      s->body = parse_body({"endfilter"}, end);
      expect_block_close();
      return s;
    }
    if (k == "break" || k == "continue") {
      auto s = make(k == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue, kw);
      expect_block_close();
      return s;
    }
    if (k == "generation" || k == "endgeneration") {
      // transformers' AssistantTracker marks; they render nothing.
      expect_block_close();
      return nullptr;
    }
    fail("unknown or unsupported tag '" + k + "'", kw);
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> names;
    bool paren = is_op("(");
    if (paren) ++i_;
    names.push_back(expect_name());
    while (is_op(",")) {
      ++i_;
      names.push_back(expect_name());
    }
    if (paren) expect_op(")");
    return names;
  }

  std::vector<MacroParam> parse_params() {
    std::vector<MacroParam> params;
    expect_op("(");
    while (!is_op(")")) {
      MacroParam p;
      p.name = expect_name();
      if (is_op("=")) {
        ++i_;
        p.default_value = parse_expression();
      }
      params.push_back(std::move(p));
      if (!is_op(",")) break;
      ++i_;
    }
    expect_op(")");
    return params;
  }

  ExprPtr node(Expr::Kind k, Pos pos) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->pos = pos;
    return e;
  }

  // An expression, or a tuple of them without parentheses (a, b).
  ExprPtr parse_or_tuple(bool allow_cond) {
    Pos pos = peek().pos;
    ExprPtr first = allow_cond ? parse_expression() : parse_or();
    if (!is_op(",")) return first;
    auto t = node(Expr::Kind::Tuple, pos);
    t->items.push_back(std::move(first));
    while (is_op(",")) {
      ++i_;
      if (peek().type == Token::Type::BlockClose || peek().type == Token::Type::VarClose) break;
      t->items.push_back(allow_cond ? parse_expression() : parse_or());
    }
    return t;
  }

  ExprPtr parse_expression() {
    Pos pos = peek().pos;
    ExprPtr e = parse_or();
    while (is_name("if")) {
      ++i_;
      auto c = node(Expr::Kind::Cond, pos);
      c->items.push_back(parse_or());  // condition
      c->items.push_back(std::move(e));
      if (is_name("else")) {
        ++i_;
        c->items.push_back(parse_expression());
      } else {
        c->items.push_back(nullptr);
      }
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(Expr::Kind k, const std::string& op, ExprPtr a, ExprPtr b, Pos pos) {
    auto e = node(k, pos);
    e->name = op;
    e->a = std::move(a);
    e->b = std::move(b);
    return e;
  }

  ExprPtr parse_or() {
    Pos pos = peek().pos;
    ExprPtr e = parse_and();
    while (is_name("or")) {
      ++i_;
      e = binary(Expr::Kind::Binary, "or", std::move(e), parse_and(), pos);
    }
    return e;
  }
  ExprPtr parse_and() {
    Pos pos = peek().pos;
    ExprPtr e = parse_not();
    while (is_name("and")) {
      ++i_;
      e = binary(Expr::Kind::Binary, "and", std::move(e), parse_not(), pos);
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      Pos pos = next().pos;
      auto e = node(Expr::Kind::Unary, pos);
      e->name = "not";
      e->a = parse_not();
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    Pos pos = peek().pos;
    ExprPtr e = parse_math1();
    while (true) {
      std::string op;
      if (peek().type == Token::Type::Op &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
           peek().text == "<=" || peek().text == ">" || peek().text == ">=")) {
        op = next().text;
      } else if (is_name("in")) {
        ++i_;
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        i_ += 2;
        op = "not in";
      } else {
        return e;
      }
      e = binary(Expr::Kind::Compare, op, std::move(e), parse_math1(), pos);
    }
  }
  ExprPtr parse_math1() {
    Pos pos = peek().pos;
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = next().text;
      e = binary(Expr::Kind::Binary, op, std::move(e), parse_concat(), pos);
    }
    return e;
  }
  ExprPtr parse_concat() {
    Pos pos = peek().pos;
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      ++i_;
      e = binary(Expr::Kind::Binary, "~", std::move(e), parse_math2(), pos);
    }
    return e;
  }
  ExprPtr parse_math2() {
    Pos pos = peek().pos;
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = next().text;
      e = binary(Expr::Kind::Binary, op, std::move(e), parse_pow(), pos);
    }
    return e;
  }
  ExprPtr parse_pow() {
    Pos pos = peek().pos;
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      ++i_;
      e = binary(Expr::Kind::Binary, "**", std::move(e), parse_unary(true), pos);
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const Token& t = next();
      e = node(Expr::Kind::Unary, t.pos);
      e->name = t.text;
      e->a = parse_unary(false);
    } else {
      e = parse_postfix(parse_primary());
    }
    if (with_filter) e = parse_filter_chain(std::move(e), false);
    return e;
  }

  // Filters (| name), tests (is [not] name) and calls after them.
  ExprPtr parse_filter_chain(ExprPtr e, bool first_without_bar) {
    bool first = first_without_bar;
    while (true) {
      if (first || is_op("|")) {
        if (!first) ++i_;
        first = false;
        const Token& nt = peek();
        auto f = node(Expr::Kind::Filter, nt.pos);
        f->name = expect_name();
        while (is_op(".")) {  // dotted filter names are not used; keep the last part
          ++i_;
          f->name = expect_name();
        }
        f->a = std::move(e);
        if (is_op("(")) parse_call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        const Token& it = next();
        auto t = node(Expr::Kind::Test, it.pos);
        if (is_name("not")) {
          ++i_;
          t->negated = true;
        }
        // Test names may be keywords such as none/true/false/in.
        if (peek().type != Token::Type::Name) fail("expected a test name", peek());
        t->name = next().text;
        t->a = std::move(e);
        if (is_op("(")) {
          parse_call_args(*t);
        } else if (starts_primary() && !is_name("and") && !is_name("or") && !is_name("else") &&
                   !is_name("if") && !is_name("in") && !is_name("not") && !is_name("is")) {
          t->items.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        auto c = node(Expr::Kind::Call, peek().pos);
        c->a = std::move(e);
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  bool starts_primary() const {
    const Token& t = peek();
    return t.type == Token::Type::Name || t.type == Token::Type::String ||
           t.type == Token::Type::Int || t.type == Token::Type::Float ||
           (t.type == Token::Type::Op && (t.text == "(" || t.text == "[" || t.text == "{"));
  }

  void parse_call_args(Expr& call) {
    expect_op("(");
    while (!is_op(")")) {
      if (peek().type == Token::Type::Name && is_op("=", 1)) {
        std::string name = next().text;
        ++i_;
        call.kwargs.emplace_back(name, parse_expression());
      } else {
        if (!call.kwargs.empty()) fail("positional argument after keyword argument", peek());
        call.items.push_back(parse_expression());
      }
      if (!is_op(",")) break;
      ++i_;
    }
    expect_op(")");
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        const Token& dot = next();
        auto a = node(Expr::Kind::Attr, dot.pos);
        if (peek().type == Token::Type::Int) {
          // x.0 is item access
          a->kind = Expr::Kind::Item;
          auto idx = node(Expr::Kind::Literal, peek().pos);
          idx->value = Value(next().i);
          a->b = std::move(idx);
        } else {
          a->name = expect_name();
        }
        a->a = std::move(e);
        e = std::move(a);
      } else if (is_op("[")) {
        const Token& br = next();
        ExprPtr parts[3];
        bool slice = false;
        int part = 0;
        while (!is_op("]")) {
          if (is_op(":")) {
            slice = true;
            ++i_;
            if (++part > 2) fail("too many ':' in slice", peek());
            continue;
          }
          if (parts[part]) fail("expected ']' or ':'", peek());
          parts[part] = parse_expression();
        }
        ++i_;
        if (slice) {
          auto s = node(Expr::Kind::Slice, br.pos);
          s->a = std::move(e);
          for (auto& p : parts) s->items.push_back(std::move(p));
          e = std::move(s);
        } else {
          if (!parts[0]) fail("empty subscript", br);
          auto it = node(Expr::Kind::Item, br.pos);
          it->a = std::move(e);
          it->b = std::move(parts[0]);
          e = std::move(it);
        }
      } else if (is_op("(")) {
        auto c = node(Expr::Kind::Call, peek().pos);
        c->a = std::move(e);
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    switch (t.type) {
      case Token::Type::String: {
        auto e = node(Expr::Kind::Literal, t.pos);
        std::string s = next().text;
        while (peek().type == Token::Type::String) s += next().text;  // "a" "b"
        e->value = Value(s);
        return e;
      }
      case Token::Type::Int: {
        auto e = node(Expr::Kind::Literal, t.pos);
        e->value = Value(next().i);
        return e;
      }
      case Token::Type::Float: {
        auto e = node(Expr::Kind::Literal, t.pos);
        e->value = Value(next().d);
        return e;
      }
      case Token::Type::Name: {
        const std::string& n = t.text;
        auto e = node(Expr::Kind::Literal, t.pos);
        if (n == "true" || n == "True") {
          e->value = Value(true);
        } else if (n == "false" || n == "False") {
          e->value = Value(false);
        } else if (n == "none" || n == "None") {
          e->value = Value::none();
        } else {
          e->kind = Expr::Kind::Name;
          e->name = n;
        }
        ++i_;
        return e;
      }
      case Token::Type::Op: {
        if (t.text == "(") {
          Pos pos = next().pos;
          if (is_op(")")) {
            ++i_;
            return node(Expr::Kind::Tuple, pos);
          }
          ExprPtr first = parse_expression();
          if (is_op(")")) {
            ++i_;
            return first;
          }
          auto tup = node(Expr::Kind::Tuple, pos);
          tup->items.push_back(std::move(first));
          while (is_op(",")) {
            ++i_;
            if (is_op(")")) break;
            tup->items.push_back(parse_expression());
          }
          expect_op(")");
          return tup;
        }
        if (t.text == "[") {
          auto l = node(Expr::Kind::List, next().pos);
          while (!is_op("]")) {
            l->items.push_back(parse_expression());
            if (!is_op(",")) break;
            ++i_;
          }
          expect_op("]");
          return l;
        }
        if (t.text == "{") {
          auto d = node(Expr::Kind::Dict, next().pos);
          while (!is_op("}")) {
            d->items.push_back(parse_expression());
            expect_op(":");
            d->items.push_back(parse_expression());
            if (!is_op(",")) break;
            ++i_;
          }
          expect_op("}");
          return d;
        }
        break;
      }
      default:
        break;
    }
    fail("unexpected " + describe(t), t);
  }

  std::vector<Token> t_;
  size_t i_ = 0;
};

}  // namespace

std::shared_ptr<Template> parse_template(const std::string& source, LexOptions options) {
  Lexer lexer(source, options);
  Parser parser(lexer.run());
  return parser.run();
}

}  // namespace lm::jinja
