// A local teacher (a model directory) labelling prompts: batched generation recording the
// teacher's top-k log-probabilities for every generated token, or (--score-completions) the
// top-k along given completions. Work is cut into fixed batches of prompts, so a resumed run
// regenerates an interrupted batch exactly as the uninterrupted run did and appends only the
// records that are missing.
#pragma once

#include "model/model.h"
#include "teacher/label_prompts.h"
#include "formats/teacher_dataset.h"

namespace distill {

class Tokenizer;

struct LabelSettings {
  int top_k = 20;
  int64_t max_tokens = 256;
  float temperature = 0.0f;      // 0: greedy
  float top_p = 1.0f;
  int64_t samples = 1;           // completions per prompt
  uint64_t seed = 0;
  int64_t batch = 8;             // prompts per batched generation
  bool score_completions = false;
};

struct LabelReport {
  int64_t records = 0, tokens = 0, skipped = 0;
  double seconds = 0;
};

LabelReport label_with_local_teacher(const Model& teacher, const Tokenizer& tok, const std::vector<LabelPrompt>& prompts,
                                     const LabelSettings& s, TeacherDatasetWriter& out);

}  // namespace distill
