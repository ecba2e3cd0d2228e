// Evaluation of a model: perplexity on text (train/text_eval), accuracy on tasks with checkable
// answers (tasks/tasks: the same definition `distill rl` reports), fidelity to a teacher (top-1 agreement and mean
// KL(teacher‖student) per token on the same text), speed and size.
#pragma once

#include "model/model.h"
#include "tasks/tasks.h"  // TaskEval, evaluate_task_accuracy: the one definition of accuracy
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"
#include "train/text_eval.h"  // evaluate_text (held-out cross-entropy), evaluate_fidelity

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace distill {

struct SpeedEval {
  double prefill_tps = 0, decode_tps = 0;
};
// Prefill of a 128-token prompt and greedy decode of 64 tokens, one sequence.
SpeedEval evaluate_speed(const Model& model);

}  // namespace distill
