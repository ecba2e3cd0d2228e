// TrainingHarness: the one training loop. `train` (CE / KD) and `rl` (GRPO) plug in a step that
// turns data into gradients; the harness owns everything around it, once:
//   - the parameter arena (or a LoRA adapter over it: train/lora_training.h), AdamW and the
//     learning-rate schedule; the memory estimate before the run and the measured peak after;
//   - resume: checkpoint (parameters, moments, step, data cursor) and metrics.jsonl up to that
//     step, refused when the run-defining settings differ, a warning when --resume finds none;
//   - the data cursor: a shuffled order of the run's items per epoch, from the seed;
//   - per step: zeroed gradients, clip, AdamW update, the non-finite guard, periodic evaluation,
//     progress line, periodic checkpoint (atomic) — and a kill hook for the resume tests;
//   - at the end: the model directory (under LoRA adapter/, and the merged model when the base is
//     not quantized), metrics.jsonl, report.html.
#pragma once

#include "model/model.h"
#include "model/lora.h"
#include "train/adamw.h"
#include "train/param_arena.h"
#include "train/train_checkpoint.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace distill {

struct HarnessOptions {
  std::string name = "train";       // for messages, the progress line and the report title
  std::string out_dir;
  int64_t total_steps = 1;
  int64_t n_items = 0;              // items the data cursor walks (rows, tasks)
  uint64_t seed = 0;                // of the per-epoch shuffles
  int64_t save_every = 0;           // 0: only at the end
  int64_t eval_every = 0;           // 0: only at the end
  float clip = 1.0f;                // global gradient-norm clip (0: off)
  int64_t updates_per_step = 1;     // AdamW updates a step makes (GRPO's epochs over its rollouts)
  LrSchedule lr;                    // indexed by updates; total = total_steps × updates_per_step
  AdamWSettings adamw;
  nlohmann::json settings;          // run-defining settings, stored in checkpoints and the report
  bool resume = false;
  LoraConfig lora;                  // rank > 0: train a LoRA adapter on the frozen model instead
  bool shard_optimizer = false;     // ZeRO-1 under mpirun: each rank keeps AdamW's moments of its shard only
  bool overlap_comm = true;         // under mpirun: layers' gradient sums start during the step's last backward
};

class LoraTraining;

// What a run holds in memory, in bytes, for the estimate printed before it starts.
struct TrainingMemory {
  size_t weights = 0, gradients = 0, optimizer = 0, activations = 0;
  std::vector<std::pair<std::string, size_t>> others;  // what else the step holds (a teacher, rollouts)
  size_t total() const {
    size_t t = weights + gradients + optimizer + activations;
    for (const auto& [name, bytes] : others) t += bytes;
    return t;
  }
};

class TrainingHarness {
public:
  // Adopts the model's weights into an f32 arena (the model sees every update); under LoRA the
  // weights stay as loaded and an adapter is attached to the model instead.
  TrainingHarness(Model& model, const HarnessOptions& opt);
  ~TrainingHarness();

  // --- for the step function ---
  ModelWeights& grads() { return grad_views_; }  // zeroed before each step
  int64_t step() const { return state_.step; }    // 0-based index of the step running
  int64_t epoch() const { return state_.epoch; }
  int64_t next_item();                            // the data cursor
  // The step function's own state between steps, kept in checkpoints (restored on resume).
  std::string& step_state() { return state_.step_state; }
  // Clips the gradients, applies one AdamW step and zeroes the gradients for the next; returns
  // the gradient norm before clipping. A step may update more than once (GRPO's epochs).
  double update();
  float lr_now() const;                           // of the last update
  // Under mpirun (replicated optimizer, full training): the step function calls this before the
  // backward that completes a step's gradients (its last micro-batch), and has the training pass
  // report each layer as its backward ends (TrainingPass::set_layer_done → layer_grads_done):
  // that layer's gradient sum over the ranks then starts at once, overlapping the backward of the
  // layers below it; update() sums the rest (embedding, final norm, head) and waits.
  void overlap_next_backward();
  void layer_grads_done(int64_t layer);

  // The loop. `step_fn` fills the gradients and returns the step's metrics, with "loss" checked
  // for finiteness; if it did not call update(), the harness does (and records "grad_norm", "lr"). `eval_fn` (may be empty) adds held-out metrics on eval steps.
  // `info_fn` renders the progress line's text from the step's metrics; `rate_key` names the
  // metric shown as the rate. Returns every step's metrics (resumed ones included).
  const std::vector<nlohmann::json>& run(const std::function<nlohmann::json()>& step_fn,
                                         const std::function<nlohmann::json()>& eval_fn,
                                         const std::function<std::string(const nlohmann::json&)>& info_fn,
                                         const std::string& rate_key, const std::string& rate_unit);

  // After run(): saves the model directory, metrics.jsonl and report.html with `summary`.
  void finish(const nlohmann::json& summary);

  const std::vector<nlohmann::json>& metrics() const { return metrics_; }
  ParamArena& arena() { return arena_; }

  // Prints the memory estimate (the step's activations added by the caller) before the run.
  // `others`: what else the step holds, named (a local teacher, GRPO's reference and rollouts);
  // zero entries are left out.
  void print_memory_estimate(size_t activation_bytes, const std::vector<std::pair<std::string, size_t>>& others = {}) const;

private:
  void save_checkpoint();
  void average_over_ranks(nlohmann::json& m);
  void sum_gradients_over_ranks(float* g, int64_t n);

  Model& model_;
  HarnessOptions opt_;
  ParamArena arena_;                   // the model's weights (empty under LoRA: the base is frozen as loaded)
  std::unique_ptr<LoraTraining> lora_; // the adapter being trained, if any
  AdamW adamw_;                        // over trainable(): the arena, or the adapter's
  ParamArena& trainable();
  Tensor grads_;
  ModelWeights grad_views_;
  TrainState state_;
  std::vector<int64_t> order_;
  std::vector<nlohmann::json> metrics_;
  int64_t updates_this_step_ = 0;
  std::vector<std::pair<int64_t, int64_t>> layer_grads_;  // each layer's [begin, end) in grads_; empty: no overlap
  bool overlap_armed_ = false;      // the running backward starts the layers' sums
  std::vector<bool> layer_started_; // ...and these have started
  float last_lr_ = 0;
  std::string ckpt_dir_, metrics_path_;
};

}  // namespace distill
