#include "generate/batch_generate.h"

#include "core/error.h"
#include "generate/scheduler.h"

#include <algorithm>
#include <chrono>

namespace distill {

std::vector<SampledCompletion> generate_batch(const Model& model, const Tokenizer& tok,
                                              const std::vector<std::vector<int32_t>>& prompts,
                                              const BatchGenerateOptions& opt, BatchGenerateStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t group = opt.group;
  const int64_t n = int64_t(prompts.size()) * group;
  std::vector<SampledCompletion> out(static_cast<size_t>(n));
  if (n == 0) return out;
  size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.size());

  // Every completion decodes at once (a slot each); the samples of one prompt prefill it once.
  SchedulerOptions so;
  so.n_slots = n;
  so.n_ctx = int64_t(longest) + std::max<int64_t>(opt.max_new_tokens, 1);
  so.max_queue = n;
  so.prefill_chunk = std::max<int64_t>(256, int64_t(longest) * int64_t(prompts.size()));
  so.threaded = false;
  so.share_prefill = opt.share_prefill;
  Scheduler engine(model, tok, so);
  const float temperature = opt.sampler.temperature > 0 ? opt.sampler.temperature : 1.0f;
  std::vector<std::shared_ptr<GenerationJob>> jobs;
  for (int64_t s = 0; s < n; ++s) {
    auto job = std::make_shared<GenerationJob>();
    job->prompt = prompts[size_t(s / group)];
    job->sampler = opt.sampler;
    // Seeds depend on (prompt, sample) alone: a completion does not depend on its batch.
    job->sampler.seed = opt.prompt_seeds.empty() ? opt.sampler.seed * 1000003u + uint64_t(s)
                                                 : opt.prompt_seeds[size_t(s / group)] * 1000003u + uint64_t(s % group);
    job->max_new_tokens = opt.max_new_tokens;
    job->keep_stop_token = true;  // the policy chose it: RL and distillation train on it
    job->logprobs = true;
    job->logprob_temperature = temperature;
    job->top_logprobs = opt.top_k_logprobs;
    job->watermark = opt.watermark;
    jobs.push_back(job);
  }
  engine.submit(jobs);
  engine.run_until_done();

  const int K = opt.top_k_logprobs;
  int64_t tokens = 0;
  for (int64_t s = 0; s < n; ++s) {
    const GenerationJob& job = *jobs[size_t(s)];
    if (job.finish_reason == "error") fail("generation failed: {}", job.error);
    SampledCompletion& c = out[size_t(s)];
    c.prompt_index = s / group;
    c.sample_index = s % group;
    for (const GenerationJob::Piece& p : job.pieces)
      for (const TokenLogprob& t : p.tokens) {
        c.completion.push_back(t.id);
        c.logp_old.push_back(t.logprob);
        for (int i = 0; i < K; ++i) {
          const bool have = size_t(i) < t.top.size();
          c.topk_ids.push_back(have ? t.top[size_t(i)].first : -1);
          c.topk_logp.push_back(have ? t.top[size_t(i)].second : -INFINITY);
        }
      }
    c.finished = job.finish_reason == "stop";
    c.text = tok.decode(c.completion, true);
    tokens += int64_t(c.completion.size());
  }
  if (stats) {
    stats->tokens = tokens;
    stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    stats->prompt_tokens_copied = engine.stats().copied_prompt_tokens;
  }
  return out;
}

}  // namespace distill
