// Qwen3: RMSNorm on every head of q and k before RoPE; head_dim is explicit (HF default 128);
// attention_bias as Llama's.
#include "core/error.h"
#include "formats/json_fields.h"
#include "model/arch/arch.h"

namespace distill {

namespace {

void read(const nlohmann::json& j, ModelConfig& c) {
  c.qk_norm = true;
  c.qkv_bias = c.o_bias = config_flag(j, "attention_bias", false);
  if (!jsonf::has(j, "head_dim")) c.head_dim = 128;
  if (config_flag(j, "use_sliding_window", false)) fail("use_sliding_window: true is not supported");
}

void write(const ModelConfig& c, nlohmann::json& j) { j["attention_bias"] = c.qkv_bias; }

}  // namespace

extern const ArchDescriptor kQwen3Arch = {"qwen3", "Qwen3ForCausalLM", "qwen3", false, false, read, write, nullptr, nullptr};

}  // namespace distill
