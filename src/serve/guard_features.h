// What the extraction guard knows of a request, and the per-key behaviour features it scores.
//
// Privacy: a prompt is reduced, in memory, to a SHA-256-derived identity (exact repeats) and a
// MinHash sketch of its character 5-grams (near-duplicates: templates, paraphrases); neither can
// be turned back into the text, and neither is written anywhere but the guard's state file.
//
// Features, each over a key's sliding window of recent requests (what a scraper cannot avoid
// without slowing itself down or spoiling its data):
//   soft_labels       share asking log-probabilities, top_logprobs or echo scoring
//   deterministic     share at temperature 0 or with n > 1 (labels, or many samples per prompt)
//   no_repeats        share of distinct prompts (people retry; scrapers never ask twice)
//   template          share whose nearest earlier prompt is ≥ 40 % similar (slot-filled prompts)
//   paraphrase        share whose nearest earlier prompt is 15–40 % similar (reworded sweeps)
//   regular_timing    1 − coefficient of variation of the gaps (people are bursty, scripts are not)
//   volume            requests per hour against the fleet's median key
//   round_the_clock   hours of the day with activity over the last 7 days (people sleep)
//   length_targeting  share stopped by max_tokens at one fixed max_tokens
//   coordinated       share ≥ 50 % similar to recent prompts of other keys from the same origin
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace distill {

constexpr int kSketchSize = 32;

struct PromptSketch {
  std::array<uint32_t, kSketchSize> min{};  // per hash function, the smallest shingle hash
  bool empty = true;
};

// MinHash of the lower-cased, whitespace-collapsed text's character 5-grams.
PromptSketch sketch_text(std::string_view text);
// Estimated Jaccard similarity of the two shingle sets (0 when either is empty).
double sketch_similarity(const PromptSketch& a, const PromptSketch& b);

// One request as the guard sees it (no text).
struct GuardRequest {
  std::string key = "-";         // key name ("-" without keys)
  std::string origin;            // remote address
  double time_s = 0;             // the guard's clock, seconds
  uint64_t prompt_hash = 0;
  PromptSketch sketch;
  int64_t prompt_tokens = 0, completion_tokens = 0, max_tokens = -1;
  int n = 1, top_logprobs = 0;
  bool logprobs = false, echo = false, greedy = false;
  bool length_capped = false;    // ended by max_tokens
};

// A request in a key's window, with its similarity to what came before.
struct RequestTrace {
  double time_s = 0;
  uint64_t prompt_hash = 0;
  PromptSketch sketch;
  int64_t max_tokens = -1;
  bool soft_labels = false, deterministic = false, length_capped = false;
  bool repeat = false;           // the same prompt is earlier in the window
  double nearest = 0;            // best similarity to an earlier, different prompt of the key
  double nearest_other = 0;      // best similarity to a recent prompt of another key, same origin
  std::string other_key;         // that key
};

struct FeatureValue {
  const char* name;
  double value = 0;       // the measured quantity
  double strength = 0;    // 0 (normal) … 1 (what scrapers show)
  double weight = 0;      // its share of the score
};

// The features of a window; `fleet_rate_per_h` is the median key's request rate, `hours_active`
// the hours of the day the key was seen in over the last 7 days.
std::vector<FeatureValue> window_features(const std::vector<RequestTrace>& window, double fleet_rate_per_h, int hours_active);

// A person-readable reason for a feature that counts (strength > 0): its value against the fleet's
// median and, for the request shares, against the key's own whole history (`own` < 0: unknown).
std::string feature_reason(const FeatureValue& f, double fleet_median, double own = -1);

}  // namespace distill
