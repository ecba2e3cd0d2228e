#include "model/provenance.h"

#include "core/atomic_file.h"
#include "core/digest.h"
#include "core/error.h"
#include "core/system.h"
#include "formats/gguf.h"
#include "model/gguf_model.h"  // is_gguf_file

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>

namespace distill {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr uintmax_t kWholeFileLimit = uintmax_t(4) << 30;
constexpr uintmax_t kEdgeBytes = uintmax_t(64) << 20;

// SHA-256 of the files in order; a file over the limit contributes its size, head and tail.
json hash_files(const std::vector<fs::path>& files) {
  bool sampled = false;
  std::string parts;
  for (const fs::path& f : files) {
    const uintmax_t size = fs::file_size(f);
    if (size <= kWholeFileLimit) {
      parts += sha256_file_hex(f.string());
      continue;
    }
    sampled = true;
    std::FILE* fp = std::fopen(f.c_str(), "rb");
    if (!fp) fail("{}: cannot open to fingerprint it", f.string());
    std::string edge(kEdgeBytes, '\0');
    std::string head_tail = std::to_string(size) + ":";
    for (const long long at : {0LL, (long long)(size - kEdgeBytes)}) {
      std::fseek(fp, at, SEEK_SET);
      const size_t n = std::fread(edge.data(), 1, edge.size(), fp);
      head_tail += sha256_hex(edge.substr(0, n));
    }
    std::fclose(fp);
    parts += sha256_hex(head_tail);
  }
  return {{"sha256", files.size() == 1 && !sampled ? parts : sha256_hex(parts)},
          {"method", sampled ? "size, first and last 64 MiB of large files" : files.size() == 1 ? "file" : "files in name order"},
          {"files", files.size()}};
}

std::vector<fs::path> files_in(const fs::path& dir, const std::string& extension) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && (extension.empty() || e.path().extension() == extension)) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

json fingerprint_model(const std::string& path) {
  if (fs::is_regular_file(path)) return hash_files({path});
  const auto files = files_in(path, ".safetensors");
  if (files.empty()) fail("{}: no weights to fingerprint (*.safetensors or a GGUF file)", path);
  return hash_files(files);
}

json fingerprint_data(const std::string& path) {
  if (fs::is_regular_file(path)) return hash_files({path});
  if (!fs::is_directory(path)) fail("{}: no such data file or directory", path);
  return hash_files(files_in(path, ""));
}

json read_provenance(const std::string& path) {
  try {
    if (fs::is_directory(path)) {
      const fs::path f = fs::path(path) / "provenance.json";
      return fs::exists(f) ? json::parse(read_text_file(f.string(), "provenance record")) : json(nullptr);
    }
    if (is_gguf_file(path)) {
      const GgufFile g = GgufFile::open(path);
      const GgufValue* v = g.find(kProvenanceGgufKey);
      return v && v->type == GgufType::String ? json::parse(v->s) : json(nullptr);
    }
  } catch (const json::exception& e) {
    fail("{}: its provenance record is not valid JSON: {}", path, e.what());
  }
  return nullptr;
}

json provenance_record(const std::string& command, const std::string& parent, const std::string& teacher,
                       const std::vector<std::string>& data, const json& settings) {
  json r = {{"created", utc_now("%Y-%m-%dT%H:%M:%SZ")}, {"tool", kToolVersion}, {"command", command}, {"settings", settings}};
  if (!parent.empty()) {
    r["parent"] = fingerprint_model(parent);
    r["parent"]["path"] = fs::absolute(parent).lexically_normal().string();
    if (json p = read_provenance(parent); !p.is_null()) r["parent"]["provenance"] = std::move(p);
  }
  if (!teacher.empty()) {
    const bool remote = teacher.rfind("http://", 0) == 0 || teacher.rfind("https://", 0) == 0;
    r["teacher"] = remote ? json{{"url", teacher}} : fingerprint_model(teacher);
    if (!remote) r["teacher"]["path"] = fs::absolute(teacher).lexically_normal().string();
  }
  r["data"] = json::array();
  for (const std::string& d : data) {
    json f = fingerprint_data(d);
    f["path"] = fs::absolute(d).lexically_normal().string();
    r["data"].push_back(std::move(f));
  }
  return r;
}

void write_provenance(const std::string& dir, const json& record) {
  const std::string text = record.dump(2) + "\n";
  write_file_atomic((fs::path(dir) / "provenance.json").string(), text.data(), text.size());
}

}  // namespace distill
