// Models in GGUF files, as llama.cpp lays them out (see docs/gguf.md for the conventions relied on):
//
//   token_embd.weight  output_norm.weight  output.weight (absent when tied)
//   blk.N.attn_norm / attn_q / attn_k / attn_v / attn_output [.weight/.bias]
//   blk.N.attn_q_norm / attn_k_norm (Qwen3)   blk.N.ffn_norm / ffn_gate / ffn_up / ffn_down
//   rope_freqs.weight (Llama 3 RoPE scaling: the divisor of each inverse frequency)
//   blk.N.ffn_gate_inp (the router) and blk.N.ffn_gate_exps / ffn_up_exps / ffn_down_exps: a
//   layer's experts stacked in one tensor [n_expert, rows, cols] (HF keeps one tensor per expert)
//
// For architecture `llama` (also Mistral) llama.cpp applies RoPE to interleaved pairs
// (x[2i], x[2i+1]) while Hugging Face rotates halves (x[i], x[i + d/2]): the rows of attn_q and
// attn_k are permuted within each head on export and back on import. `qwen2` / `qwen3` use the
// halves layout in llama.cpp too (NEOX mode): no permutation.
#pragma once

#include "model/model.h"

#include <string>

namespace distill {

bool is_gguf_file(const std::string& path);  // a regular file starting with "GGUF"

// Hugging Face parameter name -> GGUF tensor name (model.layers.3.mlp.up_proj.weight -> blk.3.ffn_up.weight).
// `arch` (GGUF general.architecture) where names differ by family (gpt-oss: post_attention_norm).
std::string gguf_tensor_name(const std::string& hf_name, const std::string& arch = "");
// A per-expert HF tensor's place in GGUF: the stacked tensor and the expert's index in it
// (model.layers.3.mlp.experts.7.up_proj.weight -> blk.3.ffn_up_exps.weight, 7); false otherwise.
bool gguf_expert_tensor(const std::string& hf_name, std::string* stacked, int64_t* expert);
// GGUF general.architecture of a config (llama for llama and mistral, qwen2, qwen3).
std::string gguf_arch(const ModelConfig& c);
bool gguf_permutes_qk(const std::string& arch);
// 'q' or 'k' for a GGUF attn_q / attn_k tensor (weight or bias: the rows the RoPE layouts order
// differently), else 0.
char gguf_qk_tensor(const std::string& name);
// Rows of a q/k projection (weight [n_head·head_dim, K] or bias [n_head·head_dim]) reordered
// between the two RoPE layouts, in any dtype (rows move whole).
Tensor permute_qk_rows(const Tensor& w, int64_t n_head, bool to_gguf);

class GgufFile;
// The model's config.json fields from a GGUF file's metadata (the architecture's keys).
ModelConfig gguf_model_config(const GgufFile& g);

// A model from a GGUF file: weights stay in the mapped file (quantized ones too), except permuted
// q/k rows and vectors, which are copied.
Model load_gguf_model(const std::string& path);

}  // namespace distill
