// TensorStore: every tensor of a checkpoint by name, whether it is one safetensors file or a
// Hugging Face sharded set (model.safetensors.index.json + shards). Views stay valid as long as
// any Tensor taken from the store lives.
#pragma once

#include "formats/safetensors.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace distill {

class TensorStore {
public:
  // A model directory: model.safetensors.index.json (sharded), else model.safetensors, else the
  // only *.safetensors file in it.
  static TensorStore open_dir(const std::string& dir);
  static TensorStore open_file(const std::string& path);

  std::optional<Tensor> find(const std::string& name) const;
  // Throws "<files>: tensor 'name' is missing" when absent.
  Tensor get(const std::string& name) const;
  // The file a tensor comes from, for messages.
  std::string source(const std::string& name) const;
  std::vector<std::string> names() const;
  // Metadata of the first file (e.g. the reference tensors' settings).
  const std::map<std::string, std::string>& metadata() const { return files_.front().metadata(); }
  const std::string& description() const { return description_; }

private:
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> index_;  // tensor name -> file
  std::string description_;              // the directory or file, for messages
};

}  // namespace distill
