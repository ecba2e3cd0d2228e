#include "serve/guard_features.h"

#include "core/rng.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>
#include <unordered_set>

namespace distill {
namespace {

// 0 below `lo`, 1 above `hi`, linear between (hi < lo: the feature counts as the value falls).
double ramp(double v, double lo, double hi) { return std::clamp((v - lo) / (hi - lo), 0.0, 1.0); }

}  // namespace

PromptSketch sketch_text(std::string_view text) {
  std::string norm;
  for (const char c : text) {
    const bool space = std::isspace(uint8_t(c));
    if (space && (norm.empty() || norm.back() == ' ')) continue;
    norm += space ? ' ' : char(std::tolower(uint8_t(c)));
  }
  PromptSketch s;
  s.min.fill(~0u);
  const size_t k = 5;
  if (norm.size() < k) norm.resize(k, ' ');  // a very short prompt is one shingle
  for (size_t i = 0; i + k <= norm.size(); ++i) {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the shingle, then one mix per hash function
    for (size_t j = 0; j < k; ++j) h = (h ^ uint8_t(norm[i + j])) * 0x100000001b3ull;
    for (int f = 0; f < kSketchSize; ++f) s.min[size_t(f)] = std::min(s.min[size_t(f)], uint32_t(mix64(h + uint64_t(f) * 0x9e3779b97f4a7c15ull) >> 32));
  }
  s.empty = false;
  return s;
}

double sketch_similarity(const PromptSketch& a, const PromptSketch& b) {
  if (a.empty || b.empty) return 0;
  int same = 0;
  for (int f = 0; f < kSketchSize; ++f) same += a.min[size_t(f)] == b.min[size_t(f)];
  return double(same) / kSketchSize;
}

std::vector<FeatureValue> window_features(const std::vector<RequestTrace>& w, double fleet_rate_per_h, int hours_active) {
  const double n = double(w.size());
  double soft = 0, det = 0, distinct = 0, templ = 0, para = 0, capped = 0, coord = 0;
  std::set<int64_t> max_tokens;
  for (const RequestTrace& r : w) {
    soft += r.soft_labels, det += r.deterministic, distinct += !r.repeat, capped += r.length_capped;
    templ += r.nearest >= 0.4, para += r.nearest >= 0.15 && r.nearest < 0.4;
    coord += r.nearest_other >= 0.5;
    max_tokens.insert(r.max_tokens);
  }
  // Gaps between requests: their coefficient of variation (1 for a Poisson process, ≫ 1 for bursts).
  double mean = 0, var = 0;
  const size_t gaps = w.size() > 1 ? w.size() - 1 : 0;
  for (size_t i = 1; i < w.size(); ++i) mean += w[i].time_s - w[i - 1].time_s;
  if (gaps) mean /= double(gaps);
  for (size_t i = 1; i < w.size(); ++i) var += std::pow(w[i].time_s - w[i - 1].time_s - mean, 2);
  const double cv = gaps > 1 && mean > 0 ? std::sqrt(var / double(gaps - 1)) / mean : 10.0;
  const double span_h = w.size() > 1 ? std::max(w.back().time_s - w.front().time_s, 1.0) / 3600.0 : 1.0;
  const double rate = n / span_h;
  const double vol_ratio = fleet_rate_per_h > 0 ? rate / fleet_rate_per_h : 1.0;
  const double one_length = max_tokens.size() == 1 ? capped / n : 0.0;
  return {
      {"soft_labels", soft / n, ramp(soft / n, 0.3, 0.8), 0.6},
      {"deterministic", det / n, ramp(det / n, 0.5, 0.9), 0.3},
      {"no_repeats", distinct / n, ramp(distinct / n, 0.9, 1.0), 0.2},
      {"template", templ / n, ramp(templ / n, 0.25, 0.6), 1.2},
      {"paraphrase", para / n, ramp(para / n, 0.6, 0.85), 0.8},
      {"regular_timing", cv, ramp(cv, 1.0, 0.4), 0.7},
      {"volume", vol_ratio, ramp(std::log10(std::max(vol_ratio, 1e-9)), 0.7, 1.7), 1.0},
      {"round_the_clock", double(hours_active), ramp(double(hours_active), 16, 22), 1.0},
      {"length_targeting", one_length, ramp(one_length, 0.6, 0.9), 0.4},
      {"coordinated", coord / n, ramp(coord / n, 0.2, 0.5), 1.0},
  };
}

std::string feature_reason(const FeatureValue& f, double fleet, double own) {
  const std::string name = f.name;
  auto pct = [](double v) { return fmt::format("{:.0f}%", 100 * v); };
  const std::string history = own >= 0 ? fmt::format("; {} over the key's whole history", pct(own)) : "";
  if (name == "soft_labels")
    return fmt::format("{} of requests ask for log-probabilities or echo scoring (fleet median {}{})", pct(f.value), pct(fleet), history);
  if (name == "deterministic") return fmt::format("{} at temperature 0 or with n > 1 (fleet median {}{})", pct(f.value), pct(fleet), history);
  if (name == "no_repeats") return fmt::format("{} of prompts distinct", pct(f.value));
  if (name == "template") return fmt::format("{} of prompts fill one template (≥ 40% alike; fleet median {})", pct(f.value), pct(fleet));
  if (name == "paraphrase") return fmt::format("{} of prompts reword earlier ones (15–40% alike; fleet median {})", pct(f.value), pct(fleet));
  if (name == "regular_timing") return fmt::format("requests at regular intervals (gap variation {:.2f}; people: > 1)", f.value);
  if (name == "volume") return fmt::format("{:.0f}× the median key's request rate", f.value);
  if (name == "round_the_clock") return fmt::format("active in {:.0f} of 24 hours of the day over the last week", f.value);
  if (name == "length_targeting") return fmt::format("{} of answers cut at one fixed max_tokens", pct(f.value));
  if (name == "coordinated") return fmt::format("{} of prompts alike to another key's from the same origin", pct(f.value));
  return name;
}

}  // namespace distill
