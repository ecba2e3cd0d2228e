// A remote `distill serve` grading token sequences: POST /v1/completions with the token ids as the
// prompt, echo, logprobs k and max_tokens 0 (the server scores without generating), several
// sequences per request. The server must share the student's vocabulary — its system_fingerprint
// must name the student's tokenizer — and return token ids (distill serve's "top_logprobs_ids"
// extension). Answers are cached by sequence; transient failures (429, 5xx, timeouts, broken
// connections) are retried with backoff.
#pragma once

#include "train/teacher_scorer.h"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace distill {

class HttpClient;
class Tokenizer;

struct RemoteScorerSettings {
  std::string model;                 // empty: the server's only model
  std::string api_key_env = "OPENAI_API_KEY";
  std::string ca_file;
  int k = 20;
  // One sequence per request, one request at a time by default: the server then computes each
  // sequence alone, so its scores do not depend on what it shared a batch with and a resumed run
  // reproduces an uninterrupted one bit for bit. More per request is faster, reproducible only
  // to float summation order.
  int sequences_per_request = 1;
  int retries = 5;
  double timeout_s = 300;
  size_t cache_entries = 20000;      // scored sequences kept (then the cache starts over)
};

class RemoteScorer final : public TeacherScorer {
public:
  RemoteScorer(const std::string& base_url, const Tokenizer& student_tok, RemoteScorerSettings s);
  ~RemoteScorer() override;
  int k() const override { return s_.k; }
  std::vector<SequenceScores> score(const std::vector<std::vector<int32_t>>& sequences) override;
  int64_t requests() const { return requests_; }
  int64_t cache_hits() const { return cache_hits_; }

private:
  std::vector<SequenceScores> request(const std::vector<const std::vector<int32_t>*>& batch);

  RemoteScorerSettings s_;
  std::unique_ptr<HttpClient> client_;
  std::map<std::string, std::string> headers_;
  std::string fingerprint_, model_;
  std::unordered_map<std::string, SequenceScores> cache_;  // key: the ids' bytes
  int64_t requests_ = 0, cache_hits_ = 0;
};

}  // namespace distill
