// Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention (q/k norm, explicit head_dim)
// with every layer's MLP a mixture of experts: a router [num_experts, hidden] over SwiGLU experts
// of width moe_intermediate_size, num_experts_per_tok of them per token, no shared expert.
// norm_topk_prob renormalises the kept weights (transformers' default is false; the released
// models set true). GGUF "qwen3moe" (llama.cpp) always renormalises, so a model without it is not
// exported there. Layers without experts (decoder_sparse_step > 1, mlp_only_layers) are refused.
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/json_fields.h"
#include "model/arch/arch.h"

namespace distill {

extern const ArchDescriptor kQwen3Arch;

namespace {

void read(const nlohmann::json& j, ModelConfig& c) {
  kQwen3Arch.read_config(j, c);  // Qwen3's attention
  c.n_expert = jsonf::get_int(j, "num_experts", "", 1, 4096);
  c.n_expert_used = jsonf::get_int(j, "num_experts_per_tok", "", 1, c.n_expert);
  c.n_ff_expert = jsonf::get_int(j, "moe_intermediate_size", "", 1, 1 << 20);
  c.norm_topk_prob = config_flag(j, "norm_topk_prob", false);
  if (jsonf::get_int(j, "decoder_sparse_step", "", 1, 1 << 20, 1) != 1)
    fail("decoder_sparse_step: only 1 (experts in every layer) is supported");
  if (jsonf::has(j, "mlp_only_layers") && !(j["mlp_only_layers"].is_array() && j["mlp_only_layers"].empty()))
    fail("mlp_only_layers: {} — layers without experts are not supported", j["mlp_only_layers"].dump());
  if (jsonf::has(j, "shared_expert_intermediate_size") && jsonf::get_int(j, "shared_expert_intermediate_size", "", 0, 1 << 20) > 0)
    fail("shared_expert_intermediate_size: shared experts are not part of qwen3_moe");
}

void write(const ModelConfig& c, nlohmann::json& j) {
  kQwen3Arch.write_config(c, j);
  j["num_experts"] = c.n_expert;
  j["num_experts_per_tok"] = c.n_expert_used;
  j["moe_intermediate_size"] = c.n_ff_expert;
  j["norm_topk_prob"] = c.norm_topk_prob;
  j["decoder_sparse_step"] = 1;
  j["mlp_only_layers"] = nlohmann::json::array();
}

void read_gguf(const GgufFile& g, nlohmann::json& j) {
  j["num_experts"] = g.get_int("qwen3moe.expert_count");
  j["num_experts_per_tok"] = g.get_int("qwen3moe.expert_used_count");
  j["moe_intermediate_size"] = g.get_int("qwen3moe.expert_feed_forward_length");
  j["norm_topk_prob"] = true;  // llama.cpp's qwen3moe graph always renormalises
}

void write_gguf(const ModelConfig& c, GgufWriter& w) {
  if (!c.norm_topk_prob)
    fail("convert: qwen3_moe with norm_topk_prob false has no GGUF form (llama.cpp's qwen3moe always renormalises)");
  write_gguf_expert_keys(c, "qwen3moe", w);
}

}  // namespace

extern const ArchDescriptor kQwen3MoeArch = {"qwen3_moe", "Qwen3MoeForCausalLM", "qwen3moe", false, true, read, write,
                                             read_gguf, write_gguf};

}  // namespace distill
