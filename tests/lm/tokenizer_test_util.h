// Helpers shared by the tokenizer tests: model folders from tests/data (decompressing .xz files
// with the xz tool into a temporary folder) and reference JSON.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include <unistd.h>

#include "common/temp_dir.h"

namespace lm::testing {

inline std::filesystem::path data_dir() { return std::filesystem::path(MLXCPP_TEST_DATA); }

// A folder holding the files of tests/data/<rel>, with every *.xz decompressed. Cached per run.
inline std::filesystem::path model_dir(const std::string& rel) {
  namespace fs = std::filesystem;
  fs::path src = data_dir() / rel;
  if (!fs::exists(src)) throw std::runtime_error("missing test data " + src.string());
  const fs::path& root = mxtest::process_temp_dir("mlxcpp_tok").path();
  fs::path dst = root / rel;
  if (fs::exists(dst / ".done")) return dst;
  fs::create_directories(dst);
  for (auto& e : fs::directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    std::string name = e.path().filename().string();
    if (name.size() > 3 && name.substr(name.size() - 3) == ".xz") {
      std::string out = (dst / name.substr(0, name.size() - 3)).string();
      std::string cmd = "xz -dc '" + e.path().string() + "' > '" + out + "'";
      if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
    } else {
      fs::copy_file(e.path(), dst / name, fs::copy_options::overwrite_existing);
    }
  }
  std::ofstream(dst / ".done") << "ok";
  return dst;
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + p.string());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace lm::testing
