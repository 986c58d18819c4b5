// OpenAI-compatible request parsing and validation for `mlxcpp server`: JSON
// bodies of /v1/chat/completions and /v1/completions become a CompletionRequest,
// or an ApiError carrying OpenAI's error shape and the HTTP status.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxcpp/lm/sample.h"

namespace lm::server {

// {"error": {"message", "type", "param", "code"}} with an HTTP status.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string type = "invalid_request_error",
           std::optional<std::string> param = std::nullopt,
           std::optional<std::string> code = std::nullopt)
      : std::runtime_error(message),
        status_(status),
        type_(std::move(type)),
        param_(std::move(param)),
        code_(std::move(code)) {}
  int status() const { return status_; }
  nlohmann::json body() const;

 private:
  int status_;
  std::string type_;
  std::optional<std::string> param_, code_;
};

// The server-wide defaults a request's fields override (command-line flags).
struct RequestDefaults {
  int max_tokens = 512;
  SamplerOptions sampling{0.0f, 1.0f, 0.0f, 1, 0, 0.0f, 0.1f, {}, std::nullopt};
  std::string model_id;                                     // the one model served
  nlohmann::json template_args = nlohmann::json::object();  // --chat-template-args
};

// response_format: free text, any JSON object, or JSON that validates against a schema.
struct ResponseFormat {
  enum class Kind { text, json_object, json_schema } kind = Kind::text;
  nlohmann::json schema;  // json_schema only
  std::string name;
};

struct CompletionRequest {
  bool chat = true;
  std::string model;
  // Chat: the messages as the template should see them (content parts joined
  // into text). Completions: empty, and prompt_text or prompt_tokens is set.
  nlohmann::json messages = nlohmann::json::array();
  std::optional<std::string> prompt_text;
  std::vector<int32_t> prompt_tokens;
  nlohmann::json tools;              // null or the request's list
  std::string tool_choice = "auto";  // none | auto | required | function
  std::string tool_choice_function;  // tool_choice {"type":"function", ...}
  nlohmann::json template_kwargs = nlohmann::json::object();
  bool stream = false;
  bool include_usage = false;
  int max_tokens = 512;
  SamplerOptions sampling;
  LogitsProcessorOptions processors;
  bool logprobs = false;
  int top_logprobs = 0;
  std::vector<std::string> stop;
  ResponseFormat response_format;
  bool echo = false;  // completions: prepend the prompt to the text
};

// Parses and validates a request body (already parsed as JSON). Throws ApiError
// (400, naming the field as `param`) for a wrong type or value, and 404
// (code "model_not_found") for a model other than the served one.
CompletionRequest parse_request(const nlohmann::json& body, bool chat,
                                const RequestDefaults& defaults);

// Parses the raw body text: invalid JSON or a non-object is a 400.
nlohmann::json parse_body(const std::string& text);

}  // namespace lm::server
