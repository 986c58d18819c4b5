// Hugging Face hub cache resolution (formats.md §7).
#include "mlxcpp/lm/hub.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <system_error>

namespace fs = std::filesystem;

namespace lm::hub {

namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

bool is_commit_hash(const std::string& s) {
  return s.size() == 40 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

// The commit a ref names (first line, whitespace trimmed), or nullopt.
std::optional<std::string> read_ref(const fs::path& file) {
  std::ifstream in(file);
  if (!in) return std::nullopt;
  std::string line;
  std::getline(in, line);
  auto b = line.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return std::nullopt;
  auto e = line.find_last_not_of(" \t\r\n");
  return line.substr(b, e - b + 1);
}

}  // namespace

fs::path cache_dir() {
  if (auto v = env("HF_HUB_CACHE")) return *v;
  if (auto v = env("HUGGINGFACE_HUB_CACHE")) return *v;
  if (auto v = env("HF_HOME")) return fs::path(*v) / "hub";
  if (auto v = env("XDG_CACHE_HOME")) return fs::path(*v) / "huggingface" / "hub";
  if (auto v = env("HOME")) return fs::path(*v) / ".cache" / "huggingface" / "hub";
  throw std::runtime_error(
      "cannot locate the Hugging Face cache: none of HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, HOME "
      "is set");
}

bool is_repo_id(const std::string& s) {
  auto slash = s.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == s.size()) return false;
  if (s.find('/', slash + 1) != std::string::npos) return false;
  auto part_ok = [](const std::string& p) {
    if (p == "." || p == ".." || p.find("--") != std::string::npos) return false;
    return std::all_of(p.begin(), p.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
  };
  return part_ok(s.substr(0, slash)) && part_ok(s.substr(slash + 1));
}

fs::path repo_folder(const std::string& repo_id) {
  if (!is_repo_id(repo_id)) {
    throw std::invalid_argument("'" + repo_id + "' is not a repo id of the form org/name");
  }
  std::string name = repo_id;
  name.replace(name.find('/'), 1, "--");
  return cache_dir() / ("models--" + name);
}

std::optional<fs::path> cached_snapshot(const std::string& repo_id, const std::string& revision) {
  fs::path repo = repo_folder(repo_id);
  std::string commit = revision;
  if (!is_commit_hash(revision)) {
    auto ref = read_ref(repo / "refs" / revision);
    if (!ref) return std::nullopt;
    commit = *ref;
  }
  fs::path snap = repo / "snapshots" / commit;
  if (!is_dir(snap)) return std::nullopt;
  return snap;
}

fs::path resolve_model_path(const std::string& path_or_repo, const std::string& revision) {
  if (path_or_repo.empty()) throw std::invalid_argument("empty model path");
  fs::path local(path_or_repo);
  std::error_code ec;
  if (fs::exists(local, ec)) {
    if (!is_dir(local)) {
      throw std::invalid_argument("model path '" + path_or_repo + "' is a file, not a folder");
    }
    return local;
  }
  if (!is_repo_id(path_or_repo)) {
    throw std::invalid_argument("model folder '" + path_or_repo + "' does not exist");
  }
  fs::path repo = repo_folder(path_or_repo);
  if (!is_dir(repo)) {
    throw std::invalid_argument("'" + path_or_repo +
                                "' is neither a local folder nor a model in the Hugging Face "
                                "cache (no " +
                                repo.string() + ")");
  }
  if (!is_commit_hash(revision)) {
    fs::path ref = repo / "refs" / revision;
    auto commit = read_ref(ref);
    if (!commit) {
      throw std::invalid_argument("cached model '" + path_or_repo + "' has no revision '" +
                                  revision + "' (no " + ref.string() + ")");
    }
    if (!is_dir(repo / "snapshots" / *commit)) {
      throw std::invalid_argument("cached model '" + path_or_repo + "': " + ref.string() +
                                  " names commit " + *commit + " but " +
                                  (repo / "snapshots" / *commit).string() + " is missing");
    }
    return repo / "snapshots" / *commit;
  }
  fs::path snap = repo / "snapshots" / revision;
  if (!is_dir(snap)) {
    throw std::invalid_argument("cached model '" + path_or_repo + "' has no snapshot " +
                                snap.string());
  }
  return snap;
}

std::vector<std::string> list_cached_models() {
  std::vector<std::string> out;
  fs::path root = cache_dir();
  std::error_code ec;
  if (!is_dir(root)) return out;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("models--", 0) != 0) continue;
    std::string rest = name.substr(8);
    auto sep = rest.find("--");
    if (sep == std::string::npos) continue;
    std::string id = rest.substr(0, sep) + "/" + rest.substr(sep + 2);
    if (!is_repo_id(id)) continue;
    if (cached_snapshot(id, "main")) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace lm::hub
