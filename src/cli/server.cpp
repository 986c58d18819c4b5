// mlxcpp server: an OpenAI-compatible HTTP server over one model (mlx_lm.server,
// cli-and-server.md §1.3 and §3), with continuous batching, prompt-cache reuse,
// structured output, an API key and a built-in chat page.
#include <CLI/CLI.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "command.h"
#include "gen_flags.h"
#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/lm/server/engine.h"
#include "mlxcpp/lm/server/http_server.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"

namespace {

std::atomic<int> g_signal{0};

extern "C" void on_signal(int sig) { g_signal = sig; }

// "8GB", "512MiB", "1e9", "4096" -> bytes.
size_t parse_bytes(const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    throw std::invalid_argument("--prompt-cache-bytes: '" + text + "' is not a size");
  }
  std::string unit = text.substr(used);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mul = 1;
  if (unit == "" || unit == "B") {
    mul = 1;
  } else if (unit == "KB") {
    mul = 1e3;
  } else if (unit == "MB") {
    mul = 1e6;
  } else if (unit == "GB") {
    mul = 1e9;
  } else if (unit == "TB") {
    mul = 1e12;
  } else if (unit == "KIB") {
    mul = 1024.0;
  } else if (unit == "MIB") {
    mul = 1024.0 * 1024;
  } else if (unit == "GIB") {
    mul = 1024.0 * 1024 * 1024;
  } else {
    throw std::invalid_argument("--prompt-cache-bytes: unknown unit '" + unit + "' in '" + text +
                                "'");
  }
  if (!(v >= 0)) throw std::invalid_argument("--prompt-cache-bytes must be >= 0");
  return static_cast<size_t>(v * mul);
}

int run_server(int argc, char** argv) {
  CLI::App app{"OpenAI-compatible HTTP server", "mlxcpp server"};
  mlxcpp::cli::ModelFlags model_flags;
  lm::server::ServerOptions sopt;
  lm::server::EngineOptions eopt;
  std::string served_name, chat_template, template_args = "{}", cache_bytes = "4GB", origins = "*";
  float temp = 0, top_p = 1, min_p = 0;
  int top_k = 0, max_tokens = 512;
  std::optional<int> max_kv_size, kv_bits;
  int kv_group_size = 64;
  model_flags.add(app);
  app.add_option("--host", sopt.host, "Address to listen on (loopback by default)")
      ->capture_default_str();
  app.add_option("--port", sopt.port, "Port (0: any free port, printed at start)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--api-key", sopt.api_key,
                 "Require 'Authorization: Bearer KEY' on /v1 routes (also from MLXCPP_API_KEY)")
      ->envname("MLXCPP_API_KEY");
  app.add_option("--served-model-name", served_name, "Model id clients use (default: --model)");
  app.add_option("--max-tokens", max_tokens, "Default maximum tokens per reply")
      ->capture_default_str()
      ->check(mlxcpp::cli::non_negative_int());
  app.add_option("--temp", temp, "Default sampling temperature")->capture_default_str();
  app.add_option("--top-p", top_p, "Default nucleus sampling threshold")->capture_default_str();
  app.add_option("--top-k", top_k, "Default top-k (0: all)")->capture_default_str();
  app.add_option("--min-p", min_p, "Default min-p")->capture_default_str();
  app.add_option("--decode-concurrency", eopt.decode_concurrency, "Requests decoded together")
      ->capture_default_str()
      ->check(mlxcpp::cli::positive_int());
  app.add_option("--prompt-concurrency", eopt.prompt_concurrency, "Requests prefilled at a time")
      ->capture_default_str()
      ->check(mlxcpp::cli::positive_int());
  app.add_option("--prefill-step-size", eopt.prefill_step_size, "Prompt tokens per prefill chunk")
      ->capture_default_str()
      ->check(mlxcpp::cli::positive_int());
  app.add_option("--prompt-cache-size", eopt.prompt_cache_size, "Prompt-cache entries kept")
      ->capture_default_str();
  app.add_option("--prompt-cache-bytes", cache_bytes, "Prompt-cache size limit (e.g. 8GB)")
      ->capture_default_str();
  app.add_option("--allowed-origins", origins, "CORS origins, comma-separated (* for any)")
      ->capture_default_str();
  app.add_option("--chat-template", chat_template,
                 "A chat template (Jinja text, or a file holding it) instead of the tokenizer's");
  app.add_option("--chat-template-args", template_args, "JSON object of chat template variables")
      ->capture_default_str();
  app.add_option("--max-kv-size", max_kv_size,
                 "Positions one request may hold (prompt + reply); longer prompts are rejected")
      ->check(CLI::Range(2, 1 << 30));
  app.add_option(
      "--kv-bits", kv_bits,
      "Keep the decode batch's KV cache quantized to this many bits (2, 3, 4, 5, 6 or 8)");
  app.add_option("--kv-group-size", kv_group_size, "Group size of the KV cache quantization")
      ->capture_default_str();
  app.add_option("--max-body-bytes", sopt.max_body_bytes, "Largest request body accepted")
      ->capture_default_str();
  app.add_option("--http-threads", sopt.http_threads,
                 "Connection handler threads (0: 160; each streaming client holds one)")
      ->capture_default_str();
  if (auto rc = mlxcpp::cli::parse_args(app, argc, argv)) return *rc;
  // Checked here, not at the first request: the quantizer rejects bits and group sizes
  // it cannot pack, naming both.
  if (kv_bits) lm::KVQuantizer(kv_group_size, *kv_bits);
  mlxcpp::cli::check_json_object(template_args, "--chat-template-args");

  lm::server::RequestDefaults& d = sopt.defaults;
  d.max_tokens = max_tokens;
  d.sampling.temp = temp;
  d.sampling.top_p = top_p;
  d.sampling.top_k = top_k;
  d.sampling.min_p = min_p;
  lm::make_sampler(d.sampling);  // validates the defaults
  d.template_args = nlohmann::json::parse(template_args);
  d.model_id = served_name.empty() ? model_flags.model : served_name;
  if (!chat_template.empty()) {
    std::error_code ec;
    if (chat_template.size() < 4096 && std::filesystem::is_regular_file(chat_template, ec)) {
      std::ifstream f(chat_template);
      std::stringstream ss;
      ss << f.rdbuf();
      sopt.chat_template = ss.str();
    } else {
      sopt.chat_template = chat_template;
    }
  }
  sopt.allowed_origins.clear();
  std::stringstream os(origins);
  for (std::string o; std::getline(os, o, ',');) {
    if (!o.empty()) sopt.allowed_origins.push_back(o);
  }
  eopt.prompt_cache_bytes = parse_bytes(cache_bytes);
  eopt.max_kv_size = max_kv_size;
  eopt.kv_bits = kv_bits;
  eopt.kv_group_size = kv_group_size;

  auto bundle = lm::load(model_flags.model, model_flags.options());
  if (!bundle.tokenizer) {
    throw std::runtime_error("the model folder " + bundle.path.string() + " has no tokenizer.json");
  }
  eopt.eos_token_ids = bundle.eos_token_ids;
  lm::server::Engine engine(bundle.model, bundle.tokenizer, eopt);
  lm::server::HttpServer http(engine, sopt);
  int port = http.bind();
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  std::cout << "mlxcpp server: serving " << d.model_id << " on http://" << sopt.host << ":" << port
            << "/" << (sopt.api_key.empty() ? "" : " (API key required)") << std::endl;
  std::atomic<bool> served{false};
  std::thread watcher([&] {
    while (!served && g_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (served) return;
    std::cout << "mlxcpp server: shutting down" << std::endl;
    // Streams end (finish "cancelled") before the listener closes, so no handler hangs.
    engine.shutdown();
    http.stop();
  });
  http.serve();
  served = true;
  watcher.join();
  engine.shutdown();
  std::cout << "mlxcpp server: stopped" << std::endl;
  return 0;
}

const mlxcpp::cli::Command kServer("server", "Serve a model over an OpenAI-compatible HTTP API",
                                   run_server);

}  // namespace
