#include "sample/sampler.h"

#include "kernels/kernels.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace distill {

Sampler::Sampler(const SamplerSettings& s) : s_(s), rng_(s.seed) {}

int32_t Sampler::sample(const float* logits, int64_t n_vocab, const std::vector<int32_t>& history) {
  work_.assign(logits, logits + n_vocab);
  // 0. bias (ids were checked against the vocabulary by whoever set them)
  for (const auto& [id, bias] : s_.logit_bias)
    if (id >= 0 && id < n_vocab) work_[size_t(id)] += bias;
  // 1. penalties over the recent window
  if (s_.repetition_penalty != 1.0f || s_.presence_penalty != 0.0f || s_.frequency_penalty != 0.0f) {
    std::unordered_map<int32_t, int> counts;
    const size_t from = history.size() > size_t(s_.penalty_last_n) ? history.size() - size_t(s_.penalty_last_n) : 0;
    for (size_t i = from; i < history.size(); ++i)
      if (history[i] >= 0 && history[i] < n_vocab) ++counts[history[i]];
    for (const auto& [id, n] : counts) {
      float& l = work_[size_t(id)];
      l = l > 0 ? l / s_.repetition_penalty : l * s_.repetition_penalty;
      l -= s_.presence_penalty + s_.frequency_penalty * float(n);
    }
  }
  // 2. greedy
  if (s_.temperature <= 0.0f) {
    const int32_t best = int32_t(std::max_element(work_.begin(), work_.end()) - work_.begin());
    cand_.assign(1, {best, 1.0f});
    return best;
  }
  // Plain temperature sampling (what RL rollouts use): one pass over the vocabulary, no sort.
  if (s_.top_k <= 0 && s_.top_p >= 1.0f && s_.min_p <= 0.0f) {
    const float inv_t = 1.0f / s_.temperature;
    for (float& l : work_) l *= inv_t;
    softmax_forward(work_.data(), 1, n_vocab);  // the vectorised kernel: a scalar exp per token of
                                                // the vocabulary cost as much as a small model's step
    double sum = 0.0;
    for (const float p : work_) sum += p;
    double u = double(rng_.uniform()) * sum;
    int32_t pick = int32_t(n_vocab - 1);
    for (int64_t i = 0; i < n_vocab; ++i) {
      u -= work_[size_t(i)];
      if (u <= 0.0) {
        pick = int32_t(i);
        break;
      }
    }
    cand_.assign(1, {pick, float(work_[size_t(pick)] / sum)});
    return pick;
  }
  // 3. top-k (a partial sort: only k candidates are ordered)
  cand_.resize(size_t(n_vocab));
  for (int64_t i = 0; i < n_vocab; ++i) cand_[size_t(i)] = {int32_t(i), work_[size_t(i)] / s_.temperature};
  auto by_logit = [](const auto& a, const auto& b) { return a.second > b.second || (a.second == b.second && a.first < b.first); };
  const size_t k = s_.top_k > 0 ? std::min<size_t>(size_t(s_.top_k), cand_.size()) : cand_.size();
  std::partial_sort(cand_.begin(), cand_.begin() + int64_t(k), cand_.end(), by_logit);
  cand_.resize(k);
  // softmax over the kept candidates
  const float max = cand_[0].second;
  double sum = 0.0;
  for (auto& c : cand_) sum += (c.second = std::exp(c.second - max));
  for (auto& c : cand_) c.second = float(c.second / sum);
  // top-p
  if (s_.top_p < 1.0f) {
    double mass = 0.0;
    size_t keep = 0;
    while (keep < cand_.size() && mass < s_.top_p) mass += cand_[keep++].second;
    cand_.resize(std::max<size_t>(1, keep));
  }
  // min-p
  if (s_.min_p > 0.0f) {
    const float cut = s_.min_p * cand_[0].second;
    size_t keep = 1;
    while (keep < cand_.size() && cand_[keep].second >= cut) ++keep;
    cand_.resize(keep);
  }
  // 4. draw
  double total = 0.0;
  for (const auto& c : cand_) total += c.second;
  double u = double(rng_.uniform()) * total;
  for (const auto& c : cand_) {
    u -= c.second;
    if (u <= 0.0) return c.first;
  }
  return cand_.back().first;
}

}  // namespace distill
