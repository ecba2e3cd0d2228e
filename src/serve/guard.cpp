#include "serve/guard.h"

#include "core/atomic_file.h"
#include "core/error.h"
#include "net/http_client.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>

namespace distill {

using json = nlohmann::json;

namespace {

constexpr size_t kOriginMemory = 200;  // recent prompts kept per network origin (coordination)
constexpr double kSaveEvery_s = 30;

int64_t day_of(double t) { return int64_t(std::floor(t / 86400)); }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + int64_t(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// Hours of the day with activity in the 7 days up to `now`.
int hours_active(const std::map<int64_t, uint32_t>& hours, double now) {
  uint32_t mask = 0;
  for (const auto& [day, m] : hours)
    if (day > day_of(now) - 7) mask |= m;
  return __builtin_popcount(mask);
}

}  // namespace

const char* guard_level_name(GuardLevel l) {
  switch (l) {
    case GuardLevel::none: return "none";
    case GuardLevel::alert: return "alert";
    case GuardLevel::strip_logprobs: return "strip_logprobs";
    case GuardLevel::throttle: return "throttle";
    case GuardLevel::block: return "block";
  }
  return "?";
}

GuardThresholds parse_guard_thresholds(const json& file, const std::string& where) {
  GuardThresholds t;
  if (!file.is_object() || !file.contains("guard")) return t;
  const json& g = file["guard"];
  if (!g.is_object()) fail("{}: 'guard' must be an object of thresholds", where);
  auto number = [&](const char* f, double& v) {
    if (!g.contains(f)) return;
    if (!g[f].is_number() || g[f].get<double>() < 0) fail("{}: guard.{} must be a number ≥ 0 (0: the action is off)", where, f);
    v = g[f].get<double>();
  };
  auto count = [&](const char* f, int64_t& v, int64_t lo) {
    if (!g.contains(f)) return;
    if (!g[f].is_number_integer() || g[f].get<int64_t>() < lo) fail("{}: guard.{} must be an integer ≥ {}", where, f, lo);
    v = g[f].get<int64_t>();
  };
  number("alert", t.alert), number("strip_logprobs", t.strip_logprobs), number("throttle", t.throttle), number("block", t.block);
  count("min_requests", t.min_requests, 2), count("window", t.window, 2), count("throttle_rpm", t.throttle_rpm, 1);
  if (t.window < t.min_requests) fail("{}: guard.window ({}) must hold at least guard.min_requests ({})", where, t.window, t.min_requests);
  return t;
}

Guard::Guard(GuardOptions opt) : opt_(std::move(opt)) {
  if (!opt_.clock)
    opt_.clock = [] { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); };
  load();
  last_save_s_ = now();
}

Guard::~Guard() {
  try {
    save();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "guard: %s\n", e.what());
  }
}

double Guard::now() const { return opt_.clock(); }

GuardDecision Guard::check(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  GuardDecision d;
  const auto it = keys_.find(name);
  if (it == keys_.end() || it->second.owner == "allow") return d;
  KeyState& k = it->second;
  d.level = k.level;
  if (k.level == GuardLevel::block) {
    d.refuse = true, d.status = 403;
    d.message = fmt::format("the key '{}' is blocked by the server's extraction guard; its owner can lift this", name);
  } else if (k.level == GuardLevel::throttle) {
    const double t = now();
    while (!k.throttle_times.empty() && t - k.throttle_times.front() >= 60) k.throttle_times.pop_front();
    if (int64_t(k.throttle_times.size()) >= opt_.thresholds.throttle_rpm) {
      d.refuse = true, d.status = 429;
      d.retry_after_s = std::max(0.001, k.throttle_times.front() + 60 - t);
      d.message = fmt::format("the key '{}' is throttled to {} requests per minute by the server's extraction guard", name,
                              opt_.thresholds.throttle_rpm);
    } else {
      k.throttle_times.push_back(t);
    }
  }
  return d;
}

void Guard::observe(const GuardRequest& r) {
  std::lock_guard<std::mutex> lock(mu_);
  KeyState& k = keys_[r.key];
  if (k.requests++ == 0) k.first_seen_s = r.time_s;
  RequestTrace t;
  t.time_s = r.time_s, t.prompt_hash = r.prompt_hash, t.sketch = r.sketch, t.max_tokens = r.max_tokens;
  t.soft_labels = r.logprobs || r.top_logprobs > 0 || r.echo;
  t.deterministic = r.greedy || r.n > 1;
  t.length_capped = r.length_capped;
  k.soft_requests += t.soft_labels, k.deterministic_requests += t.deterministic;
  for (const RequestTrace& e : k.window) {
    if (e.prompt_hash == r.prompt_hash) t.repeat = true;
    else t.nearest = std::max(t.nearest, sketch_similarity(e.sketch, r.sketch));
  }
  if (!r.origin.empty()) {
    auto& recent = by_origin_[r.origin];
    for (const auto& [other, sketch] : recent)
      if (other != r.key) {
        const double s = sketch_similarity(sketch, r.sketch);
        if (s > t.nearest_other) t.nearest_other = s, t.other_key = other;
      }
    recent.emplace_back(r.key, r.sketch);
    if (recent.size() > kOriginMemory) recent.pop_front();
  }
  k.window.push_back(std::move(t));
  while (int64_t(k.window.size()) > opt_.thresholds.window) k.window.pop_front();
  k.hours[day_of(r.time_s)] |= 1u << (int64_t(std::floor(r.time_s / 3600)) % 24);
  while (!k.hours.empty() && k.hours.begin()->first <= day_of(r.time_s) - 7) k.hours.erase(k.hours.begin());
  score_locked(r.key, k);
  dirty_ = true;
  if (r.time_s - last_save_s_ >= kSaveEvery_s) {
    last_save_s_ = r.time_s;
    write_state_locked();
  }
}

double Guard::fleet_rate_locked() {
  std::vector<double> rates;
  for (const auto& [name, k] : keys_)
    if (int64_t(k.window.size()) >= opt_.thresholds.min_requests) {
      const double span_h = std::max(k.window.back().time_s - k.window.front().time_s, 1.0) / 3600.0;
      rates.push_back(double(k.window.size()) / span_h);
    }
  return median(rates);
}

void Guard::score_locked(const std::string& name, KeyState& k) {
  const GuardThresholds& th = opt_.thresholds;
  if (int64_t(k.window.size()) < th.min_requests) return;
  const std::vector<RequestTrace> w(k.window.begin(), k.window.end());
  const double t = k.window.back().time_s;
  k.features = window_features(w, fleet_rate_locked(), hours_active(k.hours, t));
  k.score = 0;
  for (const FeatureValue& f : k.features) k.score += f.weight * f.strength;
  GuardLevel level = GuardLevel::none;
  const std::pair<double, GuardLevel> steps[] = {{th.alert, GuardLevel::alert}, {th.strip_logprobs, GuardLevel::strip_logprobs},
                                                 {th.throttle, GuardLevel::throttle}, {th.block, GuardLevel::block}};
  for (const auto& [at, l] : steps)
    if (at > 0 && k.score >= at) level = l;
  if (level <= k.level || k.owner == "allow") return;
  const GuardLevel from = k.level;
  k.level = level;
  if (k.flagged_at_s < 0) k.flagged_at_s = t;
  json reasons = json::array();
  for (const FeatureValue& f : k.features)
    if (f.strength > 0) reasons.push_back(feature_reason(f, 0));
  record_locked({{"event", "level"}, {"key", name}, {"from", guard_level_name(from)}, {"to", guard_level_name(level)},
                 {"score", k.score}, {"reasons", reasons}});
  write_state_locked();
}

void Guard::record_locked(json event) {
  event["time_s"] = now();
  if (!opt_.log_file.empty()) {
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(opt_.log_file.c_str(), "a"), std::fclose);
    if (f) std::fprintf(f.get(), "%s\n", event.dump().c_str());
    else std::fprintf(stderr, "guard: cannot append to %s\n", opt_.log_file.c_str());
  }
  if (!opt_.webhook_url.empty()) {
    // Best effort, off the request path: an alert must not slow serving or fail it.
    std::thread([url = opt_.webhook_url, body = event.dump()] {
      try {
        HttpClient(url).post_json("", body, {}, 5.0);
      } catch (const std::exception&) {
      }
    }).detach();
  }
}

void Guard::owner_action(const std::string& name, const std::string& action) {
  std::lock_guard<std::mutex> lock(mu_);
  if (action != "reset" && action != "allow" && action != "auto")
    fail("unknown guard action '{}' (reset, allow or auto)", action);
  KeyState& k = keys_[name];
  const GuardLevel from = k.level;
  if (action == "reset") k.window.clear(), k.hours.clear(), k.level = GuardLevel::none, k.flagged_at_s = -1, k.score = 0, k.features.clear();
  if (action == "allow") k.owner = "allow", k.level = GuardLevel::none;
  if (action == "auto") k.owner = "";
  record_locked({{"event", "owner"}, {"key", name}, {"action", action}, {"from", guard_level_name(from)}});
  write_state_locked();
}

std::vector<KeyReport> Guard::report() {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, std::vector<double>> values;  // feature → values over judged keys
  for (const auto& [name, k] : keys_)
    for (const FeatureValue& f : k.features) values[f.name].push_back(f.value);
  std::vector<KeyReport> out;
  for (const auto& [name, k] : keys_) {
    KeyReport r{name, k.score, k.level, k.owner, k.requests, k.first_seen_s, k.flagged_at_s, {}, k.features};
    std::vector<const FeatureValue*> counted;
    for (const FeatureValue& f : k.features)
      if (f.strength > 0) counted.push_back(&f);
    std::sort(counted.begin(), counted.end(), [](auto* a, auto* b) { return a->weight * a->strength > b->weight * b->strength; });
    for (const FeatureValue* f : counted) {
      const std::string n = f->name;
      const double own = n == "soft_labels"     ? double(k.soft_requests) / double(std::max<int64_t>(1, k.requests))
                         : n == "deterministic" ? double(k.deterministic_requests) / double(std::max<int64_t>(1, k.requests))
                                                : -1;
      r.reasons.push_back(feature_reason(*f, median(values[f->name]), own));
    }
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const KeyReport& a, const KeyReport& b) { return a.score > b.score; });
  return out;
}

json Guard::report_json() {
  json keys = json::array();
  for (const KeyReport& r : report()) {
    json features = json::object();
    for (const FeatureValue& f : r.features) features[f.name] = {{"value", f.value}, {"strength", f.strength}, {"weight", f.weight}};
    keys.push_back({{"key", r.key}, {"score", r.score}, {"level", guard_level_name(r.level)}, {"owner", r.owner.empty() ? "auto" : r.owner},
                    {"requests", r.requests}, {"first_seen_s", r.first_seen_s},
                    {"flagged_at_s", r.flagged_at_s < 0 ? json(nullptr) : json(r.flagged_at_s)}, {"reasons", r.reasons},
                    {"features", features}});
  }
  const GuardThresholds& t = opt_.thresholds;
  return {{"object", "guard"}, {"time_s", now()}, {"keys", keys},
          {"thresholds", {{"alert", t.alert}, {"strip_logprobs", t.strip_logprobs}, {"throttle", t.throttle}, {"block", t.block},
                          {"throttle_rpm", t.throttle_rpm}, {"min_requests", t.min_requests}, {"window", t.window}}}};
}

}  // namespace distill
