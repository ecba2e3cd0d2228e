// Llama (and DeepSeek-R1-Distill-Llama): attention_bias puts biases on q, k, v and o; mlp_bias on
// the MLP. GGUF "llama" rotates interleaved pairs, so q/k rows are permuted there.
#include "formats/gguf.h"
#include "model/arch/arch.h"

namespace distill {

namespace {

void read(const nlohmann::json& j, ModelConfig& c) {
  c.qkv_bias = c.o_bias = config_flag(j, "attention_bias", false);
  c.mlp_bias = config_flag(j, "mlp_bias", false);
}

void write(const ModelConfig& c, nlohmann::json& j) {
  j["attention_bias"] = c.qkv_bias;
  j["mlp_bias"] = c.mlp_bias;
}

void read_gguf(const GgufFile& g, nlohmann::json& j) { j["attention_bias"] = g.find_tensor("blk.0.attn_q.bias") != nullptr; }

}  // namespace

extern const ArchDescriptor kLlamaArch = {"llama", "LlamaForCausalLM", "llama", true, false, read, write, read_gguf, nullptr};

}  // namespace distill
