// The GRPO objective (DeepSeekMath / DeepSeek-R1), with the variants the field uses.
//
// Advantages, per group of G completions of one prompt with rewards r:
//   group  (default)  A = (r − mean_group) / (std_group + eps)
//   batch             A = (r − mean_group) / (std_batch + eps)
//   none  (Dr. GRPO)  A = r − mean_group
// (std is the population standard deviation.) A group whose rewards are all equal has A = 0:
// it carries no signal.
//
// Per completion token t, with ratio ρ = exp(logp − logp_old) under the current policy:
//   L_t = −min(ρ A, clip(ρ, 1 − ε_low, 1 + ε_high) A) + β · KL_t,
//   KL_t = exp(ref − logp) − (ref − logp) − 1       (the k3 estimator of KL(π‖π_ref), ≥ 0)
// and the batch loss aggregates the L_t of all completion tokens:
//   grpo     (1/N) Σ_i (1/|o_i|) Σ_t L_t            mean over tokens of each sequence, then over sequences
//   bnpo     (1/M) Σ_m (1/T_m) Σ_{t in micro-batch m} L_t     token mean per micro-batch, averaged
//   dapo     (1/T) Σ_i Σ_t L_t                       token mean over the whole batch
//   dr_grpo  (1/(N · L_max)) Σ_i Σ_t L_t             constant normaliser: no length bias
// with N sequences, T active tokens, M micro-batches, L_max the maximum completion length.
// logp are log-probabilities of the sampled tokens under softmax(logits / temperature).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace distill {

enum class AdvantageScaling { Group, Batch, None };
enum class GrpoLossType { GRPO, BNPO, DAPO, DrGRPO };
AdvantageScaling parse_advantage_scaling(const std::string& s);  // group | batch | none
GrpoLossType parse_grpo_loss_type(const std::string& s);          // grpo | bnpo | dapo | dr_grpo

// rewards [n_groups × group] in group order -> advantages; counts groups without signal.
// `negative_scale` multiplies the negative advantages (1: GRPO; 0: only the rollouts better than
// their group's mean teach, as rejection-sampling fine-tuning).
std::vector<float> grpo_advantages(const std::vector<double>& rewards, int64_t group, AdvantageScaling scaling,
                                   int64_t* zero_signal_groups, double eps = 1e-4, double negative_scale = 1.0);

struct GrpoTokenLoss {
  double loss;     // L_t
  double d_logp;   // d L_t / d logp
  bool clipped;    // the clipped branch was taken (no gradient from the surrogate)
  double kl;       // KL_t (0 when beta = 0)
};

// The weight of each token of one sequence in the batch loss, by the aggregation chosen (above):
// `seq_tokens` the sequence's length, `micro_tokens` the active tokens of its micro-batch,
// `n_micro` micro-batches, `total_tokens` the batch's active tokens, `n_seqs` sequences,
// `max_new_tokens` the length cap. Every token of a sequence has the same weight.
struct GrpoBatchShape {
  int64_t n_seqs = 0, n_micro = 1, total_tokens = 0, max_new_tokens = 0;
};
double grpo_token_weight(GrpoLossType type, const GrpoBatchShape& batch, int64_t seq_tokens, int64_t micro_tokens);

// One completion token. logp_ref is ignored when beta == 0.
GrpoTokenLoss grpo_token_loss(double logp, double logp_old, double logp_ref, double advantage, double clip_low,
                              double clip_high, double beta);

// Adds scale · d logp / d logits = scale · (onehot − softmax(logits/T)) / T, where
// logp = token_logprob(logits, n_vocab, token, T) (sample/sampler.h).
void token_logp_backward(float* d_logits, const float* logits, int64_t n_vocab, int32_t token, float temperature,
                         double scale);

}  // namespace distill
