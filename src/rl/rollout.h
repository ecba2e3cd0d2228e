// Rollouts: G sampled completions for each of P prompts, decoded together — every step is one
// batched forward over all unfinished completions (P·G KV-cache slots) — with the log-probability
// of each sampled token under the sampling policy recorded for the importance ratio.
#pragma once

#include "model/model.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"

#include <string>
#include <vector>

namespace distill {

struct Rollout {
  int64_t prompt_index = 0;           // index into the prompts given
  std::vector<int32_t> completion;    // sampled ids, the end-of-turn token included if reached
  std::vector<float> logp_old;        // log π_old(token), one per completion id
  std::string text;                   // decoded completion, special tokens skipped
  bool finished = false;              // ended by an end-of-turn token (else: length)
  double reward = 0.0;
  float advantage = 0.0f;
};

struct RolloutStats {
  int64_t tokens = 0;
  double seconds = 0;
};

// Sampling is plain temperature sampling (no top-k/top-p) unless `sampler` says otherwise;
// temperature 0 is greedy (evaluation). Seeds are derived from settings.seed and the slot, so a
// call is reproducible.
std::vector<Rollout> sample_rollouts(const Model& model, const Tokenizer& tok,
                                     const std::vector<std::vector<int32_t>>& prompts, int64_t group,
                                     int64_t max_new_tokens, const SamplerSettings& sampler, RolloutStats* stats);

}  // namespace distill
