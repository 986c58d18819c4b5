// mlxcpp perplexity: mean next-token negative log-likelihood and its exp.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <system_error>

#include "command.h"
#include "gen_flags.h"
#include "mlxcpp/lm/models/model.h"
#include "mlxcpp/lm/perplexity.h"
#include "mlxcpp/lm/prompt.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"

namespace {

// A text file is one document; a .jsonl file holds one {"text": ...} per line.
std::vector<std::string> read_documents(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw std::runtime_error("--data file " + path + " does not exist");
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw std::runtime_error("--data " + path + " is not a file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open --data file " + path);
  std::vector<std::string> docs;
  if (path.size() >= 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0) {
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const std::exception& e) {
        throw std::runtime_error(path + " line " + std::to_string(n) + ": not JSON: " + e.what());
      }
      if (!j.is_object() || !j.contains("text") || !j["text"].is_string()) {
        throw std::runtime_error(path + " line " + std::to_string(n) +
                                 ": expected an object with a string field \"text\"");
      }
      docs.push_back(j["text"].get<std::string>());
    }
  } else {
    std::stringstream ss;
    ss << in.rdbuf();
    if (!ss.str().empty()) docs.push_back(ss.str());
  }
  if (docs.empty()) throw std::runtime_error("--data file " + path + " holds no text");
  return docs;
}

int run_perplexity(int argc, char** argv) {
  CLI::App app{"Perplexity of a language model on text or tokens", "mlxcpp perplexity"};
  mlxcpp::cli::ModelFlags model_flags;
  std::string data, tokens_list, output = "text";
  int sequence_length = 512, prefill_step_size = 2048;
  model_flags.add(app);
  auto* data_opt = app.add_option("--data", data, "Text file, or .jsonl with {\"text\": ...}");
  auto* tok_opt = app.add_option("--tokens", tokens_list, "Comma-separated token ids");
  data_opt->excludes(tok_opt);
  app.add_option("--sequence-length", sequence_length, "Tokens per evaluated sequence")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 30));
  app.add_option("--prefill-step-size", prefill_step_size, "Tokens per forward pass")
      ->capture_default_str()
      ->check(mlxcpp::cli::positive_int());
  app.add_option("--output", output, "text or json (json: the last line is one JSON object)")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  if (auto rc = mlxcpp::cli::parse_args(app, argc, argv)) return *rc;
  if (!data_opt->count() && !tok_opt->count()) {
    throw std::invalid_argument("give --data FILE or --tokens 1,2,3");
  }
  auto bundle = lm::load(model_flags.model, model_flags.options());
  std::vector<int32_t> tokens;
  if (tok_opt->count()) {
    tokens = lm::parse_token_list(tokens_list, "--tokens");
  } else {
    if (!bundle.tokenizer) {
      throw std::runtime_error("the model folder " + bundle.path.string() +
                               " has no tokenizer.json (use --tokens)");
    }
    for (const auto& doc : read_documents(data)) {
      auto ids = bundle.tokenizer->encode(doc, true);
      tokens.insert(tokens.end(), ids.begin(), ids.end());
    }
  }
  auto r = lm::evaluate_perplexity(*bundle.model, tokens, sequence_length, prefill_step_size);
  if (output == "json") {
    nlohmann::json j = {
        {"nll", r.nll}, {"ppl", r.ppl}, {"tokens", r.tokens}, {"sequences", r.sequences}};
    std::cout << j.dump() << std::endl;
  } else {
    std::cout << "Evaluated " << r.tokens << " tokens in " << r.sequences << " sequences\n"
              << "NLL: " << r.nll << "\nPerplexity: " << r.ppl << std::endl;
  }
  return 0;
}

mlxcpp::cli::Command reg("perplexity", "Perplexity of a model on text or tokens", run_perplexity);

}  // namespace
