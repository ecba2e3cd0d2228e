#include "eval/evaluate.h"

#include "core/error.h"
#include "generate/batch_generate.h"
#include "model/decoder.h"
#include "train/kd_loss.h"
#include "train/losses.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace distill {

SpeedEval evaluate_speed(const Model& model) {
  const int64_t n_prompt = 128, n_decode = 64;
  KVCache cache(model.config, 1, n_prompt + n_decode);
  Decoder dec(model);
  Batch b;
  for (int64_t i = 0; i < n_prompt; ++i) b.add(int32_t((i * 7 + 3) % model.config.n_vocab), int32_t(i), 0, i + 1 == n_prompt);
  dec.forward(b, cache);  // warm-up (buffers, page-in)
  KVCache fresh(model.config, 1, n_prompt + n_decode);
  auto t0 = std::chrono::steady_clock::now();
  const float* logits = dec.forward(b, fresh);
  SpeedEval s;
  s.prefill_tps = double(n_prompt) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < n_decode; ++i) {
    const int32_t next = int32_t(std::max_element(logits, logits + model.config.n_vocab) - logits);
    b.clear();
    b.add(next, int32_t(n_prompt + i), 0, true);
    logits = dec.forward(b, fresh);
  }
  s.decode_tps = double(n_decode) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

}  // namespace distill
