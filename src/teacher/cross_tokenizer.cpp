#include "teacher/cross_tokenizer.h"

#include "tokenizer/tokenizer.h"

#include <algorithm>

namespace distill {

TokenizerBridge::TokenizerBridge(const Tokenizer& teacher, const Tokenizer& student)
    : teacher_(teacher), student_(student), student_vocab_(student) {}

TeacherRecord TokenizerBridge::to_student(const TeacherRecord& r, const std::vector<int32_t>& student_prompt) const {
  // The teacher's answer as an API would give it: text, and per token its bytes and alternatives.
  RemoteAnswer a;
  a.finished = r.finished;
  size_t n = r.completion.size();
  const auto& stops = teacher_.stop_ids();
  if (r.finished && n > 0 && std::find(stops.begin(), stops.end(), r.completion[n - 1]) != stops.end()) --n;  // its end of turn
  for (size_t j = 0; j < n; ++j) {
    RemoteToken t;
    t.bytes = teacher_.token_bytes(r.completion[j], j == 0);
    t.id = -1;  // another vocabulary: matched on bytes
    if (r.k > 0 && !r.soft.empty() && r.soft[j])
      for (int i = 0; i < r.k; ++i) {
        const size_t at = j * size_t(r.k) + size_t(i);
        t.top.push_back({teacher_.token_bytes(r.topk_ids[at], j == 0), -1, r.topk_logp[at]});
      }
    a.text += t.bytes;
    a.tokens.push_back(std::move(t));
  }
  TeacherRecord s;
  s.prompt_index = r.prompt_index;
  s.sample_index = r.sample_index;
  s.prompt = student_prompt;
  answer_to_record(student_, student_vocab_, a, r.k, s);
  return s;
}

}  // namespace distill
