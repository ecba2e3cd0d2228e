// Log-probabilities from a row of logits, written once for the sampler, the losses, the teacher
// and the server: log-sum-exp (accumulated in double), one token's log-probability at a
// temperature, and the top-k alternatives.
#pragma once

#include <cstdint>

namespace distill {

// log Σ_i exp(x[i] · inv_t), accumulated in double around the maximum.
double log_sum_exp(const float* x, int64_t n, double inv_t = 1.0);

// log softmax(logits / temperature)[token].
double token_logprob(const float* logits, int64_t n_vocab, int32_t token, float temperature);

// Entropy (nats) of softmax(logits / temperature): log Z − Σ p_i · x_i / T. The second form takes
// log Z = log_sum_exp(logits, n_vocab, 1/T) from a caller that already has it.
double softmax_entropy(const float* logits, int64_t n_vocab, float temperature);
double softmax_entropy(const float* logits, int64_t n_vocab, double inv_t, double log_z);

// The k most likely ids of a row of logits, most likely first (ties: lower id first), and their
// log-probabilities at T = 1. Slots past the vocabulary get id -1 and -inf.
void top_k_logprobs(const float* logits, int64_t n_vocab, int k, int32_t* ids, float* logp);

}  // namespace distill
