#include "rl/rollout.h"

#include "model/decoder.h"
#include "rl/grpo_loss.h"

#include <algorithm>
#include <chrono>

namespace distill {

std::vector<Rollout> sample_rollouts(const Model& model, const Tokenizer& tok, const std::vector<std::vector<int32_t>>& prompts,
                                     int64_t group, int64_t max_new_tokens, const SamplerSettings& settings,
                                     RolloutStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n = int64_t(prompts.size()) * group;
  size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.size());
  KVCache cache(model.config, n, int64_t(longest) + max_new_tokens);
  Decoder decoder(model);
  std::vector<Rollout> out(static_cast<size_t>(n));
  std::vector<Sampler> samplers;
  std::vector<std::vector<int32_t>> history(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; ++s) {
    SamplerSettings ss = settings;
    ss.seed = settings.seed * 1000003u + uint64_t(s);
    samplers.emplace_back(ss);
    out[size_t(s)].prompt_index = s / group;
    history[size_t(s)] = prompts[size_t(s / group)];
  }
  // Prefill every slot's prompt in one batch; the last prompt token of each slot gives its logits.
  Batch batch;
  std::vector<int64_t> rows;  // slot of each logits row of the last forward
  for (int64_t s = 0; s < n; ++s) {
    const auto& p = prompts[size_t(s / group)];
    for (size_t i = 0; i < p.size(); ++i) batch.add(p[i], int32_t(i), int32_t(s), i + 1 == p.size());
    rows.push_back(s);
  }
  const float* logits = decoder.forward(batch, cache);
  const auto& stop_ids = tok.stop_ids();
  const int64_t V = model.config.n_vocab;
  const float temp = settings.temperature > 0 ? settings.temperature : 1.0f;
  int64_t tokens = 0;
  for (int64_t step = 0; step < max_new_tokens && !rows.empty(); ++step) {
    batch.clear();
    std::vector<int64_t> next_rows;
    for (size_t r = 0; r < rows.size(); ++r) {
      const int64_t s = rows[r];
      Rollout& ro = out[size_t(s)];
      const float* l = logits + int64_t(r) * V;
      const int32_t tokid = samplers[size_t(s)].sample(l, V, history[size_t(s)]);
      ro.completion.push_back(tokid);
      ro.logp_old.push_back(float(token_logp(l, V, tokid, temp)));
      history[size_t(s)].push_back(tokid);
      ++tokens;
      if (std::find(stop_ids.begin(), stop_ids.end(), tokid) != stop_ids.end()) {
        ro.finished = true;
        continue;
      }
      if (step + 1 < max_new_tokens) {
        batch.add(tokid, int32_t(history[size_t(s)].size() - 1), int32_t(s), true);
        next_rows.push_back(s);
      }
    }
    rows = std::move(next_rows);
    if (!rows.empty()) logits = decoder.forward(batch, cache);
  }
  for (Rollout& ro : out) ro.text = tok.decode(ro.completion, true);
  if (stats) {
    stats->tokens = tokens;
    stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return out;
}

}  // namespace distill
