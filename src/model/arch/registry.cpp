// The families distill runs: one line each (the descriptor lives in arch/<family>.cpp).
#include "model/arch/arch.h"

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/json_fields.h"

namespace distill {

extern const ArchDescriptor kLlamaArch, kMistralArch, kQwen2Arch, kQwen3Arch, kQwen3MoeArch, kGptOssArch;

namespace {

const ArchDescriptor* const kArchs[] = {&kLlamaArch, &kMistralArch, &kQwen2Arch, &kQwen3Arch, &kQwen3MoeArch, &kGptOssArch};

std::string known(bool gguf) {
  std::string out;
  for (const ArchDescriptor* a : kArchs) {
    const std::string name = gguf ? a->gguf_arch : a->model_type;
    if (out.find(name) == std::string::npos) out += (out.empty() ? "" : ", ") + name;
  }
  return out;
}

}  // namespace

bool config_flag(const nlohmann::json& j, const char* key, bool fallback) { return jsonf::get_bool(j, key, "", fallback); }

void write_gguf_expert_keys(const ModelConfig& c, const std::string& arch, GgufWriter& w) {
  w.set(arch + ".expert_count", GgufValue::of_u32(uint32_t(c.n_expert)));
  w.set(arch + ".expert_used_count", GgufValue::of_u32(uint32_t(c.n_expert_used)));
  w.set(arch + ".expert_feed_forward_length", GgufValue::of_u32(uint32_t(c.n_ff_expert)));
}

std::vector<std::string> supported_model_types() {
  std::vector<std::string> out;
  for (const ArchDescriptor* a : kArchs) out.push_back(a->model_type);
  return out;
}

const ArchDescriptor& arch_of(const std::string& model_type) {
  for (const ArchDescriptor* a : kArchs)
    if (model_type == a->model_type) return *a;
  fail("model_type: '{}' is not supported (supported: {})", model_type, known(false));
}

const ArchDescriptor& arch_of_gguf(const std::string& gguf_arch) {
  // The family whose own name it is (a "llama" GGUF is read as llama, Mistral included), else
  // the one family writing that name (qwen3moe: qwen3_moe).
  for (const ArchDescriptor* a : kArchs)
    if (gguf_arch == a->gguf_arch && gguf_arch == a->model_type) return *a;
  for (const ArchDescriptor* a : kArchs)
    if (gguf_arch == a->gguf_arch) return *a;
  fail("general.architecture '{}' is not supported ({} are; Mistral files say llama)", gguf_arch, known(true));
}

void apply_arch_hooks(const nlohmann::json& j, ModelConfig& c) {
  const ArchDescriptor& arch = arch_of(c.model_type);
  for (const char* moe_key : {"num_experts", "num_local_experts", "n_routed_experts"}) {
    if (!arch.moe && j.contains(moe_key) && j[moe_key].is_number() && j[moe_key].get<double>() > 0)
      fail("{}: {} — model_type {} is dense here; mixture-of-experts families: qwen3_moe, gpt_oss", moe_key, j[moe_key].dump(),
           c.model_type);
  }
  arch.read_config(j, c);
}

}  // namespace distill
