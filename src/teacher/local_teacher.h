// A local teacher (a model directory) labelling prompts: batched generation recording the
// teacher's top-k log-probabilities for every generated token, or (--score-completions) the
// top-k along given completions. Work is cut into fixed batches of prompts, so a resumed run
// regenerates an interrupted batch exactly as the uninterrupted run did and appends only the
// records that are missing.
#pragma once

#include "model/model.h"
#include "teacher/label_prompts.h"
#include "formats/teacher_dataset.h"

#include <functional>

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

// `tok` is the teacher's. With `to_student`, each record is rewritten (another tokenizer's
// student, teacher/cross_tokenizer.h) before it is stored.
LabelReport label_with_local_teacher(const Model& teacher, const Tokenizer& tok, const std::vector<LabelPrompt>& prompts,
                                     const LabelSettings& s, TeacherDatasetWriter& out,
                                     const std::function<TeacherRecord(const TeacherRecord&)>& to_student = {});

}  // namespace distill
