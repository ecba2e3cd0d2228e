// Batched sampling: G completions for each of P prompts, decoded together by the decode engine
// (generate/scheduler.h) — every step is one batched forward over all unfinished completions
// (P·G KV-cache slots), and the G samples of a prompt prefill it once. Records, per generated
// token, its log-probability under the sampling distribution (the denominator of RL importance
// ratios) and optionally the model's top-k log-probabilities at temperature 1 (soft labels for
// distillation).
#pragma once

#include "model/model.h"
#include "sample/sampler.h"
#include "sample/watermark.h"
#include "tokenizer/tokenizer.h"

#include <string>
#include <vector>

namespace distill {

struct SampledCompletion {
  int64_t prompt_index = 0;           // index into the prompts given
  int64_t sample_index = 0;           // 0..group-1
  std::vector<int32_t> completion;    // sampled ids, the end-of-turn token included if reached
  std::vector<float> logp_old;        // log-prob of each sampled id under softmax(logits / T)
  std::vector<int32_t> topk_ids;      // [completion.size(), k], most likely first (if k > 0)
  std::vector<float> topk_logp;       // [completion.size(), k], log softmax(logits) (T = 1)
  std::string text;                   // decoded completion, special tokens skipped
  bool finished = false;              // ended by an end-of-turn token (else: length)
};

struct BatchGenerateOptions {
  int64_t group = 1;
  int64_t max_new_tokens = 128;
  SamplerSettings sampler;            // temperature 0: greedy
  int top_k_logprobs = 0;             // record the top-k per generated token
  // Optional seed per prompt: the sampler of (prompt p, sample g) is seeded from prompt_seeds[p]
  // and g alone, so a completion does not depend on which other prompts share its batch.
  std::vector<uint64_t> prompt_seeds;
  bool share_prefill = true;          // the G samples of a prompt prefill it once (off: benchmarks)
  WatermarkSettings watermark;        // off unless delta != 0 (logp_old and top-k then carry it too)
};

struct BatchGenerateStats {
  int64_t tokens = 0;
  double seconds = 0;
  int64_t prompt_tokens_copied = 0;  // prefill saved by sharing a prompt between samples
};

// Seeds derive from options.sampler.seed and the slot: a call is reproducible.
std::vector<SampledCompletion> generate_batch(const Model& model, const Tokenizer& tok,
                                              const std::vector<std::vector<int32_t>>& prompts,
                                              const BatchGenerateOptions& options, BatchGenerateStats* stats);

}  // namespace distill
