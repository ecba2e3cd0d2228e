#include "train/adamw.h"

#include "core/error.h"

#include <cmath>

namespace distill {

AdamW::AdamW(const ParamArena& arena, const AdamWSettings& settings)
    : s_(settings), entries_(arena.entries()), m_(arena.new_buffer()), v_(arena.new_buffer()) {
  for (const ParamEntry& e : entries_) decay_.push_back(e.is_matrix || s_.decay_vectors ? s_.weight_decay : 0.0f);
}

void AdamW::step(float* params, const float* grads, float lr) {
  ++t_;
  const double bc1 = 1.0 - std::pow(double(s_.beta1), double(t_));
  const double bc2 = 1.0 - std::pow(double(s_.beta2), double(t_));
  const float step_size = float(lr / bc1);
  const float inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2));
  float* m = m_.data<float>();
  float* v = v_.data<float>();
  for (size_t e = 0; e < entries_.size(); ++e) {
    const float keep = 1.0f - lr * decay_[e];  // decoupled decay, applied before the Adam step
    const size_t begin = entries_[e].offset, end = begin + entries_[e].numel;
#pragma omp parallel for schedule(static) if (end - begin > 65536)
    for (size_t i = begin; i < end; ++i) {
      const float g = grads[i];
      m[i] = s_.beta1 * m[i] + (1.0f - s_.beta1) * g;
      v[i] = s_.beta2 * v[i] + (1.0f - s_.beta2) * g * g;
      const float denom = std::sqrt(v[i]) * inv_sqrt_bc2 + s_.eps;
      params[i] = params[i] * keep - step_size * m[i] / denom;
    }
  }
}

LrDecay parse_lr_decay(const std::string& name) {
  if (name == "constant") return LrDecay::Constant;
  if (name == "cosine") return LrDecay::Cosine;
  if (name == "linear") return LrDecay::Linear;
  fail("unknown learning-rate schedule '{}' (known: constant, cosine, linear)", name);
}

float LrSchedule::at(int64_t step) const {
  if (step < warmup_steps) return lr * float(step + 1) / float(warmup_steps);
  if (decay == LrDecay::Constant) return lr;
  const int64_t span = std::max<int64_t>(1, total_steps - warmup_steps);
  const double progress = std::min(1.0, double(step - warmup_steps) / double(span));
  const double min_lr = double(lr) * min_lr_ratio;
  const double shape = decay == LrDecay::Cosine ? 0.5 * (1.0 + std::cos(M_PI * progress)) : 1.0 - progress;
  return float(min_lr + (double(lr) - min_lr) * shape);
}

double global_grad_norm(const float* grads, size_t n) {
  double ss = 0.0;
#pragma omp parallel for reduction(+ : ss) schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) ss += double(grads[i]) * grads[i];
  return std::sqrt(ss);
}

double clip_grad_norm(float* grads, size_t n, double max_norm) {
  const double norm = global_grad_norm(grads, n);
  if (norm > max_norm && norm > 0) {
    const float s = float(max_norm / norm);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; ++i) grads[i] *= s;
  }
  return norm;
}

}  // namespace distill
