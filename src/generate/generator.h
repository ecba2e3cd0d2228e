// Generator: prompt in, streamed text out, for one conversation: a client of the decode engine
// (generate/scheduler.h) with one slot, driven in the caller's thread. The slot keeps the tokens
// already in the cache, so a follow-up prompt that extends the previous one (the next chat turn)
// only prefills what is new. Stops at the end-of-turn ids, at user stop strings (text is
// held back while it could still become one), at max_new_tokens, at a full context, or when the
// caller's callback asks to.
#pragma once

#include "generate/scheduler.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace distill {

struct GenerateOptions {
  int64_t max_new_tokens = 256;
  std::vector<std::string> stop;   // stop strings (not included in the output)
  bool stop_at_eos = true;         // the tokenizer's end-of-turn / EOS ids
  bool special_text = false;       // special tokens kept in the text (harmony's channel markup)
};

struct GenerateResult {
  std::vector<int32_t> tokens;     // generated ids (the stop token excluded)
  std::string text;
  std::string finish_reason;       // "stop" | "length" | "cancelled"
  int64_t n_prompt = 0;            // prompt tokens
  int64_t n_prefilled = 0;         // of which were not already cached
  double prefill_s = 0, decode_s = 0;
};

class Generator {
public:
  Generator(const Model& model, const Tokenizer& tok, int64_t n_ctx);
  ~Generator();

  // on_text receives each piece of output text as it is decided; returning false cancels.
  GenerateResult generate(const std::vector<int32_t>& prompt, const SamplerSettings& sampler, const GenerateOptions& opt,
                          const std::function<bool(const std::string&)>& on_text);
  // Forgets the cached conversation: the next prompt is prefilled from the start.
  void reset();
  int64_t n_ctx() const { return n_ctx_; }

private:
  int64_t n_ctx_;
  std::unique_ptr<Scheduler> engine_;
};

}  // namespace distill
