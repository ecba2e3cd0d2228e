#include "train/adamw.h"

#include "core/data_parallel.h"
#include "core/error.h"

#include <algorithm>
#include <cmath>
#include <tuple>

namespace distill {

AdamW::AdamW(const ParamArena& arena, const AdamWSettings& settings, bool sharded)
    : s_(settings), entries_(arena.entries()), n_(int64_t(arena.size())), end_(n_) {
  if (sharded) std::tie(begin_, end_) = DataParallel::shard(n_, DataParallel::rank());
  m_ = Tensor::zeros(DType::F32, {end_ - begin_});
  v_ = Tensor::zeros(DType::F32, {end_ - begin_});
  for (const ParamEntry& e : entries_) decay_.push_back(e.is_matrix || s_.decay_vectors ? s_.weight_decay : 0.0f);
}

AdamW::Moments AdamW::full_moments() {
  if (!sharded()) return {m_, v_};  // (shared views, no copy)
  Moments full;
  if (DataParallel::leader()) full = {Tensor::zeros(DType::F32, {n_}), Tensor::zeros(DType::F32, {n_})};
  DataParallel::gather_to_leader(m_.data<float>(), full.m.defined() ? full.m.data<float>() : nullptr, n_);
  DataParallel::gather_to_leader(v_.data<float>(), full.v.defined() ? full.v.data<float>() : nullptr, n_);
  return full;
}

void AdamW::load_moments(const float* m, const float* v, int64_t n) {
  DISTILL_ASSERT_MSG(n == n_, "moments of {} parameters for an optimizer of {}", n, n_);
  std::copy(m + begin_, m + end_, m_.data<float>());
  std::copy(v + begin_, v + end_, v_.data<float>());
}

void AdamW::step(float* params, const float* grads, float lr) {
  ++t_;
  const double bc1 = 1.0 - std::pow(double(s_.beta1), double(t_));
  const double bc2 = 1.0 - std::pow(double(s_.beta2), double(t_));
  const float step_size = float(lr / bc1);
  const float inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2));
  float* m = m_.data<float>();  // of parameters begin_ .. end_
  float* v = v_.data<float>();
  for (size_t e = 0; e < entries_.size(); ++e) {
    const float keep = 1.0f - lr * decay_[e];  // decoupled decay, applied before the Adam step
    const int64_t begin = std::max(int64_t(entries_[e].offset), begin_);
    const int64_t end = std::min(int64_t(entries_[e].offset + entries_[e].numel), end_);
#pragma omp parallel for schedule(static) if (end - begin > 65536)
    for (int64_t i = begin; i < end; ++i) {
      const float g = grads[i];
      float& mi = m[i - begin_];
      float& vi = v[i - begin_];
      mi = s_.beta1 * mi + (1.0f - s_.beta1) * g;
      vi = s_.beta2 * vi + (1.0f - s_.beta2) * g * g;
      const float denom = std::sqrt(vi) * inv_sqrt_bc2 + s_.eps;
      params[i] = params[i] * keep - step_size * mi / denom;
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

double sum_of_squares(const float* grads, size_t n) {
  double ss = 0.0;
#pragma omp parallel for reduction(+ : ss) schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) ss += double(grads[i]) * grads[i];
  return ss;
}

double clip_grad_norm(float* grads, size_t n, double max_norm) {
  const double norm = std::sqrt(sum_of_squares(grads, n));
  if (norm > max_norm && norm > 0) {
    const float s = float(max_norm / norm);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; ++i) grads[i] *= s;
  }
  return norm;
}

}  // namespace distill
