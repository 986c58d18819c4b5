// Flags shared by the commands that load a model and generate (generate, chat,
// cache-prompt, benchmark): parsing into library options only.
#pragma once

#include <CLI/CLI.hpp>

#include <iostream>
#include <iterator>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxcpp/lm/load.h"
#include "mlxcpp/lm/prompt.h"
#include "mlxcpp/lm/sample.h"
#include "mlxcpp/mx/dtype.h"

namespace mlxcpp::cli {

// Integer ranges for option checks: CLI11's PositiveNumber prints DBL_MAX as
// its upper bound ("not in range 0.000000 to 1797693...").
inline CLI::Range positive_int() { return CLI::Range(1, std::numeric_limits<int>::max()); }
inline CLI::Range non_negative_int() { return CLI::Range(0, std::numeric_limits<int>::max()); }

// A JSON object given on the command line (e.g. --chat-template-config); the
// error names the flag.
inline void check_json_object(const std::string& text, const std::string& flag) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw std::invalid_argument(flag + ": not JSON: " + e.what());
  }
  if (!j.is_object()) throw std::invalid_argument(flag + ": expected a JSON object, got " + text);
}

struct ModelFlags {
  std::string model;
  std::string dtype;  // empty: the checkpoint's

  void add(CLI::App& app, bool required = true) {
    auto* o = app.add_option("--model", model,
                             "Model folder, or a Hugging Face repo id in the local HF cache");
    if (required) o->required();
    app.add_option("--dtype", dtype, "Parameter dtype: bfloat16, float16 or float32")
        ->check(CLI::IsMember({"bfloat16", "float16", "float32", "bf16", "f16", "f32"}));
  }
  lm::LoadOptions options() const {
    lm::LoadOptions o;
    if (dtype == "bfloat16" || dtype == "bf16") o.dtype = mx::bfloat16;
    if (dtype == "float16" || dtype == "f16") o.dtype = mx::float16;
    if (dtype == "float32" || dtype == "f32") o.dtype = mx::float32;
    return o;
  }
};

struct SamplingFlags {
  lm::SamplerOptions s;
  std::optional<uint64_t> seed;
  float repetition_penalty = 0, presence_penalty = 0, frequency_penalty = 0;
  int repetition_context_size = 20, presence_context_size = 20, frequency_context_size = 20;
  std::string logit_bias;  // JSON {"id": bias}

  void add(CLI::App& app, float default_top_p = 1.0f) {
    s.top_p = default_top_p;
    app.add_option("--temp", s.temp, "Sampling temperature (0: argmax)")->capture_default_str();
    app.add_option("--top-p", s.top_p, "Nucleus sampling threshold")->capture_default_str();
    app.add_option("--min-p", s.min_p, "Minimum probability relative to the most likely")
        ->capture_default_str();
    app.add_option("--top-k", s.top_k, "Keep the k most likely tokens (0: all)")
        ->capture_default_str();
    app.add_option("--min-tokens-to-keep", s.min_tokens_to_keep, "Tokens min-p always keeps")
        ->capture_default_str();
    app.add_option("--xtc-probability", s.xtc_probability, "Probability of applying XTC")
        ->capture_default_str();
    app.add_option("--xtc-threshold", s.xtc_threshold, "XTC probability threshold")
        ->capture_default_str();
    app.add_option("--seed", seed, "Random seed");
    app.add_option("--repetition-penalty", repetition_penalty, "CTRL repetition penalty (0: off)");
    app.add_option("--repetition-context-size", repetition_context_size,
                   "Tokens the repetition penalty looks back over")
        ->capture_default_str();
    app.add_option("--presence-penalty", presence_penalty, "Presence penalty (0: off)");
    app.add_option("--presence-context-size", presence_context_size,
                   "Tokens the presence penalty looks back over")
        ->capture_default_str();
    app.add_option("--frequency-penalty", frequency_penalty, "Frequency penalty (0: off)");
    app.add_option("--frequency-context-size", frequency_context_size,
                   "Tokens the frequency penalty looks back over")
        ->capture_default_str();
    app.add_option("--logit-bias", logit_bias, "JSON object {token_id: bias}");
  }

  lm::LogitsProcessorOptions processors() const {
    lm::LogitsProcessorOptions o;
    if (repetition_penalty != 0) o.repetition_penalty = repetition_penalty;
    if (presence_penalty != 0) o.presence_penalty = presence_penalty;
    if (frequency_penalty != 0) o.frequency_penalty = frequency_penalty;
    o.repetition_context_size = repetition_context_size;
    o.presence_context_size = presence_context_size;
    o.frequency_context_size = frequency_context_size;
    if (!logit_bias.empty()) {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(logit_bias);
      } catch (const std::exception& e) {
        throw std::invalid_argument(std::string("--logit-bias: not JSON: ") + e.what());
      }
      if (!j.is_object()) throw std::invalid_argument("--logit-bias: expected a JSON object");
      for (auto& [k, v] : j.items()) {
        if (!v.is_number()) {
          throw std::invalid_argument("--logit-bias: the bias of token " + k + " is not a number");
        }
        o.logit_bias[lm::parse_token_list(k, "--logit-bias").at(0)] = v.get<float>();
      }
    }
    return o;
  }
};

// Parses the command line; returns the exit status when the command must stop
// (--help, or a parse error that CLI11 has printed).
inline std::optional<int> parse_args(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return std::nullopt;
}

// --verbose True|False as mlx_lm takes it.
inline bool parse_bool_flag(const std::string& v, const std::string& name) {
  if (v == "True" || v == "true" || v == "T" || v == "1") return true;
  if (v == "False" || v == "false" || v == "F" || v == "0") return false;
  throw std::invalid_argument(name + ": expected True or False, got '" + v + "'");
}

// mlx_lm's --prompt: "-" reads stdin; literal \n and \t are expanded.
inline std::string read_prompt_flag(std::string prompt) {
  if (prompt == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::string out;
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] == '\\' && i + 1 < prompt.size() &&
        (prompt[i + 1] == 'n' || prompt[i + 1] == 't')) {
      out += prompt[i + 1] == 'n' ? '\n' : '\t';
      ++i;
    } else {
      out += prompt[i];
    }
  }
  return out;
}

}  // namespace mlxcpp::cli
