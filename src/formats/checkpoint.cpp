#include "formats/checkpoint.h"

#include "core/error.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>

namespace distill {

namespace fs = std::filesystem;
using nlohmann::json;

TensorStore TensorStore::open_file(const std::string& path) {
  TensorStore s;
  s.description_ = path;
  s.files_.push_back(SafetensorsFile::open(path));
  for (const std::string& n : s.files_[0].names()) s.index_[n] = 0;
  return s;
}

TensorStore TensorStore::open_dir(const std::string& dir) {
  if (!fs::is_directory(dir)) fail("{}: not a directory", dir);
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  if (!fs::exists(index_path)) {
    fs::path single = fs::path(dir) / "model.safetensors";
    if (!fs::exists(single)) {
      std::vector<fs::path> found;
      for (const auto& entry : fs::directory_iterator(dir))
        if (entry.path().extension() == ".safetensors") found.push_back(entry.path());
      if (found.size() != 1)
        fail("{}: no model.safetensors or model.safetensors.index.json ({} other .safetensors files)", dir,
             found.size());
      single = found[0];
    }
    TensorStore s = open_file(single.string());
    s.description_ = dir;
    return s;
  }

  TensorStore s;
  s.description_ = dir;
  json index;
  {
    std::ifstream in(index_path);
    try {
      index = json::parse(in);
    } catch (const json::exception& e) {
      fail("{}: malformed JSON: {}", index_path.string(), e.what());
    }
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail("{}: no \"weight_map\" object", index_path.string());
  std::map<std::string, size_t> shard_of_file;
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string()) fail("{}: weight_map[\"{}\"] is not a file name", index_path.string(), name);
    const std::string shard = file.get<std::string>();
    if (shard.find('/') != std::string::npos || shard == "..")
      fail("{}: shard name '{}' must be a file in the same directory", index_path.string(), shard);
    auto it = shard_of_file.find(shard);
    if (it == shard_of_file.end()) {
      s.files_.push_back(SafetensorsFile::open((fs::path(dir) / shard).string()));
      it = shard_of_file.emplace(shard, s.files_.size() - 1).first;
    }
    if (!s.files_[it->second].contains(name))
      fail("{}: lists tensor '{}' in {}, which does not contain it", index_path.string(), name, shard);
    s.index_[name] = it->second;
  }
  if (s.files_.empty()) fail("{}: weight_map is empty", index_path.string());
  return s;
}

std::optional<Tensor> TensorStore::find(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return std::nullopt;
  return files_[it->second].get(name);
}

Tensor TensorStore::get(const std::string& name) const {
  auto t = find(name);
  if (!t) fail("{}: tensor '{}' is missing", description_, name);
  return *t;
}

std::string TensorStore::source(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? description_ : files_[it->second].path();
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  for (const auto& [n, i] : index_) out.push_back(n);
  return out;
}

}  // namespace distill
