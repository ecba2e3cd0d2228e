// Losses over a model's logits, each with its gradient, shared by every caller (train, rl,
// eval). Rows whose target is `kIgnoreIndex` do not count.
#pragma once

#include <cstdint>

namespace distill {

constexpr int32_t kIgnoreIndex = -100;

// Mean over counted rows of -log softmax(logits[i])[targets[i]]. logits f32 [n, n_vocab].
// Returns 0 when no row counts. Throws distill::Error for a target outside [0, n_vocab).
double cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n, int64_t n_vocab);

// d_logits [n, n_vocab] = d(mean CE)/d logits = (softmax - onehot) / n_counted on counted rows, 0
// elsewhere (d_logits may alias logits). Returns the loss as well, from the same softmax (f32:
// faster than cross_entropy_forward, accurate to ~1e-6 relative).
double cross_entropy_backward(float* d_logits, const float* logits, const int32_t* targets, int64_t n, int64_t n_vocab);

}  // namespace distill
