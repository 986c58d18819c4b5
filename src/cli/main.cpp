#include <algorithm>
#include <cstring>
#include <exception>
#include <iostream>

#include "command.h"

namespace mlxcpp::cli {

std::vector<CommandInfo>& commands() {
  static std::vector<CommandInfo> list;
  return list;
}

Command::Command(std::string name, std::string summary, CommandFn run) {
  commands().push_back({std::move(name), std::move(summary), std::move(run)});
}

}  // namespace mlxcpp::cli

namespace {
void usage(std::ostream& os) {
  auto list = mlxcpp::cli::commands();
  std::sort(list.begin(), list.end(), [](auto& a, auto& b) { return a.name < b.name; });
  os << "usage: mlxcpp <command> [options]\n\ncommands:\n";
  for (auto& c : list) {
    os << "  " << c.name << std::string(c.name.size() < 16 ? 16 - c.name.size() : 1, ' ')
       << c.summary << "\n";
  }
  os << "\nRun 'mlxcpp <command> --help' for a command's options.\n";
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  for (auto& c : mlxcpp::cli::commands()) {
    if (c.name == argv[1]) {
      try {
        return c.run(argc - 1, argv + 1);
      } catch (const std::exception& e) {
        std::cerr << "mlxcpp " << c.name << ": error: " << e.what() << "\n";
        return 1;
      }
    }
  }
  std::cerr << "mlxcpp: unknown command '" << argv[1] << "'\n";
  usage(std::cerr);
  return 2;
}
