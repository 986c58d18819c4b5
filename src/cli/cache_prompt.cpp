// mlxcpp cache-prompt: prefill a prompt once and save the KV cache (mlx_lm.cache_prompt).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <system_error>

#include "command.h"
#include "gen_flags.h"
#include "mlxcpp/lm/cache.h"
#include "mlxcpp/lm/generate.h"
#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/lm/prompt.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"

namespace {

int run_cache_prompt(int argc, char** argv) {
  CLI::App app{"Prefill a prompt and save its KV cache for later generation",
               "mlxcpp cache-prompt"};
  mlxcpp::cli::ModelFlags model_flags;
  std::string prompt, cache_file, system_prompt;
  std::optional<int> max_kv_size;
  int prefill_step_size = 2048;
  bool ignore_chat_template = false;
  model_flags.add(app);
  app.add_option("--prompt,-p", prompt, "Prompt text ('-' reads stdin)")->required();
  app.add_option("--prompt-cache-file", cache_file, "Where to save the cache (.safetensors)")
      ->required();
  app.add_option("--system-prompt", system_prompt, "System prompt for the chat template");
  app.add_option("--max-kv-size", max_kv_size, "Bound the KV cache to this many positions")
      ->check(mlxcpp::cli::positive_int());
  app.add_option("--prefill-step-size", prefill_step_size, "Prompt tokens per prefill step")
      ->capture_default_str()
      ->check(mlxcpp::cli::positive_int());
  app.add_flag("--ignore-chat-template", ignore_chat_template, "Encode the prompt as it is");
  if (auto rc = mlxcpp::cli::parse_args(app, argc, argv)) return *rc;
  {
    // Fail before the model loads and the prompt runs, not at the save.
    std::error_code ec;
    auto dir = std::filesystem::absolute(cache_file, ec).parent_path();
    if (!std::filesystem::is_directory(dir, ec)) {
      throw std::invalid_argument("--prompt-cache-file " + cache_file + ": the folder " +
                                  dir.string() + " does not exist");
    }
  }
  auto bundle = lm::load(model_flags.model, model_flags.options());
  if (!bundle.tokenizer) {
    throw std::runtime_error("the model folder " + bundle.path.string() + " has no tokenizer.json");
  }
  const lm::Tokenizer& tok = *bundle.tokenizer;
  std::string text = mlxcpp::cli::read_prompt_flag(prompt);
  std::vector<int32_t> ids;
  if (ignore_chat_template || !lm::has_chat_template(tok)) {
    ids = tok.encode(text, true);
  } else {
    // A user message left open, so that generate can append to it.
    nlohmann::json messages = nlohmann::json::array();
    if (!system_prompt.empty())
      messages.push_back({{"role", "system"}, {"content", system_prompt}});
    messages.push_back({{"role", "user"}, {"content", text}});
    ids = tok.encode(lm::render_chat(tok, messages.dump(), false, true), false);
  }
  auto cache = bundle.model->make_cache(max_kv_size);
  auto t0 = std::chrono::steady_clock::now();
  auto progress = [&](int done, int total) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cerr << "\rProcessed " << done << "/" << total << " tokens (" << (s > 0 ? done / s : 0.0)
              << " tok/s)" << std::flush;
  };
  auto logits = lm::prefill(*bundle.model, ids, cache, prefill_step_size, progress);
  std::vector<mx::array> state;
  for (auto& layer : cache) {
    for (auto& a : layer->state()) state.push_back(a);
  }
  mx::eval(state);
  progress(static_cast<int>(ids.size()), static_cast<int>(ids.size()));
  std::cerr << "\n";
  lm::save_prompt_cache(
      cache_file, cache,
      {{"model", model_flags.model}, {"tokenizer_config", tok.config().raw_json}});
  std::cout << "Saved the cache of " << ids.size() << " prompt tokens to " << cache_file
            << std::endl;
  return 0;
}

mlxcpp::cli::Command reg("cache-prompt", "Prefill a prompt and save its KV cache",
                         run_cache_prompt);

}  // namespace
