#include "formats/safetensors.h"

#include "core/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

namespace distill {

using nlohmann::json;

namespace {

constexpr size_t kMaxHeaderBytes = size_t(100) << 20;  // 100 MiB: far above any real model

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Reads a non-negative integer field; throws with the tensor's name if it is anything else.
uint64_t as_size(const json& v, const std::string& tensor, const char* field) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0)
    fail("tensor '{}': {} must hold non-negative integers, got {}", tensor, field, v.dump());
  return v.get<uint64_t>();
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.file_ = MappedFile::open(path);
  with_context(path, [&] {
    const size_t size = f.file_->size();
    if (size < 8) fail("file is {} bytes, too short for a safetensors header (truncated?)", size);
    const uint64_t header_len = read_u64_le(f.file_->data());
    if (header_len > size - 8)
      fail("header length {} runs past the end of the file ({} bytes; truncated or not safetensors)",
           header_len, size);
    if (header_len > kMaxHeaderBytes) fail("header length {} is implausibly large", header_len);
    f.data_start_ = 8 + header_len;
    const size_t data_size = size - f.data_start_;

    json header;
    try {
      header = json::parse(f.file_->data() + 8, f.file_->data() + 8 + header_len);
    } catch (const json::exception& e) {
      fail("malformed header JSON: {}", e.what());
    }
    if (!header.is_object()) fail("header is not a JSON object");

    for (const auto& [name, info] : header.items()) {
      if (name == "__metadata__") {
        if (!info.is_object()) fail("__metadata__ is not an object");
        for (const auto& [k, v] : info.items()) {
          if (!v.is_string()) fail("__metadata__ value of '{}' is not a string", k);
          f.metadata_[k] = v.get<std::string>();
        }
        continue;
      }
      if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
        fail("tensor '{}': entry needs dtype, shape and data_offsets", name);
      Entry e;
      if (!info["dtype"].is_string() || !dtype_from_name(info["dtype"].get<std::string>(), &e.dtype))
        fail("tensor '{}': unsupported dtype {}", name, info["dtype"].dump());
      if (!info["shape"].is_array()) fail("tensor '{}': shape is not an array", name);
      uint64_t numel = 1;
      for (const json& d : info["shape"]) {
        const uint64_t dim = as_size(d, name, "shape");
        if (__builtin_mul_overflow(numel, dim, &numel)) fail("tensor '{}': shape overflows", name);
        e.shape.push_back(int64_t(dim));
      }
      const json& off = info["data_offsets"];
      if (!off.is_array() || off.size() != 2) fail("tensor '{}': data_offsets must be [begin, end]", name);
      e.begin = as_size(off[0], name, "data_offsets");
      e.end = as_size(off[1], name, "data_offsets");
      if (e.begin > e.end) fail("tensor '{}': data_offsets [{}, {}] run backwards", name, e.begin, e.end);
      if (e.end > data_size)
        fail("tensor '{}': data_offsets [{}, {}] run past the end of the data ({} bytes; truncated?)", name,
             e.begin, e.end, data_size);
      uint64_t need = 0;
      if (__builtin_mul_overflow(numel, uint64_t(dtype_size(e.dtype)), &need) || need != e.end - e.begin)
        fail("tensor '{}': shape {} of {} needs {} bytes but data_offsets [{}, {}] hold {}", name,
             shape_str(e.shape), dtype_name(e.dtype), numel * dtype_size(e.dtype), e.begin, e.end,
             e.end - e.begin);
      f.entries_.emplace(name, std::move(e));
    }

    // No two tensors may share bytes.
    std::vector<std::pair<const std::string*, const Entry*>> order;
    for (const auto& [name, e] : f.entries_) order.push_back({&name, &e});
    std::sort(order.begin(), order.end(), [](auto& a, auto& b) {
      return std::pair(a.second->begin, a.second->end) < std::pair(b.second->begin, b.second->end);
    });
    for (size_t i = 1; i < order.size(); ++i) {
      const Entry& prev = *order[i - 1].second;
      const Entry& cur = *order[i].second;
      if (cur.begin < prev.end && cur.end > cur.begin && prev.end > prev.begin)
        fail("tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", *order[i - 1].first, prev.begin, prev.end,
             *order[i].first, cur.begin, cur.end);
    }
    // The data section must be indexed entirely, without holes (as the format's reference
    // implementation requires): a header length that is off by a few bytes would otherwise shift
    // every tensor and read garbage.
    uint64_t covered = 0;
    for (const auto& [name, e] : order) {
      if (e->begin != covered)
        fail("tensor '{}' starts at data offset {}, but the previous tensor ends at {} (a hole, or a wrong header length)",
             *name, e->begin, covered);
      covered = e->end;
    }
    const uint64_t data_bytes = size - f.data_start_;
    if (covered != data_bytes)
      fail("the tensors index {} bytes of data but the file holds {} after the header (a wrong header length, or "
           "trailing bytes)", covered, data_bytes);
  });
  return f;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_) out.push_back(name);
  std::sort(out.begin(), out.end(), [&](const std::string& a, const std::string& b) {
    return entries_.at(a).begin < entries_.at(b).begin;
  });
  return out;
}

Tensor SafetensorsFile::get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) fail("{}: no tensor named '{}'", path(), name);
  const Entry& e = it->second;
  const unsigned char* p = file_->data() + data_start_ + e.begin;
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(e.dtype) == 0) {
    // Zero-copy: the view shares ownership of the mapping.
    return Tensor::view(e.dtype, e.shape, const_cast<unsigned char*>(p), file_);
  }
  // The format does not promise alignment; copy so typed access stays well defined.
  Tensor t = Tensor::zeros(e.dtype, e.shape);
  std::memcpy(t.raw(), p, e.end - e.begin);
  return t;
}

void SafetensorsWriter::add(const std::string& name, const Tensor& t) {
  DISTILL_ASSERT_MSG(t.defined(), "writing undefined tensor {}", name);
  tensors_.emplace_back(name, t);
}

void SafetensorsWriter::write(const std::string& path) const {
  json header = json::object();
  size_t offset = 0;
  for (const auto& [name, t] : tensors_) {
    header[name] = {{"dtype", dtype_name(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  std::string text = header.dump();
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');  // data starts 8-byte aligned
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = (uint64_t(text.size()) >> (8 * i)) & 0xff;

  AtomicFileWriter out(path);
  out.write(len, 8);
  out.write(text.data(), text.size());
  for (const auto& [name, t] : tensors_) out.write(t.raw(), t.nbytes());
  out.commit();
}

}  // namespace distill
