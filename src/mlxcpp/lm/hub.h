// The Hugging Face hub cache (formats.md §7): where it is, how a repo id and revision resolve
// to a snapshot folder, which repos it holds. No network access here.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lm::hub {

// HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub > $XDG_CACHE_HOME/huggingface/hub >
// ~/.cache/huggingface/hub.
std::filesystem::path cache_dir();

// Whether `s` has the form of a repo id ("org/name", no further slashes, no "..").
bool is_repo_id(const std::string& s);

// The cache folder of a model repo: <cache>/models--org--name.
std::filesystem::path repo_folder(const std::string& repo_id);

// The snapshot folder of repo_id at `revision` (a 40-hex commit used directly, else a ref read
// from refs/<revision>), or nullopt when it is not cached.
std::optional<std::filesystem::path> cached_snapshot(const std::string& repo_id,
                                                     const std::string& revision = "main");

// An existing local folder wins; else a repo id in the cache; else an error naming what was
// tried (nothing is downloaded).
std::filesystem::path resolve_model_path(const std::string& path_or_repo,
                                         const std::string& revision = "main");

// Repo ids ("org/name") of cached models whose main ref points at an existing snapshot, sorted.
std::vector<std::string> list_cached_models();

}  // namespace lm::hub
