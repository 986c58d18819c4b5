// mlxcpp convert: a Hugging Face / MLX model folder -> an MLX model folder (mlx_lm.convert),
// optionally quantized, cast or dequantized.
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "command.h"
#include "gen_flags.h"
#include "mlxcpp/lm/convert.h"

namespace {

// A one-line bar redrawn in place on a terminal; on a pipe, a line per 10%.
class ProgressBar {
 public:
  void operator()(size_t done, size_t total) {
    const int pct = total ? static_cast<int>(done * 100 / total) : 100;
    if (isatty(STDERR_FILENO)) {
      if (pct == last_) return;
      constexpr int kWidth = 40;
      const int fill = pct * kWidth / 100;
      std::fprintf(stderr, "\r[convert] [%s%s] %3d%% %.2f/%.2f GB", std::string(fill, '#').c_str(),
                   std::string(kWidth - fill, ' ').c_str(), pct, done / 1e9, total / 1e9);
      if (done >= total) std::fprintf(stderr, "\n");
    } else {
      if (pct / 10 == last_ / 10 && last_ >= 0) return;
      std::fprintf(stderr, "[convert] %3d%% %.2f/%.2f GB\n", pct, done / 1e9, total / 1e9);
    }
    std::fflush(stderr);
    last_ = pct;
  }

 private:
  int last_ = -1;
};

int run_convert(int argc, char** argv) {
  CLI::App app{"Convert a model to MLX format (optionally quantized)", "mlxcpp convert"};
  lm::ConvertOptions o;
  std::string mlx_path = "mlx_model", dtype, predicate;
  std::optional<int> group_size, bits;
  app.add_option("--hf-path,--model", o.hf_path,
                 "Model folder, or a Hugging Face repo id in the local HF cache")
      ->required();
  app.add_option("--mlx-path", mlx_path, "Where to write the MLX model (must not exist)")
      ->capture_default_str();
  app.add_flag("-q,--quantize", o.quantize, "Quantize the model");
  app.add_option("--q-group-size", group_size, "Quantization group size (affine default 64)")
      ->check(mlxcpp::cli::positive_int());
  app.add_option("--q-bits", bits, "Bits per weight (affine default 4)")
      ->check(mlxcpp::cli::positive_int());
  app.add_option("--q-mode", o.q_mode, "Quantization mode")
      ->check(CLI::IsMember({"affine", "mxfp4", "nvfp4", "mxfp8"}))
      ->capture_default_str();
  app.add_option("--quant-predicate", predicate, "Mixed-bit quantization recipe")
      ->check(CLI::IsMember({"mixed_2_6", "mixed_3_4", "mixed_3_6", "mixed_4_6"}));
  app.add_option("--dtype", dtype,
                 "Floating dtype of the saved parameters (default: the config's torch_dtype)")
      ->check(CLI::IsMember({"float16", "bfloat16", "float32"}));
  app.add_flag("-d,--dequantize", o.dequantize, "Dequantize a quantized model");
  if (auto rc = mlxcpp::cli::parse_args(app, argc, argv)) return *rc;

  o.mlx_path = mlx_path;
  o.q_group_size = group_size;
  o.q_bits = bits;
  if (!dtype.empty()) o.dtype = dtype;
  if (!predicate.empty()) o.quant_predicate = predicate;
  ProgressBar bar;
  o.progress = [&bar](size_t done, size_t total) { bar(done, total); };
  o.log = [](const std::string& line) { std::cout << "[INFO] " << line << std::endl; };
  auto r = lm::convert(o);
  std::cout << "Saved " << r.path.string() << " (" << r.shards
            << (r.shards == 1 ? " shard, " : " shards, ") << r.total_parameters << " parameters, "
            << r.total_size << " bytes)\n";
  return 0;
}

mlxcpp::cli::Command reg("convert", "Convert a model to MLX format, optionally quantized",
                         run_convert);

}  // namespace
