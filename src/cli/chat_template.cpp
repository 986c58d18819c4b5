// mlxcpp chat-template: render a model's chat template for a conversation, exactly as
// transformers' apply_chat_template would (the prompt text only, nothing added).
#include <CLI/CLI.hpp>

#include <iostream>

#include "command.h"
#include "mlxcpp/lm/chat_template/chat_template.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"

namespace {

int run_chat_template(int argc, char** argv) {
  CLI::App app{"Render a model's chat template", "mlxcpp chat-template"};
  std::string model, messages, tools, kwargs = "{}", name;
  bool no_generation_prompt = false;
  app.add_option("--model", model, "Model folder with tokenizer_config.json")->required();
  app.add_option("--messages", messages, "JSON file with the list of messages")->required();
  app.add_option("--tools", tools, "JSON file with the list of tool schemas");
  app.add_flag("--no-generation-prompt", no_generation_prompt,
               "Do not add the assistant prompt at the end");
  app.add_option("--kwargs", kwargs, "JSON object of extra template variables");
  app.add_option("--template", name, "Named template (default: default / tool_use)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto tok = lm::Tokenizer::from_dir(model);
  lm::ChatOptions opt;
  opt.messages_json = lm::read_file(messages);
  if (!tools.empty()) opt.tools_json = lm::read_file(tools);
  opt.add_generation_prompt = !no_generation_prompt;
  opt.extra_json = kwargs;
  opt.template_name = name;
  std::cout << lm::apply_chat_template(tok, opt);
  return 0;
}

mlxcpp::cli::Command reg("chat-template", "Render a model's chat template for a conversation",
                         run_chat_template);

}  // namespace
