// Atomic file writes: a temporary file beside the target, fsync, then rename, so a reader never
// sees a half-written file and a crash leaves the old file intact.
#pragma once

#include <cstddef>
#include <cstdio>
#include <memory>
#include <string>

namespace distill {

// Writes `size` bytes to `path` atomically: a temporary file beside it, fsync, then rename, so a
// reader never sees a half-written file and a crash leaves the old file intact.
void write_file_atomic(const std::string& path, const void* data, size_t size);

// The whole file as bytes; throws distill::Error naming the file and what it was for.
std::string read_text_file(const std::string& path, const std::string& what);

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
