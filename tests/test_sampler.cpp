// Sampler statistics: greedy, top-k / top-p / min-p cuts, penalties, and seeded determinism.
#include "sample/sampler.h"
#include "test_util.h"

#include <cmath>
#include <map>

namespace distill {

namespace {
// logits whose softmax is exactly `probs`
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(float(std::log(p)));
  return l;
}
std::map<int32_t, int> histogram(Sampler& s, const std::vector<float>& logits, int n) {
  std::map<int32_t, int> h;
  for (int i = 0; i < n; ++i) ++h[s.sample(logits.data(), int64_t(logits.size()), {})];
  return h;
}
SamplerSettings plain(uint64_t seed) {
  SamplerSettings s;
  s.temperature = 1.0f, s.top_k = 0, s.top_p = 1.0f, s.min_p = 0.0f, s.seed = seed;
  return s;
}
}  // namespace

TEST(Sampler, GreedyPicksTheArgmax) {
  SamplerSettings s = plain(1);
  s.temperature = 0;
  Sampler sm(s);
  const std::vector<float> l = {0.1f, 3.0f, -1.0f, 2.9f};
  EXPECT_EQ(sm.sample(l.data(), 4, {}), 1);
}

TEST(Sampler, DrawsFollowTheDistribution) {
  Sampler sm(plain(7));
  const auto h = histogram(sm, logits_of({0.5, 0.3, 0.2}), 20000);
  EXPECT_NEAR(h.at(0) / 20000.0, 0.5, 0.015);
  EXPECT_NEAR(h.at(1) / 20000.0, 0.3, 0.015);
  EXPECT_NEAR(h.at(2) / 20000.0, 0.2, 0.015);
}

TEST(Sampler, TopPKeepsTheSmallestSetWithEnoughMass) {
  SamplerSettings s = plain(3);
  s.top_p = 0.75f;  // 0.5 + 0.3 ≥ 0.75: {0, 1} kept, renormalised to 0.625 / 0.375
  Sampler sm(s);
  const auto h = histogram(sm, logits_of({0.5, 0.3, 0.15, 0.05}), 20000);
  EXPECT_EQ(h.count(2) + h.count(3), 0u);
  EXPECT_NEAR(h.at(0) / 20000.0, 0.625, 0.015);
}

TEST(Sampler, MinPAndTopKCut) {
  SamplerSettings s = plain(4);
  s.min_p = 0.3f;  // cut = 0.3 × 0.5 = 0.15: tokens with p < 0.15 go
  Sampler sm(s);
  const auto h = histogram(sm, logits_of({0.5, 0.3, 0.12, 0.08}), 5000);
  EXPECT_EQ(h.count(2) + h.count(3), 0u);
  EXPECT_GT(h.at(1), 0);
  SamplerSettings k = plain(5);
  k.top_k = 1;
  Sampler top1(k);
  const auto h1 = histogram(top1, logits_of({0.2, 0.5, 0.3}), 100);
  EXPECT_EQ(h1.at(1), 100);
}

TEST(Sampler, TemperatureSharpens) {
  SamplerSettings s = plain(6);
  s.temperature = 0.5f;  // p ∝ p^2: 0.6/0.4 -> 0.692/0.308
  Sampler sm(s);
  const auto h = histogram(sm, logits_of({0.6, 0.4}), 20000);
  EXPECT_NEAR(h.at(0) / 20000.0, 0.36 / 0.52, 0.015);
}

TEST(Sampler, PenaltiesDiscourageRepeats) {
  SamplerSettings s = plain(8);
  s.temperature = 0;
  s.repetition_penalty = 2.0f;  // 2.0 -> 1.0 for the repeated token, below 1.5
  Sampler sm(s);
  const std::vector<float> l = {2.0f, 1.5f};
  EXPECT_EQ(sm.sample(l.data(), 2, {}), 0);
  EXPECT_EQ(sm.sample(l.data(), 2, {0}), 1);
  SamplerSettings f = plain(9);
  f.temperature = 0, f.frequency_penalty = 0.3f;
  Sampler fs(f);
  EXPECT_EQ(fs.sample(l.data(), 2, {0}), 0);     // 2.0 - 0.3 = 1.7 > 1.5
  EXPECT_EQ(fs.sample(l.data(), 2, {0, 0}), 1);  // 2.0 - 0.6 = 1.4 < 1.5
}

TEST(Sampler, SameSeedSameTokens) {
  const std::vector<float> l = test::random_vector(1000, 11, 2.0f);
  SamplerSettings s;  // defaults: temperature, top-k, top-p, min-p all active
  s.seed = 42;
  Sampler a(s), b(s);
  s.seed = 43;
  Sampler c(s);
  std::vector<int32_t> ta, tb, tc;
  for (int i = 0; i < 50; ++i) {
    ta.push_back(a.sample(l.data(), 1000, ta));
    tb.push_back(b.sample(l.data(), 1000, tb));
    tc.push_back(c.sample(l.data(), 1000, tc));
  }
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
}

}  // namespace distill

namespace distill {

// OpenAI's logit_bias: -100 bans a token (greedy takes the next best), +100 forces one.
TEST(Sampler, LogitBiasBansAndForces) {
  const std::vector<float> logits = {0.5f, 3.0f, 2.5f, -1.0f};
  SamplerSettings s;
  s.temperature = 0;
  EXPECT_EQ(Sampler(s).sample(logits.data(), 4, {}), 1);
  s.logit_bias = {{1, -100.0f}};
  EXPECT_EQ(Sampler(s).sample(logits.data(), 4, {}), 2);
  s.logit_bias = {{3, 100.0f}};
  EXPECT_EQ(Sampler(s).sample(logits.data(), 4, {}), 3);
  s.temperature = 1.0f, s.top_k = 0, s.top_p = 1.0f, s.min_p = 0.0f;
  Sampler sampled(s);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(sampled.sample(logits.data(), 4, {}), 3) << "a +100 bias leaves no mass elsewhere";
  s.logit_bias = {{7, 100.0f}};  // outside the vocabulary: ignored here (the server refuses it)
  EXPECT_LT(Sampler(s).sample(logits.data(), 4, {}), 4);
}

}  // namespace distill
