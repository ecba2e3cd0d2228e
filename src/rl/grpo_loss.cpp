#include "rl/grpo_loss.h"

#include "core/error.h"
#include "sample/sampler.h"

#include <algorithm>
#include <cmath>

namespace distill {

AdvantageScaling parse_advantage_scaling(const std::string& s) {
  if (s == "group") return AdvantageScaling::Group;
  if (s == "batch") return AdvantageScaling::Batch;
  if (s == "none") return AdvantageScaling::None;
  fail("--scale-rewards '{}': use group, batch or none", s);
}

GrpoLossType parse_grpo_loss_type(const std::string& s) {
  if (s == "grpo") return GrpoLossType::GRPO;
  if (s == "bnpo") return GrpoLossType::BNPO;
  if (s == "dapo") return GrpoLossType::DAPO;
  if (s == "dr_grpo") return GrpoLossType::DrGRPO;
  fail("--loss-type '{}': use grpo, bnpo, dapo or dr_grpo", s);
}

std::vector<float> grpo_advantages(const std::vector<double>& r, int64_t group, AdvantageScaling scaling,
                                   int64_t* zero_signal, double eps, double negative_scale) {
  DISTILL_ASSERT(group > 0 && int64_t(r.size()) % group == 0);
  const int64_t n_groups = int64_t(r.size()) / group;
  std::vector<float> a(r.size());
  double batch_mean = 0.0, batch_var = 0.0;
  for (double x : r) batch_mean += x;
  batch_mean /= double(r.size());
  for (double x : r) batch_var += (x - batch_mean) * (x - batch_mean);
  const double batch_std = std::sqrt(batch_var / double(r.size()));
  if (zero_signal) *zero_signal = 0;
  for (int64_t g = 0; g < n_groups; ++g) {
    const double* rg = r.data() + g * group;
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < group; ++i) mean += rg[i];
    mean /= double(group);
    for (int64_t i = 0; i < group; ++i) var += (rg[i] - mean) * (rg[i] - mean);
    const double std = std::sqrt(var / double(group));
    if (zero_signal && var == 0.0) ++*zero_signal;
    const double denom = scaling == AdvantageScaling::Group ? std + eps : scaling == AdvantageScaling::Batch ? batch_std + eps : 1.0;
    // a group without spread has no signal: exactly 0 (also when eps is 0)
    for (int64_t i = 0; i < group; ++i) {
      const double adv = var == 0.0 ? 0.0 : (rg[i] - mean) / denom;
      a[size_t(g * group + i)] = float(adv < 0.0 ? adv * negative_scale : adv);
    }
  }
  return a;
}

double grpo_token_weight(GrpoLossType type, const GrpoBatchShape& b, int64_t seq_tokens, int64_t micro_tokens) {
  const double n = double(std::max<int64_t>(1, b.n_seqs));
  switch (type) {
    case GrpoLossType::GRPO: return 1.0 / (n * double(std::max<int64_t>(1, seq_tokens)));
    case GrpoLossType::BNPO: return 1.0 / (double(std::max<int64_t>(1, micro_tokens)) * double(std::max<int64_t>(1, b.n_micro)));
    case GrpoLossType::DAPO: return 1.0 / double(std::max<int64_t>(1, b.total_tokens));
    case GrpoLossType::DrGRPO: return 1.0 / (n * double(std::max<int64_t>(1, b.max_new_tokens)));
  }
  return 0.0;
}

GrpoTokenLoss grpo_token_loss(double logp, double logp_old, double logp_ref, double A, double clip_low,
                              double clip_high, double beta) {
  GrpoTokenLoss t{};
  const double ratio = std::exp(logp - logp_old);
  const double clipped_ratio = std::clamp(ratio, 1.0 - clip_low, 1.0 + clip_high);
  const double unclipped = ratio * A, clipped = clipped_ratio * A;
  // min(ρA, clip(ρ)A): when the clipped value is the smaller one and differs, the gradient is 0
  if (clipped < unclipped) {
    t.loss = -clipped;
    t.d_logp = 0.0;
    t.clipped = true;
  } else {
    t.loss = -unclipped;
    t.d_logp = -unclipped;  // d(−ρA)/d logp = −ρA
  }
  if (beta != 0.0) {
    const double d = logp_ref - logp;
    t.kl = std::exp(d) - d - 1.0;
    t.loss += beta * t.kl;
    t.d_logp += beta * (1.0 - std::exp(d));  // d KL / d logp = −e^d + 1
  }
  return t;
}

void token_logp_backward(float* d_logits, const float* logits, int64_t n_vocab, int32_t token, float temperature,
                         double scale) {
  const double inv_t = 1.0 / temperature;
  const double lse = token_logprob(logits, n_vocab, token, temperature) - double(logits[token]) * inv_t;  // −log Z
  for (int64_t i = 0; i < n_vocab; ++i)
    d_logits[i] -= float(scale * inv_t * std::exp(double(logits[i]) * inv_t + lse));
  d_logits[token] += float(scale * inv_t);
}

}  // namespace distill
