#include "serve/metrics.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>

namespace distill {

namespace {
constexpr size_t kRecent = 1024;
double unix_now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }
}  // namespace

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

std::string Histogram::render(const std::string& name) const {
  std::string out;
  int64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cum);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name, sum_, name, count_);
  return out;
}

ServerMetrics::ServerMetrics()
    : latency_({0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}), ttft_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}) {}

void ServerMetrics::record_request(const std::string& endpoint, int status, double latency_s, int64_t prompt_tokens,
                                   int64_t completion_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{endpoint, status}];
  prompt_tokens_ += prompt_tokens;
  completion_tokens_ += completion_tokens;
  if (status != 200) return;
  latency_.observe(latency_s);
  recent_latency_.push_back(latency_s);
  if (recent_latency_.size() > kRecent) recent_latency_.pop_front();
  const double now = unix_now();
  recent_tokens_.emplace_back(now, completion_tokens);
  while (!recent_tokens_.empty() && recent_tokens_.front().first < now - 60) recent_tokens_.pop_front();
}

void ServerMetrics::record_first_token(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.observe(seconds);
  recent_ttft_.push_back(seconds);
  if (recent_ttft_.size() > kRecent) recent_ttft_.pop_front();
}

void ServerMetrics::record_key_use(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t hour = int64_t(unix_now() / 3600);
  auto& h = hourly_[key];
  ++h[hour];
  while (!h.empty() && h.begin()->first < hour - 48) h.erase(h.begin());
}

std::vector<int64_t> ServerMetrics::hourly_requests(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int64_t> out(24, 0);
  const auto it = hourly_.find(key);
  if (it == hourly_.end()) return out;
  const int64_t hour = int64_t(unix_now() / 3600);
  for (const auto& [h, n] : it->second)
    if (h > hour - 24) out[size_t(23 - (hour - h))] = n;
  return out;
}

nlohmann::json ServerMetrics::summary(const SchedulerStats& s, int64_t n_slots) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto percentiles = [](std::deque<double> v) {
    if (v.empty()) return nlohmann::json{{"p50", nullptr}, {"p95", nullptr}, {"p99", nullptr}};
    std::sort(v.begin(), v.end());
    auto at = [&](double q) { return v[std::min(v.size() - 1, size_t(q * double(v.size())))]; };
    return nlohmann::json{{"p50", at(0.5)}, {"p95", at(0.95)}, {"p99", at(0.99)}};
  };
  int64_t requests = 0, tokens = 0;
  for (const auto& [k, n] : requests_) requests += n;
  const double now = unix_now();
  for (const auto& [t, n] : recent_tokens_)
    if (t >= now - 60) tokens += n;
  return {{"requests", requests}, {"rejected", rejected_}, {"prompt_tokens", prompt_tokens_}, {"completion_tokens", completion_tokens_},
          {"latency_s", percentiles(recent_latency_)}, {"first_token_s", percentiles(recent_ttft_)},
          {"tokens_per_s_last_minute", double(tokens) / 60.0}, {"slots_busy", s.active}, {"slots_total", n_slots}, {"queued", s.queued}};
}

void ServerMetrics::record_rejected(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  ++rejected_[reason];
}

std::string ServerMetrics::render(const SchedulerStats& s, int64_t n_slots) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  out += "# HELP distill_requests_total HTTP requests by endpoint and status.\n# TYPE distill_requests_total counter\n";
  for (const auto& [k, n] : requests_)
    out += fmt::format("distill_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", k.first, k.second, n);
  out += "# HELP distill_rejected_total Requests refused before generation, by reason.\n# TYPE distill_rejected_total counter\n";
  for (const auto& [k, n] : rejected_) out += fmt::format("distill_rejected_total{{reason=\"{}\"}} {}\n", k, n);
  out += fmt::format("# HELP distill_prompt_tokens_total Prompt tokens of answered requests.\n# TYPE distill_prompt_tokens_total counter\n"
                     "distill_prompt_tokens_total {}\n", prompt_tokens_);
  out += fmt::format("# HELP distill_completion_tokens_total Generated tokens of answered requests.\n# TYPE distill_completion_tokens_total counter\n"
                     "distill_completion_tokens_total {}\n", completion_tokens_);
  out += "# HELP distill_request_duration_seconds Latency of successful requests.\n# TYPE distill_request_duration_seconds histogram\n";
  out += latency_.render("distill_request_duration_seconds");
  out += "# HELP distill_time_to_first_token_seconds From arrival to the first generated text.\n# TYPE distill_time_to_first_token_seconds histogram\n";
  out += ttft_.render("distill_time_to_first_token_seconds");
  out += fmt::format("# HELP distill_queue_depth Completions waiting for a slot.\n# TYPE distill_queue_depth gauge\ndistill_queue_depth {}\n", s.queued);
  out += fmt::format("# HELP distill_slots_busy Slots holding a completion.\n# TYPE distill_slots_busy gauge\ndistill_slots_busy {}\n", s.active);
  out += fmt::format("# HELP distill_slots_total Slots (--parallel).\n# TYPE distill_slots_total gauge\ndistill_slots_total {}\n", n_slots);
  out += fmt::format("# HELP distill_generated_tokens_total Tokens sampled by the scheduler (incl. cancelled).\n# TYPE distill_generated_tokens_total counter\n"
                     "distill_generated_tokens_total {}\n", s.generated_tokens);
  out += fmt::format("# HELP distill_prefill_tokens_total Prompt tokens run through the model.\n# TYPE distill_prefill_tokens_total counter\n"
                     "distill_prefill_tokens_total {}\n", s.prompt_tokens);
  out += fmt::format("# HELP distill_cancelled_total Completions cancelled because the client left.\n# TYPE distill_cancelled_total counter\n"
                     "distill_cancelled_total {}\n", s.cancelled);
  out += fmt::format("# HELP distill_busy_seconds_total Time spent in batched forward passes.\n# TYPE distill_busy_seconds_total counter\n"
                     "distill_busy_seconds_total {}\n", s.busy_s);
  out += fmt::format("# HELP distill_generation_tokens_per_second Generated tokens per busy second.\n# TYPE distill_generation_tokens_per_second gauge\n"
                     "distill_generation_tokens_per_second {}\n", s.busy_s > 0 ? double(s.generated_tokens) / s.busy_s : 0.0);
  return out;
}

}  // namespace distill
