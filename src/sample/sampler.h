// Sampler: the next token from a row of logits. Order of the stages (as llama.cpp):
//   0. logit bias: a fixed value added to chosen tokens' logits (OpenAI's logit_bias; -100
//      bans a token, +100 all but forces it);
//   1. repetition penalty (CTRL: positive logits ÷ r, negative × r) and OpenAI-style presence /
//      frequency penalties over the last `penalty_last_n` tokens;
//   2. temperature (≤ 0: greedy argmax, the rest is skipped);
//   3. top-k, then top-p (smallest set whose mass ≥ p), then min-p (drop tokens with
//      probability < min_p × the most likely one's);
//   4. a draw from what is left, renormalised, with a seeded RNG: the same seed and inputs give
//      the same tokens on every machine running the same kernel variant (plain temperature
//      sampling takes its softmax from the kernels, whose AVX2 and scalar exp differ in the last bits).
#pragma once

#include "core/rng.h"
#include "kernels/logprobs.h"  // token_logprob, top_k_logprobs

#include <cstdint>
#include <vector>

namespace distill {

struct SamplerSettings {
  float temperature = 0.8f;
  int top_k = 40;                   // 0 = off
  float top_p = 0.95f;              // 1 = off
  float min_p = 0.05f;              // 0 = off
  float repetition_penalty = 1.0f;  // 1 = off
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int penalty_last_n = 64;
  uint64_t seed = 0;
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token id, added to its logit)
};


class Sampler {
public:
  explicit Sampler(const SamplerSettings& s);
  // `history` is the sequence so far (prompt + generated), used by the penalties.
  int32_t sample(const float* logits, int64_t n_vocab, const std::vector<int32_t>& history);
  // The candidates (id, probability) the last draw chose from, most likely first (plain
  // temperature sampling keeps only the drawn token).
  const std::vector<std::pair<int32_t, float>>& last_candidates() const { return cand_; }
  const SamplerSettings& settings() const { return s_; }

private:
  SamplerSettings s_;
  Rng rng_;
  std::vector<float> work_;                      // penalised logits [n_vocab]
  std::vector<std::pair<int32_t, float>> cand_;  // kept candidates
};

}  // namespace distill
