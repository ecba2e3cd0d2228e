// Architecture descriptors: everything that differs between the model families one shared
// decoder runs lives in one file per family (arch/llama.cpp, mistral.cpp, qwen2.cpp, qwen3.cpp, qwen3_moe.cpp),
// listed once in arch/registry.cpp. A descriptor names the family in each format (config.json's
// model_type and class, GGUF's general.architecture), says how GGUF lays out its q/k rows, and
// reads/writes the config fields only it has. What is common (tensor names, shapes, the layer
// graph) is driven by the ModelConfig flags a descriptor sets: adding a family is one new file,
// one registry line and its tests.
#pragma once

#include "model/config.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace distill {

class GgufFile;
class GgufWriter;

struct ArchDescriptor {
  const char* model_type;   // config.json "model_type"
  const char* hf_class;     // config.json "architectures"[0]
  const char* gguf_arch;    // GGUF general.architecture (Mistral files say "llama")
  bool gguf_permutes_qk;    // llama.cpp rotates interleaved pairs: q/k rows are permuted in GGUF
  bool moe;                 // a mixture-of-experts family (the others refuse expert fields)
  // config.json -> the family's flags and defaults (after the common fields were read).
  void (*read_config)(const nlohmann::json& j, ModelConfig& c);
  // ModelConfig -> the config.json fields only this family writes.
  void (*write_config)(const ModelConfig& c, nlohmann::json& j);
  // GGUF file -> the family's config.json fields that GGUF says in its own way (may be null).
  void (*read_gguf)(const GgufFile& g, nlohmann::json& j);
  // ModelConfig -> the GGUF keys only this family writes (may be null).
  void (*write_gguf)(const ModelConfig& c, GgufWriter& w);
};

// The descriptor of a config.json model_type; throws listing the supported ones.
const ArchDescriptor& arch_of(const std::string& model_type);
// The descriptor that reads a GGUF general.architecture; throws listing the supported ones.
const ArchDescriptor& arch_of_gguf(const std::string& gguf_arch);
std::vector<std::string> supported_model_types();

// Applies the architecture's defaults and flags for config.model_type. Throws for an unknown
// model_type and for features of that architecture we do not run (experts in a dense family).
void apply_arch_hooks(const nlohmann::json& j, ModelConfig& c);

// Shared by the descriptors: an optional boolean config field.
bool config_flag(const nlohmann::json& j, const char* key, bool fallback);
// {arch}.expert_count, expert_used_count, expert_feed_forward_length (llama.cpp's names).
void write_gguf_expert_keys(const ModelConfig& c, const std::string& arch, GgufWriter& w);

}  // namespace distill
