// Verifiable rewards for GRPO, composable with weights: `--reward answer:1.0,format:0.2`.
//
//   answer        1 if the completion's final answer equals the task's "answer" (numbers compared
//                 numerically, text after normalisation: case, spaces, surrounding $ and braces),
//                 else 0. The answer is taken from, in order: the last \boxed{…} (nested braces
//                 allowed), "#### …", <answer>…</answer>, else the last number in the text.
//   worked        `answer`, but 0 when any "a op b = c" step shown (see steps) is wrong: a small
//                 policy often lands on the right number through a wrong step, and an answer-only
//                 reward teaches it to guess
//   format        1 if the completion is "<think>…</think>" followed by a non-empty answer
//                 (the generation prompt may already hold the opening "<think>").
//   steps         partial credit for worked arithmetic: the share of the completion's "a op b = c"
//                 steps (+ - * / × ÷ x, integers or decimals) whose result is right; 0 without a step.
//                 Meant beside `answer` with a small weight: it rewards showing the work, and
//                 trivially true steps earn no more than the share they dilute.
//   regex:PATTERN 1 if PATTERN (PCRE2) matches somewhere in the completion.
//   length        −(completion tokens ÷ max new tokens): a penalty for long replies.
//   cmd:PROGRAM   runs PROGRAM (with arguments, split on spaces) in the sandbox with
//                 {"task": …, "completion": "…"} on stdin; its stdout's first number is the reward
//                 (0 if it crashes, hangs past the time limit, or prints no number).
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace distill {

class Regex;

// The final answer in a completion, or nothing.
std::optional<std::string> extract_answer(const std::string& completion);
// The task's "answer" equals the completion's final answer (what the `answer` reward scores).
bool final_answer_right(const nlohmann::json& task, const std::string& completion);
// The `steps` reward: the share of "a op b = c" steps in `completion` that are arithmetically right.
double arithmetic_steps_right(const std::string& completion);
bool every_arithmetic_step_right(const std::string& completion);  // also true without a step
// Equal as numbers if both parse as numbers, else as normalised text.
bool answers_match(const std::string& got, const std::string& want);

struct RewardTerm {
  std::string kind;    // answer | format | regex | length | cmd
  std::string arg;     // the pattern or the command
  double weight = 1.0;
  std::shared_ptr<Regex> regex;
};

class RewardSpec {
public:
  // "answer:1.0,format:0.2,regex:^\d+$:0.5,cmd:python3 check.py:1" — each term kind[:arg][:weight].
  static RewardSpec parse(const std::string& spec);
  // Weighted sum over the terms; `components` (if given) receives each term's unweighted value.
  double score(const nlohmann::json& task, const std::string& completion, int64_t n_tokens, int64_t max_tokens,
               std::vector<double>* components = nullptr) const;
  const std::vector<RewardTerm>& terms() const { return terms_; }
  // Metric names of the terms: "reward_" + kind, "#2", "#3"… on repeats ("reward_regex#2").
  std::vector<std::string> term_metric_names() const;
  bool has_answer() const;  // an answer or worked term: tasks need an "answer"
  double cmd_timeout_s = 10.0;

private:
  std::vector<RewardTerm> terms_;
};

}  // namespace distill
