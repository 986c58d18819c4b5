// Tool calls in generated text: a JSON object {"name", "arguments"} (what the
// tool-call grammar produces, and what tool-less templates are told to write),
// optionally inside <tool_call>...</tool_call> blocks (Hermes / Qwen templates)
// or a ```json fence. Only names among the request's tools count.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace lm::server {

// OpenAI tool_calls ([{"id", "type": "function", "function": {"name",
// "arguments": <JSON text>}}]) or nullopt when the text is not a tool call.
std::optional<nlohmann::json> parse_tool_calls(const std::string& text,
                                               const nlohmann::json& tools);

}  // namespace lm::server
