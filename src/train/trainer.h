// Trainer: the training loop of `distill train` — micro-batches with gradient accumulation,
// cross-entropy and/or distillation from a local teacher's logits, AdamW with warmup and decay,
// gradient clipping, held-out evaluation, atomic checkpoints with bit-for-bit resume, progress,
// metrics.jsonl and report.html.
#pragma once

#include "model/lora.h"
#include "model/model.h"
#include "train/adamw.h"
#include "train/dataset.h"
#include "train/kd_loss.h"

#include <nlohmann/json.hpp>

#include <string>

namespace distill {

class Tokenizer;
class TeacherScorer;

struct TrainSettings {
  int64_t batch = 8;          // sequences per micro-batch
  int64_t seq_len = 256;
  int64_t grad_accum = 1;     // micro-batches per optimizer step
  int64_t steps = 0;          // optimizer steps; 0 = derive from epochs
  double epochs = 1.0;
  LrSchedule lr;
  AdamWSettings adamw;
  float clip = 1.0f;          // global gradient-norm clip (0 = off)
  uint64_t seed = 1;
  int64_t eval_every = 0;     // steps between held-out evaluations (0 = only at the end)
  int64_t save_every = 0;     // steps between checkpoints (0 = only at the end)
  float kd_alpha = 0.5f;      // loss = (1 − α)·CE + α·KD with a teacher or soft labels
  KdSettings kd;
  TopKMode topk_mode = TopKMode::Renormalize;  // soft labels from a `distill label` dataset
  // On-policy distillation (GKD): this fraction of the prompt/completion rows of each batch get
  // their completion sampled by the student as it is now (at on_policy_temperature); the teacher
  // grades every sampled token (KD only: no CE on the student's own samples). 0 = off (offline
  // KD on the data's completions: sequence-level KD when they are the teacher's).
  double on_policy = 0;
  float on_policy_temperature = 1.0f;
  // Steps before this one are offline (KD on the data's completions); on-policy rows start here, so
  // the student samples once it has seen data (grades of a random student's noise teach slowly).
  int64_t on_policy_from = 0;
  // Grades from a teacher of another vocabulary: positions inside a teacher token get the ULD term
  // (sorted-probability distance, kd_loss.h) with this weight relative to KD (0: off).
  float uld_weight = 1.0f;
  std::string out_dir;
  LoraConfig lora;            // rank > 0: train a LoRA adapter instead of the whole model
  bool recompute_layers = false;  // activation checkpointing (same gradients; not run-defining)
  bool bf16_matmuls = false;      // --precision bf16: products of bf16-rounded operands (TrainingPass)
  bool shard_optimizer = false;   // ZeRO-1 under mpirun (same steps; not run-defining)
  bool overlap_comm = true;       // under mpirun: gradient sums overlap the backward (same steps; not run-defining)

  // The settings that define the run (a resumed run must use the same ones).
  nlohmann::json to_json() const;
};

struct TrainSummary {
  int64_t steps = 0;
  double final_loss = 0, eval_loss = -1, tokens_per_s = 0, seconds = 0;
  int64_t tokens = 0;
};

// Trains `student` (its weights are replaced by an f32 arena) on `train`; `eval` may be empty;
// `teacher` (null for none) must share the student's vocabulary up to padding. Without a teacher,
// a dataset with soft labels (top-k) is distilled from those where they exist.
// Writes OUT/checkpoint (every save_every steps), OUT/metrics.jsonl, and at the end OUT/config.json,
// OUT/model.safetensors and OUT/report.html. With resume, continues from OUT/checkpoint.
// `tok` is needed only for on-policy distillation (the end-of-turn tokens that end a sample);
// `remote_teacher` grades on-policy samples when the teacher is not loaded here (teacher null).
TrainSummary train_model(Model& student, const TokenDataset& train, const TokenDataset& eval, const Model* teacher,
                         const TrainSettings& settings, bool resume, const Tokenizer* tok = nullptr,
                         TeacherScorer* remote_teacher = nullptr);

}  // namespace distill
