// The guard's state file: what a restart must not forget (windows, levels, the owner's decisions,
// quota use). JSON, written atomically; a file that does not parse is refused with its name.
#include "core/atomic_file.h"
#include "core/error.h"
#include "serve/guard.h"

#include <filesystem>

namespace distill {

using json = nlohmann::json;

namespace {

json trace_json(const RequestTrace& t) {
  return {t.time_s, t.prompt_hash, t.sketch.empty ? json(nullptr) : json(t.sketch.min), t.max_tokens,
          int(t.soft_labels) | int(t.deterministic) << 1 | int(t.length_capped) << 2 | int(t.repeat) << 3,
          t.nearest, t.nearest_other, t.other_key};
}

RequestTrace trace_from(const json& j) {
  RequestTrace t;
  t.time_s = j.at(0).get<double>();
  t.prompt_hash = j.at(1).get<uint64_t>();
  if (!j.at(2).is_null()) t.sketch.min = j.at(2).get<std::array<uint32_t, kSketchSize>>(), t.sketch.empty = false;
  t.max_tokens = j.at(3).get<int64_t>();
  const int flags = j.at(4).get<int>();
  t.soft_labels = flags & 1, t.deterministic = flags & 2, t.length_capped = flags & 4, t.repeat = flags & 8;
  t.nearest = j.at(5).get<double>(), t.nearest_other = j.at(6).get<double>(), t.other_key = j.at(7).get<std::string>();
  return t;
}

GuardLevel level_from(const std::string& s) {
  for (GuardLevel l : {GuardLevel::none, GuardLevel::alert, GuardLevel::strip_logprobs, GuardLevel::throttle, GuardLevel::block})
    if (s == guard_level_name(l)) return l;
  fail("unknown guard level '{}'", s);
}

}  // namespace

json Guard::state_json_locked() const {
  json keys = json::object();
  for (const auto& [name, k] : keys_) {
    json window = json::array(), hours = json::object();
    for (const RequestTrace& t : k.window) window.push_back(trace_json(t));
    for (const auto& [day, mask] : k.hours) hours[std::to_string(day)] = mask;
    keys[name] = {{"level", guard_level_name(k.level)}, {"owner", k.owner}, {"requests", k.requests},
                  {"soft_requests", k.soft_requests}, {"deterministic_requests", k.deterministic_requests},
                  {"first_seen_s", k.first_seen_s}, {"flagged_at_s", k.flagged_at_s}, {"score", k.score},
                  {"hours", hours}, {"window", window}};
  }
  return {{"version", 1}, {"keys", keys}, {"quota", quota_}};
}

json Guard::quota_state() {
  std::lock_guard<std::mutex> lock(mu_);
  return quota_;
}

void Guard::note_quota(const std::string& key, int64_t day, int64_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  quota_[key] = {{"day", day}, {"tokens", tokens}};
  dirty_ = true;
}

void Guard::save() {
  std::lock_guard<std::mutex> lock(mu_);
  write_state_locked();
}

void Guard::write_state_locked() {
  if (opt_.state_file.empty() || opt_.read_only) return;
  const std::string text = state_json_locked().dump();
  write_file_atomic(opt_.state_file, text.data(), text.size());
  dirty_ = false;
}

void Guard::load() {
  if (opt_.state_file.empty() || !std::filesystem::exists(opt_.state_file)) return;
  const std::string text = read_text_file(opt_.state_file, "guard state file");
  try {
    const json j = json::parse(text);
    if (j.value("version", 0) != 1) fail("unsupported version");
    for (const auto& [name, e] : j.at("keys").items()) {
      KeyState k;
      k.level = level_from(e.at("level").get<std::string>());
      k.owner = e.at("owner").get<std::string>();
      k.requests = e.at("requests").get<int64_t>();
      k.soft_requests = e.value("soft_requests", int64_t(0));
      k.deterministic_requests = e.value("deterministic_requests", int64_t(0));
      k.first_seen_s = e.at("first_seen_s").get<double>();
      k.flagged_at_s = e.at("flagged_at_s").get<double>();
      k.score = e.at("score").get<double>();
      for (const auto& [day, mask] : e.at("hours").items()) k.hours[std::stoll(day)] = mask.get<uint32_t>();
      for (const json& t : e.at("window")) k.window.push_back(trace_from(t));
      keys_[name] = std::move(k);
    }
    quota_ = j.value("quota", json::object());
  } catch (const std::exception& e) {
    fail("{}: not a guard state file ({}); move it away to start afresh", opt_.state_file, e.what());
  }
  // Features and reasons from the windows (the levels stay as they were saved).
  for (auto& [name, k] : keys_) score_locked(name, k);
}

}  // namespace distill
