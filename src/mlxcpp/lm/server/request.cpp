#include "mlxcpp/lm/server/request.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace lm::server {

using nlohmann::json;

json ApiError::body() const {
  json e = {{"message", what()}, {"type", type_}, {"param", nullptr}, {"code", nullptr}};
  if (param_) e["param"] = *param_;
  if (code_) e["code"] = *code_;
  return json{{"error", e}};
}

namespace {

// Nesting deeper than this is refused before parsing: printing or destroying a
// deeply nested value recurses, and a body of a few MB of '[' would overflow a
// handler thread's stack.
constexpr int kMaxDepth = 128;

int nesting_depth(const std::string& text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > kMaxDepth) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

json parse_body(const std::string& text) {
  if (nesting_depth(text) > kMaxDepth) {
    throw ApiError(
        400, "the request body nests JSON deeper than " + std::to_string(kMaxDepth) + " levels",
        "invalid_request_error", std::nullopt, "invalid_json");
  }
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what(),
                   "invalid_request_error", std::nullopt, "invalid_json");
  }
  if (!j.is_object()) {
    throw ApiError(400, "the request body must be a JSON object, got " + std::string(j.type_name()),
                   "invalid_request_error", std::nullopt, "invalid_json");
  }
  return j;
}

namespace {

// A value as it appears in an error message: its JSON text, cut to 80 bytes.
std::string brief(const json& v) {
  std::string s = v.dump();
  return s.size() <= 80 ? s : s.substr(0, 77) + "...";
}

[[noreturn]] void bad(const std::string& field, const std::string& message) {
  throw ApiError(400, "'" + field + "': " + message, "invalid_request_error", field,
                 "invalid_value");
}

// A field counts as absent when missing or null, as OpenAI treats it.
const json* get(const json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return nullptr;
  return &*it;
}

double number(const json& v, const std::string& field, double lo, double hi) {
  if (!v.is_number()) bad(field, "expected a number, got " + brief(v));
  double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    bad(field, "must be in [" + json(lo).dump() + ", " + json(hi).dump() + "], got " + brief(v));
  }
  return d;
}

int64_t integer(const json& v, const std::string& field, int64_t lo, int64_t hi) {
  int64_t r = 0;
  if (v.is_number_integer()) {
    r = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)
            ? INT64_MAX
            : v.get<int64_t>();
  } else if (v.is_number_float() && std::isfinite(v.get<double>()) &&
             std::floor(v.get<double>()) == v.get<double>() && std::fabs(v.get<double>()) < 9e18) {
    r = static_cast<int64_t>(v.get<double>());
  } else {
    bad(field, "expected an integer, got " + brief(v));
  }
  if (r < lo || r > hi) {
    bad(field,
        "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + brief(v));
  }
  return r;
}

bool boolean(const json& v, const std::string& field) {
  if (!v.is_boolean()) bad(field, "expected true or false, got " + brief(v));
  return v.get<bool>();
}

const std::string& string(const json& v, const std::string& field) {
  if (!v.is_string()) bad(field, "expected a string, got " + brief(v));
  return v.get_ref<const std::string&>();
}

// Message content: a string, or a list of text parts joined in order.
json message_content(const json& c, const std::string& field) {
  if (c.is_null() || c.is_string()) return c;
  if (!c.is_array()) bad(field, "expected a string or a list of content parts, got " + brief(c));
  std::string text;
  for (size_t i = 0; i < c.size(); ++i) {
    std::string f = field + "[" + std::to_string(i) + "]";
    const json& part = c[i];
    if (!part.is_object()) bad(f, "expected a content part object, got " + brief(part));
    const json* type = get(part, "type");
    if (!type) bad(f + ".type", "is required");
    const std::string& t = string(*type, f + ".type");
    if (t != "text" && t != "input_text") {
      bad(f + ".type", "content parts of type '" + t + "' are not supported by this text model");
    }
    const json* tx = get(part, "text");
    if (!tx) bad(f + ".text", "is required");
    text += string(*tx, f + ".text");
  }
  return text;
}

json parse_messages(const json& v) {
  if (!v.is_array()) bad("messages", "expected a list of messages, got " + brief(v));
  if (v.empty()) bad("messages", "must hold at least one message");
  json out = json::array();
  for (size_t i = 0; i < v.size(); ++i) {
    std::string f = "messages[" + std::to_string(i) + "]";
    const json& m = v[i];
    if (!m.is_object()) bad(f, "expected a message object, got " + brief(m));
    const json* role = get(m, "role");
    if (!role) bad(f + ".role", "is required");
    std::string r = string(*role, f + ".role");
    if (r == "developer") r = "system";
    if (r != "system" && r != "user" && r != "assistant" && r != "tool") {
      bad(f + ".role", "must be system, developer, user, assistant or tool, got '" + r + "'");
    }
    json msg = {{"role", r}};
    const json* content = get(m, "content");
    json text = content ? message_content(*content, f + ".content") : json(nullptr);
    const json* calls = get(m, "tool_calls");
    if (text.is_null() && !(r == "assistant" && calls)) bad(f + ".content", "is required");
    msg["content"] = text.is_null() ? json("") : text;
    if (calls) {
      if (!calls->is_array()) bad(f + ".tool_calls", "expected a list");
      json cs = json::array();
      for (const auto& c : *calls) {
        json call = c;
        // Templates iterate over arguments as a mapping; OpenAI sends a JSON string.
        if (c.contains("function") && c["function"].is_object() &&
            c["function"].contains("arguments") && c["function"]["arguments"].is_string()) {
          auto parsed = json::parse(c["function"]["arguments"].get<std::string>(), nullptr, false);
          if (!parsed.is_discarded()) call["function"]["arguments"] = parsed;
        }
        cs.push_back(call);
      }
      msg["tool_calls"] = cs;
    }
    if (const json* id = get(m, "tool_call_id"))
      msg["tool_call_id"] = string(*id, f + ".tool_call_id");
    if (const json* name = get(m, "name")) msg["name"] = string(*name, f + ".name");
    out.push_back(msg);
  }
  return out;
}

void parse_prompt(const json& v, CompletionRequest& r) {
  auto ids = [&](const json& a, const std::string& field) {
    std::vector<int32_t> out;
    for (size_t i = 0; i < a.size(); ++i) {
      out.push_back(
          static_cast<int32_t>(integer(a[i], field + "[" + std::to_string(i) + "]", 0, INT32_MAX)));
    }
    if (out.empty()) bad(field, "must not be empty");
    return out;
  };
  if (v.is_string()) {
    r.prompt_text = v.get<std::string>();
  } else if (v.is_array() && !v.empty() && v[0].is_number()) {
    r.prompt_tokens = ids(v, "prompt");
  } else if (v.is_array() && v.size() == 1 && v[0].is_string()) {
    r.prompt_text = v[0].get<std::string>();
  } else if (v.is_array() && v.size() == 1 && v[0].is_array()) {
    r.prompt_tokens = ids(v[0], "prompt[0]");
  } else if (v.is_array() && v.size() > 1) {
    throw ApiError(400,
                   "'prompt': batches of prompts are not supported; send one prompt per "
                   "request",
                   "invalid_request_error", "prompt", "unsupported_value");
  } else {
    bad("prompt", "expected a string or a list of token ids, got " + brief(v));
  }
  if (r.prompt_text && r.prompt_text->empty()) bad("prompt", "must not be empty");
}

void parse_tools(const json& body, CompletionRequest& r) {
  if (const json* tools = get(body, "tools")) {
    if (!tools->is_array()) bad("tools", "expected a list of tools, got " + brief(*tools));
    for (size_t i = 0; i < tools->size(); ++i) {
      std::string f = "tools[" + std::to_string(i) + "]";
      const json& t = (*tools)[i];
      if (!t.is_object()) bad(f, "expected a tool object");
      const json* type = get(t, "type");
      if (!type || string(*type, f + ".type") != "function") bad(f + ".type", "must be 'function'");
      const json* fn = get(t, "function");
      if (!fn || !fn->is_object()) bad(f + ".function", "expected an object");
      const json* name = get(*fn, "name");
      if (!name || string(*name, f + ".function.name").empty()) {
        bad(f + ".function.name", "must be a non-empty string");
      }
      if (const json* p = get(*fn, "parameters"); p && !p->is_object()) {
        bad(f + ".function.parameters", "expected a JSON schema object");
      }
    }
    if (!tools->empty()) r.tools = *tools;
  }
  if (const json* tc = get(body, "tool_choice")) {
    if (tc->is_string()) {
      r.tool_choice = tc->get<std::string>();
      if (r.tool_choice != "none" && r.tool_choice != "auto" && r.tool_choice != "required") {
        bad("tool_choice", "must be none, auto, required or a function object");
      }
    } else if (tc->is_object()) {
      const json* fn = get(*tc, "function");
      const json* name = fn && fn->is_object() ? get(*fn, "name") : nullptr;
      if (!name) bad("tool_choice.function.name", "is required");
      r.tool_choice = "function";
      r.tool_choice_function = string(*name, "tool_choice.function.name");
      bool found = false;
      if (r.tools.is_array()) {
        for (const auto& t : r.tools) found |= t["function"]["name"] == r.tool_choice_function;
      }
      if (!found)
        bad("tool_choice",
            "names the function '" + r.tool_choice_function + "', which is not among the tools");
    } else {
      bad("tool_choice", "expected a string or an object, got " + brief(*tc));
    }
    if ((r.tool_choice == "required" || r.tool_choice == "function") && r.tools.is_null()) {
      bad("tool_choice", "'" + r.tool_choice + "' needs tools");
    }
  }
}

void parse_response_format(const json& v, CompletionRequest& r) {
  if (!v.is_object()) bad("response_format", "expected an object, got " + brief(v));
  const json* type = get(v, "type");
  if (!type) bad("response_format.type", "is required");
  const std::string& t = string(*type, "response_format.type");
  if (t == "text") return;
  if (t == "json_object") {
    r.response_format.kind = ResponseFormat::Kind::json_object;
    return;
  }
  if (t != "json_schema") bad("response_format.type", "must be text, json_object or json_schema");
  const json* js = get(v, "json_schema");
  if (!js || !js->is_object()) bad("response_format.json_schema", "expected an object");
  r.response_format.kind = ResponseFormat::Kind::json_schema;
  if (const json* name = get(*js, "name")) {
    r.response_format.name = string(*name, "response_format.json_schema.name");
  }
  const json* schema = get(*js, "schema");
  if (schema && !schema->is_object() && !schema->is_boolean()) {
    bad("response_format.json_schema.schema", "expected a JSON schema object");
  }
  r.response_format.schema = schema ? *schema : json::object();
}

}  // namespace

CompletionRequest parse_request(const json& body, bool chat, const RequestDefaults& defaults) {
  CompletionRequest r;
  r.chat = chat;
  r.max_tokens = defaults.max_tokens;
  r.sampling = defaults.sampling;
  r.template_kwargs = defaults.template_args;

  r.model = defaults.model_id;
  if (const json* m = get(body, "model")) {
    const std::string& name = string(*m, "model");
    if (!name.empty() && name != defaults.model_id && name != "default_model") {
      throw ApiError(
          404,
          "The model '" + name + "' does not exist; this server serves '" + defaults.model_id + "'",
          "invalid_request_error", "model", "model_not_found");
    }
  }
  if (chat) {
    const json* m = get(body, "messages");
    if (!m)
      throw ApiError(400, "'messages' is required", "invalid_request_error", "messages",
                     "missing_required_parameter");
    r.messages = parse_messages(*m);
  } else {
    const json* p = get(body, "prompt");
    if (!p)
      throw ApiError(400, "'prompt' is required", "invalid_request_error", "prompt",
                     "missing_required_parameter");
    parse_prompt(*p, r);
    if (const json* e = get(body, "echo")) r.echo = boolean(*e, "echo");
  }

  if (const json* s = get(body, "stream")) r.stream = boolean(*s, "stream");
  if (const json* so = get(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "expected an object, got " + brief(*so));
    if (!r.stream) bad("stream_options", "is only allowed when 'stream' is true");
    if (const json* u = get(*so, "include_usage")) {
      r.include_usage = boolean(*u, "stream_options.include_usage");
    }
  }
  if (const json* n = get(body, "n"); n && integer(*n, "n", 1, 128) != 1) {
    throw ApiError(400, "'n': only n = 1 is supported", "invalid_request_error", "n",
                   "unsupported_value");
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (const json* v = get(body, key))
      r.max_tokens = static_cast<int>(integer(*v, key, 0, 1 << 24));
  }
  auto& s = r.sampling;
  if (const json* v = get(body, "temperature"))
    s.temp = static_cast<float>(number(*v, "temperature", 0, 100));
  if (const json* v = get(body, "top_p")) s.top_p = static_cast<float>(number(*v, "top_p", 0, 1));
  if (const json* v = get(body, "top_k"))
    s.top_k = static_cast<int>(integer(*v, "top_k", 0, INT32_MAX));
  if (const json* v = get(body, "min_p")) s.min_p = static_cast<float>(number(*v, "min_p", 0, 1));
  if (const json* v = get(body, "seed"))
    s.seed = static_cast<uint64_t>(integer(*v, "seed", INT64_MIN, INT64_MAX));
  auto& p = r.processors;
  if (const json* v = get(body, "repetition_penalty")) {
    p.repetition_penalty = static_cast<float>(number(*v, "repetition_penalty", 0, 100));
  }
  if (const json* v = get(body, "repetition_context_size")) {
    p.repetition_context_size =
        static_cast<int>(integer(*v, "repetition_context_size", 1, 1 << 20));
  }
  if (const json* v = get(body, "presence_penalty")) {
    p.presence_penalty = static_cast<float>(number(*v, "presence_penalty", -2, 2));
  }
  if (const json* v = get(body, "frequency_penalty")) {
    p.frequency_penalty = static_cast<float>(number(*v, "frequency_penalty", -2, 2));
  }
  if (const json* v = get(body, "logit_bias")) {
    if (!v->is_object()) bad("logit_bias", "expected an object {token id: bias}, got " + brief(*v));
    for (const auto& [k, b] : v->items()) {
      std::string f = "logit_bias." + k;
      size_t used = 0;
      long long id = -1;
      try {
        id = std::stoll(k, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != k.size() || id < 0 || id > INT32_MAX) bad(f, "the key must be a token id");
      p.logit_bias[static_cast<int32_t>(id)] = static_cast<float>(number(b, f, -100, 100));
    }
  }
  if (const json* v = get(body, "logprobs")) {
    if (chat) {
      r.logprobs = boolean(*v, "logprobs");
    } else {
      // The legacy completions API: logprobs is the number of alternatives (0..5).
      if (v->is_boolean()) {
        r.logprobs = v->get<bool>();
      } else {
        r.top_logprobs = static_cast<int>(integer(*v, "logprobs", 0, 20));
        r.logprobs = true;
      }
    }
  }
  if (const json* v = get(body, "top_logprobs")) {
    r.top_logprobs = static_cast<int>(integer(*v, "top_logprobs", 0, 20));
    if (!r.logprobs && r.top_logprobs > 0) bad("top_logprobs", "needs 'logprobs' set to true");
  }
  if (const json* v = get(body, "stop")) {
    if (v->is_string()) {
      r.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      if (v->size() > 4) bad("stop", "at most 4 stop sequences are allowed");
      for (size_t i = 0; i < v->size(); ++i) {
        r.stop.push_back(string((*v)[i], "stop[" + std::to_string(i) + "]"));
      }
    } else {
      bad("stop", "expected a string or a list of strings, got " + brief(*v));
    }
    for (const auto& st : r.stop) {
      if (st.empty()) bad("stop", "stop sequences must not be empty");
    }
  }
  if (const json* v = get(body, "chat_template_kwargs")) {
    if (!v->is_object()) bad("chat_template_kwargs", "expected an object, got " + brief(*v));
    for (const auto& [k, val] : v->items()) r.template_kwargs[k] = val;
  }
  if (const json* v = get(body, "response_format")) parse_response_format(*v, r);
  if (chat) parse_tools(body, r);
  // The sampler validates the combination too (e.g. top_k against the vocabulary later).
  try {
    make_sampler(r.sampling);
  } catch (const std::invalid_argument& e) {
    throw ApiError(400, e.what(), "invalid_request_error", std::nullopt, "invalid_value");
  }
  return r;
}

}  // namespace lm::server
