// Server metrics in the Prometheus text exposition format (GET /metrics): request counts by
// endpoint and status, prompt / completion token counters, request latency and time-to-first-
// token histograms; the scheduler's queue depth, busy slots and generation rate are added as
// gauges when rendering.
#pragma once

#include "generate/scheduler.h"

#include <nlohmann/json_fwd.hpp>

#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace distill {

class Histogram {
public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double v);
  // Lines "<name>_bucket{le="…"} n", "<name>_sum", "<name>_count" (cumulative buckets).
  std::string render(const std::string& name) const;

private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;
  double sum_ = 0;
  int64_t count_ = 0;
};

class ServerMetrics {
public:
  ServerMetrics();
  void record_request(const std::string& endpoint, int status, double latency_s, int64_t prompt_tokens,
                      int64_t completion_tokens);
  void record_first_token(double seconds);
  void record_rejected(const std::string& reason);  // auth, quota, queue_full
  std::string render(const SchedulerStats& s, int64_t n_slots) const;

  // For the owner's console (GET /v1/console): a key's requests per hour, and a summary with
  // latency percentiles of the last 1024 answered requests and the last minute's token rate.
  void record_key_use(const std::string& key);
  std::vector<int64_t> hourly_requests(const std::string& key) const;  // last 24 hours, oldest first
  nlohmann::json summary(const SchedulerStats& s, int64_t n_slots) const;

private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::map<std::string, int64_t> rejected_;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
  Histogram latency_, ttft_;
  std::deque<double> recent_latency_, recent_ttft_;        // seconds, newest last
  std::deque<std::pair<double, int64_t>> recent_tokens_;   // (time, completion tokens) of the last minute
  std::map<std::string, std::map<int64_t, int64_t>> hourly_;  // key → hour since the epoch → requests
};

}  // namespace distill
