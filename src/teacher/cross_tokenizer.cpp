#include "teacher/cross_tokenizer.h"

#include "core/error.h"
#include "kernels/logprobs.h"
#include "model/decoder.h"
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <unordered_map>

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
        t.top.push_back({teacher_.token_bytes(r.topk_ids[at], j == 0), -1, r.topk_logp[at], teacher_.is_special(r.topk_ids[at])});
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

namespace {

// A token sequence as text: each token's bytes and the byte offset it starts at. A leading BOS
// adds no text (the tokens after it are the text's start, where SentencePiece drops a space).
struct TokenText {
  std::string text;
  std::vector<size_t> start;  // per token
};

TokenText as_text(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  TokenText t;
  const bool bos = !ids.empty() && tok.bos_id() >= 0 && ids[0] == tok.bos_id();
  for (size_t j = 0; j < ids.size(); ++j) {
    t.start.push_back(t.text.size());
    if (j == 0 && bos) continue;
    t.text += tok.token_bytes(ids[j], j == (bos ? 1u : 0u));
  }
  return t;
}

}  // namespace

CrossVocabularyScorer::CrossVocabularyScorer(const Model& teacher, const Tokenizer& teacher_tok, const Tokenizer& student_tok, int k)
    : teacher_(teacher), teacher_tok_(teacher_tok), student_tok_(student_tok), student_vocab_(student_tok),
      logits_(std::make_unique<LogitParts>(teacher)), k_(k) {
  if (k <= 0) fail("grading across vocabularies needs k > 0 alternatives per position");
}

CrossVocabularyScorer::~CrossVocabularyScorer() = default;

std::vector<SequenceScores> CrossVocabularyScorer::score(const std::vector<std::vector<int32_t>>& sequences) {
  std::vector<SequenceScores> out;
  for (const std::vector<int32_t>& s : sequences) out.push_back(score_one(s));
  return out;
}

SequenceScores CrossVocabularyScorer::score_one(const std::vector<int32_t>& student_ids) {
  const size_t n = student_ids.size(), K = size_t(k_);
  SequenceScores r;
  if (n < 2) return r;
  r.ids.assign((n - 1) * K, 0), r.logp.assign((n - 1) * K, -64.0f), r.scored.assign(n - 1, 0);
  positions_ += int64_t(n - 1);
  const TokenText st = as_text(student_tok_, student_ids);
  // The same text in the teacher's tokens (special tokens parsed: a shared chat format stays one);
  // with the teacher's BOS in front when the student's sequence had one.
  std::vector<int32_t> tid;
  const bool bos = student_tok_.bos_id() >= 0 && student_ids[0] == student_tok_.bos_id() && teacher_tok_.bos_id() >= 0;
  if (bos) tid.push_back(teacher_tok_.bos_id());
  const std::vector<int32_t> body = teacher_tok_.encode(st.text, false, true);
  tid.insert(tid.end(), body.begin(), body.end());
  const TokenText tt = as_text(teacher_tok_, tid);
  if (tid.size() < 2) return r;
  for (int32_t id : tid)
    if (id < 0 || id >= teacher_.config.n_vocab) return r;
  // Where the teacher's spelling of the text departs from it (bytes its tokenizer normalises or
  // cannot take as they are, e.g. invalid UTF-8 a sampling student emitted), alignment stops: only
  // teacher tokens wholly inside the common prefix are matched.
  size_t same = 0;
  while (same < st.text.size() && same < tt.text.size() && st.text[same] == tt.text[same]) ++same;
  std::unordered_map<size_t, size_t> teacher_token_at;  // byte offset -> the teacher token starting there
  std::unordered_map<size_t, size_t> inside_token;      // byte offset -> the teacher token it is inside of
  for (size_t u = bos ? 1 : 0; u < tid.size(); ++u) {
    const size_t end = u + 1 < tid.size() ? tt.start[u + 1] : tt.text.size();
    if (end > same) break;
    teacher_token_at.emplace(tt.start[u], u);
    for (size_t b = tt.start[u] + 1; b < end; ++b) inside_token.emplace(b, u);
  }

  // Which teacher row grades each student position: the row predicting the teacher token that
  // starts where the student's next token starts (KD, kind 1), or the row predicting the teacher
  // token the next one starts inside of (ULD, kind 2); -1 where neither exists.
  std::vector<int64_t> row(n - 1, -1);
  std::vector<uint8_t> kind(n - 1, 0);
  for (size_t t = 0; t + 1 < n; ++t) {
    if (const auto it = teacher_token_at.find(st.start[t + 1]); it != teacher_token_at.end()) {
      if (it->second > 0) row[t] = int64_t(it->second) - 1, kind[t] = 1;
    } else if (const auto in = inside_token.find(st.start[t + 1]); in != inside_token.end() && in->second > 0) {
      row[t] = int64_t(in->second) - 1, kind[t] = 2;
    }
  }
  // Student position t's next token starts inside teacher token row[t] + 1: the bytes of that
  // teacher token before it (what the teacher's alternatives must begin with).
  auto inside_prefix = [&](size_t t) {
    const size_t from = tt.start[size_t(row[t] + 1)];
    return std::string_view(tt.text).substr(from, st.start[t + 1] - from);
  };
  // The teacher's logits a part of rows at a time (about 64 MiB), never [tokens, vocabulary] whole.
  logits_->run(tid.data(), 1, int64_t(tid.size()));
  const int64_t Vt = teacher_.config.n_vocab, T = int64_t(tid.size()), part_rows = logit_part_rows(Vt);
  std::vector<int32_t> top_ids(K);
  std::vector<float> top_logp(K);
  std::vector<RemoteAlternative> alts(K);
  for (int64_t p0 = 0; p0 < T; p0 += part_rows) {
    const int64_t m = std::min(part_rows, T - p0);
    bool wanted = false;
    for (size_t t = 0; t + 1 < n && !wanted; ++t) wanted = row[t] >= p0 && row[t] < p0 + m;
    if (!wanted) continue;
    const float* logits = logits_->rows(p0, m);
    for (size_t t = 0; t + 1 < n; ++t) {
      if (row[t] < p0 || row[t] >= p0 + m) continue;
      const float* lt = logits + (row[t] - p0) * Vt;
      const bool first = st.start[t + 1] == 0;  // the text's first token (after a BOS)
      top_k_logprobs(lt, Vt, k_, top_ids.data(), top_logp.data());
      const bool at_token_start = kind[t] == 1;
      for (size_t i = 0; i < K; ++i)
        alts[i] = {teacher_tok_.token_bytes(top_ids[i], first || (!at_token_start && tt.start[size_t(row[t] + 1)] == 0)), -1,
                   top_logp[i], teacher_tok_.is_special(top_ids[i])};
      int32_t* const ids = r.ids.data() + t * K;
      float* const logp = r.logp.data() + t * K;
      if (at_token_start ? project_alternatives(student_vocab_, alts, first, k_, student_tok_.vocab_size(), ids, logp)
                         : project_continuation(student_vocab_, alts, inside_prefix(t), k_, student_tok_.vocab_size(), ids, logp)) {
        r.scored[t] = 1;
        ++aligned_;
      } else if (!at_token_start) {
        // Inside a teacher token with too little of the listed mass going on past the student's
        // prefix: only the distribution's shape — its sorted top-k for the ULD term.
        std::copy(top_logp.begin(), top_logp.end(), logp);
        r.scored[t] = 2;
        ++shaped_;
      }
    }
  }
  return r;
}

}  // namespace distill
