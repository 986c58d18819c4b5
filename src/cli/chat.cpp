// mlxcpp chat: a REPL over one prompt cache (mlx_lm.chat), with history.
#include <CLI/CLI.hpp>

#include <iostream>

#include "command.h"
#include "gen_flags.h"
#include "mlxcpp/lm/chat_session.h"
#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"
#include "mlxcpp/mx/random.h"

namespace {

void print_help() {
  std::cout << "The command list:\n"
               "- 'q' to exit\n"
               "- 'r' to reset the chat\n"
               "- 'h' to display these commands\n";
}

int run_chat(int argc, char** argv) {
  CLI::App app{"Chat with a language model", "mlxcpp chat"};
  mlxcpp::cli::ModelFlags model_flags;
  mlxcpp::cli::SamplingFlags sampling;
  std::string system_prompt, chat_template_config = "{}";
  int max_tokens = 256;
  std::optional<int> max_kv_size;
  model_flags.add(app);
  sampling.add(app);
  mlxcpp::cli::KVFlags kv_flags;
  kv_flags.add(app);
  sampling.seed = 0;
  app.add_option("--max-tokens,-m", max_tokens, "Maximum tokens per reply")
      ->capture_default_str()
      ->check(mlxcpp::cli::non_negative_int());
  app.add_option("--system-prompt", system_prompt, "System prompt");
  app.add_option("--max-kv-size", max_kv_size, "Bound the KV cache to this many positions")
      ->check(mlxcpp::cli::positive_int());
  app.add_option("--chat-template-config", chat_template_config,
                 "JSON object of extra chat template variables")
      ->capture_default_str();
  if (auto rc = mlxcpp::cli::parse_args(app, argc, argv)) return *rc;
  mlxcpp::cli::check_json_object(chat_template_config, "--chat-template-config");
  if (sampling.seed) mx::random::seed(*sampling.seed);
  auto bundle = lm::load(model_flags.model, model_flags.options());
  if (!bundle.tokenizer) {
    throw std::runtime_error("the model folder " + bundle.path.string() + " has no tokenizer.json");
  }
  lm::GenerateOptions opts;
  opts.max_tokens = max_tokens;
  opts.sampler = lm::make_sampler(sampling.s);
  opts.sampler_options = sampling.s;
  opts.logits_processors = lm::make_logits_processors(sampling.processors());
  opts.max_kv_size = max_kv_size;
  opts.kv = kv_flags.options();
  opts.eos_token_ids = bundle.eos_token_ids;
  std::optional<std::string> system;
  if (!system_prompt.empty()) system = system_prompt;
  lm::ChatSession session(*bundle.model, *bundle.tokenizer, opts, system, chat_template_config);

  std::cout << "[INFO] Starting chat session with " << model_flags.model << "." << std::endl;
  print_help();
  std::string line;
  while (true) {
    std::cout << ">> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    if (line == "q") break;
    if (line == "r") {
      session.reset();
      continue;
    }
    if (line == "h") {
      print_help();
      continue;
    }
    session.reply(line, [](const std::string& t) { std::cout << t << std::flush; });
    std::cout << std::endl;
  }
  return 0;
}

mlxcpp::cli::Command reg("chat", "Chat with a language model (REPL)", run_chat);

}  // namespace
