// Tasks with checkable answers (JSONL: {"prompt"} or {"messages"}, plus what the rewards read,
// e.g. "answer") and the one definition of task accuracy, used by `rl` (its held-out accuracy and
// per-step accuracy) and `eval`: a completion is correct when its final answer is the task's —
// for a spec with an `answer` or `worked` term, whatever its steps — or, for a spec without
// either, when its total reward is positive.
#pragma once

#include "model/model.h"
#include "tasks/rewards.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace distill {

struct Task {
  nlohmann::json task;            // the JSONL line (answer, tests, ...)
  std::vector<int32_t> prompt;    // rendered and tokenised
};

// Reads tasks and renders each prompt with the chat template (generation prompt added) or as
// plain text with BOS.
std::vector<Task> read_tasks(const std::string& path, const Tokenizer& tok, const ChatTemplate* tmpl);

// Scores one completion: its reward, and whether it counts as correct (see above).
struct TaskScore {
  double reward = 0;
  bool correct = false;
  std::vector<double> terms;  // each reward term's unweighted value, in the spec's order
};
TaskScore score_completion(const RewardSpec& spec, const Task& task, const std::string& completion, int64_t n_tokens,
                           int64_t max_tokens);

struct TaskEval {
  double accuracy = 0;     // pass@1: mean over tasks and samples
  double pass_at_n = 0;    // a task counts if any of its samples is right
  double mean_reward = 0;
  int64_t samples = 1;
  int64_t tasks = 0;
};

// Greedy with samples == 1; otherwise `samples` completions per task at `temperature` (seeded).
TaskEval evaluate_task_accuracy(const Model& model, const Tokenizer& tok, const std::vector<Task>& tasks,
                                const RewardSpec& reward, int64_t max_new_tokens, int64_t samples = 1,
                                float temperature = 1.0f);

}  // namespace distill
