// Radioactivity test (Sander et al. 2024, "Watermarking makes language models radioactive"): was
// a suspect model trained on text carrying our watermark? A model fine-tuned on watermarked
// answers learns the green-list bias with them. The suspect samples from prompts; then, with its
// weights open to us, we read its full next-token distribution at every position of those
// samples and add up the probability it puts on the green tokens of that position's context.
//
// Under the null hypothesis (a model that never saw our answers) the green list of a context is
// a fair coin per token, drawn independently of the model: the green mass g of a distribution p
// has mean gamma and variance gamma (1 − gamma) Σ p², whatever the model. Each distinct context
// is one term (its list is one draw however often it occurs: the mean green mass over its
// occurrences, with the mean Σ p² as a conservative variance), summed into a z-score and a
// one-sided normal p-value. This uses every token's probability, not only the sampled one,
// which is why a few thousand tokens suffice where counting sampled green tokens needs far more;
// the counting test (the detector's, on the same samples) is reported beside it.
#pragma once

#include "model/model.h"
#include "sample/watermark.h"
#include "tokenizer/tokenizer.h"

#include <cstdint>
#include <vector>

namespace distill {

struct RadioactivityOptions {
  std::vector<std::vector<int32_t>> prompts;  // empty: each sample starts from the BOS token alone
  int64_t samples = 64;          // sequences sampled in all (spread over the prompts)
  int64_t max_new_tokens = 128;
  float temperature = 1.0f;      // plain sampling: the model's own distribution, where the bias lives
  uint64_t seed = 1;
};

struct RadioactivityResult {
  // The distribution test (the verdict's): contexts scored, mean green mass, z, p.
  int64_t contexts = 0;
  double green_mass = 0, z = 0, p_value = 1;
  WatermarkScore sampled;        // the counting test on the sampled tokens
  int64_t sampled_tokens = 0;
  double seconds = 0;
};

RadioactivityResult radioactivity_test(const Model& suspect, const Tokenizer& tok, const WatermarkSettings& w,
                                       const RadioactivityOptions& opt);

// One line on what a p-value means for the owner.
const char* radioactivity_verdict(double p_value);

}  // namespace distill
