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
  // With `sharded` (ZeRO-1, under mpirun), this rank keeps the moments of its shard of the
  // parameters only (DataParallel::shard) and updates only those; the caller all-gathers the
  // parameters after each step. In one process the shard is everything (sharded() is false).
  AdamW(const ParamArena& arena, const AdamWSettings& settings, bool sharded = false);

  // One update of params (the arena's layout; this rank's shard when sharded) from grads with
  // learning rate lr.
  void step(float* params, const float* grads, float lr);

  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }
  bool sharded() const { return begin_ != 0 || end_ != n_; }
  size_t state_bytes() const { return m_.nbytes() + v_.nbytes(); }

  // The whole moments in the arena's layout (what checkpoints hold, whatever the sharding): a
  // collective when sharded — every rank calls it, the leader gets them (others: empty tensors).
  struct Moments {
    Tensor m, v;
  };
  Moments full_moments();
  // Takes this rank's part of whole moments [n] (read from a checkpoint).
  void load_moments(const float* m, const float* v, int64_t n);

private:
  AdamWSettings s_;
  std::vector<float> decay_;  // per-entry weight decay factor (0 or settings.weight_decay)
  std::vector<ParamEntry> entries_;
  int64_t n_ = 0, begin_ = 0, end_ = 0;  // parameters, and the range whose moments this rank keeps
  Tensor m_, v_;                         // [end_ - begin_]
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

// Σ g² over n floats (accumulated in double).
double sum_of_squares(const float* grads, size_t n);
// Scales grads so their global norm is at most max_norm (> 0). Returns the norm before clipping.
double clip_grad_norm(float* grads, size_t n, double max_norm);

}  // namespace distill
