// mlxcpp random-model: writes a Gemma 3 checkpoint with the published config and shapes and
// random weights (tests and benchmarks without downloads).
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <system_error>

#include "command.h"
#include "mlxcpp/lm/load.h"
#include "mlxcpp/lm/random_model.h"

namespace fs = std::filesystem;

namespace {

// The bundled tokenizer: installed beside the binary (<prefix>/share/...), at the configured
// install prefix, or in the source tree of a build that was not installed.
fs::path default_tokenizer_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  std::vector<fs::path> candidates;
  if (!ec) {
    candidates.push_back(exe.parent_path().parent_path() / "share" / "mlxcpp" / "tokenizers" /
                         "gemma3");
  }
  candidates.emplace_back(MLXCPP_GEMMA3_TOKENIZER_INSTALL_DIR);
  candidates.emplace_back(MLXCPP_GEMMA3_TOKENIZER_SOURCE_DIR);
  for (const auto& c : candidates) {
    if (fs::exists(c / "tokenizer.json.xz", ec) || fs::exists(c / "tokenizer.json", ec)) return c;
  }
  throw std::runtime_error("the bundled Gemma 3 tokenizer was not found (looked in " +
                           candidates[0].string() + ", " + candidates[1].string() + ", " +
                           candidates[2].string() + "); pass --tokenizer DIR");
}

int run_random_model(int argc, char** argv) {
  CLI::App app{"Write a Gemma 3 model with the published config and random weights",
               "mlxcpp random-model"};
  std::string config_name, dtype_name = "bf16", out, tokenizer;
  uint64_t seed = 0;
  std::string names;
  for (const auto& n : lm::published_config_names()) names += (names.empty() ? "" : "|") + n;
  app.add_option("--config", config_name, names + " or a config.json file")->required();
  app.add_option("--dtype", dtype_name, "bf16, f16 or f32 (default bf16)");
  app.add_option("--out", out, "Output folder (must not exist or be empty)")->required();
  app.add_option("--seed", seed, "Random seed (default 0)");
  app.add_option("--tokenizer", tokenizer,
                 "Folder with tokenizer.json (default: the bundled Gemma 3 tokenizer)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  lm::RandomModelOptions options;
  if (dtype_name == "bf16" || dtype_name == "bfloat16") {
    options.dtype = mx::bfloat16;
  } else if (dtype_name == "f16" || dtype_name == "float16") {
    options.dtype = mx::float16;
  } else if (dtype_name == "f32" || dtype_name == "float32") {
    options.dtype = mx::float32;
  } else {
    throw std::invalid_argument("--dtype: '" + dtype_name + "' is not one of bf16, f16, f32");
  }
  options.seed = seed;
  options.tokenizer_dir = tokenizer.empty() ? default_tokenizer_dir() : fs::path(tokenizer);

  nlohmann::json config;
  std::error_code ec;
  if (fs::is_regular_file(config_name, ec)) {
    config = lm::read_json_file(config_name);
  } else {
    config = lm::published_config(config_name);
  }
  size_t params = lm::write_random_model(config, out, options);
  std::cout << "wrote " << out << ": " << params << " parameters\n";
  return 0;
}

mlxcpp::cli::Command reg("random-model",
                         "Write a Gemma 3 model with the published shapes and random weights",
                         run_random_model);

}  // namespace
