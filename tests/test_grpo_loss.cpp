// The GRPO objective on hand-computed numbers (from the formulas in rl/grpo_loss.h), the
// advantages in every scaling, the clip at both bounds, the k3 KL, and the log-prob gradient
// against finite differences.
#include "kernels/logprobs.h"
#include "rl/grpo_loss.h"
#include "sample/sampler.h"
#include "test_util.h"

#include <cmath>

namespace distill {

TEST(GrpoLoss, Advantages) {
  const std::vector<double> r = {1, 0, 0, 0, /* group 2: no signal */ 1, 1, 1, 1};
  int64_t zero = 0;
  const std::vector<float> g = grpo_advantages(r, 4, AdvantageScaling::Group, &zero, 0.0);
  EXPECT_EQ(zero, 1);
  // group 1: mean 0.25, population std sqrt(0.1875) = 0.4330
  EXPECT_NEAR(g[0], 0.75 / std::sqrt(0.1875), 1e-6);
  EXPECT_NEAR(g[1], -0.25 / std::sqrt(0.1875), 1e-6);
  EXPECT_EQ(g[4], 0.0f);
  const std::vector<float> none = grpo_advantages(r, 4, AdvantageScaling::None, nullptr);
  EXPECT_NEAR(none[0], 0.75, 1e-6);
  EXPECT_NEAR(none[1], -0.25, 1e-6);
  // batch: the std of all 8 rewards (mean 0.625, var 0.234375)
  const std::vector<float> b = grpo_advantages(r, 4, AdvantageScaling::Batch, nullptr, 0.0);
  EXPECT_NEAR(b[0], 0.75 / std::sqrt(0.234375), 1e-6);
  // --negative-scale: negative advantages shrink, positive ones and flat groups stay
  const std::vector<float> half = grpo_advantages(r, 4, AdvantageScaling::None, nullptr, 1e-4, 0.5);
  EXPECT_NEAR(half[0], 0.75, 1e-6);
  EXPECT_NEAR(half[1], -0.125, 1e-6);
  EXPECT_EQ(half[4], 0.0f);
  EXPECT_EQ(grpo_advantages(r, 4, AdvantageScaling::Group, nullptr, 1e-4, 0.0)[2], 0.0f);
}

// The aggregations on a batch of three sequences of 2, 4 and 6 tokens, in micro-batches {0, 1}
// and {2}, capped at 8 new tokens: each token's weight, and what the weights add up to.
TEST(GrpoLoss, TokenWeightsOfEachAggregation) {
  const GrpoBatchShape b{3, 2, 12, 8};
  const int64_t len[3] = {2, 4, 6}, micro[3] = {6, 6, 6};
  const auto weight = [&](GrpoLossType t, int i) { return grpo_token_weight(t, b, len[i], micro[i]); };
  const auto total = [&](GrpoLossType t) {
    double s = 0;
    for (int i = 0; i < 3; ++i) s += double(len[i]) * weight(t, i);
    return s;
  };
  // grpo: each sequence's tokens share 1/N, so short sequences weigh more per token
  EXPECT_DOUBLE_EQ(weight(GrpoLossType::GRPO, 0), 1.0 / 6.0);
  EXPECT_DOUBLE_EQ(weight(GrpoLossType::GRPO, 2), 1.0 / 18.0);
  EXPECT_DOUBLE_EQ(total(GrpoLossType::GRPO), 1.0);
  // dapo: one weight for every token of the batch, 1/T
  EXPECT_DOUBLE_EQ(weight(GrpoLossType::DAPO, 0), 1.0 / 12.0);
  EXPECT_DOUBLE_EQ(weight(GrpoLossType::DAPO, 2), 1.0 / 12.0);
  EXPECT_DOUBLE_EQ(total(GrpoLossType::DAPO), 1.0);
  // bnpo: a token mean per micro-batch (6 tokens each here), averaged over the 2 micro-batches
  EXPECT_DOUBLE_EQ(weight(GrpoLossType::BNPO, 1), 1.0 / 12.0);
  // dr_grpo: a constant 1/(N·L_max), so the weights add up to T/(N·L_max), not 1
  EXPECT_DOUBLE_EQ(weight(GrpoLossType::DrGRPO, 0), 1.0 / 24.0);
  EXPECT_DOUBLE_EQ(weight(GrpoLossType::DrGRPO, 2), 1.0 / 24.0);
  EXPECT_DOUBLE_EQ(total(GrpoLossType::DrGRPO), 12.0 / 24.0);
  // an empty completion or batch never divides by zero
  EXPECT_TRUE(std::isfinite(grpo_token_weight(GrpoLossType::GRPO, GrpoBatchShape{}, 0, 0)));
  EXPECT_TRUE(std::isfinite(grpo_token_weight(GrpoLossType::BNPO, GrpoBatchShape{}, 0, 0)));
}

// The rollout entropy reported per GRPO step: log V for equal logits, the two-outcome entropy by
// hand, and a temperature that sharpens the distribution lowers it.
TEST(GrpoLoss, SoftmaxEntropy) {
  const std::vector<float> flat(10, 0.3f);
  EXPECT_NEAR(softmax_entropy(flat.data(), 10, 1.0f), std::log(10.0), 1e-12);
  const float two[2] = {std::log(0.25f), std::log(0.75f)};
  EXPECT_NEAR(softmax_entropy(two, 2, 1.0f), -(0.25 * std::log(0.25) + 0.75 * std::log(0.75)), 1e-6);
  EXPECT_LT(softmax_entropy(two, 2, 0.5f), softmax_entropy(two, 2, 1.0f));
}

TEST(GrpoLoss, HandComputedTokens) {
  const double lp = std::log(0.5), old = std::log(0.4);  // ratio 1.25
  // A > 0 above 1 + ε_high: the clipped value 1.2 is the minimum, no gradient
  GrpoTokenLoss t = grpo_token_loss(lp, old, 0.0, 1.0, 0.2, 0.2, 0.0);
  EXPECT_NEAR(t.loss, -1.2, 1e-12);
  EXPECT_EQ(t.d_logp, 0.0);
  EXPECT_TRUE(t.clipped);
  // clip-higher: with ε_high = 0.28 the same ratio is inside the range
  t = grpo_token_loss(lp, old, 0.0, 1.0, 0.2, 0.28, 0.0);
  EXPECT_NEAR(t.loss, -1.25, 1e-12);
  EXPECT_NEAR(t.d_logp, -1.25, 1e-12);
  EXPECT_FALSE(t.clipped);
  // A < 0 above the range: the unclipped −1.25 is the minimum and keeps its gradient
  t = grpo_token_loss(lp, old, 0.0, -1.0, 0.2, 0.2, 0.0);
  EXPECT_NEAR(t.loss, 1.25, 1e-12);
  EXPECT_NEAR(t.d_logp, 1.25, 1e-12);
  // A < 0 below 1 − ε_low (ratio 0.5): clipped at 0.8, no gradient
  t = grpo_token_loss(std::log(0.2), std::log(0.4), 0.0, -1.0, 0.2, 0.2, 0.0);
  EXPECT_NEAR(t.loss, 0.8, 1e-12);
  EXPECT_TRUE(t.clipped);
  // A > 0 below the range: unclipped 0.5 A, gradient kept
  t = grpo_token_loss(std::log(0.2), std::log(0.4), 0.0, 2.0, 0.2, 0.2, 0.0);
  EXPECT_NEAR(t.loss, -1.0, 1e-12);
  EXPECT_NEAR(t.d_logp, -1.0, 1e-12);
  // k3 KL with β = 0.1: ref = log 0.45, logp = log 0.5 -> d = log 0.9
  t = grpo_token_loss(lp, lp, std::log(0.45), 0.0, 0.2, 0.2, 0.1);
  const double kl = 0.9 - std::log(0.9) - 1.0;
  EXPECT_NEAR(t.kl, kl, 1e-12);
  EXPECT_NEAR(t.loss, 0.1 * kl, 1e-12);
  EXPECT_NEAR(t.d_logp, 0.1 * (1.0 - 0.9), 1e-12);
  EXPECT_GE(grpo_token_loss(lp, lp, std::log(0.01), 0.0, 0.2, 0.2, 1.0).kl, 0.0);
}

TEST(GrpoLoss, LogProbGradientMatchesFiniteDifferences) {
  std::vector<float> logits = test::random_vector(9, 5, 2.0f);
  const float T = 0.7f;
  std::vector<float> grad(9, 0.0f);
  token_logp_backward(grad.data(), logits.data(), 9, 4, T, 2.0);  // scale 2
  for (size_t i = 0; i < 9; ++i) {
    auto p = logits, m = logits;
    p[i] += 1e-3f, m[i] -= 1e-3f;
    const double fd = 2.0 * (token_logprob(p.data(), 9, 4, T) - token_logprob(m.data(), 9, 4, T)) / 2e-3;
    EXPECT_NEAR(grad[i], fd, 2e-3) << i;
  }
  // log-probs are normalised: Σ exp(logp) = 1
  double total = 0;
  for (int32_t k = 0; k < 9; ++k) total += std::exp(token_logprob(logits.data(), 9, k, T));
  EXPECT_NEAR(total, 1.0, 1e-9);
}

}  // namespace distill
