#include "train/losses.h"

#include "kernels/logprobs.h"  // log_sum_exp

#include "core/error.h"
#include "kernels/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace distill {

namespace {

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
#pragma omp parallel for reduction(+ : total) schedule(static) if (n * n_vocab > 65536)
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] == kIgnoreIndex) continue;
    const float* row = logits + i * n_vocab;
    total += log_sum_exp(row, n_vocab) - row[targets[i]];
  }
  return total / double(counted);
}

double cross_entropy_backward(float* d_logits, const float* logits, const int32_t* targets, int64_t n, int64_t n_vocab) {
  const int64_t counted = count_targets(targets, n, n_vocab);
  const float scale = counted ? 1.0f / float(counted) : 0.0f;
  // softmax with the vectorised kernel (rows in parallel), then subtract the one-hot target
  if (d_logits != logits) std::memcpy(d_logits, logits, size_t(n * n_vocab) * sizeof(float));
  softmax_forward(d_logits, n, n_vocab);
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static) if (n * n_vocab > 65536)
  for (int64_t i = 0; i < n; ++i) {
    float* d = d_logits + i * n_vocab;
    if (targets[i] == kIgnoreIndex) {
      std::memset(d, 0, size_t(n_vocab) * sizeof(float));
      continue;
    }
    total -= std::log(std::max(double(d[targets[i]]), 1e-45));
    d[targets[i]] -= 1.0f;
    for (int64_t v = 0; v < n_vocab; ++v) d[v] *= scale;
  }
  return counted ? total / double(counted) : 0.0;
}

}  // namespace distill
