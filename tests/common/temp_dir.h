// Temporary folders for tests: unique per process and instance, removed with
// everything in them when the object goes away.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>
#include <system_error>

namespace mxtest {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "mlxcpp_test") {
    std::random_device rd;
    path_ =
        std::filesystem::temp_directory_path() /
        (prefix + "_" + std::to_string(static_cast<long>(::getpid())) + "_" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// One folder for the whole test binary, removed at exit.
inline const TempDir& process_temp_dir(const std::string& prefix) {
  static const TempDir dir(prefix);
  return dir;
}

}  // namespace mxtest
