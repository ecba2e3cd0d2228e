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

Fidelity evaluate_fidelity(const Model& student, const Model& teacher, const TokenDataset& data) {
  Decoder ds(student), dt(teacher);
  Fidelity f;
  double kl_total = 0;
  int64_t agree = 0;
  const int64_t vs = student.config.n_vocab, vt = teacher.config.n_vocab, V = std::min(vs, vt), T = data.seq_len();
  for_each_batch(data, [&](const std::vector<int32_t>& in, const std::vector<int32_t>& tg, int64_t rows) {
    const Tensor ls = ds.forward_full(in.data(), rows, T), lt = dt.forward_full(in.data(), rows, T);
    const int64_t N = rows * T;
    std::vector<uint8_t> mask(static_cast<size_t>(N));
    int64_t n = 0;
    for (int64_t i = 0; i < N; ++i) n += (mask[size_t(i)] = tg[size_t(i)] != kIgnoreIndex);
    if (n == 0) return;
    kl_total += kd_loss_full(ls.data<float>(), vs, lt.data<float>(), vt, mask.data(), N, KdSettings{}, nullptr, 0.0f) * double(n);
    for (int64_t i = 0; i < N; ++i) {
      if (!mask[size_t(i)]) continue;
      const float* a = ls.data<float>() + i * vs;
      const float* b = lt.data<float>() + i * vt;
      agree += std::max_element(a, a + V) - a == std::max_element(b, b + V) - b;
    }
    f.positions += n;
  });
  if (f.positions == 0) fail("the evaluation data has no target tokens");
  f.kl = kl_total / double(f.positions);
  f.top1_agreement = double(agree) / double(f.positions);
  return f;
}

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
