// A read-only memory mapping of a whole file. Shared by every tensor viewing into it.
#pragma once

#include <cstddef>
#include <cstdio>
#include <memory>
#include <string>

namespace distill {

class MappedFile {
public:
  // Throws distill::Error naming the path and the system's reason.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }

private:
  MappedFile() = default;
  std::string path_;
  unsigned char* data_ = nullptr;
  size_t size_ = 0;
};

// Writes `size` bytes to `path` atomically: a temporary file beside it, fsync, then rename, so a
// reader never sees a half-written file and a crash leaves the old file intact.
void write_file_atomic(const std::string& path, const void* data, size_t size);

// Same, with the content produced by a callback writing to a FILE* (for large outputs).
class AtomicFileWriter {
public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();  // removes the temporary file unless commit() ran
  void write(const void* data, size_t size);
  void commit();

private:
  std::string path_, tmp_path_;
  struct FileCloser { void operator()(std::FILE* f) const; };
  std::unique_ptr<std::FILE, FileCloser> file_;
  bool committed_ = false;
};

}  // namespace distill
