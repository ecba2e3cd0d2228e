#include "serve/metrics.h"

#include <fmt/format.h>

namespace distill {

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
  if (status == 200) latency_.observe(latency_s);
}

void ServerMetrics::record_first_token(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.observe(seconds);
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
