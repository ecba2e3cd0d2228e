// Labelling across tokenizers: a local teacher answers in its own tokens; each record is rewritten
// in the student's tokens before it is stored. The student's prompt is the same conversation
// rendered by the student's tokenizer and chat template; the completion is the teacher's text
// re-encoded; the soft labels are the teacher's top-k projected onto student tokens on bytes, as
// for a remote teacher with another vocabulary (teacher/remote_answer.h; method and limits in
// docs/teacher-dataset.md).
#pragma once

#include "formats/teacher_dataset.h"
#include "teacher/remote_answer.h"

#include <vector>

namespace distill {

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

}  // namespace distill
