// Grammar-constrained JSON output: a character-level pushdown matcher compiled
// from a JSON schema, and a TokenConstraint that allows exactly the tokens whose
// decoded text keeps the output a prefix of a schema-valid JSON document. The
// output is compact JSON (no whitespace), object properties in schema order.
//
// Supported schema subset: type (one or a list), properties (every listed
// property is emitted, which satisfies `required`), additionalProperties (as
// the value schema of free objects), items, minItems/maxItems, enum, const,
// anyOf/oneOf (an alternative is chosen by its first character), $ref to
// #/$defs or #/definitions, string minLength/maxLength, number, integer,
// boolean, null. Keywords outside the subset (pattern, format, minimum, ...)
// are not enforced.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxcpp/lm/server/engine.h"

namespace lm {
class Tokenizer;
}

namespace lm::server {

// The compiled grammar (shared, immutable) and a matcher over it.
class JsonGrammar {
 public:
  // Throws std::invalid_argument naming the schema path for an unusable schema.
  static std::shared_ptr<const JsonGrammar> from_schema(const nlohmann::json& schema);
  // {"name": <one of the tools>, "arguments": <that tool's parameters>}.
  static std::shared_ptr<const JsonGrammar> for_tool_calls(const nlohmann::json& tools);

  struct Node;
  struct Frame {
    int node = 0;
    int phase = 0;
    int pos = 0;
    int count = 0;
    uint64_t cands = 0;
  };
  // A matcher state: feed characters; complete() once a whole document matched.
  class State {
   public:
    explicit State(const JsonGrammar* g);
    bool feed(unsigned char c);
    bool feed(const std::string& s);
    bool complete() const { return stack_.empty(); }

   private:
    const JsonGrammar* g_;
    std::vector<Frame> stack_;
  };
  State start() const { return State(this); }

  std::vector<Node> nodes;
  int root = 0;
};

// The token-level constraint of a grammar for a tokenizer (vocab: the model's
// logit count; ids the tokenizer does not know are never allowed).
std::shared_ptr<TokenConstraint> make_json_constraint(const Tokenizer& tokenizer, int vocab,
                                                      const nlohmann::json& schema);
std::shared_ptr<TokenConstraint> make_tool_call_constraint(const Tokenizer& tokenizer, int vocab,
                                                           const nlohmann::json& tools);

}  // namespace lm::server
