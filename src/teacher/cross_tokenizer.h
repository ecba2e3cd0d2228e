// Labelling across tokenizers: a local teacher answers in its own tokens; each record is rewritten
// in the student's tokens before it is stored. The student's prompt is the same conversation
// rendered by the student's tokenizer and chat template; the completion is the teacher's text
// re-encoded; the soft labels are the teacher's top-k projected onto student tokens on bytes, as
// for a remote teacher with another vocabulary (teacher/remote_answer.h; method and limits in
// docs/teacher-dataset.md).
#pragma once

#include "formats/teacher_dataset.h"
#include "teacher/remote_answer.h"
#include "train/teacher_scorer.h"

#include <memory>
#include <vector>

namespace distill {

class LogitParts;
struct Model;
class Tokenizer;

class TokenizerBridge {
public:
  TokenizerBridge(const Tokenizer& teacher, const Tokenizer& student);
  // r in the teacher's tokens -> the same example in the student's. k: soft labels per position.
  TeacherRecord to_student(const TeacherRecord& r, const std::vector<int32_t>& student_prompt) const;

private:
  const Tokenizer& teacher_;
  const Tokenizer& student_;
  VocabularyByBytes student_vocab_;
};

// On-policy distillation from a local teacher of another vocabulary: it grades the student's own
// samples on bytes. Each student sequence is turned into its text (the student tokens' bytes; the
// prompt's special tokens stay special where the teacher's tokenizer knows them), encoded by the
// teacher, run through the teacher; at each student position t the teacher's distribution over the
// token that starts at the byte where student token t + 1 starts (the teacher's prediction at the
// position before it) is projected onto student tokens as a remote teacher's alternatives are
// (answer_to_record), `scored` 1. A position whose next token starts inside a teacher token gets
// the teacher's alternatives for that token which begin with its bytes before the student's token,
// renormalised and projected by what follows (project_continuation), `scored` 1 too; where those
// hold less than the top-k leaves out, the teacher's sorted top-k log-probabilities there
// (`scored` 2, ids unused): the ULD term compares only the shapes of the two distributions (kd_loss.h).
class CrossVocabularyScorer final : public TeacherScorer {
public:
  CrossVocabularyScorer(const Model& teacher, const Tokenizer& teacher_tok, const Tokenizer& student_tok, int k);
  ~CrossVocabularyScorer() override;
  int k() const override { return k_; }
  std::vector<SequenceScores> score(const std::vector<std::vector<int32_t>>& sequences) override;
  int64_t positions() const { return positions_; }        // student positions asked for
  int64_t aligned() const { return aligned_; }            // ... of which got soft labels
  int64_t shaped() const { return shaped_; }              // ... of which got the ULD term

private:
  SequenceScores score_one(const std::vector<int32_t>& student_ids);

  const Model& teacher_;
  const Tokenizer& teacher_tok_;
  const Tokenizer& student_tok_;
  VocabularyByBytes student_vocab_;
  std::unique_ptr<LogitParts> logits_;  // the teacher's, for the sequence being graded
  int k_;
  int64_t positions_ = 0, aligned_ = 0, shaped_ = 0;
};

}  // namespace distill
