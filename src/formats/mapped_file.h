// A read-only memory mapping of a whole file. Shared by every tensor viewing into it.
#pragma once

#include <cstddef>
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

}  // namespace distill
