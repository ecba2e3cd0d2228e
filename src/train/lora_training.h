// LoraTraining: what the training harness trains instead of the whole model when --lora-rank is
// given. Each targeted matrix W [out, in] stays frozen as loaded — f32, bf16 or a quantized GGUF
// (QLoRA) — and the layer graph runs the adapter beside it (model/layer_graph.cpp):
//   y = x Wᵀ + s · (x Aᵀ) Bᵀ,   A [r, in], B [out, r],   s = alpha / r
// so the forward and backward are the model's own, with two thin products per adapted matrix each
// way; the backward forms d_A and d_B directly and no gradient of W at all. AdamW, clipping, the MPI
// all-reduce and the checkpoints see only A and B. Everything else (embeddings, norms, biases, the
// head) is frozen, as in PEFT.
//
// Memory against full fine-tuning: weights as stored (a Q4_K base is ~1/7 of f32), gradients and
// AdamW moments of the adapters only.
#pragma once

#include "model/lora.h"
#include "train/param_arena.h"

#include <string>
#include <vector>

namespace distill {

class LoraTraining {
public:
  // Attaches an adapter to every target of `model`, pointing into arena(): A initialised as PEFT
  // does (uniform ±1/√in, from `seed`), B zero, so training starts from the base model. The model
  // must outlive this object, which detaches the adapters when destroyed.
  LoraTraining(Model& model, const LoraConfig& cfg, uint64_t seed);
  ~LoraTraining();
  LoraTraining(const LoraTraining&) = delete;
  LoraTraining& operator=(const LoraTraining&) = delete;

  ParamArena& arena() { return arena_; }  // A and B of every target, PEFT-named
  const LoraConfig& config() const { return cfg_; }

  // Gradient views for TrainingPass::backward: every adapter slot points into `grads` (a buffer
  // with arena()'s layout); no base tensor is set (frozen: the backward forms none of theirs).
  ModelWeights grad_views(Tensor& grads) const;

  // The adapter in PEFT's layout.
  void write_peft(const std::string& dir) const;
  // Whether every adapted matrix is stored as f32/f16/bf16 (a merged model can be saved as is).
  bool base_is_float() const;
  // Saves the model with the adapter merged into its targets (f32) as a model directory.
  void save_merged(const std::string& dir) const;

private:
  float* a(size_t i) { return arena_.data() + a_offset_[i]; }
  float* b(size_t i) { return a(i) + size_t(cfg_.rank * targets_[i].in); }

  Model& model_;
  LoraConfig cfg_;
  std::vector<LoraTarget> targets_;  // into the model's weights
  std::vector<size_t> a_offset_;     // of target i's A in the arena; its B follows
  ParamArena arena_;
};

}  // namespace distill
