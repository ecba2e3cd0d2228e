#include "sample/watermark.h"

#include "core/digest.h"
#include "core/rng.h"

#include <algorithm>
#include <cmath>

namespace distill {
namespace {

// Green when the token's hash falls in the lowest gamma share of 64-bit values.
uint64_t green_threshold(float gamma) {
  const double g = std::clamp(double(gamma), 0.0, 1.0);
  return g >= 1.0 ? ~0ull : uint64_t(g * 18446744073709551616.0);
}

}  // namespace

uint64_t watermark_key_from_secret(const std::string& secret) { return sha256_u64("distill-watermark:" + secret); }

uint64_t watermark_context_seed(const WatermarkSettings& w, const int32_t* history, size_t at) {
  uint64_t h = mix64(w.key);
  for (size_t i = at - size_t(w.context); i < at; ++i) h = mix64(h ^ uint64_t(uint32_t(history[i])));
  return h;
}

bool watermark_is_green(const WatermarkSettings& w, uint64_t context_seed, int32_t token) {
  return mix64(context_seed ^ (uint64_t(uint32_t(token)) * 0x9e3779b97f4a7c15ull)) < green_threshold(w.gamma);
}

void watermark_logits(const WatermarkSettings& w, const std::vector<int32_t>& history, float* logits, int64_t n_vocab) {
  if (!w.enabled() || history.size() < size_t(w.context)) return;
  const uint64_t seed = watermark_context_seed(w, history.data(), history.size());
  const uint64_t cut = green_threshold(w.gamma);
  for (int64_t t = 0; t < n_vocab; ++t)
    if (mix64(seed ^ (uint64_t(t) * 0x9e3779b97f4a7c15ull)) < cut) logits[t] += w.delta;
}

void WatermarkDetector::add(const std::vector<int32_t>& ids, size_t from) {
  for (size_t at = std::max(from, size_t(w_.context)); at < ids.size(); ++at) {
    const uint64_t seed = watermark_context_seed(w_, ids.data(), at);
    // The tuple (context, token) as one hash.
    if (!seen_.insert(mix64(seed ^ mix64(uint64_t(uint32_t(ids[at])) + 1))).second) {
      ++repeats_;
      continue;
    }
    ++tokens_;
    green_ += watermark_is_green(w_, seed, ids[at]) ? 1 : 0;
  }
}

WatermarkScore WatermarkDetector::score() const {
  WatermarkScore s;
  s.tokens = tokens_;
  s.green = green_;
  s.repeats = repeats_;
  const double g = w_.gamma;
  if (tokens_ > 0) {
    s.z = (double(green_) - g * double(tokens_)) / std::sqrt(double(tokens_) * g * (1 - g));
    s.p_value = binomial_upper_tail(tokens_, green_, g);
  }
  return s;
}

double binomial_upper_tail(int64_t n, int64_t k, double p) {
  if (k <= 0) return 1.0;
  if (k > n) return 0.0;
  // Sum of C(n, i) p^i (1-p)^(n-i) for i = k..n in log space, largest term first.
  const double lp = std::log(p), lq = std::log1p(-p);
  auto log_term = [&](int64_t i) {
    return std::lgamma(double(n) + 1) - std::lgamma(double(i) + 1) - std::lgamma(double(n - i) + 1) + double(i) * lp +
           double(n - i) * lq;
  };
  const int64_t mode = std::max<int64_t>(k, int64_t(std::floor(double(n + 1) * p)));
  const double top = log_term(std::min(mode, n));
  double sum = 0;
  for (int64_t i = k; i <= n; ++i) {
    const double t = std::exp(log_term(i) - top);
    sum += t;
    if (i > mode && t < 1e-17 * sum) break;  // the tail beyond the mode only shrinks
  }
  return std::min(1.0, std::exp(top) * sum);
}

}  // namespace distill
