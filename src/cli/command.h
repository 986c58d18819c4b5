// The mlxcpp command registry: each command is one file that registers itself
// with a static Command object; main() only dispatches.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace mlxcpp::cli {

// Runs the command with its own arguments (argv[0] is the command name) and
// returns the process exit status. Errors are thrown; main() prints them as
// one line on stderr and exits non-zero.
using CommandFn = std::function<int(int argc, char** argv)>;

struct Command {
  Command(std::string name, std::string summary, CommandFn run);
};

struct CommandInfo {
  std::string name;
  std::string summary;
  CommandFn run;
};
std::vector<CommandInfo>& commands();

}  // namespace mlxcpp::cli
