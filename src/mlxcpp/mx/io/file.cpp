// File helpers shared by the formats: atomic writes and read-only mappings.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <stdexcept>

#include "mlxcpp/mx/io.h"
#include "mlxcpp/mx/io/file.h"

namespace mx::io {

namespace {
std::string errno_text() { return std::strerror(errno); }
}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  std::random_device rd;
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("[save] cannot create '" + tmp + "': " + errno_text());
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string err = errno_text();
      ::close(fd);
      ::unlink(tmp.c_str());
      throw std::runtime_error("[save] writing '" + path + "' failed: " + err);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::string err = errno_text();
    ::unlink(tmp.c_str());
    throw std::runtime_error("[save] writing '" + path + "' failed: " + err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string err = errno_text();
    ::unlink(tmp.c_str());
    throw std::runtime_error("[save] cannot move the new file into '" + path + "': " + err);
  }
}

MappedFile::MappedFile(const std::string& path, bool resident, size_t align_at) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("[load] cannot open '" + path + "': " + errno_text());
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    std::string err = errno_text();
    ::close(fd);
    throw std::runtime_error("[load] cannot stat '" + path + "': " + err);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error("[load] '" + path + "' is a directory, not a file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (resident && size_ > 0) {
    constexpr size_t kHuge = size_t{2} << 20;
    const size_t shift = (64 - align_at % 64) % 64;
    anon_size_ = size_ + shift + kHuge;
    void* p =
        ::mmap(nullptr, anon_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      anon_ = static_cast<uint8_t*>(p);
      auto* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(anon_) + kHuge - 1) &
                                              ~uintptr_t{kHuge - 1});
      // Advice only: without THP support the copy still works in 4 KB pages.
      ::madvise(base, size_ + shift, MADV_HUGEPAGE);
      data_ = base + shift;
      size_t done = 0;
      while (done < size_) {
        ssize_t n = ::pread(fd, data_ + done, size_ - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          std::string err = n < 0 ? errno_text() : std::string("unexpected end of file");
          ::munmap(anon_, anon_size_);
          ::close(fd);
          throw std::runtime_error("[load] reading '" + path + "' failed: " + err);
        }
        done += static_cast<size_t>(n);
      }
      ::close(fd);
      return;
    }
    anon_ = nullptr;  // no memory for a copy: map the file as usual
    anon_size_ = 0;
  }
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      std::string err = errno_text();
      ::close(fd);
      throw std::runtime_error("[load] cannot map '" + path + "': " + err);
    }
    data_ = static_cast<uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (anon_) {
    ::munmap(anon_, anon_size_);
  } else if (data_) {
    ::munmap(data_, size_);
  }
}

}  // namespace mx::io
