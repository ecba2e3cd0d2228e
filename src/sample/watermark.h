// A keyed green-list watermark on sampled tokens (Kirchenbauer et al. 2023, "soft" variant) and
// its detection.
//
// At each step the previous `context` tokens and the secret key seed a hash that splits the
// vocabulary: a fraction `gamma` of the tokens is "green". `delta` is added to the green tokens'
// logits before sampling, so a watermarked text holds more green tokens than the gamma a text
// written without the key holds. Where the model is sure of its next token a bias of 2 changes
// nothing; where several tokens are plausible it tips the choice — the quality cost stays small
// and the signal grows with the number of such choices.
//
// Detection needs the key and the token ids only, not the model: count the green tokens of the
// scored positions and test against Binomial(T, gamma). Each (context, token) tuple is scored once
// (a repeated phrase is not fresh evidence), which keeps the p-value honest for repetitive texts.
// The same test on a suspect model's own generations is the radioactivity test (Sander et al.
// 2024): a model trained on watermarked text reproduces the green bias.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

namespace distill {

struct WatermarkSettings {
  uint64_t key = 0;      // derived from the owner's secret (watermark_key_from_secret)
  float gamma = 0.25f;   // share of green tokens
  float delta = 0.0f;    // logit bias on green tokens; 0 = off (serve: 2 with a key)
  int context = 1;       // previous tokens hashed into the green list (1..8)
  bool enabled() const { return delta != 0.0f; }
};

// 64 bits of SHA-256 of the secret (the secret itself is never stored by the server).
uint64_t watermark_key_from_secret(const std::string& secret);

// The green list's seed for the tokens before position `at` (history[at - context .. at - 1]).
uint64_t watermark_context_seed(const WatermarkSettings& w, const int32_t* history, size_t at);
// Is `token` green under a context seed?
bool watermark_is_green(const WatermarkSettings& w, uint64_t context_seed, int32_t token);

// Adds delta to the green tokens' logits for the step after `history` (nothing when the history
// is shorter than the context).
void watermark_logits(const WatermarkSettings& w, const std::vector<int32_t>& history, float* logits, int64_t n_vocab);

struct WatermarkScore {
  int64_t tokens = 0;   // scored positions (unique (context, token) tuples)
  int64_t green = 0;
  int64_t repeats = 0;  // positions skipped as repeats of a scored tuple
  double z = 0;         // (green − γT) / sqrt(T γ (1 − γ))
  double p_value = 1;   // P(Binomial(T, γ) ≥ green): the chance of this many greens without the key
};

// Scores ids[from..]: each position whose previous `context` tokens exist. Tuples scored by an
// earlier add() count as repeats: several texts are tested as one body.
class WatermarkDetector {
public:
  explicit WatermarkDetector(const WatermarkSettings& w) : w_(w) {}
  void add(const std::vector<int32_t>& ids, size_t from = 0);
  WatermarkScore score() const;

private:
  WatermarkSettings w_;
  std::unordered_set<uint64_t> seen_;  // (context, token) tuple hashes scored so far
  int64_t green_ = 0, tokens_ = 0, repeats_ = 0;
};

// Upper tail of Binomial(n, p) at k, exactly (log-space sum), and its z-score.
double binomial_upper_tail(int64_t n, int64_t k, double p);

}  // namespace distill
