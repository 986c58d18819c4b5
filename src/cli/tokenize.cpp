// mlxcpp tokenize: encode text to ids (one JSON array) or decode ids to text.
#include <CLI/CLI.hpp>

#include <iostream>
#include <iterator>
#include <sstream>
#include <stdexcept>

#include "command.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"

namespace {

int run_tokenize(int argc, char** argv) {
  CLI::App app{"Encode text with a model's tokenizer (or decode ids)", "mlxcpp tokenize"};
  std::string model, text, ids;
  bool no_special = false, decode = false, skip_special = false;
  app.add_option("--model", model, "Model folder with tokenizer.json")->required();
  auto* text_opt = app.add_option("--text", text, "Text to encode (default: read stdin)");
  app.add_flag("--no-special", no_special, "Do not add special tokens (BOS/EOS templates)");
  app.add_flag("--decode", decode, "Decode --ids instead of encoding");
  app.add_option("--ids", ids, "Comma-separated ids to decode");
  app.add_flag("--skip-special", skip_special, "With --decode: drop special tokens");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto tok = lm::Tokenizer::from_dir(model);
  if (decode) {
    std::vector<int32_t> list;
    std::stringstream ss(ids);
    std::string item;
    while (std::getline(ss, item, ',')) {
      if (item.empty()) continue;
      try {
        size_t used = 0;
        long long v = std::stoll(item, &used);
        if (used != item.size()) throw std::invalid_argument(item);
        list.push_back(static_cast<int32_t>(v));
      } catch (const std::exception&) {
        throw std::runtime_error("--ids: '" + item + "' is not an integer");
      }
    }
    std::cout << tok.decode(list, skip_special);
    return 0;
  }
  if (!text_opt->count()) {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  auto out = tok.encode(text, !no_special);
  std::string line = "[";
  for (size_t k = 0; k < out.size(); ++k) {
    if (k) line += ", ";
    line += std::to_string(out[k]);
  }
  std::cout << line << "]\n";
  return 0;
}

mlxcpp::cli::Command reg("tokenize", "Encode text to token ids, or decode ids to text",
                         run_tokenize);

}  // namespace
