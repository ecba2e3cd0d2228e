#include "serve/usage_log.h"

#include "core/error.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <fstream>
#include <set>

namespace distill {

using json = nlohmann::json;

UsageLog::UsageLog(const std::string& path, bool log_content, int64_t max_bytes)
    : path_(path), log_content_(log_content), max_bytes_(max_bytes) {
  f_ = std::fopen(path.c_str(), "a");
  if (!f_) fail("{}: cannot open the usage log for appending", path);
}

UsageLog::~UsageLog() {
  if (f_) std::fclose(f_);
}

void UsageLog::write(const json& record) {
  if (!f_) return;
  const std::string line = record.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  std::fwrite(line.data(), 1, line.size(), f_);
  std::fflush(f_);
  // Rotation: the full log becomes <file>.1 (replacing the one before), a new one starts.
  if (max_bytes_ > 0 && std::ftell(f_) >= max_bytes_) {
    std::fclose(f_);
    std::rename(path_.c_str(), (path_ + ".1").c_str());
    f_ = std::fopen(path_.c_str(), "a");
    if (!f_) std::fprintf(stderr, "usage log: cannot reopen %s after rotating it; records stop\n", path_.c_str());
  }
}

std::string utc_timestamp_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", buf, int(ms));
}

std::vector<KeyUsage> summarize_usage(const std::string& path, const UsageThresholds& t, std::vector<std::string>* problems) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open the usage log", path);
  std::map<std::string, KeyUsage> by_key;
  std::map<std::string, std::set<std::string>> prompts;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    json r;
    try {
      r = json::parse(line);
      if (!r.is_object()) throw std::runtime_error("not an object");
      const std::string key = r.value("key", "-");
      KeyUsage& u = by_key[key];
      u.key = key;
      ++u.requests;
      const int status = r.value("status", 0);
      if (status >= 200 && status < 300) ++u.ok;
      else if (status == 429) ++u.rate_limited;
      else if (status >= 400 && status < 500) ++u.client_errors;
      else ++u.server_errors;
      u.prompt_tokens += r.value("prompt_tokens", int64_t(0));
      u.completion_tokens += r.value("completion_tokens", int64_t(0));
      u.latency_ms_sum += r.value("latency_ms", 0.0);
      if (r.value("logprobs", false)) ++u.logprob_requests;
      if (r.value("echo", false)) ++u.echo_requests;
      if (r.value("n", 1) > 1) ++u.multi_sample_requests;
      if (r.contains("prompt_sha256") && r["prompt_sha256"].is_string()) prompts[key].insert(r["prompt_sha256"].get<std::string>());
      const std::string time = r.value("time", "");
      if (u.first.empty() || time < u.first) u.first = time;
      if (time > u.last) u.last = time;
    } catch (const std::exception& e) {
      if (problems) problems->push_back(fmt::format("{}:{}: skipped ({})", path, n, e.what()));
    }
  }
  std::vector<KeyUsage> out;
  for (auto& [key, u] : by_key) {
    u.distinct_prompts = int64_t(prompts[key].size());
    if (u.requests >= t.min_requests) {
      const double lp = double(u.logprob_requests + u.echo_requests) / double(u.requests);
      if (lp >= t.logprob_share)
        u.flags.push_back(fmt::format("{:.0f}% of requests ask for log-probabilities or echo scoring (soft-label harvesting)", 100 * lp));
      const double distinct = double(u.distinct_prompts) / double(u.requests);
      if (u.distinct_prompts > 0 && distinct >= t.distinct_share)
        u.flags.push_back(fmt::format("{:.0f}% of prompts are distinct (broad coverage, not an application's repeated calls)", 100 * distinct));
      if (double(u.multi_sample_requests) / double(u.requests) >= 0.5)
        u.flags.push_back("most requests sample several completions per prompt (n > 1)");
    }
    if (u.completion_tokens >= t.high_volume_tokens)
      u.flags.push_back(fmt::format("{} completion tokens (high volume)", u.completion_tokens));
    out.push_back(u);
  }
  return out;
}

}  // namespace distill
