// The HTTP layer of `mlxcpp server` (cpp-httplib): OpenAI-compatible routes
// over an Engine, streaming as server-sent events, API-key checks, CORS, and a
// small built-in chat page at GET /.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxcpp/lm/server/request.h"

namespace lm {
class Tokenizer;
}

namespace lm::server {

class Engine;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;      // 0: any free port (see HttpServer::port)
  std::string api_key;  // empty: no authentication
  std::vector<std::string> allowed_origins{"*"};
  size_t max_body_bytes = size_t(16) << 20;
  int http_threads = 0;  // 0: 2 * decode concurrency + 16
  RequestDefaults defaults;
  std::optional<std::string> chat_template;  // overrides the tokenizer's
  // Milliseconds between SSE keep-alive comments while a stream waits (these
  // also reveal a client that has gone away).
  int keepalive_ms = 1000;
};

class HttpServer {
 public:
  HttpServer(Engine& engine, ServerOptions options);
  ~HttpServer();
  // Binds the socket (throws naming host and port on failure); returns the port.
  int bind();
  // Serves until stop(); call bind() first.
  void serve();
  // Stops accepting and returns from serve() once running handlers end.
  void stop();
  int port() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The prompt token ids of a request: chat messages through the chat template
// (with the tools when given), or the completion prompt. Throws ApiError.
std::vector<int32_t> request_prompt(const Tokenizer& tokenizer, const CompletionRequest& request,
                                    const std::optional<std::string>& chat_template);

}  // namespace lm::server
