// Usage records: one JSON line per request, appended to --usage-log:
//
//   {"time": "2026-11-23T22:05:45.123Z", "key": "alice", "model": "student", "endpoint": "chat",
//    "status": 200, "prompt_tokens": 31, "completion_tokens": 64, "latency_ms": 412.5,
//    "n": 1, "stream": true, "logprobs": true, "top_logprobs": 5, "echo": false,
//    "max_tokens": 256, "finish_reason": "stop", "prompt_sha256": "9f2c…", "user": "…"}
//
// No prompt or completion text unless content logging is on ("prompt", "completion" added). The
// prompt's hash lets the owner see repeated or templated prompts without keeping their text.
// summarize_usage() turns a log into per-key totals and flags the patterns of extraction
// (distillation scraping): soft-label harvesting (most requests ask for log-probabilities or
// echo-score prompts), high volume of distinct prompts, many samples per prompt.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace distill {

class UsageLog {
public:
  UsageLog() = default;  // disabled
  // max_bytes > 0: once the file reaches it, it is renamed <path>.1 and a new one begins.
  UsageLog(const std::string& path, bool log_content, int64_t max_bytes = 0);
  ~UsageLog();
  bool enabled() const { return f_ != nullptr; }
  bool log_content() const { return log_content_; }
  void write(const nlohmann::json& record);  // one line, flushed

private:
  std::string path_;
  std::FILE* f_ = nullptr;
  bool log_content_ = false;
  int64_t max_bytes_ = 0;
  std::mutex mu_;
};

std::string utc_timestamp_now();  // 2026-11-23T22:05:45.123Z

struct KeyUsage {
  std::string key;
  int64_t requests = 0, ok = 0, client_errors = 0, rate_limited = 0, server_errors = 0;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  int64_t logprob_requests = 0, echo_requests = 0, multi_sample_requests = 0;
  int64_t distinct_prompts = 0;
  double latency_ms_sum = 0;
  std::string first, last;
  std::vector<std::string> flags;  // extraction signals, human-readable
};

struct UsageThresholds {
  int64_t min_requests = 50;        // below this, a key is not judged
  double logprob_share = 0.5;       // share of requests asking for log-probs / echo scoring
  double distinct_share = 0.9;      // share of distinct prompts (scrapers rarely repeat)
  int64_t high_volume_tokens = 1000000;  // completion tokens per key
};

// Reads a usage log; bad lines are skipped and described in *problems (file:line: reason).
std::vector<KeyUsage> summarize_usage(const std::string& path, const UsageThresholds& t, std::vector<std::string>* problems);

}  // namespace distill
