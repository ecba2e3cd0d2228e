// Distillation losses: the top-k conventions against the full-logit loss where they must agree,
// every divergence's gradient against finite differences in every mode, and the options.
#include "train/kd_loss.h"
#include "core/error.h"
#include "test_util.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace distill {
using test::random_vector;

namespace {

constexpr int64_t kRows = 3, kVocab = 11;

// Teacher top-k (ids sorted by probability, log-probs at T = 1) from full teacher logits.
void top_k(const std::vector<float>& teacher, int64_t k, std::vector<int32_t>& ids, std::vector<float>& lp) {
  ids.assign(size_t(kRows * k), 0);
  lp.assign(size_t(kRows * k), 0.0f);
  for (int64_t r = 0; r < kRows; ++r) {
    const float* row = teacher.data() + r * kVocab;
    double max = *std::max_element(row, row + kVocab), sum = 0.0;
    for (int64_t j = 0; j < kVocab; ++j) sum += std::exp(double(row[j]) - max);
    std::vector<int32_t> order(static_cast<size_t>(kVocab));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
    for (int64_t i = 0; i < k; ++i) {
      ids[size_t(r * k + i)] = order[size_t(i)];
      lp[size_t(r * k + i)] = float(double(row[order[size_t(i)]]) - max - std::log(sum));
    }
  }
}

const Divergence kAll[] = {Divergence::ForwardKL, Divergence::ReverseKL, Divergence::JSD, Divergence::TVD};

}  // namespace

TEST(KdLoss, TopKWithEveryIdEqualsFullLogits) {
  auto s = random_vector(size_t(kRows * kVocab), 1, 2.0f), t = random_vector(size_t(kRows * kVocab), 2, 2.0f);
  std::vector<int32_t> ids_all, ids_most;
  std::vector<float> lp_all, lp_most;
  top_k(t, kVocab, ids_all, lp_all);
  top_k(t, kVocab - 1, ids_most, lp_most);
  for (Divergence d : kAll) {
    KdSettings ks{d, 1.7f, 0.3f, false};
    std::vector<float> g_full(s.size(), 0.0f), g_renorm(s.size(), 0.0f), g_tail(s.size(), 0.0f);
    const double full = kd_loss_full(s.data(), kVocab, t.data(), kVocab, nullptr, kRows, ks, g_full.data(), 1.0f);
    // renormalising over all ids changes nothing
    const double renorm = kd_loss_topk(s.data(), kVocab, ids_all.data(), lp_all.data(), kVocab, nullptr, kRows, ks,
                                       TopKMode::Renormalize, g_renorm.data(), 1.0f);
    // with k = V-1 the tail bucket is exactly the one remaining token
    const double tail = kd_loss_topk(s.data(), kVocab, ids_most.data(), lp_most.data(), kVocab - 1, nullptr, kRows,
                                     ks, TopKMode::Tail, g_tail.data(), 1.0f);
    EXPECT_NEAR(renorm, full, 1e-5) << int(d);
    EXPECT_NEAR(tail, full, 1e-5) << int(d);
    EXPECT_LT(test::max_abs_diff(g_renorm.data(), g_full.data(), s.size()), 1e-5f) << int(d);
    EXPECT_LT(test::max_abs_diff(g_tail.data(), g_full.data(), s.size()), 1e-5f) << int(d);
    EXPECT_GT(full, 0.0);
  }
}

TEST(KdLoss, GradientsMatchFiniteDifferencesInEveryMode) {
  auto s = random_vector(size_t(kRows * kVocab), 3, 2.0f), t = random_vector(size_t(kRows * kVocab), 4, 2.0f);
  std::vector<int32_t> ids;
  std::vector<float> lp;
  top_k(t, 4, ids, lp);
  const uint8_t mask[kRows] = {1, 0, 1};
  for (Divergence d : kAll) {
    for (int mode = 0; mode < 3; ++mode) {  // 0 full, 1 renormalize, 2 tail
      KdSettings ks{d, 2.0f, 0.3f, true};
      auto loss = [&](const std::vector<float>& logits, float* grad) {
        if (mode == 0) return kd_loss_full(logits.data(), kVocab, t.data(), kVocab, mask, kRows, ks, grad, 1.0f);
        return kd_loss_topk(logits.data(), kVocab, ids.data(), lp.data(), 4, mask, kRows, ks,
                            mode == 1 ? TopKMode::Renormalize : TopKMode::Tail, grad, 1.0f);
      };
      std::vector<float> grad(s.size(), 0.0f);
      loss(s, grad.data());
      double max_err = 0.0, max_g = 0.0;
      for (size_t i = 0; i < s.size(); ++i) {
        auto p = s, m = s;
        p[i] += 1e-3f;
        m[i] -= 1e-3f;
        const double fd = (loss(p, nullptr) - loss(m, nullptr)) / 2e-3;
        max_err = std::max(max_err, std::fabs(fd - grad[i]));
        max_g = std::max(max_g, std::fabs(fd));
      }
      EXPECT_GT(max_g, 1e-3) << "divergence " << int(d) << " mode " << mode;
      EXPECT_LT(max_err, 2e-3 * std::max(1.0, max_g)) << "divergence " << int(d) << " mode " << mode;
      for (int64_t j = 0; j < kVocab; ++j) EXPECT_EQ(grad[size_t(kVocab + j)], 0.0f) << "masked row has no gradient";
    }
  }
}

// ULD: Σ_i |q_(i) − p_(i)| over the sorted top-k; its gradient against central differences (the
// sort is constant near a point without ties), its value by hand, masked rows untouched.
TEST(KdLoss, UldComparesSortedProbabilitiesAndItsGradientMatchesFiniteDifferences) {
  auto s = random_vector(size_t(kRows * kVocab), 5, 2.0f), t = random_vector(size_t(kRows * kVocab), 6, 2.0f);
  std::vector<int32_t> ids;
  std::vector<float> lp;
  top_k(t, 4, ids, lp);
  const uint8_t mask[kRows] = {1, 0, 1};
  // by hand: the student's sorted probabilities against the teacher's
  double want = 0;
  for (int64_t r : {0, 2}) {
    std::vector<double> q(kVocab);
    double z = 0;
    for (int64_t j = 0; j < kVocab; ++j) z += std::exp(double(s[size_t(r * kVocab + j)]));
    for (int64_t j = 0; j < kVocab; ++j) q[size_t(j)] = std::exp(double(s[size_t(r * kVocab + j)])) / z;
    std::sort(q.begin(), q.end(), std::greater<double>());
    for (int64_t i = 0; i < 4; ++i) want += std::fabs(q[size_t(i)] - std::exp(double(lp[size_t(r * 4 + i)])));
  }
  want /= 2;
  std::vector<float> grad(s.size(), 0.0f);
  EXPECT_NEAR(uld_loss_topk(s.data(), kVocab, lp.data(), 4, mask, kRows, grad.data(), 1.0f), want, 1e-6);
  // the teacher's order does not matter: reversed, the same loss
  std::vector<float> reversed = lp;
  for (int64_t r = 0; r < kRows; ++r) std::reverse(reversed.begin() + r * 4, reversed.begin() + r * 4 + 4);
  EXPECT_NEAR(uld_loss_topk(s.data(), kVocab, reversed.data(), 4, mask, kRows, nullptr, 1.0f), want, 1e-6);
  double max_err = 0.0, max_g = 0.0;
  for (size_t i = 0; i < s.size(); ++i) {
    auto p = s, m = s;
    p[i] += 1e-3f;
    m[i] -= 1e-3f;
    const double fd = (uld_loss_topk(p.data(), kVocab, lp.data(), 4, mask, kRows, nullptr, 1.0f) -
                       uld_loss_topk(m.data(), kVocab, lp.data(), 4, mask, kRows, nullptr, 1.0f)) / 2e-3;
    max_err = std::max(max_err, std::fabs(fd - grad[i]));
    max_g = std::max(max_g, std::fabs(fd));
  }
  EXPECT_GT(max_g, 1e-3);
  EXPECT_LT(max_err, 2e-3 * std::max(1.0, max_g));
  for (int64_t j = 0; j < kVocab; ++j) EXPECT_EQ(grad[size_t(kVocab + j)], 0.0f) << "masked row has no gradient";
  // the student already shaped like the teacher (its logits = the teacher's): no loss
  EXPECT_NEAR(uld_loss_topk(t.data(), kVocab, lp.data(), 4, nullptr, kRows, nullptr, 1.0f), 0.0, 1e-5);
}

TEST(KdLoss, OptionsAndEdgeCases) {
  auto s = random_vector(size_t(kRows * kVocab), 5), t = random_vector(size_t(kRows * kVocab), 6);
  auto full = [&](KdSettings ks) { return kd_loss_full(s.data(), kVocab, t.data(), kVocab, nullptr, kRows, ks, nullptr, 1.0f); };
  const double fkl = full({Divergence::ForwardKL, 2.0f, 0.5f, false});
  const double rkl = full({Divergence::ReverseKL, 2.0f, 0.5f, false});
  EXPECT_NEAR(full({Divergence::ForwardKL, 2.0f, 0.5f, true}), 4.0 * fkl, 1e-9);  // T² scale
  EXPECT_NEAR(full({Divergence::JSD, 2.0f, 0.0f, false}), fkl, 1e-12);           // β = 0 is forward KL (GKD)
  EXPECT_NEAR(full({Divergence::JSD, 2.0f, 1.0f, false}), rkl, 1e-12);           // β = 1 is reverse KL
  const double jsd = full({Divergence::JSD, 2.0f, 0.5f, false});
  EXPECT_GT(jsd, 0.0);
  EXPECT_LT(jsd, std::log(2.0));  // the symmetric JSD is bounded by ln 2
  // identical distributions: every divergence is 0
  for (Divergence d : kAll)
    EXPECT_NEAR(kd_loss_full(s.data(), kVocab, s.data(), kVocab, nullptr, kRows, {d, 1.0f, 0.5f, false}, nullptr, 1.0f), 0.0, 1e-9);
  // a teacher padded with extra vocabulary rows: the shared ids are used
  std::vector<float> t_padded(size_t(kRows * (kVocab + 5)), -3.0f);
  for (int64_t r = 0; r < kRows; ++r)
    std::copy(t.begin() + r * kVocab, t.begin() + (r + 1) * kVocab, t_padded.begin() + r * (kVocab + 5));
  EXPECT_NEAR(kd_loss_full(s.data(), kVocab, t_padded.data(), kVocab + 5, nullptr, kRows, {}, nullptr, 1.0f),
              kd_loss_full(s.data(), kVocab, t.data(), kVocab, nullptr, kRows, {}, nullptr, 1.0f), 1e-12);
  // an id outside the student's vocabulary is an error, not a crash
  const int32_t bad_ids[kRows] = {0, 11, 2};
  const float lps[kRows] = {-0.1f, -0.2f, -0.3f};
  EXPECT_THROW(kd_loss_topk(s.data(), kVocab, bad_ids, lps, 1, nullptr, kRows, {}, TopKMode::Tail, nullptr, 1.0f), Error);
  EXPECT_THROW(parse_divergence("kl"), Error);
  EXPECT_EQ(parse_topk_mode("tail"), TopKMode::Tail);
}

}  // namespace distill
