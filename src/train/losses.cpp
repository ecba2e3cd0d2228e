#include "train/losses.h"

#include "core/error.h"

#include <cmath>

namespace distill {

namespace {

// log(sum(exp(row))) with the max shifted out, in double.
double log_sum_exp(const float* row, int64_t n) {
  float max = row[0];
  for (int64_t i = 1; i < n; ++i) max = std::max(max, row[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(row[i]) - max);
  return double(max) + std::log(sum);
}

int64_t count_targets(const int32_t* targets, int64_t n, int64_t n_vocab) {
  int64_t counted = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] == kIgnoreIndex) continue;
    if (targets[i] < 0 || targets[i] >= n_vocab)
      fail("target {} at row {} is outside the vocabulary [0, {})", targets[i], i, n_vocab);
    ++counted;
  }
  return counted;
}

}  // namespace

double cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n, int64_t n_vocab) {
  const int64_t counted = count_targets(targets, n, n_vocab);
  if (counted == 0) return 0.0;
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] == kIgnoreIndex) continue;
    const float* row = logits + i * n_vocab;
    total += log_sum_exp(row, n_vocab) - row[targets[i]];
  }
  return total / double(counted);
}

void cross_entropy_backward(float* d_logits, const float* logits, const int32_t* targets, int64_t n, int64_t n_vocab) {
  const int64_t counted = count_targets(targets, n, n_vocab);
  for (int64_t i = 0; i < n; ++i) {
    float* d = d_logits + i * n_vocab;
    if (targets[i] == kIgnoreIndex) {
      for (int64_t v = 0; v < n_vocab; ++v) d[v] = 0.0f;
      continue;
    }
    const float* row = logits + i * n_vocab;
    const double lse = log_sum_exp(row, n_vocab);
    const double scale = 1.0 / double(counted);
    for (int64_t v = 0; v < n_vocab; ++v) d[v] = float(std::exp(double(row[v]) - lse) * scale);
    d[targets[i]] -= float(scale);
  }
}

}  // namespace distill
