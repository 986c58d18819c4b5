// mlxcpp generate: mlx_lm.generate's flags and output.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <system_error>

#include "command.h"
#include "gen_flags.h"
#include "mlxcpp/lm/generate.h"
#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/lm/prompt.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"
#include "mlxcpp/mx/ops.h"
#include "mlxcpp/mx/random.h"

namespace {

using mlxcpp::cli::KVFlags;
using mlxcpp::cli::ModelFlags;
using mlxcpp::cli::SamplingFlags;

// A finite number for JSON (inf/nan logprobs become null).
nlohmann::json json_number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nullptr; }

// A quantized prompt cache continues with its own group size and bits; flags that ask for
// others are a mistake (mlx-lm refuses them too).
void check_kv_flags_match(const lm::PromptCache& cache, const KVFlags& kv,
                          const std::string& file) {
  for (const auto& layer : cache) {
    int g = 0, b = 0;
    if (auto* q = dynamic_cast<const lm::QuantizedKVCache*>(layer.get())) {
      g = q->group_size();
      b = q->bits();
    } else if (auto* r = dynamic_cast<const lm::QuantizedRotatingKVCache*>(layer.get())) {
      g = r->group_size();
      b = r->bits();
    } else {
      continue;
    }
    if ((kv.bits && *kv.bits != b) || (kv.bits && kv.group_size != g)) {
      throw std::invalid_argument("the prompt cache " + file + " is quantized with " +
                                  std::to_string(b) + " bits, group size " + std::to_string(g) +
                                  "; --kv-bits " + std::to_string(*kv.bits) + " --kv-group-size " +
                                  std::to_string(kv.group_size) + " do not match");
    }
    return;
  }
}

int run_generate(int argc, char** argv) {
  CLI::App app{"Generate text with a language model", "mlxcpp generate"};
  ModelFlags model_flags;
  SamplingFlags sampling;
  std::string prompt = "hello", prompt_tokens, system_prompt, prefill_response, verbose = "True",
              chat_template_config = "{}", prompt_cache_file, output = "text";
  std::vector<std::string> extra_eos, stop;
  int max_tokens = 100, prefill_step_size = 2048;
  std::optional<int> max_kv_size;
  bool ignore_chat_template = false;
  // Not required: with --prompt-cache-file the model comes from the cache's metadata.
  model_flags.add(app, /*required=*/false);
  sampling.add(app);
  KVFlags kv_flags;
  kv_flags.add(app);
  auto* prompt_opt =
      app.add_option("--prompt,-p", prompt, "Prompt text ('-' reads stdin)")->capture_default_str();
  auto* tokens_opt = app.add_option("--prompt-tokens", prompt_tokens,
                                    "Prompt as comma-separated token ids (no chat template)");
  prompt_opt->excludes(tokens_opt);
  app.add_option("--system-prompt", system_prompt, "System prompt for the chat template");
  app.add_option("--prefill-response", prefill_response, "Text the reply starts with");
  app.add_option("--max-tokens,-m", max_tokens, "Maximum tokens to generate")
      ->capture_default_str()
      ->check(mlxcpp::cli::non_negative_int());
  app.add_flag("--ignore-chat-template", ignore_chat_template,
               "Encode the prompt as it is (with BOS), without the chat template");
  app.add_option("--chat-template-config", chat_template_config,
                 "JSON object of extra chat template variables")
      ->capture_default_str();
  app.add_option("--extra-eos-token", extra_eos, "Extra end-of-sequence tokens (text)");
  app.add_option("--stop", stop, "Stop strings (matched on the decoded text)");
  app.add_option("--max-kv-size", max_kv_size, "Bound the KV cache to this many positions")
      ->check(mlxcpp::cli::positive_int());
  app.add_option("--prompt-cache-file", prompt_cache_file,
                 "A prompt cache from cache-prompt; the prompt continues it");
  app.add_option("--prefill-step-size", prefill_step_size, "Prompt tokens per prefill step")
      ->capture_default_str()
      ->check(mlxcpp::cli::positive_int());
  app.add_option("--verbose", verbose, "True: print statistics; False: the text only")
      ->capture_default_str();
  app.add_option("--output", output, "text or json (json: the last line is one JSON object)")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  if (auto rc = mlxcpp::cli::parse_args(app, argc, argv)) return *rc;
  const bool is_verbose = mlxcpp::cli::parse_bool_flag(verbose, "--verbose");
  mlxcpp::cli::check_json_object(chat_template_config, "--chat-template-config");
  for (const auto& s : stop) {
    if (s.empty()) throw std::invalid_argument("--stop: stop strings must not be empty");
  }
  const bool json_out = output == "json";

  if (sampling.seed) mx::random::seed(*sampling.seed);
  lm::GenerateOptions opts;
  opts.max_tokens = max_tokens;
  opts.logits_processors = lm::make_logits_processors(sampling.processors());
  opts.max_kv_size = max_kv_size;
  opts.kv = kv_flags.options();
  opts.prefill_step_size = prefill_step_size;
  opts.stop_strings = stop;

  lm::PromptCache cache;
  std::string cache_model;
  if (!prompt_cache_file.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(prompt_cache_file, ec)) {
      throw std::invalid_argument("--prompt-cache-file " + prompt_cache_file +
                                  ": no such file (make one with mlxcpp cache-prompt)");
    }
    auto [loaded, meta] = lm::load_prompt_cache(prompt_cache_file);
    cache = std::move(loaded);
    check_kv_flags_match(cache, kv_flags, prompt_cache_file);
    cache_model = meta.count("model") ? meta["model"] : "";
    if (model_flags.model.empty()) model_flags.model = cache_model;
  }
  if (model_flags.model.empty()) {
    throw std::invalid_argument(prompt_cache_file.empty()
                                    ? "--model is required"
                                    : "--model is required: the prompt cache " + prompt_cache_file +
                                          " names no model");
  }
  auto bundle = lm::load(model_flags.model, model_flags.options());
  if (!prompt_cache_file.empty()) {
    // The same folder under another spelling ("./m", an absolute path) is the same model.
    std::error_code ec;
    bool same = cache_model.empty() || cache_model == model_flags.model ||
                std::filesystem::equivalent(cache_model, bundle.path, ec);
    if (!same) {
      throw std::invalid_argument("the prompt cache " + prompt_cache_file +
                                  " was made for model '" + cache_model + "', not '" +
                                  model_flags.model + "'");
    }
    opts.prompt_cache = &cache;
  }
  if (!bundle.tokenizer) {
    throw std::runtime_error("the model folder " + bundle.path.string() + " has no tokenizer.json");
  }
  const lm::Tokenizer& tok = *bundle.tokenizer;
  opts.eos_token_ids = bundle.eos_token_ids;
  for (const auto& t : extra_eos) {
    auto id = tok.token_to_id(t);
    if (!id) throw std::invalid_argument("--extra-eos-token: '" + t + "' is not a token");
    opts.eos_token_ids.push_back(*id);
  }
  // XTC never removes a newline or an end of sequence (mlx_lm's choice).
  for (int32_t id : tok.encode("\n", false)) sampling.s.xtc_special_tokens.push_back(id);
  for (int32_t id : opts.eos_token_ids) sampling.s.xtc_special_tokens.push_back(id);
  opts.sampler = lm::make_sampler(sampling.s);
  opts.sampler_options = sampling.s;

  std::vector<int32_t> ids;
  if (tokens_opt->count()) {
    ids = lm::parse_token_list(prompt_tokens, "--prompt-tokens");
  } else {
    std::string text = mlxcpp::cli::read_prompt_flag(prompt);
    lm::PromptOptions popts;
    if (!system_prompt.empty()) popts.system_prompt = system_prompt;
    if (!prefill_response.empty()) popts.prefill_response = prefill_response;
    popts.ignore_chat_template = ignore_chat_template;
    popts.chat_template_config = chat_template_config;
    if (opts.prompt_cache && lm::has_chat_template(tok) && !ignore_chat_template) {
      // The cache holds a templated user message cut after its content; only
      // the rest of the conversation is new (mlx-lm's "<query>" placeholder).
      ids = lm::continue_cached_prompt(tok, text, popts);
    } else {
      ids = lm::build_prompt(tok, text, popts);
    }
  }
  for (int32_t id : ids) {
    if (id < 0 || id >= bundle.model->vocab_size()) {
      throw std::invalid_argument("prompt token " + std::to_string(id) +
                                  " is outside the model's vocabulary of " +
                                  std::to_string(bundle.model->vocab_size()));
    }
  }

  if (is_verbose && !json_out) std::cout << "==========" << std::endl;
  nlohmann::json tokens = nlohmann::json::array(), logprobs = nlohmann::json::array();
  std::string text;
  lm::GenerationResponse last;
  lm::stream_generate(*bundle.model, tok, ids, opts, [&](const lm::GenerationResponse& r) {
    if (!json_out) std::cout << r.text << std::flush;
    text += r.text;
    if (r.generation_tokens > static_cast<int>(tokens.size())) {
      tokens.push_back(r.token);
      logprobs.push_back(json_number(mx::take(r.logprobs, r.token).item<float>()));
    }
    last = r;
    return true;
  });
  if (json_out) {
    nlohmann::json j = {{"prompt_tokens", ids},
                        {"tokens", tokens},
                        {"text", text},
                        {"logprobs", logprobs},
                        {"finish_reason", last.finish_reason.value_or("length")},
                        {"prompt_tps", last.prompt_tps},
                        {"generation_tps", last.generation_tps},
                        {"peak_memory_gb", last.peak_memory_gb}};
    std::cout << j.dump() << std::endl;
    return 0;
  }
  std::cout << std::endl;
  if (is_verbose) {
    std::cout << "==========\n";
    std::cout << "Prompt: " << ids.size() << " tokens, " << last.prompt_tps << " tokens-per-sec\n";
    std::cout << "Generation: " << last.generation_tokens << " tokens, " << last.generation_tps
              << " tokens-per-sec\n";
    std::cout << "Peak memory: " << last.peak_memory_gb << " GB" << std::endl;
  }
  return 0;
}

mlxcpp::cli::Command reg("generate", "Generate text with a language model", run_generate);

}  // namespace
