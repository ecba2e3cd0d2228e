#include "generate/generator.h"

#include "core/error.h"

#include <algorithm>
#include <chrono>

namespace distill {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Length of the longest suffix of `text` that is a proper prefix of some stop string: text that
// may still turn into a stop string and so must not be shown yet.
size_t held_back(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& s : stops)
    for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n)
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
  return hold;
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
  Tokenizer::StreamDecoder stream(tok_, true);
  std::string pending;  // decided text not yet handed to on_text (may begin a stop string)
  const auto& stop_ids = tok_.stop_ids();
  t0 = std::chrono::steady_clock::now();
  r.finish_reason = "length";
  bool done = false, stop_string = false;
  while (!done && int64_t(r.tokens.size()) < opt.max_new_tokens) {
    if (int64_t(cached_.size()) >= n_ctx_) break;  // context full: "length"
    const int32_t next = sampler.sample(logits, model_.config.n_vocab, history);
    if (opt.stop_at_eos && std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) {
      r.finish_reason = "stop";
      break;
    }
    r.tokens.push_back(next);
    history.push_back(next);
    pending += stream.push(next);
    // A stop string ends the reply; the text before it is the answer.
    for (const std::string& s : opt.stop) {
      const size_t at = s.empty() ? std::string::npos : pending.find(s);
      if (at != std::string::npos) {
        pending.resize(at);
        r.finish_reason = "stop";
        done = stop_string = true;
      }
    }
    const size_t hold = done ? 0 : held_back(pending, opt.stop);
    const std::string ready = pending.substr(0, pending.size() - hold);
    pending.erase(0, pending.size() - hold);
    r.text += ready;
    if (!ready.empty() && !on_text(ready)) {
      r.finish_reason = "cancelled";
      done = true;
    }
    if (done) break;
    batch_.clear();
    batch_.add(next, int32_t(cached_.size()), 0, true);
    logits = decoder_.forward(batch_, cache_);
    cached_.push_back(next);
  }
  if (r.finish_reason != "cancelled") {
    // After a stop string everything before it was handed out already; otherwise the text held
    // back for a possible stop string, and any incomplete character, are the reply's end.
    const std::string rest = stop_string ? "" : pending + stream.flush();
    r.text += rest;
    if (!rest.empty()) on_text(rest);
  }
  r.decode_s = seconds_since(t0);
  return r;
}

}  // namespace distill
