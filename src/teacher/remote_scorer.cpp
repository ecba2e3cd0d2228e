#include "teacher/remote_scorer.h"

#include "core/error.h"
#include "formats/json_fields.h"
#include "net/http_client.h"
#include "teacher/remote_answer.h"
#include "tokenizer/tokenizer.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <thread>

namespace distill {

using nlohmann::json;

RemoteScorer::RemoteScorer(const std::string& base_url, const Tokenizer& student_tok, RemoteScorerSettings s)
    : s_(std::move(s)), client_(std::make_unique<HttpClient>(base_url, s_.ca_file)), fingerprint_(api_fingerprint(student_tok)) {
  if (s_.k < 1 || s_.k > 20) fail("the remote teacher's top-k must be 1..20 (got {})", s_.k);
  if (const char* key = std::getenv(s_.api_key_env.c_str()); key && *key) headers_["Authorization"] = std::string("Bearer ") + key;
  model_ = choose_model(*client_, headers_, s_.model, s_.timeout_s);
}

RemoteScorer::~RemoteScorer() = default;

namespace {

std::string key_of(const std::vector<int32_t>& ids) {
  return std::string(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int32_t));
}

// One choice's prompt scores: top_logprobs_ids [n] (null first), each [[id, logprob], ...].
SequenceScores read_scores(const json& choice, size_t n, int k, const std::string& path) {
  const json& lp = jsonf::get_object(choice, "logprobs", path);
  if (!jsonf::has(lp, "top_logprobs_ids"))
    fail("{}: the teacher returned no token ids (top_logprobs_ids): on-policy distillation from a remote teacher needs a "
         "`distill serve` with the student's vocabulary",
         path);
  const json& tops = jsonf::get_array(lp, "top_logprobs_ids", path + ".logprobs");
  if (tops.size() < n) fail("{}: {} scored tokens for a sequence of {}", path, tops.size(), n);
  SequenceScores sc;
  sc.ids.assign((n - 1) * size_t(k), 0);
  sc.logp.assign((n - 1) * size_t(k), -64.0f);
  for (size_t t = 1; t < n; ++t) {  // entry t: the distribution over token t, i.e. position t − 1's prediction
    const std::string tp = path + ".logprobs.top_logprobs_ids[" + std::to_string(t) + "]";
    if (!tops[t].is_array()) fail("{}: expected an array, got {}", tp, jsonf::show(tops[t]));
    if (int(tops[t].size()) < k) fail("{}: {} alternatives, {} asked", tp, tops[t].size(), k);
    for (int i = 0; i < k; ++i) {
      const json& pair = tops[t][size_t(i)];
      const std::string ip = tp + "[" + std::to_string(i) + "]";
      if (!pair.is_array() || pair.size() != 2) fail("{}: expected [id, logprob], got {}", ip, jsonf::show(pair));
      sc.ids[(t - 1) * size_t(k) + size_t(i)] = int32_t(jsonf::as_int(pair[0], ip + "[0]", 0, std::numeric_limits<int32_t>::max()));
      sc.logp[(t - 1) * size_t(k) + size_t(i)] = float(std::min(0.0, jsonf::as_number(pair[1], ip + "[1]")));
    }
  }
  return sc;
}

}  // namespace

std::vector<SequenceScores> RemoteScorer::request(const std::vector<const std::vector<int32_t>*>& batch) {
  json prompts = json::array();
  for (const auto* seq : batch) prompts.push_back(*seq);
  const std::string body = json{{"model", model_}, {"prompt", prompts}, {"echo", true}, {"logprobs", s_.k}, {"max_tokens", 0},
                                {"temperature", 0}}
                               .dump();
  std::string last_error;
  for (int attempt = 0; attempt <= s_.retries; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::duration<double>(std::min(30.0, 0.5 * std::pow(2.0, attempt - 1))));
    const HttpResult res = client_->post_json("/completions", body, headers_, s_.timeout_s);
    ++requests_;
    if (res.kind == HttpResult::Kind::HttpError && res.status != 429 && res.status < 500)
      fail("the remote teacher refused a scoring request: HTTP {}: {}", res.status, res.body.substr(0, 300));
    if (res.kind != HttpResult::Kind::Ok) {
      last_error = res.kind == HttpResult::Kind::HttpError ? fmt::format("HTTP {}", res.status) : res.error;
      continue;
    }
    const json j = jsonf::parse(res.body, "the remote teacher's answer");
    const std::string fp = jsonf::get_string(j, "system_fingerprint", "the remote teacher's answer", "");
    if (fp != fingerprint_)
      fail("the remote teacher's vocabulary ({}) is not the student's ({}): on-policy distillation grades the student's "
           "own tokens, so the teacher must share its tokenizer",
           fp.empty() ? "no system_fingerprint" : fp, fingerprint_);
    const json& choices = jsonf::get_array(j, "choices", "");
    if (choices.size() != batch.size()) fail("the remote teacher answered {} choices for {} sequences", choices.size(), batch.size());
    std::vector<SequenceScores> out(batch.size());
    for (size_t i = 0; i < choices.size(); ++i) {
      const json& c = choices[i];
      const size_t index = size_t(jsonf::get_int(c, "index", "choices[" + std::to_string(i) + "]", 0, int64_t(batch.size()) - 1));
      out[index] = read_scores(c, batch[index]->size(), s_.k, "choices[" + std::to_string(i) + "]");
    }
    return out;
  }
  fail("the remote teacher did not answer a scoring request after {} attempts (last: {})", s_.retries + 1, last_error);
}

std::vector<SequenceScores> RemoteScorer::score(const std::vector<std::vector<int32_t>>& sequences) {
  std::vector<SequenceScores> out(sequences.size());
  std::vector<size_t> todo;
  for (size_t i = 0; i < sequences.size(); ++i) {
    if (sequences[i].size() < 2) fail("internal: a sequence to score needs at least 2 tokens");
    if (auto it = cache_.find(key_of(sequences[i])); it != cache_.end()) {
      out[i] = it->second;
      ++cache_hits_;
    } else {
      todo.push_back(i);
    }
  }
  for (size_t b = 0; b < todo.size(); b += size_t(s_.sequences_per_request)) {
    std::vector<const std::vector<int32_t>*> batch;
    for (size_t i = b; i < std::min(todo.size(), b + size_t(s_.sequences_per_request)); ++i) batch.push_back(&sequences[todo[i]]);
    std::vector<SequenceScores> got = request(batch);
    for (size_t i = 0; i < got.size(); ++i) {
      if (cache_.size() >= s_.cache_entries) cache_.clear();
      cache_[key_of(*batch[i])] = got[i];
      out[todo[b + i]] = std::move(got[i]);
    }
  }
  return out;
}

}  // namespace distill
