// Evaluation of a model: perplexity on text, accuracy on tasks with checkable answers (the same
// answer extraction as `distill rl`), fidelity to a teacher (top-1 agreement and mean
// KL(teacher‖student) per token on the same text), speed and size.
#pragma once

#include "model/model.h"
#include "rl/grpo.h"
#include "rl/rewards.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace distill {

struct TextEval {
  double loss = 0;        // mean cross-entropy per predicted token (nats)
  double perplexity = 0;  // exp(loss)
  int64_t tokens = 0;
};

// Mean cross-entropy over the targets of every row of `data` (a plain text: every token; prompt /
// completion examples: the completions only).
TextEval evaluate_text(const Model& model, const TokenDataset& data);

struct Fidelity {
  double top1_agreement = 0;  // fraction of positions where the argmaxes agree
  double kl = 0;              // mean KL(teacher‖student) per position, nats
  int64_t positions = 0;
};

// On the targets of `data`. Student and teacher share the token space (vocabularies may differ by
// padding rows).
Fidelity evaluate_fidelity(const Model& student, const Model& teacher, const TokenDataset& data);

struct TaskEval {
  double accuracy = 0;   // pass@1: mean over tasks and samples
  double pass_at_n = 0;  // a task counts if any of its samples is right
  int64_t samples = 1;
  int64_t tasks = 0;
};

// Greedy with samples == 1; otherwise `samples` completions per task at `temperature`.
TaskEval evaluate_task_accuracy(const Model& model, const Tokenizer& tok, const std::vector<RlTask>& tasks,
                                const RewardSpec& reward, int64_t max_new_tokens, int64_t samples, float temperature);

struct SpeedEval {
  double prefill_tps = 0, decode_tps = 0;
};
// Prefill of a 128-token prompt and greedy decode of 64 tokens, one sequence.
SpeedEval evaluate_speed(const Model& model);

}  // namespace distill
