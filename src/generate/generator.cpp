#include "generate/generator.h"

#include "core/error.h"
#include "generate/text_stream.h"

#include <algorithm>
#include <chrono>

namespace distill {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Generator::Generator(const Model& model, const Tokenizer& tok, int64_t n_ctx)
    : model_(model), tok_(tok), n_ctx_(n_ctx), decoder_(model), cache_(model.config, 1, n_ctx) {}

GenerateResult Generator::generate(const std::vector<int32_t>& prompt, Sampler& sampler, const GenerateOptions& opt,
                                   const std::function<bool(const std::string&)>& on_text) {
  GenerateResult r;
  r.n_prompt = int64_t(prompt.size());
  if (prompt.empty()) fail("the prompt is empty");
  if (int64_t(prompt.size()) >= n_ctx_)
    fail("the prompt has {} tokens; the context holds {} (raise --ctx or shorten the prompt)", prompt.size(), n_ctx_);

  // Reuse the cached prefix; at least the last prompt token is run to get its logits.
  size_t common = 0;
  while (common < cached_.size() && common < prompt.size() && cached_[common] == prompt[common]) ++common;
  common = std::min(common, prompt.size() - 1);
  cached_.resize(common);
  batch_.clear();
  for (size_t i = common; i < prompt.size(); ++i) batch_.add(prompt[i], int32_t(i), 0, i + 1 == prompt.size());
  auto t0 = std::chrono::steady_clock::now();
  const float* logits = decoder_.forward(batch_, cache_);
  r.prefill_s = seconds_since(t0);
  r.n_prefilled = int64_t(prompt.size() - common);
  cached_.insert(cached_.end(), prompt.begin() + int64_t(common), prompt.end());

  std::vector<int32_t> history = prompt;
  StopTextStream stream(tok_, opt.stop);
  const auto& stop_ids = tok_.stop_ids();
  t0 = std::chrono::steady_clock::now();
  r.finish_reason = "length";
  while (int64_t(r.tokens.size()) < opt.max_new_tokens) {
    if (int64_t(cached_.size()) >= n_ctx_) break;  // context full: "length"
    const int32_t next = sampler.sample(logits, model_.config.n_vocab, history);
    if (opt.stop_at_eos && std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) {
      r.finish_reason = "stop";
      break;
    }
    r.tokens.push_back(next);
    history.push_back(next);
    const std::string ready = stream.push(next);
    r.text += ready;
    if (stream.stopped()) r.finish_reason = "stop";
    if (!ready.empty() && !on_text(ready)) {
      r.finish_reason = "cancelled";
      break;
    }
    if (stream.stopped()) break;
    batch_.clear();
    batch_.add(next, int32_t(cached_.size()), 0, true);
    logits = decoder_.forward(batch_, cache_);
    cached_.push_back(next);
  }
  if (r.finish_reason != "cancelled") {
    // The text held back for a possible stop string, and any incomplete character, end the reply.
    const std::string rest = stream.finish();
    r.text += rest;
    if (!rest.empty()) on_text(rest);
  }
  r.decode_s = seconds_since(t0);
  return r;
}

}  // namespace distill
