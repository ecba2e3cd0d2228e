// Qwen2 / Qwen2.5 (and DeepSeek-R1-Distill-Qwen): q, k, v always have biases, o never. GGUF
// "qwen2" keeps the halves RoPE layout (no permutation).
#include "core/error.h"
#include "model/arch/arch.h"

namespace distill {

namespace {

void read(const nlohmann::json& j, ModelConfig& c) {
  c.qkv_bias = true;
  if (config_flag(j, "use_sliding_window", false))
    fail("use_sliding_window: true is not supported (per-layer windows of Qwen2)");
}

void write(const ModelConfig&, nlohmann::json&) {}

}  // namespace

extern const ArchDescriptor kQwen2Arch = {"qwen2", "Qwen2ForCausalLM", "qwen2", false, false, read, write, nullptr, nullptr};

}  // namespace distill
