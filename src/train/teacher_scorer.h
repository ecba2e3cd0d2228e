// A teacher that grades token sequences it did not write: for on-policy distillation from a
// teacher that is not loaded in this process (teacher/remote_scorer.h: a `distill serve` with the
// student's vocabulary, through echo + prompt log-probs).
#pragma once

#include <cstdint>
#include <vector>

namespace distill {

// For one sequence of n tokens: the teacher's top-k at every position t < n − 1 over token t + 1
// (what position t predicts), likeliest first: ids/logp [(n − 1) × k].
struct SequenceScores {
  std::vector<int32_t> ids;
  std::vector<float> logp;
  // [n − 1], empty: every position scored. 1: ids/logp are position t's top-k; 0: no scores; 2: a
  // teacher of another vocabulary inside one of its tokens, logp its sorted top-k only (ULD term).
  std::vector<uint8_t> scored;
};

class TeacherScorer {
public:
  virtual ~TeacherScorer() = default;
  virtual int k() const = 0;
  // Scores every sequence (batched as the implementation likes); throws distill::Error naming
  // what failed.
  virtual std::vector<SequenceScores> score(const std::vector<std::vector<int32_t>>& sequences) = 0;
};

}  // namespace distill
