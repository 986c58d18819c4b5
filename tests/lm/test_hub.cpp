// Hugging Face cache resolution (formats.md §7) in a temporary cache built like the real one:
// blobs, relative snapshot symlinks, refs/main; environment-variable precedence.
#include <gtest/gtest.h>

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "common/temp_dir.h"
#include "mlxcpp/lm/hub.h"

namespace fs = std::filesystem;

namespace {

const char* kVars[] = {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME",
                       "HOME"};

// Saves and restores the cache variables around each test.
class Hub : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : kVars) {
      const char* s = std::getenv(v);
      saved_.emplace_back(v, s ? std::optional<std::string>(s) : std::nullopt);
      ::unsetenv(v);
    }
  }
  void TearDown() override {
    for (auto& [name, value] : saved_) {
      if (value)
        ::setenv(name.c_str(), value->c_str(), 1);
      else
        ::unsetenv(name.c_str());
    }
  }

  // A repo in `cache` with one file at `commit`, refs/main -> commit, as huggingface_hub writes
  // it: the snapshot file is a relative symlink to the blob.
  void add_repo(const fs::path& cache, const std::string& dir_name, const std::string& commit,
                bool write_ref = true) {
    fs::path repo = cache / dir_name;
    fs::create_directories(repo / "blobs");
    fs::create_directories(repo / "snapshots" / commit);
    fs::create_directories(repo / "refs");
    std::ofstream(repo / "blobs" / "abc123") << "{\"model_type\": \"gemma3_text\"}";
    fs::create_symlink(fs::path("..") / ".." / "blobs" / "abc123",
                       repo / "snapshots" / commit / "config.json");
    if (write_ref) std::ofstream(repo / "refs" / "main") << commit << "\n";
  }

  mxtest::TempDir tmp_{"mlxcpp_hub"};
  fs::path root_ = tmp_.path();
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";
const std::string kOther = "fedcba9876543210fedcba9876543210fedcba98";

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_F(Hub, CacheDirPrecedence) {
  ::setenv("HOME", "/home/u", 1);
  EXPECT_EQ(lm::hub::cache_dir(), fs::path("/home/u/.cache/huggingface/hub"));
  ::setenv("XDG_CACHE_HOME", "/xdg", 1);
  EXPECT_EQ(lm::hub::cache_dir(), fs::path("/xdg/huggingface/hub"));
  ::setenv("HF_HOME", "/hfhome", 1);
  EXPECT_EQ(lm::hub::cache_dir(), fs::path("/hfhome/hub"));
  ::setenv("HUGGINGFACE_HUB_CACHE", "/legacy", 1);
  EXPECT_EQ(lm::hub::cache_dir(), fs::path("/legacy"));
  ::setenv("HF_HUB_CACHE", "/hubcache", 1);
  EXPECT_EQ(lm::hub::cache_dir(), fs::path("/hubcache"));
}

TEST_F(Hub, ResolvesRepoThroughRefsAndSymlinks) {
  fs::path cache = root_ / "hf" / "hub";
  ::setenv("HF_HOME", (root_ / "hf").c_str(), 1);
  add_repo(cache, "models--google--gemma-3-1b-it", kCommit);
  auto p = lm::hub::resolve_model_path("google/gemma-3-1b-it");
  EXPECT_EQ(p, cache / "models--google--gemma-3-1b-it" / "snapshots" / kCommit);
  std::ifstream in(p / "config.json");  // through the relative symlink
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "{\"model_type\": \"gemma3_text\"}");
  // A 40-hex revision is used directly (no ref needed).
  fs::create_directories(cache / "models--google--gemma-3-1b-it" / "snapshots" / kOther);
  EXPECT_EQ(lm::hub::resolve_model_path("google/gemma-3-1b-it", kOther),
            cache / "models--google--gemma-3-1b-it" / "snapshots" / kOther);
  EXPECT_EQ(lm::hub::cached_snapshot("google/gemma-3-1b-it", "main"),
            cache / "models--google--gemma-3-1b-it" / "snapshots" / kCommit);
  EXPECT_EQ(lm::hub::cached_snapshot("google/gemma-3-4b-it"), std::nullopt);
}

TEST_F(Hub, LocalFolderWins) {
  ::setenv("HF_HUB_CACHE", (root_ / "cache").c_str(), 1);
  add_repo(root_ / "cache", "models--org--name", kCommit);
  fs::path local = root_ / "org" / "name";
  fs::create_directories(local);
  fs::path cwd = fs::current_path();
  fs::current_path(root_);
  auto p = lm::hub::resolve_model_path("org/name");
  fs::current_path(cwd);
  EXPECT_EQ(p, fs::path("org/name"));
  EXPECT_EQ(lm::hub::resolve_model_path(local.string()), local);
}

TEST_F(Hub, Errors) {
  ::setenv("HF_HUB_CACHE", (root_ / "cache").c_str(), 1);
  auto e = error_of([&] { lm::hub::resolve_model_path("google/not-cached"); });
  EXPECT_NE(e.find("google/not-cached"), std::string::npos) << e;
  EXPECT_NE(e.find("models--google--not-cached"), std::string::npos) << e;
  e = error_of([&] { lm::hub::resolve_model_path((root_ / "missing" / "dir").string()); });
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;
  std::ofstream(root_ / "file.txt") << "x";
  e = error_of([&] { lm::hub::resolve_model_path((root_ / "file.txt").string()); });
  EXPECT_NE(e.find("not a folder"), std::string::npos) << e;
  add_repo(root_ / "cache", "models--org--noref", kCommit, /*write_ref=*/false);
  e = error_of([&] { lm::hub::resolve_model_path("org/noref"); });
  EXPECT_NE(e.find("refs"), std::string::npos) << e;
  // refs/main naming a commit whose snapshot is gone.
  add_repo(root_ / "cache", "models--org--stale", kCommit);
  fs::remove_all(root_ / "cache" / "models--org--stale" / "snapshots" / kCommit);
  e = error_of([&] { lm::hub::resolve_model_path("org/stale"); });
  EXPECT_NE(e.find(kCommit), std::string::npos) << e;
}

TEST_F(Hub, ListCachedModels) {
  fs::path cache = root_ / "c";
  ::setenv("HF_HUB_CACHE", cache.c_str(), 1);
  EXPECT_TRUE(lm::hub::list_cached_models().empty());  // no cache folder yet
  add_repo(cache, "models--mlx-community--gemma-3-1b-it-4bit", kCommit);
  add_repo(cache, "models--google--gemma-3-270m", kCommit);
  add_repo(cache, "models--org--noref", kCommit, /*write_ref=*/false);
  fs::create_directories(cache / "datasets--org--data");
  fs::create_directories(cache / ".locks");
  EXPECT_EQ(lm::hub::list_cached_models(),
            (std::vector<std::string>{"google/gemma-3-270m", "mlx-community/gemma-3-1b-it-4bit"}));
}
