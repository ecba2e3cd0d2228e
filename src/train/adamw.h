// AdamW (Loshchilov & Hutter: decoupled weight decay) with bias correction, over a ParamArena;
// the learning-rate schedule (linear warmup, then cosine or linear decay, or constant); and
// global-norm gradient clipping.
//
// Update for step t (as torch.optim.AdamW):
//   p ← p − lr·wd·p                       (decay: matrices; vectors only if decay_vectors)
//   m ← β1 m + (1−β1) g,   v ← β2 v + (1−β2) g²
//   p ← p − lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + eps)
#pragma once

#include "core/tensor.h"
#include "train/param_arena.h"

#include <cstdint>
#include <string>

namespace distill {

struct AdamWSettings {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;
  bool decay_vectors = false;  // decay norms and biases too (torch's default applies it to all)
};

class AdamW {
public:
  AdamW(const ParamArena& arena, const AdamWSettings& settings);

  // One update of params (the arena's layout) from grads with learning rate lr.
  void step(float* params, const float* grads, float lr);

  int64_t steps() const { return t_; }
  Tensor& m() { return m_; }
  Tensor& v() { return v_; }
  void set_steps(int64_t t) { t_ = t; }

private:
  AdamWSettings s_;
  std::vector<float> decay_;  // per-entry weight decay factor (0 or settings.weight_decay)
  std::vector<ParamEntry> entries_;
  Tensor m_, v_;
  int64_t t_ = 0;
};

enum class LrDecay { Constant, Cosine, Linear };
LrDecay parse_lr_decay(const std::string& name);  // constant | cosine | linear

struct LrSchedule {
  float lr = 3e-4f;
  float min_lr_ratio = 0.1f;  // final lr = lr · ratio (cosine/linear)
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  LrDecay decay = LrDecay::Cosine;
  float at(int64_t step) const;  // step counts from 0
};

// sqrt(Σ g²) over n floats (accumulated in double).
double global_grad_norm(const float* grads, size_t n);
// Scales grads so their global norm is at most max_norm (> 0). Returns the norm before clipping.
double clip_grad_norm(float* grads, size_t n, double max_norm);

}  // namespace distill
