// A read-only memory mapping of a whole file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mx::io {

// With `resident`, the file is instead read into anonymous memory in 2 MB
// transparent huge pages (madvise), placed so that file offset `align_at`
// lands on a 64-byte boundary: weights read on every decode step then take a
// fraction of the TLB misses of 4 KB file pages, and vector loads at the
// tensors' starts do not straddle cache lines (safetensors data starts wherever
// the JSON header ends).
class MappedFile {
 public:
  explicit MappedFile(const std::string& path, bool resident = false, size_t align_at = 0);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  bool resident() const { return anon_ != nullptr; }

 private:
  std::string path_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint8_t* anon_ = nullptr;  // the anonymous mapping holding a resident copy
  size_t anon_size_ = 0;
};

}  // namespace mx::io
