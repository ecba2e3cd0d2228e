#include "generate/generator.h"

#include "core/error.h"

#include <chrono>

namespace distill {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

SchedulerOptions one_slot(int64_t n_ctx) {
  SchedulerOptions o;
  o.n_slots = 1;
  o.n_ctx = n_ctx;
  o.max_queue = 1;
  o.prefill_chunk = n_ctx;  // one conversation: its whole prompt in one forward
  o.threaded = false;
  return o;
}

}  // namespace

Generator::Generator(const Model& model, const Tokenizer& tok, int64_t n_ctx)
    : n_ctx_(n_ctx), engine_(std::make_unique<Scheduler>(model, tok, one_slot(n_ctx))) {}

Generator::~Generator() = default;

void Generator::reset() { engine_->forget_cached(); }

GenerateResult Generator::generate(const std::vector<int32_t>& prompt, const SamplerSettings& sampler,
                                   const GenerateOptions& opt, const std::function<bool(const std::string&)>& on_text) {
  GenerateResult r;
  r.n_prompt = int64_t(prompt.size());
  if (prompt.empty()) fail("the prompt is empty");
  if (int64_t(prompt.size()) >= n_ctx_)
    fail("the prompt has {} tokens; the context holds {} (raise --ctx or shorten the prompt)", prompt.size(), n_ctx_);

  auto job = std::make_shared<GenerationJob>();
  job->prompt = prompt;
  job->sampler = sampler;
  job->max_new_tokens = opt.max_new_tokens;
  job->stop = opt.stop;
  job->stop_at_eos = opt.stop_at_eos;
  job->special_text = opt.special_text;
  engine_->submit({job});

  // The engine's slot keeps the previous turn: only what is new is prefilled. Text is handed
  // to on_text as the engine decides it; returning false cancels.
  const auto t0 = std::chrono::steady_clock::now();
  size_t seen = 0;
  bool first = true;
  engine_->run_until_done([&] {
    if (first && (job->n_generated > 0 || job->done)) r.prefill_s = seconds_since(t0), first = false;
    for (; seen < job->pieces.size(); ++seen) {
      const std::string& text = job->pieces[seen].text;
      if (job->cancel) break;
      r.text += text;
      if (!text.empty() && !on_text(text)) job->cancel = true;
    }
  });
  r.decode_s = seconds_since(t0) - r.prefill_s;
  if (job->finish_reason == "error") fail("generation failed: {}", job->error);
  r.tokens = job->tokens();
  r.finish_reason = job->finish_reason;
  r.n_prefilled = r.n_prompt - job->n_reused;
  return r;
}

}  // namespace distill
