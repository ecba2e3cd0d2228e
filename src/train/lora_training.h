// LoraTraining: what the training harness trains instead of the whole model when --lora-rank is
// given. The model keeps one f32 arena of merged weights, W = W₀ + s·B A, so the forward and
// backward passes are the full model's, unchanged (one code path); the harness then turns the full
// gradient of each adapted W into the adapter's, which is exact because W is linear in A and B:
//   dA = s · Bᵀ dW   [r, in],     dB = s · dW Aᵀ   [out, r]
// and AdamW, clipping, the MPI all-reduce and the checkpoints see only A and B. Everything else
// (embeddings, norms, biases, the head) is frozen, as in PEFT.
//
// Memory against full fine-tuning: the AdamW moments shrink from 2× the model to 2× the adapters;
// the frozen W₀ of the adapted matrices is kept beside the merged copy. The backward still forms
// the full dW (compute as full fine-tuning, plus two thin products per matrix).
#pragma once

#include "model/lora.h"
#include "train/param_arena.h"

#include <string>
#include <vector>

namespace distill {

class LoraTraining {
public:
  // `model`'s weights are the harness's f32 arena (ParamArena::adopt). A is initialised as PEFT
  // does (uniform ±1/√in, from `seed`) and B to zero, so training starts from the base model.
  LoraTraining(Model& model, const LoraConfig& cfg, uint64_t seed);

  ParamArena& arena() { return arena_; }  // A and B of every target, PEFT-named
  float* grads() { return grads_.data<float>(); }
  const LoraConfig& config() const { return cfg_; }

  // Fills grads() from the full gradients (same layout as the model's weights).
  void project_grads(ModelWeights& full_grads);
  // W = W₀ + s·B A for every target: after each update and after a resume.
  void merge();
  // The adapter in PEFT's layout.
  void write_peft(const std::string& dir) const;
  size_t frozen_base_bytes() const { return base_.nbytes(); }

private:
  const float* a(size_t i) const { return arena_.data() + a_offset_[i]; }
  const float* b(size_t i) const { return arena_.data() + a_offset_[i] + size_t(cfg_.rank * targets_[i].in); }

  const Model& model_;
  LoraConfig cfg_;
  std::vector<LoraTarget> targets_;  // into the model's weights
  std::vector<size_t> a_offset_;     // of target i's A in the arena; its B follows
  std::vector<size_t> base_offset_;  // of target i's W₀ in base_
  ParamArena arena_;
  Tensor grads_;
  Tensor base_;                      // the frozen W₀, concatenated
};

}  // namespace distill
