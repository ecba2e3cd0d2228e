// LoRA adapters (Hu et al. 2021): a frozen matrix W [out, in] plus a low-rank update,
//   W' = W + scale · B A,   A [r, in], B [out, r],   scale = alpha / r  (alpha / √r with rsLoRA),
// stored in PEFT's layout so Hugging Face tools load what we write and we load theirs:
//   DIR/adapter_config.json        {"peft_type": "LORA", "r", "lora_alpha", "target_modules", ...}
//   DIR/adapter_model.safetensors  base_model.model.<module path>.lora_A.weight [r, in]
//                                  base_model.model.<module path>.lora_B.weight [out, r]
// e.g. base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight.
// Training (train/lora_training.h) writes adapters; run, serve and eval apply one at load time.
#pragma once

#include "model/model.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace distill {

struct LoraConfig {
  int64_t rank = 0;                  // 0: no adapter
  float alpha = 16;
  bool rslora = false;               // scale alpha/√r instead of alpha/r
  std::vector<std::string> targets;  // module names (q_proj ... down_proj)
  std::string base_model;            // recorded in adapter_config.json (not run-defining)
  float scale() const;
  nlohmann::json to_json() const;    // the run-defining part, for checkpoints
};

// The module names an adapter may target: the layers' seven projections.
const std::vector<std::string>& lora_modules();
// "all-linear" (PEFT's spelling) or a comma-separated list of module names; unknown names refused.
std::vector<std::string> parse_lora_targets(const std::string& text);

// One adapted matrix of a model.
struct LoraTarget {
  std::string weight_name;  // model.layers.3.mlp.up_proj.weight
  std::string peft_prefix;  // base_model.model.model.layers.3.mlp.up_proj
  int64_t out, in;
  Tensor* weight;           // into the ModelWeights it was listed from
  LoraAdapter* adapter;     // the layer's slot for this matrix's adapter (same ModelWeights)
};
// The matrices of `w` that `modules` name, in checkpoint order. Refuses mixtures of experts.
std::vector<LoraTarget> lora_targets(const ModelConfig& c, ModelWeights& w, const std::vector<std::string>& modules);

// W [out, in] += scale · B [out, r] · A [r, in], all f32 row-major.
void lora_merge_into(float* w, const float* a, const float* b, int64_t out, int64_t in, int64_t r, float scale);

// Writes DIR/adapter_config.json and DIR/adapter_model.safetensors (A and B of each target, f32).
// `a[i]`, `b[i]` belong to targets[i].
void write_peft_adapter(const std::string& dir, const LoraConfig& cfg, const std::vector<LoraTarget>& targets,
                        const std::vector<const float*>& a, const std::vector<const float*>& b);

// Reads a PEFT LoRA adapter and applies it to `model`: merged into each adapted matrix stored as
// f32/f16/bf16 (which becomes f32; the kernels' load-time forms are rebuilt), and beside each
// quantized one, unmerged (the layer graph runs W and the adapter; the base keeps its size — a
// merge would widen it). Throws naming the file and key for an adapter that does not fit the model
// (unknown module, wrong shape, DoRA, ...). Returns the adapter's config.
LoraConfig apply_peft_adapter(Model& model, const std::string& dir);

}  // namespace distill
