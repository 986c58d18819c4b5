#include "mlxcpp/lm/server/http_server.h"

#include <dirent.h>
#include <httplib.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>

#include "mlxcpp/lm/chat_template/chat_template.h"
#include "mlxcpp/lm/prompt.h"
#include "mlxcpp/lm/server/chat_page.h"
#include "mlxcpp/lm/server/engine.h"
#include "mlxcpp/lm/server/json_grammar.h"
#include "mlxcpp/lm/server/tool_calls.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"
#include "mlxcpp/mx/allocator.h"

namespace lm::server {

using nlohmann::json;

namespace {

constexpr const char* kFingerprint = "mlxcpp";

// JSON text for the client. Generated text can hold invalid UTF-8 (a model may
// emit a lone byte token); it goes out as U+FFFD instead of failing the response.
std::string wire(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string s = prefix;
  for (int i = 0; i < 24; ++i) s += hex[rng() % 16];
  return s;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool template_mentions_tools(const Tokenizer& tok, const std::optional<std::string>& override_tpl) {
  if (override_tpl) return override_tpl->find("tools") != std::string::npos;
  for (const auto& [name, src] : tok.config().chat_templates) {
    if (src.find("tools") != std::string::npos) return true;
  }
  return false;
}

// For a template that cannot render tools, the tools are described in a
// system message in the format tool_calls.h parses.
json with_tool_instructions(const json& messages, const json& tools) {
  std::string text =
      "You can call the following functions. To call one, reply with only a JSON object "
      "{\"name\": <function name>, \"arguments\": <arguments object>}.\nFunctions:\n";
  for (const auto& t : tools) text += t["function"].dump() + "\n";
  json out = messages;
  if (!out.empty() && out[0]["role"] == "system") {
    out[0]["content"] = text + "\n" + out[0]["content"].get<std::string>();
  } else {
    out.insert(out.begin(), json{{"role", "system"}, {"content", text}});
  }
  return out;
}

// For a template without tool support: assistant tool calls become their JSON
// text and tool results become user turns, so role-alternating templates
// (Gemma's) render the conversation.
json without_tool_roles(const json& messages) {
  json out = json::array();
  for (const auto& m : messages) {
    json msg = m;
    if (m.contains("tool_calls")) {
      std::string text = m["content"].get<std::string>();
      for (const auto& c : m["tool_calls"]) {
        json fn = c.value("function", json::object());
        json call = {{"name", fn.value("name", "")},
                     {"arguments", fn.value("arguments", json::object())}};
        if (!text.empty()) text.append("\n");
        text.append(call.dump());
      }
      msg = {{"role", "assistant"}, {"content", text}};
    } else if (m["role"] == "tool") {
      std::string text = "Result of tool call";
      if (m.contains("tool_call_id")) text.append(" ").append(m["tool_call_id"].get<std::string>());
      text.append(": ").append(m["content"].get<std::string>());
      msg = {{"role", "user"}, {"content", text}};
    }
    if (!out.empty() && out.back()["role"] == msg["role"] && msg["role"] == "user") {
      std::string joined = out.back()["content"].get<std::string>();
      joined.append("\n\n").append(msg["content"].get<std::string>());
      out.back()["content"] = joined;
    } else {
      out.push_back(msg);
    }
  }
  return out;
}

}  // namespace

std::vector<int32_t> request_prompt(const Tokenizer& tokenizer, const CompletionRequest& r,
                                    const std::optional<std::string>& chat_template) {
  if (!r.chat) {
    if (!r.prompt_tokens.empty()) return r.prompt_tokens;
    return tokenizer.encode(*r.prompt_text, true);
  }
  bool use_tools = r.tools.is_array() && r.tool_choice != "none";
  bool has_template = chat_template.has_value() || has_chat_template(tokenizer);
  json messages = r.messages;
  if (!template_mentions_tools(tokenizer, chat_template)) {
    messages = without_tool_roles(messages);
    if (use_tools) messages = with_tool_instructions(messages, r.tools);
  }
  try {
    if (!has_template) {
      // No template: plain "role: content" lines, the reply after "assistant:".
      std::string text;
      for (const auto& m : messages) {
        text += m["role"].get<std::string>() + ": " + m["content"].get<std::string>() + "\n";
      }
      return tokenizer.encode(text + "assistant:", true);
    }
    std::string text;
    if (chat_template) {
      json ctx = r.template_kwargs;
      ctx["messages"] = messages;
      ctx["add_generation_prompt"] = true;
      if (use_tools) ctx["tools"] = r.tools;
      const auto& c = tokenizer.config();
      if (c.bos_token) ctx["bos_token"] = *c.bos_token;
      if (c.eos_token) ctx["eos_token"] = *c.eos_token;
      text = ChatTemplate(*chat_template).render(ctx.dump());
    } else {
      ChatOptions o;
      o.messages_json = messages.dump();
      if (use_tools && template_mentions_tools(tokenizer, chat_template))
        o.tools_json = r.tools.dump();
      o.add_generation_prompt = true;
      o.extra_json = r.template_kwargs.dump();
      text = apply_chat_template(tokenizer, o);
    }
    return tokenizer.encode(text, false);
  } catch (const ApiError&) {
    throw;
  } catch (const std::exception& e) {
    throw ApiError(400, std::string("the chat template could not render the messages: ") + e.what(),
                   "invalid_request_error", "messages", "chat_template_error");
  }
}

// ------------------------------------------------------------------ responses

namespace {

// One request in flight: turns engine events into OpenAI JSON.
struct Exchange {
  CompletionRequest req;
  const Tokenizer* tok = nullptr;
  std::string id;
  int64_t created = 0;
  std::shared_ptr<RequestStream> stream;
  bool tool_mode = false;           // tools active: the text is buffered and parsed at the end
  std::string text;                 // everything generated so far
  json lp_content = json::array();  // chat logprobs entries
  json c_tokens = json::array(), c_token_lp = json::array(), c_top = json::array(),
       c_offset = json::array();  // completions logprobs
  size_t text_offset = 0;
  Event final_event;
  bool finished = false;
  bool sent_role = false;

  std::string token_text(int32_t id) const {
    std::vector<int32_t> ids{id};
    return tok->decode(ids);
  }
  static json bytes_of(const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(static_cast<int>(c));
    return b;
  }

  // Logprobs of one event, in the request's shape; appended to the totals.
  json event_logprobs(const Event& e) {
    if (!req.logprobs || e.tokens.empty()) return nullptr;
    if (req.chat) {
      json content = json::array();
      for (size_t i = 0; i < e.tokens.size(); ++i) {
        std::string t = token_text(e.tokens[i].id);
        json top = json::array();
        if (i < e.top.size()) {
          for (const auto& a : e.top[i]) {
            std::string at = token_text(a.id);
            top.push_back({{"token", at}, {"logprob", a.logprob}, {"bytes", bytes_of(at)}});
          }
        }
        content.push_back({{"token", t},
                           {"logprob", e.tokens[i].logprob},
                           {"bytes", bytes_of(t)},
                           {"top_logprobs", top}});
      }
      for (auto& c : content) lp_content.push_back(c);
      return json{{"content", content}, {"refusal", nullptr}};
    }
    json tokens = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
    for (size_t i = 0; i < e.tokens.size(); ++i) {
      std::string t = token_text(e.tokens[i].id);
      tokens.push_back(t);
      lps.push_back(e.tokens[i].logprob);
      offs.push_back(text_offset);
      text_offset += t.size();
      json top = json::object();
      if (i < e.top.size()) {
        for (const auto& a : e.top[i]) top[token_text(a.id)] = a.logprob;
      }
      tops.push_back(req.top_logprobs > 0 ? top : json(nullptr));
    }
    for (auto& x : tokens) c_tokens.push_back(x);
    for (auto& x : lps) c_token_lp.push_back(x);
    for (auto& x : tops) c_top.push_back(x);
    for (auto& x : offs) c_offset.push_back(x);
    return json{
        {"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
  }

  json usage() const {
    return {{"prompt_tokens", final_event.prompt_tokens},
            {"completion_tokens", final_event.completion_tokens},
            {"total_tokens", final_event.prompt_tokens + final_event.completion_tokens},
            {"prompt_tokens_details", {{"cached_tokens", final_event.cached_tokens}}},
            {"completion_tokens_details", {{"reasoning_tokens", 0}}}};
  }

  json envelope(const char* object) const {
    return {{"id", id},
            {"object", object},
            {"created", created},
            {"model", req.model},
            {"system_fingerprint", kFingerprint}};
  }

  // The tool calls in the finished text, if any (tools active only).
  std::optional<json> tool_calls() const {
    if (!tool_mode) return std::nullopt;
    return parse_tool_calls(text, req.tools);
  }

  std::string finish_reason(bool has_calls) const {
    if (has_calls) return "tool_calls";
    return *final_event.finish_reason;
  }

  json full_response() {
    json r = envelope(req.chat ? "chat.completion" : "text_completion");
    json choice = {{"index", 0}};
    if (req.chat) {
      auto calls = tool_calls();
      json msg = {{"role", "assistant"},
                  {"content", calls ? json(nullptr) : json(text)},
                  {"refusal", nullptr}};
      if (calls) msg["tool_calls"] = *calls;
      choice["message"] = msg;
      choice["logprobs"] =
          req.logprobs ? json{{"content", lp_content}, {"refusal", nullptr}} : json(nullptr);
      choice["finish_reason"] = finish_reason(calls.has_value());
    } else {
      choice["text"] = (req.echo && req.prompt_text ? *req.prompt_text : std::string()) + text;
      choice["logprobs"] = req.logprobs ? json{{"tokens", c_tokens},
                                               {"token_logprobs", c_token_lp},
                                               {"top_logprobs", c_top},
                                               {"text_offset", c_offset}}
                                        : json(nullptr);
      choice["finish_reason"] = finish_reason(false);
    }
    r["choices"] = json::array({choice});
    r["usage"] = usage();
    return r;
  }

  json chunk(json delta_or_text, json logprobs, json finish) const {
    json r = envelope(req.chat ? "chat.completion.chunk" : "text_completion");
    json choice = {{"index", 0}};
    if (req.chat) {
      choice["delta"] = std::move(delta_or_text);
    } else {
      choice["text"] = std::move(delta_or_text);
    }
    choice["logprobs"] = std::move(logprobs);
    choice["finish_reason"] = std::move(finish);
    r["choices"] = json::array({choice});
    if (req.include_usage) r["usage"] = nullptr;
    return r;
  }

  // SSE lines for new events; appends "[DONE]" after the final one.
  std::string sse(const std::vector<Event>& events) {
    std::string out;
    auto data = [&](const json& j) { out += "data: " + wire(j) + "\n\n"; };
    for (const auto& e : events) {
      if (e.finish_reason) {
        final_event = e;
        finished = true;
        if (*e.finish_reason == "error" || *e.finish_reason == "cancelled") {
          ApiError err(
              e.finish_reason == "error" ? 500 : 503,
              e.error.empty() ? "the request was cancelled (server shutting down)" : e.error,
              e.finish_reason == "error" ? "server_error" : "service_unavailable");
          data(err.body());
          out += "data: [DONE]\n\n";
          return out;
        }
        if (req.chat && !sent_role) {
          data(chunk({{"role", "assistant"}, {"content", ""}}, nullptr, nullptr));
          sent_role = true;
        }
        std::optional<json> calls = tool_calls();
        if (req.chat && tool_mode) {
          if (calls) {
            json deltas = json::array();
            for (size_t i = 0; i < calls->size(); ++i) {
              json c = (*calls)[i];
              c["index"] = i;
              deltas.push_back(c);
            }
            data(chunk({{"tool_calls", deltas}}, nullptr, nullptr));
          } else if (!text.empty()) {
            data(chunk({{"content", text}}, nullptr, nullptr));
          }
        }
        data(
            chunk(req.chat ? json::object() : json(""), nullptr, finish_reason(calls.has_value())));
        if (req.include_usage) {
          json u = envelope(req.chat ? "chat.completion.chunk" : "text_completion");
          u["choices"] = json::array();
          u["usage"] = usage();
          data(u);
        }
        out += "data: [DONE]\n\n";
        return out;
      }
      text += e.text;
      json lp = event_logprobs(e);
      if (tool_mode) continue;
      if (req.chat && !sent_role) {
        data(chunk({{"role", "assistant"}, {"content", ""}}, nullptr, nullptr));
        sent_role = true;
      }
      if (e.text.empty() && lp.is_null()) continue;
      data(chunk(req.chat ? json{{"content", e.text}} : json(e.text), lp, nullptr));
    }
    return out;
  }

  // Non-streaming: consumes events until the end.
  void absorb(const std::vector<Event>& events) {
    for (const auto& e : events) {
      if (e.finish_reason) {
        final_event = e;
        finished = true;
        return;
      }
      text += e.text;
      event_logprobs(e);
    }
  }
};

// "host" and port of a socket address, as cpp-httplib writes them into a Request.
std::pair<std::string, int> numeric_address(const sockaddr_storage& addr, socklen_t len) {
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, host, sizeof(host), port,
                  sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return {"", -1};
  }
  return {host, std::atoi(port)};
}

// The socket a request arrived on, or -1. cpp-httplib 0.11 does not hand it to
// handlers, so it is found among this process's sockets by the connection's
// two addresses (unique while the handler runs: the connection stays open
// until the handler returns).
int connection_socket(const httplib::Request& req) {
  if (req.remote_port <= 0 || req.local_port <= 0) return -1;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    struct stat st;
    if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage local{}, peer{};
    socklen_t llen = sizeof(local), plen = sizeof(peer);
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &llen) != 0 ||
        getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &plen) != 0) {
      continue;
    }
    if (numeric_address(local, llen) == std::pair{req.local_addr, req.local_port} &&
        numeric_address(peer, plen) == std::pair{req.remote_addr, req.remote_port}) {
      found = static_cast<int>(fd);
      break;
    }
  }
  closedir(dir);
  return found;
}

// True once the client has closed its side of the connection (or it broke).
// An HTTP client waiting for its response never does; one that gave up has.
bool peer_closed(int sock) {
  pollfd p{sock, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= a[i] ^ b[i % (b.empty() ? 1 : b.size())];
  return diff == 0 && !b.empty();
}

}  // namespace

struct HttpServer::Impl {
  Engine& engine;
  ServerOptions opt;
  httplib::Server svr;
  int bound_port = -1;
  int listen_socket = -1;  // the last socket cpp-httplib created to listen on
  int64_t started = unix_now();

  Impl(Engine& e, ServerOptions o) : engine(e), opt(std::move(o)) {}

  void send_json(httplib::Response& res, int status, const json& j) {
    res.status = status;
    res.set_content(wire(j), "application/json");
  }
  void send_error(httplib::Response& res, const ApiError& e) {
    send_json(res, e.status(), e.body());
  }

  void cors(const httplib::Request& req, httplib::Response& res) {
    const auto& allowed = opt.allowed_origins;
    std::string origin = req.get_header_value("Origin");
    if (std::find(allowed.begin(), allowed.end(), "*") != allowed.end()) {
      res.set_header("Access-Control-Allow-Origin", "*");
    } else if (!origin.empty() &&
               std::find(allowed.begin(), allowed.end(), origin) != allowed.end()) {
      res.set_header("Access-Control-Allow-Origin", origin);
      res.set_header("Vary", "Origin");
    }
  }

  bool authorized(const httplib::Request& req, httplib::Response& res) {
    if (opt.api_key.empty()) return true;
    std::string h = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (h.rfind(prefix, 0) == 0 && constant_time_equal(h.substr(prefix.size()), opt.api_key)) {
      return true;
    }
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, ApiError(401,
                             h.empty() ? "Missing API key: send 'Authorization: Bearer <key>'"
                                       : "Incorrect API key provided",
                             "invalid_request_error", std::nullopt, "invalid_api_key"));
    return false;
  }

  std::shared_ptr<TokenConstraint> constraint_for(const CompletionRequest& r) {
    const Tokenizer& tok = engine.tokenizer();
    int vocab = engine.vocab_size();
    bool forced_tool =
        r.tools.is_array() && (r.tool_choice == "required" || r.tool_choice == "function");
    if (forced_tool) {
      json tools = json::array();
      for (const auto& t : r.tools) {
        if (r.tool_choice == "required" || t["function"]["name"] == r.tool_choice_function) {
          tools.push_back(t);
        }
      }
      return make_tool_call_constraint(tok, vocab, tools);
    }
    switch (r.response_format.kind) {
      case ResponseFormat::Kind::json_object:
        return make_json_constraint(tok, vocab, json{{"type", "object"}});
      case ResponseFormat::Kind::json_schema:
        return make_json_constraint(tok, vocab, r.response_format.schema);
      default:
        return nullptr;
    }
  }

  void completion(const httplib::Request& req, httplib::Response& res, bool chat) {
    auto ex = std::make_shared<Exchange>();
    try {
      ex->req = parse_request(parse_body(req.body), chat, opt.defaults);
      ex->tok = &engine.tokenizer();
      ex->id = random_id(chat ? "chatcmpl-" : "cmpl-");
      ex->created = unix_now();
      ex->tool_mode = chat && ex->req.tools.is_array() && ex->req.tool_choice != "none";
      GenerationJob job;
      job.prompt = request_prompt(engine.tokenizer(), ex->req, opt.chat_template);
      job.max_tokens = ex->req.max_tokens;
      job.sampling = ex->req.sampling;
      job.processors = ex->req.processors;
      job.stop = ex->req.stop;
      job.logprobs = ex->req.logprobs;
      job.top_logprobs = ex->req.top_logprobs;
      try {
        job.constraint = constraint_for(ex->req);
      } catch (const std::invalid_argument& e) {
        throw ApiError(400, e.what(), "invalid_request_error", "response_format", "invalid_value");
      }
      try {
        ex->stream = engine.submit(std::move(job));
      } catch (const std::length_error& e) {
        throw ApiError(400, e.what(), "invalid_request_error", chat ? "messages" : "prompt",
                       "context_length_exceeded");
      } catch (const std::invalid_argument& e) {
        throw ApiError(400, e.what(), "invalid_request_error", std::nullopt, "invalid_value");
      } catch (const std::runtime_error& e) {
        throw ApiError(503, e.what(), "service_unavailable");
      }
    } catch (const ApiError& e) {
      send_error(res, e);
      return;
    }
    const auto wait = std::chrono::milliseconds(opt.keepalive_ms);
    if (!ex->req.stream) {
      // Nothing is written before the end, so a client that leaves is seen on
      // its socket: its generation is cancelled as a streaming one's is.
      int sock = connection_socket(req);
      const auto poll_wait = std::min(wait, std::chrono::milliseconds(200));
      while (!ex->finished) {
        ex->absorb(ex->stream->next(poll_wait));
        if (!ex->finished && sock >= 0 && peer_closed(sock)) {
          ex->stream->cancel();
          sock = -1;
        }
      }
      const auto& reason = *ex->final_event.finish_reason;
      if (reason == "error") {
        send_error(res, ApiError(500, ex->final_event.error, "server_error"));
      } else if (reason == "cancelled") {
        send_error(res, ApiError(503, "the server is shutting down", "service_unavailable"));
      } else {
        send_json(res, 200, ex->full_response());
      }
      return;
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [ex, wait](size_t, httplib::DataSink& sink) {
          try {
            auto events = ex->stream->next(wait);
            std::string out = events.empty() ? std::string(": keepalive\n\n") : ex->sse(events);
            if (!out.empty() && !sink.write(out.data(), out.size())) {
              ex->stream->cancel();
              return false;
            }
            if (ex->finished) sink.done();
            return true;
          } catch (const std::exception&) {
            // Never let an error escape into the HTTP layer: this stream ends, others go on.
            ex->stream->cancel();
            return false;
          }
        },
        [ex](bool success) {
          // A client that went away mid-stream frees its row in the engine.
          if (!success || !ex->finished) ex->stream->cancel();
        });
  }

  void routes() {
    svr.set_payload_max_length(opt.max_body_bytes);
    svr.set_keep_alive_timeout(5);
    svr.set_read_timeout(30);
    int threads = opt.http_threads > 0 ? opt.http_threads : 160;
    svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      cors(req, res);
      if (req.method == "OPTIONS") {
        res.status = 204;
        res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        res.set_header("Access-Control-Allow-Headers", "*");
        res.set_header("Access-Control-Max-Age", "86400");
        return httplib::Server::HandlerResponse::Handled;
      }
      bool open = req.path == "/" || req.path == "/health" || req.path == "/index.html";
      if (!open && !authorized(req, res)) return httplib::Server::HandlerResponse::Handled;
      return httplib::Server::HandlerResponse::Unhandled;
    });
    svr.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      std::string msg = res.status == 404   ? "no route for " + req.method + " " + req.path
                        : res.status == 413 ? "the request body is larger than " +
                                                  std::to_string(opt.max_body_bytes) + " bytes"
                        : res.status == 405 ? "method not allowed"
                                            : "HTTP error " + std::to_string(res.status);
      std::string code = res.status == 404   ? "not_found"
                         : res.status == 413 ? "payload_too_large"
                                             : "http_error";
      res.set_content(
          ApiError(res.status, msg, "invalid_request_error", std::nullopt, code).body().dump(),
          "application/json");
    });
    svr.set_exception_handler(
        [this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string msg = "internal error";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            msg = e.what();
          } catch (...) {
          }
          send_error(res, ApiError(500, msg, "server_error"));
        });
    auto chat = [this](const httplib::Request& q, httplib::Response& r) { completion(q, r, true); };
    auto text = [this](const httplib::Request& q, httplib::Response& r) {
      completion(q, r, false);
    };
    svr.Post("/v1/chat/completions", chat);
    svr.Post("/chat/completions", chat);
    svr.Post("/v1/completions", text);
    svr.Post("/completions", text);
    auto model_obj = [this] {
      return json{{"id", opt.defaults.model_id},
                  {"object", "model"},
                  {"created", started},
                  {"owned_by", "mlxcpp"}};
    };
    svr.Get("/v1/models", [this, model_obj](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, {{"object", "list"}, {"data", json::array({model_obj()})}});
    });
    svr.Get(R"(/v1/models/(.+))", [this, model_obj](const httplib::Request& req,
                                                    httplib::Response& res) {
      if (req.matches[1] == opt.defaults.model_id) {
        send_json(res, 200, model_obj());
      } else {
        send_error(res,
                   ApiError(404, "The model '" + std::string(req.matches[1]) + "' does not exist",
                            "invalid_request_error", "model", "model_not_found"));
      }
    });
    svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      auto s = engine.stats();
      send_json(res, 200,
                {{"status", "ok"},
                 {"waiting", s.waiting},
                 {"prefilling", s.prefilling},
                 {"decoding", s.decoding},
                 {"completed", s.completed},
                 {"cancelled", s.cancelled},
                 {"decode_steps", s.steps},
                 {"prefill_passes", s.prefill_passes},
                 {"prefill_chunks", s.prefill_chunks},
                 {"prompt_cache_entries", s.cache_entries},
                 {"prompt_cache_bytes", s.cache_bytes},
                 {"active_memory", mx::get_active_memory()},
                 {"cache_memory", mx::get_cache_memory()}});
    });
    auto page = [](const httplib::Request&, httplib::Response& res) {
      res.set_header("Content-Security-Policy",
                     "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'");
      res.set_content(std::string(kChatPage), "text/html; charset=utf-8");
    };
    svr.Get("/", page);
    svr.Get("/index.html", page);
  }
};

HttpServer::HttpServer(Engine& engine, ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, std::move(options))) {
  impl_->routes();
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
  auto& o = impl_->opt;
  // SO_REUSEADDR only: a restarted server binds at once, but a second one on
  // a port already served is refused (cpp-httplib's SO_REUSEPORT would let both
  // listen and split the clients).
  impl_->svr.set_socket_options([this](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    impl_->listen_socket = sock;
  });
  int port = o.port == 0 ? impl_->svr.bind_to_any_port(o.host) : o.port;
  if (o.port != 0 && !impl_->svr.bind_to_port(o.host, o.port)) port = -1;
  if (port < 0) {
    throw std::runtime_error("cannot listen on " + o.host + ":" + std::to_string(o.port) +
                             " (address in use or not available)");
  }
  impl_->bound_port = port;
  // cpp-httplib 0.11 listens with a backlog of 5: a burst of clients connecting
  // at once overflows it, and some get SYN cookies that fail (connections
  // reset). Listening again on the bound socket raises the backlog.
  int fd = impl_->listen_socket, listening = 0;
  socklen_t len = sizeof(listening);
  sockaddr_storage addr{};
  socklen_t alen = sizeof(addr);
  if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) == 0 &&
      numeric_address(addr, alen).second == port) {
    ::listen(fd, SOMAXCONN);
  }
  return port;
}

void HttpServer::serve() { impl_->svr.listen_after_bind(); }

void HttpServer::stop() {
  if (impl_ && impl_->svr.is_running()) impl_->svr.stop();
}

int HttpServer::port() const { return impl_->bound_port; }

}  // namespace lm::server
