#include "generate/batch_generate.h"

#include "model/decoder.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace distill {

void top_k_logprobs(const float* logits, int64_t n_vocab, int k, int32_t* ids, float* logp) {
  thread_local std::vector<int32_t> idx;
  idx.resize(size_t(n_vocab));
  std::iota(idx.begin(), idx.end(), 0);
  const int64_t kk = std::min<int64_t>(k, n_vocab);
  auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(), better);
  const double max = logits[idx[0]];
  double sum = 0.0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i]) - max);
  const double lse = max + std::log(sum);
  for (int64_t i = 0; i < k; ++i) {
    ids[i] = i < kk ? idx[size_t(i)] : -1;
    logp[i] = i < kk ? float(double(logits[idx[size_t(i)]]) - lse) : -INFINITY;
  }
}

std::vector<SampledCompletion> generate_batch(const Model& model, const Tokenizer& tok,
                                              const std::vector<std::vector<int32_t>>& prompts,
                                              const BatchGenerateOptions& opt, BatchGenerateStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t group = opt.group;
  const int64_t n = int64_t(prompts.size()) * group;
  size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.size());
  KVCache cache(model.config, n, int64_t(longest) + opt.max_new_tokens);
  Decoder decoder(model);
  std::vector<SampledCompletion> out(static_cast<size_t>(n));
  std::vector<Sampler> samplers;
  std::vector<std::vector<int32_t>> history(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; ++s) {
    SamplerSettings ss = opt.sampler;
    ss.seed = opt.prompt_seeds.empty() ? opt.sampler.seed * 1000003u + uint64_t(s)
                                       : opt.prompt_seeds[size_t(s / group)] * 1000003u + uint64_t(s % group);
    samplers.emplace_back(ss);
    out[size_t(s)].prompt_index = s / group;
    out[size_t(s)].sample_index = s % group;
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
  const float* logits = n > 0 ? decoder.forward(batch, cache) : nullptr;
  const auto& stop_ids = tok.stop_ids();
  const int64_t V = model.config.n_vocab;
  const float temp = opt.sampler.temperature > 0 ? opt.sampler.temperature : 1.0f;
  const int K = opt.top_k_logprobs;
  int64_t tokens = 0;
  for (int64_t step = 0; step < opt.max_new_tokens && !rows.empty(); ++step) {
    batch.clear();
    std::vector<int64_t> next_rows;
    for (size_t r = 0; r < rows.size(); ++r) {
      const int64_t s = rows[r];
      SampledCompletion& c = out[size_t(s)];
      const float* l = logits + int64_t(r) * V;
      const int32_t id = samplers[size_t(s)].sample(l, V, history[size_t(s)]);
      c.completion.push_back(id);
      c.logp_old.push_back(float(token_logprob(l, V, id, temp)));
      if (K > 0) {
        c.topk_ids.resize(c.topk_ids.size() + size_t(K));
        c.topk_logp.resize(c.topk_logp.size() + size_t(K));
        top_k_logprobs(l, V, K, c.topk_ids.data() + c.topk_ids.size() - K, c.topk_logp.data() + c.topk_logp.size() - K);
      }
      history[size_t(s)].push_back(id);
      ++tokens;
      if (std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end()) {
        c.finished = true;
        continue;
      }
      if (step + 1 < opt.max_new_tokens) {
        batch.add(id, int32_t(history[size_t(s)].size() - 1), int32_t(s), true);
        next_rows.push_back(s);
      }
    }
    rows = std::move(next_rows);
    if (!rows.empty()) logits = decoder.forward(batch, cache);
  }
  for (SampledCompletion& c : out) c.text = tok.decode(c.completion, true);
  if (stats) {
    stats->tokens = tokens;
    stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return out;
}

}  // namespace distill
