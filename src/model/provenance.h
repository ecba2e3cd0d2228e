// Lineage of a model: provenance.json beside the weights of every model `train`, `rl` and
// `convert` write — what it came from (parent model, teacher), on what data, with which settings,
// by which tool, each input named by path and fingerprinted by SHA-256. A parent's own record is
// nested, so a student's file tells its whole family tree. `distill info` prints it; a GGUF export
// keeps it as the metadata key "distill.provenance" and a conversion back restores the file.
//
//   {"created": "2026-12-02T00:10:00Z", "tool": "distill.cpp 0.6", "command": "train",
//    "parent": {"path": "...", "sha256": "...", "provenance": {...}},
//    "teacher": {"path": "...", "sha256": "..."}, "data": [{"path": "...", "sha256": "..."}],
//    "settings": {...}}
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace distill {

inline constexpr const char* kToolVersion = "distill.cpp 0.6";
inline constexpr const char* kProvenanceGgufKey = "distill.provenance";

// SHA-256 over a model's weights: a GGUF file, or a directory's *.safetensors in name order. Files
// beyond 4 GiB are fingerprinted by their size, first and last 64 MiB ("method" says which).
nlohmann::json fingerprint_model(const std::string& path);
// Same, for a data file or a directory of them (every regular file, in name order).
nlohmann::json fingerprint_data(const std::string& path);

// The model's record (its provenance.json, or the GGUF key), or null when it has none.
nlohmann::json read_provenance(const std::string& model_path);

// The record of a model made by `command` from the parent and teacher (fingerprinted, the
// parent's record nested; a teacher URL is kept as it is), the data, the settings, the tool and
// the time.
nlohmann::json provenance_record(const std::string& command, const std::string& parent, const std::string& teacher,
                                 const std::vector<std::string>& data, const nlohmann::json& settings);
// Writes dir/provenance.json atomically.
void write_provenance(const std::string& dir, const nlohmann::json& record);

}  // namespace distill
