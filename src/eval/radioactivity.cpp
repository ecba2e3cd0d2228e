#include "eval/radioactivity.h"

#include "core/error.h"
#include "generate/batch_generate.h"
#include "kernels/kernels.h"
#include "model/decoder.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <unordered_map>

namespace distill {

RadioactivityResult radioactivity_test(const Model& suspect, const Tokenizer& tok, const WatermarkSettings& w,
                                       const RadioactivityOptions& opt) {
  std::vector<std::vector<int32_t>> prompts = opt.prompts;
  if (prompts.empty()) {
    const int32_t bos = tok.bos_id() >= 0 ? tok.bos_id() : 0;  // no BOS: token 0 starts every sample
    prompts.assign(1, {bos});
  }
  for (const auto& p : prompts)
    if (p.empty()) fail("radioactivity test: an empty prompt (every sample needs a first token)");
  BatchGenerateOptions g;
  g.group = std::max<int64_t>(1, (opt.samples + int64_t(prompts.size()) - 1) / int64_t(prompts.size()));
  g.max_new_tokens = opt.max_new_tokens;
  g.sampler.temperature = opt.temperature;
  g.sampler.top_k = 0, g.sampler.top_p = 1.0f, g.sampler.min_p = 0.0f;  // no truncation: the full distribution
  g.sampler.seed = opt.seed;
  const auto t0 = std::chrono::steady_clock::now();
  BatchGenerateStats stats;
  const auto samples = generate_batch(suspect, tok, prompts, g, &stats);
  RadioactivityResult out;
  out.sampled_tokens = stats.tokens;
  WatermarkDetector detector(w);
  // Per distinct context: the mean green mass over its occurrences, and the mean Σp².
  struct Context {
    double green = 0, sq = 0;
    int64_t n = 0;
  };
  std::unordered_map<uint64_t, Context> contexts;
  Decoder decoder(suspect);
  const int64_t V = suspect.config.n_vocab;
  for (const SampledCompletion& c : samples) {
    // The context of the first sampled token is the prompt's end.
    std::vector<int32_t> ids = prompts[size_t(c.prompt_index)];
    const size_t from = ids.size();
    ids.insert(ids.end(), c.completion.begin(), c.completion.end());
    detector.add(ids, from);
    if (ids.size() < 2) continue;
    Tensor logits = decoder.forward_full(ids.data(), 1, int64_t(ids.size()) - 1);  // row i predicts ids[i + 1]
    float* rows = logits.data<float>();
    for (size_t at = std::max(from, size_t(w.context)); at < ids.size(); ++at) {
      const uint64_t ctx = watermark_context_seed(w, ids.data(), at);
      float* p = rows + int64_t(at - 1) * V;
      softmax_forward(p, 1, V);
      Context& e = contexts[ctx];
      for (int64_t t = 0; t < V; ++t) {
        e.green += watermark_is_green(w, ctx, int32_t(t)) ? p[t] : 0.0;
        e.sq += double(p[t]) * p[t];
      }
      ++e.n;
    }
  }
  // One term per context: its green list is one draw, however often the context occurs. The
  // variance of the mean distribution's green mass is γ(1−γ)‖p̄‖², bounded above by the mean of
  // ‖p‖² (convexity): the test errs on the side of "no evidence".
  double sum = 0, var = 0;
  for (const auto& [ctx, e] : contexts) {
    sum += e.green / double(e.n) - w.gamma;
    var += w.gamma * (1 - w.gamma) * e.sq / double(e.n);
    out.green_mass += e.green / double(e.n);
  }
  out.contexts = int64_t(contexts.size());
  if (out.contexts > 0) {
    out.green_mass /= double(out.contexts);
    out.z = sum / std::sqrt(var);
    out.p_value = 0.5 * std::erfc(out.z / std::sqrt(2.0));
  }
  out.sampled = detector.score();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

const char* radioactivity_verdict(double p) {
  if (p < 1e-5) return "strong evidence: this model was trained on text carrying the watermark";
  if (p < 1e-3) return "evidence that this model saw watermarked text; sample more (--samples) to be sure";
  if (p < 0.05) return "weak signal: not evidence on its own; sample more (--samples)";
  return "no evidence: the model's samples are as green as chance";
}

}  // namespace distill
