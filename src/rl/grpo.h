// The GRPO loop of `distill rl`: sample a group of completions per prompt with the current
// policy, reward them, turn rewards into advantages, and take `epochs` AdamW steps on the clipped
// surrogate (plus an optional KL to a frozen reference), with logs, held-out accuracy, atomic
// checkpoints and bit-for-bit resume (rollout seeds derive from the step). The loop itself is the
// training harness's (train/harness.h); held-out accuracy is tasks/tasks.h's.
#pragma once

#include "model/lora.h"

#include "model/model.h"
#include "rl/grpo_loss.h"
#include "tasks/tasks.h"
#include "sample/sampler.h"
#include "tokenizer/chat_template.h"
#include "train/adamw.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace distill {

struct GrpoSettings {
  int64_t group = 8;
  int64_t prompts_per_step = 4;
  int64_t max_new_tokens = 128;
  float temperature = 1.0f;
  float clip_low = 0.2f, clip_high = 0.2f;
  float beta = 0.0f;
  int64_t epochs = 1;             // optimiser steps per batch of rollouts
  int64_t steps = 100;
  int64_t micro_batch = 8;        // rows per forward/backward
  GrpoLossType loss_type = GrpoLossType::GRPO;
  AdvantageScaling scaling = AdvantageScaling::Group;
  float negative_scale = 1.0f;    // multiplies negative advantages (0: learn only from better-than-average rollouts)
  bool dynamic_sampling = false;  // replace zero-signal groups by fresh prompts (up to 3 tries)
  bool curriculum = false;        // skip, at its next turn, a task whose last group was all right or all wrong
  LrSchedule lr;
  AdamWSettings adamw;
  float clip_grad = 1.0f;
  uint64_t seed = 1;
  int64_t eval_every = 0, save_every = 0;
  std::string out_dir;
  LoraConfig lora;                // rank > 0: train a LoRA adapter on the frozen policy
  bool recompute_layers = false;  // activation checkpointing (same gradients; not run-defining)
  bool bf16_matmuls = false;      // --precision bf16: products of bf16-rounded operands (TrainingPass)
  bool shard_optimizer = false;   // ZeRO-1 under mpirun (same steps; not run-defining)
  bool overlap_comm = true;       // under mpirun: gradient sums overlap the backward (same steps; not run-defining)
  nlohmann::json to_json() const;
};

struct GrpoSummary {
  int64_t steps = 0;
  double first_reward = 0, last_reward = 0, eval_accuracy = -1, seconds = 0;
};

// `policy` is trained in place (its weights move into an f32 arena); `ref` may be null when beta is 0.
GrpoSummary train_grpo(Model& policy, const Model* ref, const Tokenizer& tok, const std::vector<Task>& tasks,
                       const std::vector<Task>& eval_tasks, const RewardSpec& reward, const GrpoSettings& s, bool resume);

}  // namespace distill
