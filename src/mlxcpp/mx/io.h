// Reading and writing arrays: safetensors (mmap, zero-copy), sharded
// checkpoints, NumPy .npy and .npz. Writes are atomic (temporary file, then
// rename); malformed files raise std::runtime_error naming the file and the
// problem.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>

#include "mlxcpp/mx/array.h"

namespace mx {

using ArrayMap = std::unordered_map<std::string, array>;
using StringMap = std::unordered_map<std::string, std::string>;
using SafetensorsLoad = std::pair<ArrayMap, StringMap>;

// Maps the file and returns its tensors (views of the mapping; the mapping
// lives as long as any of them) and its "__metadata__".
SafetensorsLoad load_safetensors(const std::string& path);
void save_safetensors(const std::string& path, const ArrayMap& arrays,
                      const StringMap& metadata = {});
// A sharded checkpoint: `path` is a model.safetensors.index.json or a folder
// holding one (or a single model.safetensors). Every shard the index names
// must exist and every tensor must be in the shard the index says.
SafetensorsLoad load_sharded_safetensors(const std::string& path);

// NumPy formats. bfloat16 has no NumPy type: saving it raises an error.
array load(const std::string& path);                 // .npy
void save(const std::string& path, const array& a);  // .npy
ArrayMap load_npz(const std::string& path);
void save_npz(const std::string& path, const ArrayMap& arrays, bool compressed = false);

namespace io {
// Parses a safetensors image held in memory (the whole file). `owner` keeps
// the bytes alive for the returned views; `name` is used in error messages.
SafetensorsLoad parse_safetensors(const uint8_t* data, size_t size, const std::string& name,
                                  std::shared_ptr<void> owner);
// Parses a .npy image held in memory; copies the data.
array parse_npy(const uint8_t* data, size_t size, const std::string& name);
// Writes `bytes` to `path` atomically (temporary file in the same folder, fsync, rename).
void write_file_atomic(const std::string& path, const std::string& bytes);
}  // namespace io

}  // namespace mx
