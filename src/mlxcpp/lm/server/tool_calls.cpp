#include "mlxcpp/lm/server/tool_calls.h"

#include <random>

namespace lm::server {

using nlohmann::json;

namespace {

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string call_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* chars = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s = "call_";
  for (int i = 0; i < 24; ++i) s += chars[rng() % 36];
  return s;
}

// One {"name", "arguments"|"parameters"} object naming a known tool.
std::optional<json> one_call(const std::string& text, const json& tools) {
  json j = json::parse(trim(text), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("name") || !j["name"].is_string()) {
    return std::nullopt;
  }
  bool known = false;
  for (const auto& t : tools) known |= t["function"]["name"] == j["name"];
  if (!known) return std::nullopt;
  json args = j.contains("arguments")    ? j["arguments"]
              : j.contains("parameters") ? j["parameters"]
                                         : json::object();
  // OpenAI sends arguments as JSON text.
  std::string arg_text = args.is_string() ? args.get<std::string>() : args.dump();
  return json{{"id", call_id()},
              {"type", "function"},
              {"function", {{"name", j["name"]}, {"arguments", arg_text}}}};
}

}  // namespace

std::optional<json> parse_tool_calls(const std::string& text, const json& tools) {
  if (!tools.is_array() || tools.empty()) return std::nullopt;
  json calls = json::array();
  const std::string open = "<tool_call>", close = "</tool_call>";
  if (text.find(open) != std::string::npos) {
    size_t pos = 0;
    while ((pos = text.find(open, pos)) != std::string::npos) {
      size_t start = pos + open.size();
      size_t end = text.find(close, start);
      auto c = one_call(
          text.substr(start, end == std::string::npos ? std::string::npos : end - start), tools);
      if (c) calls.push_back(*c);
      if (end == std::string::npos) break;
      pos = end + close.size();
    }
  } else {
    std::string t = trim(text);
    if (t.rfind("```", 0) == 0) {
      auto nl = t.find('\n');
      auto fence = t.rfind("```");
      if (nl != std::string::npos && fence > nl) t = t.substr(nl + 1, fence - nl - 1);
    }
    if (auto c = one_call(t, tools)) calls.push_back(*c);
  }
  if (calls.empty()) return std::nullopt;
  return calls;
}

}  // namespace lm::server
