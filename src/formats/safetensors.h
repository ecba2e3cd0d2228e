// safetensors: reader (mmap, zero-copy) and writer (atomic).
//
// Byte layout:
//   [0, 8)        u64 little-endian N: length of the header
//   [8, 8+N)      UTF-8 JSON object: { "<name>": {"dtype": "F32", "shape": [..],
//                 "data_offsets": [begin, end]}, ..., "__metadata__": {"k": "v"} } (optional)
//                 padded with spaces; our writer pads so the data starts 8-byte aligned
//   [8+N, EOF)    the data; offsets are relative to its start, end exclusive
// Every tensor's bytes must equal numel × dtype size, lie inside the data and not overlap.
#pragma once

#include "core/tensor.h"
#include "core/atomic_file.h"
#include "formats/mapped_file.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace distill {

class SafetensorsFile {
public:
  // Maps and validates the file; any violation throws distill::Error naming the file and tensor.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  std::vector<std::string> names() const;  // in data order
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  // A view into the mapping (a copy if the data is not aligned for its dtype).
  Tensor get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

private:
  struct Entry {
    DType dtype;
    Shape shape;
    size_t begin, end;  // relative to the data section
  };
  std::shared_ptr<MappedFile> file_;
  size_t data_start_ = 0;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
public:
  // Keeps a handle to `t` (no copy) until write().
  void add(const std::string& name, const Tensor& t);
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  void write(const std::string& path) const;  // atomic

private:
  std::vector<std::pair<std::string, Tensor>> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace distill
