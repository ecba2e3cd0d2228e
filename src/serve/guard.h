// The extraction guard of `distill serve`: watches every key's behaviour as requests arrive,
// scores it with reasons, and answers in grades — each one recorded, each one reversible by the
// owner.
//
//   score = Σ weight × strength over the features of serve/guard_features.h (0 for a key with
//   fewer than min_requests in its window). Levels by score (thresholds in the keys file's
//   "guard" object; 0 turns a level off):
//     alert           ≥ 1.2  a JSON line in --guard-log (and a POST to --guard-webhook)
//     strip_logprobs  ≥ 1.6  answers lose log-probabilities, top_logprobs and echo scores
//     throttle        ≥ 2.2  throttle_rpm requests per minute (429 beyond)
//     block           ≥ 3.0  403 with a message naming the guard
// A key's level only rises by itself (a scraper that pauses stays where it was); the owner lowers
// it: reset (clear the level and the window), allow (never act on this key; still scored), auto.
// The state — windows, levels, the owner's decisions, and the day's quota use — is written
// atomically to --guard-state and read back at start, so a restart forgets nothing.
#pragma once

#include "serve/guard_features.h"

#include <nlohmann/json.hpp>

#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace distill {

enum class GuardLevel { none = 0, alert, strip_logprobs, throttle, block };
const char* guard_level_name(GuardLevel l);

struct GuardThresholds {
  int64_t min_requests = 20;    // a key is judged once its window holds this many requests
  int64_t window = 100;         // requests per key kept in its window
  double alert = 1.2, strip_logprobs = 1.6, throttle = 2.2, block = 3.0;
  int64_t throttle_rpm = 4;
};
// The "guard" object of a keys file (absent: the defaults). Throws naming `where` and the field.
GuardThresholds parse_guard_thresholds(const nlohmann::json& keys_file, const std::string& where);

struct GuardOptions {
  GuardThresholds thresholds;
  std::string state_file;       // empty: the state lives in memory only
  std::string log_file;         // JSON lines: level changes, owner decisions
  std::string webhook_url;      // alerts are POSTed here as JSON (best effort)
  std::function<double()> clock;  // seconds; default: the system clock (tests drive their own)
  bool read_only = false;       // a report from a state file: never written back
};

// What the guard decides for a request before it runs.
struct GuardDecision {
  GuardLevel level = GuardLevel::none;
  bool refuse = false;          // block, or over the throttle's rate
  int status = 0;               // 403 or 429
  std::string message;
  double retry_after_s = 0;
};

struct KeyReport {
  std::string key;
  double score = 0;
  GuardLevel level = GuardLevel::none;
  std::string owner;            // "" (auto), "allow"
  int64_t requests = 0;         // in all, since the key was first seen
  double first_seen_s = 0, flagged_at_s = -1;  // when it first reached alert (-1: never)
  std::vector<std::string> reasons;
  std::vector<FeatureValue> features;
};

class Guard {
public:
  explicit Guard(GuardOptions opt);
  ~Guard();  // saves the state
  double now() const;

  // Before a request runs: what its key's level demands.
  GuardDecision check(const std::string& key);
  // After it ran: the request joins its key's window; the score and level are updated.
  void observe(const GuardRequest& r);
  // The owner's decision for a key: "reset", "allow" or "auto". Throws for an unknown action.
  void owner_action(const std::string& key, const std::string& action);

  std::vector<KeyReport> report();
  nlohmann::json report_json();
  // Quota use carried over restarts: {key: {"day", "tokens"}} as last noted.
  nlohmann::json quota_state();
  void note_quota(const std::string& key, int64_t day, int64_t tokens);
  void save();

private:
  struct KeyState {
    std::deque<RequestTrace> window;
    std::map<int64_t, uint32_t> hours;  // day (since the epoch) → bit per active hour of that day
    GuardLevel level = GuardLevel::none;
    std::string owner;
    int64_t requests = 0;
    int64_t soft_requests = 0, deterministic_requests = 0;  // over the whole history (the window forgets)
    double first_seen_s = 0, flagged_at_s = -1, score = 0;
    std::deque<double> throttle_times;  // requests admitted in the last minute while throttled
    std::vector<FeatureValue> features;
  };
  void score_locked(const std::string& name, KeyState& k);
  double fleet_rate_locked();
  void record_locked(nlohmann::json event);
  void load();
  nlohmann::json state_json_locked() const;
  void write_state_locked();

  GuardOptions opt_;
  std::map<std::string, KeyState> keys_;
  std::map<std::string, std::deque<std::pair<std::string, PromptSketch>>> by_origin_;  // recent prompts per origin
  nlohmann::json quota_ = nlohmann::json::object();
  double last_save_s_ = 0;
  bool dirty_ = false;
  std::mutex mu_;
};

}  // namespace distill
