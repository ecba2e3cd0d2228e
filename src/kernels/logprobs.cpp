#include "kernels/logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace distill {

double log_sum_exp(const float* x, int64_t n, double inv_t) {
  double max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max = std::max(max, double(x[i]) * inv_t);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(x[i]) * inv_t - max);
  return max + std::log(sum);
}

double token_logprob(const float* logits, int64_t n_vocab, int32_t token, float temperature) {
  const double inv_t = 1.0 / double(temperature);
  return double(logits[token]) * inv_t - log_sum_exp(logits, n_vocab, inv_t);
}

double softmax_entropy(const float* logits, int64_t n_vocab, double inv_t, double log_z) {
  double expected = 0.0;  // Σ p_i · x_i / T, with log p_i = x_i / T − log Z
  for (int64_t i = 0; i < n_vocab; ++i) {
    const double z = double(logits[i]) * inv_t;
    expected += std::exp(z - log_z) * z;
  }
  return log_z - expected;
}

double softmax_entropy(const float* logits, int64_t n_vocab, float temperature) {
  const double inv_t = 1.0 / double(temperature);
  return softmax_entropy(logits, n_vocab, inv_t, log_sum_exp(logits, n_vocab, inv_t));
}

void top_k_logprobs(const float* logits, int64_t n_vocab, int k, int32_t* ids, float* logp) {
  thread_local std::vector<int32_t> idx;
  idx.resize(size_t(n_vocab));
  std::iota(idx.begin(), idx.end(), 0);
  const int64_t kk = std::min<int64_t>(k, n_vocab);
  auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(), better);
  const double lse = log_sum_exp(logits, n_vocab);
  for (int64_t i = 0; i < k; ++i) {
    ids[i] = i < kk ? idx[size_t(i)] : -1;
    logp[i] = i < kk ? float(double(logits[idx[size_t(i)]]) - lse) : -INFINITY;
  }
}

}  // namespace distill
